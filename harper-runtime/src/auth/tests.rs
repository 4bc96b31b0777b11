use super::*;

fn auth() -> (Database, Auth) {
    let db = Database::temporary().unwrap();
    let auth = Auth::open(&db, AuthConfig::default()).unwrap();
    (db, auth)
}

fn basic(user: &str, pw: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = format!("Basic {}", STANDARD.encode(format!("{user}:{pw}")));
    h.insert(header::AUTHORIZATION, v.parse().unwrap());
    h
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    h
}

#[tokio::test]
async fn passwords_tokens_and_revocation() {
    let (_db, auth) = auth();
    auth.create_user("alice", "s3cret", &["editor".into()])
        .unwrap();
    let who = auth
        .authenticate(&basic("alice", "s3cret"), &Method::GET, None)
        .await
        .unwrap();
    assert_eq!(who.id(), Some("alice"));
    assert!(who.has_role("editor") && !who.is_admin());
    // Cached the second time, same answer.
    let again = auth
        .authenticate(&basic("alice", "s3cret"), &Method::GET, None)
        .await
        .unwrap();
    assert_eq!(again, who);
    let wrong = auth
        .authenticate(&basic("alice", "nope"), &Method::GET, None)
        .await
        .unwrap_err();
    assert_eq!(wrong.status, 401);
    let unknown = auth
        .authenticate(&basic("mallory", "x"), &Method::GET, None)
        .await
        .unwrap_err();
    assert_eq!(unknown.status, 401);
    assert_eq!(
        unknown.message, wrong.message,
        "unknown users look like wrong passwords"
    );

    let tokens = auth.login("alice", "s3cret", None).await.unwrap();
    let who = auth
        .authenticate(&bearer(&tokens.access_token), &Method::POST, None)
        .await
        .unwrap();
    assert_eq!(who.id(), Some("alice"));
    // A refresh token is not an access token, and vice versa.
    assert!(
        auth.authenticate(&bearer(&tokens.refresh_token), &Method::GET, None)
            .await
            .is_err()
    );
    assert!(auth.refresh(&tokens.access_token).is_err());
    // Rotation: the refresh token works once.
    let next = auth.refresh(&tokens.refresh_token).unwrap();
    assert!(auth.refresh(&tokens.refresh_token).is_err());
    // A password change ends tokens and cached Basic checks.
    auth.update_user("alice", Some("n3w"), None).unwrap();
    assert!(
        auth.authenticate(&bearer(&next.access_token), &Method::GET, None)
            .await
            .is_err()
    );
    assert!(
        auth.authenticate(&basic("alice", "s3cret"), &Method::GET, None)
            .await
            .is_err()
    );
    assert!(
        auth.authenticate(&basic("alice", "n3w"), &Method::GET, None)
            .await
            .is_ok()
    );
    // Role changes apply to live tokens at once.
    let t = auth.login("alice", "n3w", None).await.unwrap();
    auth.update_user("alice", None, Some(&["admin".into()]))
        .unwrap();
    let who = auth
        .authenticate(&bearer(&t.access_token), &Method::GET, None)
        .await
        .unwrap();
    assert!(who.is_admin());
    // Deleting the user ends its tokens; re-creating the name does not revive them.
    assert!(auth.delete_user("alice").unwrap());
    auth.create_user("alice", "n3w", &[]).unwrap();
    assert!(
        auth.authenticate(&bearer(&t.access_token), &Method::GET, None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn forged_and_malformed_credentials() {
    let (_db, auth) = auth();
    for h in [
        bearer("hat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        bearer("garbage"),
        bearer(""),
        basic("", ""),
    ] {
        assert_eq!(
            auth.authenticate(&h, &Method::GET, None)
                .await
                .unwrap_err()
                .status,
            401
        );
    }
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
    assert_eq!(
        auth.authenticate(&h, &Method::GET, None)
            .await
            .unwrap_err()
            .status,
        401
    );
    h.insert(header::AUTHORIZATION, "Digest x".parse().unwrap());
    assert_eq!(
        auth.authenticate(&h, &Method::GET, None)
            .await
            .unwrap_err()
            .status,
        401
    );
    // No credentials: anonymous.
    let who = auth
        .authenticate(&HeaderMap::new(), &Method::GET, None)
        .await
        .unwrap();
    assert!(!who.is_authenticated());
}

#[tokio::test]
async fn expired_tokens_and_cookies() {
    let db = Database::temporary().unwrap();
    let auth = Auth::open(
        &db,
        AuthConfig {
            access_ttl: Duration::from_secs(1),
            ..AuthConfig::default()
        },
    )
    .unwrap();
    let guest = auth.guest_session(None).unwrap();
    assert_eq!(guest.principal.kind(), PrincipalKind::Guest);
    let mut h = HeaderMap::new();
    h.insert(
        header::COOKIE,
        format!("a=b; {TOKEN_COOKIE}={}", guest.access_token)
            .parse()
            .unwrap(),
    );
    assert_eq!(
        auth.authenticate(&h, &Method::GET, None).await.unwrap(),
        guest.principal
    );
    // Cookies do not authorize writes.
    assert!(
        !auth
            .authenticate(&h, &Method::POST, None)
            .await
            .unwrap()
            .is_authenticated()
    );
    // Resuming with the refresh token keeps the guest id.
    let resumed = auth.guest_session(Some(&guest.refresh_token)).unwrap();
    assert_eq!(resumed.principal, guest.principal);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(
        auth.authenticate(&bearer(&resumed.access_token), &Method::GET, None)
            .await
            .is_err()
    );
}

#[test]
fn bootstrap_once() {
    let (_db, auth) = auth();
    let (name, pw) = auth.bootstrap_admin(None).unwrap().unwrap();
    assert_eq!(name, "admin");
    assert!(pw.len() >= 20);
    assert!(auth.bootstrap_admin(Some("root:x")).unwrap().is_none());
    assert!(
        auth.user("admin")
            .unwrap()
            .roles
            .contains(&"admin".to_owned())
    );
    let (_db, auth2) = self::auth();
    assert!(auth2.bootstrap_admin(Some("nocolon")).is_err());
    assert_eq!(
        auth2.bootstrap_admin(Some("root:pw:with:colons")).unwrap(),
        Some(("root".into(), "pw:with:colons".into()))
    );
}

#[test]
fn rules() {
    use crate::schema::Rule;
    static DEF: TableDef = TableDef {
        name: "T",
        export: None,
        fields: &[],
        primary_key: 0,
        relationships: &[],
        compound_indexes: &[],
    };
    let anon = Principal::anonymous();
    let guest = Principal::guest("guest-1");
    let support = Principal::user("s", &["support".into()]);
    let admin = Principal::user("a", &["admin".into()]);
    let rule = Rule {
        public: false,
        authenticated: false,
        owner: true,
        roles: &["support"],
    };
    assert!(matches!(
        grant(&DEF, "read", &rule, &anon),
        Err(Error::Denied {
            authenticated: false,
            ..
        })
    ));
    assert_eq!(grant(&DEF, "read", &rule, &guest).unwrap(), Grant::Owned);
    assert_eq!(grant(&DEF, "read", &rule, &support).unwrap(), Grant::All);
    assert_eq!(
        grant(&DEF, "read", &Rule::ADMIN, &admin).unwrap(),
        Grant::All
    );
    assert!(matches!(
        grant(&DEF, "update", &Rule::ADMIN, &support),
        Err(Error::Denied {
            authenticated: true,
            ..
        })
    ));
    assert_eq!(
        grant(&DEF, "read", &Rule::PUBLIC, &anon).unwrap(),
        Grant::All
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_the_same_credentials_hashes_once() {
    let (_db, auth) = auth();
    auth.create_user("bob", "pw", &[]).unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move {
                auth.authenticate(&basic("bob", "pw"), &Method::GET, None)
                    .await
                    .is_ok()
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    // Two may start together (the gate's width); everyone else finds the cached check.
    assert!(auth.password_checks() <= 2, "{}", auth.password_checks());
}

#[test]
fn the_unknown_user_hash_costs_what_a_real_one_does_and_matches_nothing() {
    let (_db, auth) = auth();
    let dummy = PasswordHash::new(&auth.inner.dummy).expect("a valid PHC string");
    let real_string = auth.hash("some password").unwrap();
    let real = PasswordHash::new(&real_string).unwrap();
    assert_eq!(dummy.algorithm, real.algorithm);
    assert_eq!(dummy.version, real.version);
    assert_eq!(dummy.params, real.params);
    assert_eq!(
        dummy.hash.map(|h| h.len()),
        real.hash.map(|h| h.len()),
        "the same output length"
    );
    assert_ne!(dummy.salt, real.salt);
    for pw in ["", "some password", "admin"] {
        assert!(
            auth.inner
                .hasher
                .verify_password(pw.as_bytes(), &dummy)
                .is_err()
        );
    }
    // Two stores get different dummies (random salt and output).
    let (_db2, other) = self::auth();
    assert_ne!(auth.inner.dummy, other.inner.dummy);
}
