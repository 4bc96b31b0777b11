#![deny(warnings)] // generated code must not warn

use harper::prelude::*;

#[table]
pub struct Post {
    #[primary_key]
    pub id: Id,
    #[indexed]
    pub tag_ids: Vec<Id>,
    #[relationship(from = tag_ids)]
    pub tags: Links<Tag>,
}

#[table]
pub struct Tag {
    #[primary_key]
    pub id: Id,
    // The other side: posts whose `tag_ids` hold this tag's key.
    #[relationship(to = tag_ids)]
    pub posts: Links<Post>,
}

// A self-reference and integer keys.
#[table]
pub struct Employee {
    #[primary_key]
    pub id: u32,
    pub manager_id: Option<u32>,
    #[relationship(from = manager_id)]
    pub manager: Link<Self>,
    #[relationship(to = manager_id)]
    pub reports: Links<Employee>,
}

fn check<R: Reader>(post: &Post, tag: &Tag, employee: &Employee, tx: &R) -> harper::Result<()> {
    let _tags: Vec<Tag> = post.tags(tx)?;
    let _posts: Vec<Post> = tag.posts(tx)?;
    let _manager: Option<Employee> = employee.manager(tx)?;
    let _reports: Vec<Employee> = employee.reports(tx)?;
    Ok(())
}

fn main() {
    let _ = check::<harper::ReadTx>;
    assert_eq!(Post::DEF.relationships[0].name, "tags");
    assert!(Post::DEF.fields[1].ty.list);
}
