//! `kcat -J` envelopes: one Kafka record per line, as `kcat -C -J` prints them —
//! `{"topic", "partition", "offset", "tstype", "ts", "broker", "headers": [name, value, ...],
//! "key", "payload"}` — so a dumped topic replays with its headers.

use serde::Deserialize;

use crate::event::{BadInput, BadReason};
use crate::time::Millis;

/// One record of a dump.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Envelope {
    /// Topic.
    pub topic: String,
    /// Partition.
    #[serde(default)]
    pub partition: i32,
    /// Offset in the partition.
    #[serde(default)]
    pub offset: i64,
    /// Record timestamp (epoch ms), when it has one.
    #[serde(default)]
    pub ts: Option<i64>,
    /// Header names and values, flat: `[name, value, name, value, ...]`.
    #[serde(default)]
    pub headers: Option<Vec<Option<String>>>,
    /// Key.
    #[serde(default)]
    pub key: Option<String>,
    /// Value.
    #[serde(default)]
    pub payload: Option<String>,
}

impl Envelope {
    /// Parses one line.
    pub fn parse(line: &[u8]) -> Result<Envelope, BadInput> {
        let env: Envelope = serde_json::from_slice(line).map_err(|e| BadInput {
            reason: BadReason::InvalidJson,
            detail: format!(
                "not a kcat -J envelope ({{\"topic\", \"partition\", \"offset\", \"headers\", \"payload\"}}): {e}"
            ),
        })?;
        if env.headers.as_ref().is_some_and(|h| h.len() % 2 != 0) {
            return Err(BadInput {
                reason: BadReason::InvalidValue,
                detail: "envelope field `headers` must list names and values in pairs".into(),
            });
        }
        Ok(env)
    }

    /// Headers as `(name, value)` pairs (a null value is empty).
    pub fn header_pairs(&self) -> Vec<(&str, &[u8])> {
        self.headers
            .as_deref()
            .unwrap_or(&[])
            .chunks(2)
            .map(|c| {
                let name = c.first().and_then(|n| n.as_deref()).unwrap_or("");
                let value = c.get(1).and_then(|v| v.as_deref()).unwrap_or("");
                (name, value.as_bytes())
            })
            .collect()
    }

    /// The record timestamp, when it is a real one (kcat prints -1 or 0 for none).
    pub fn timestamp(&self) -> Option<Millis> {
        self.ts.filter(|&t| t > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kcat_line_parses_with_its_headers() {
        let line = br#"{"topic":"kserve","partition":2,"offset":41,"tstype":"create","ts":1764000000000,"broker":1,"headers":["ce_id","abc","content-type","application/json"],"key":null,"payload":"{\"instances\":[[1,2]]}"}"#;
        let e = Envelope::parse(line).expect("parses");
        assert_eq!((e.topic.as_str(), e.partition, e.offset), ("kserve", 2, 41));
        assert_eq!(e.header_pairs(), vec![("ce_id", &b"abc"[..]), ("content-type", &b"application/json"[..])]);
        assert_eq!(e.timestamp(), Some(1_764_000_000_000));
        assert_eq!(e.payload.as_deref(), Some(r#"{"instances":[[1,2]]}"#));
    }

    #[test]
    fn odd_headers_and_non_envelopes_are_named() {
        let odd = Envelope::parse(br#"{"topic":"t","headers":["a"],"payload":"x"}"#).unwrap_err();
        assert!(odd.detail.contains("pairs"), "{odd}");
        let not = Envelope::parse(br#"{"type":"request"}"#).unwrap_err();
        assert!(not.detail.contains("kcat -J"), "{not}");
    }
}
