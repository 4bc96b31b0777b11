//! The messages subscribers receive, Harper's shape plus the change-log sequence:
//!
//! ```json
//! {"id":"p1","localTime":1795511138196.691,"value":{..},"version":1795511138194.685,"type":"put","seq":42}
//! {"id":"p1","localTime":..,"version":..,"type":"delete","seq":43}
//! {"id":"p1","localTime":..,"version":..,"type":"unmatched","seq":44}
//! {"type":"resync","seq":40,"message":".."}
//! ```
//!
//! `version` is the record version and `localTime` the time the message was made, both in
//! epoch milliseconds with a fraction. Each message is encoded once and shared by every
//! subscriber that receives it.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{Error, Result};

/// Microseconds as milliseconds with three decimals, exactly (no float rounding).
pub(crate) fn millis(micros: u64) -> String {
    format!("{}.{:03}", micros / 1000, micros % 1000)
}

/// The current time in microseconds since the epoch.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What happened to a record, as told to one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The record was written (or is part of the current state sent first).
    Put,
    /// The record was deleted.
    Delete,
    /// The record was written but no longer matches the subscription's filter (or, when
    /// replaying from the change log, may have matched before): drop it if you hold it.
    Unmatched,
}

/// Encodes one record event. `id` is the primary key as JSON, `value` the record's JSON
/// (puts only), `size` the stored size (the first messages of a collection, as Harper).
pub(crate) fn record_event(
    kind: EventKind,
    id: &[u8],
    value: Option<&[u8]>,
    version: u64,
    local_time: &str,
    seq: u64,
    size: Option<usize>,
) -> Bytes {
    let mut out = Vec::with_capacity(96 + id.len() + value.map_or(0, <[u8]>::len));
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id);
    out.extend_from_slice(b",\"localTime\":");
    out.extend_from_slice(local_time.as_bytes());
    if let (EventKind::Put, Some(v)) = (kind, value) {
        out.extend_from_slice(b",\"value\":");
        out.extend_from_slice(v);
    }
    out.extend_from_slice(b",\"version\":");
    out.extend_from_slice(millis(version).as_bytes());
    out.extend_from_slice(match kind {
        EventKind::Put => b",\"type\":\"put\"".as_slice(),
        EventKind::Delete => b",\"type\":\"delete\"".as_slice(),
        EventKind::Unmatched => b",\"type\":\"unmatched\"".as_slice(),
    });
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    if let Some(size) = size {
        out.extend_from_slice(b",\"size\":");
        out.extend_from_slice(size.to_string().as_bytes());
    }
    out.push(b'}');
    Bytes::from(out)
}

/// Tells the subscriber to drop what it holds: the current state follows, as of `seq`.
pub(crate) fn resync_event(seq: u64, message: &str) -> Bytes {
    let v = serde_json::json!({ "type": "resync", "seq": seq, "message": message });
    Bytes::from(v.to_string())
}

/// The primary key's JSON text, as the change log and events write it.
pub(crate) fn id_json(id: &crate::storage::key::Atom) -> Vec<u8> {
    serde_json::to_vec(&id.to_json()).unwrap_or_else(|_| b"null".to_vec())
}

/// One change-log entry, borrowed from its stored bytes.
#[derive(Deserialize)]
pub(crate) struct LogEntry<'a> {
    pub seq: u64,
    pub version: u64,
    #[serde(borrow)]
    pub changes: Vec<LogChange<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct LogChange<'a> {
    #[serde(borrow)]
    pub table: Cow<'a, str>,
    #[serde(borrow)]
    pub id: &'a RawValue,
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub value: Option<&'a RawValue>,
}

impl LogEntry<'_> {
    pub(crate) fn parse(bytes: &[u8]) -> Result<LogEntry<'_>> {
        serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("change log entry: {e}")))
    }
}

impl LogChange<'_> {
    pub(crate) fn is_put(&self) -> bool {
        self.kind == "put"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_are_exact() {
        assert_eq!(millis(1_795_511_138_194_685), "1795511138194.685");
        assert_eq!(millis(5), "0.005");
    }

    #[test]
    fn record_events_are_valid_json_in_harpers_shape() {
        let put = record_event(
            EventKind::Put,
            b"\"p1\"",
            Some(br#"{"id":"p1","n":1}"#),
            1_000_500,
            "2000.250",
            7,
            Some(17),
        );
        let v: serde_json::Value = serde_json::from_slice(&put).unwrap();
        assert_eq!(v["id"], "p1");
        assert_eq!(v["type"], "put");
        assert_eq!(v["value"]["n"], 1);
        assert_eq!(v["version"].as_f64(), Some(1000.5));
        assert_eq!(v["localTime"].as_f64(), Some(2000.25));
        assert_eq!(v["seq"], 7);
        assert_eq!(v["size"], 17);
        let del = record_event(EventKind::Delete, b"3", None, 1, "1.000", 8, None);
        let v: serde_json::Value = serde_json::from_slice(&del).unwrap();
        assert_eq!(v["type"], "delete");
        assert_eq!(v["id"], 3);
        assert!(v.get("value").is_none());
        assert!(v.get("size").is_none());
    }

    #[test]
    fn log_entries_parse_without_copying_values() {
        let raw = br#"{"seq":3,"version":9,"changes":[{"table":"T","id":"a","type":"put","value":{"id":"a"}},{"table":"T","id":2,"type":"delete"}]}"#;
        let e = LogEntry::parse(raw).unwrap();
        assert_eq!((e.seq, e.version, e.changes.len()), (3, 9, 2));
        assert!(e.changes[0].is_put());
        assert_eq!(e.changes[0].value.map(|v| v.get()), Some(r#"{"id":"a"}"#));
        assert!(!e.changes[1].is_put());
        assert_eq!(e.changes[1].id.get(), "2");
        assert!(LogEntry::parse(b"{").is_err());
    }
}
