//! `kcat -J` envelopes: one Kafka record per line, as `kcat -C -J` prints them —
//! `{"topic", "partition", "offset", "tstype", "ts", "broker", "headers": [name, value, ...],
//! "key", "payload"}` — so a dumped topic replays with its headers.

use serde::Deserialize;

use crate::event::{BadInput, BadReason};
use crate::time::Millis;

/// One record of a dump.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Record timestamp (epoch ms), when it has one.
    pub ts: Option<i64>,
    /// Header names and values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Value.
    pub payload: Option<Vec<u8>>,
}

/// A line as written.
#[derive(Deserialize)]
struct Line {
    topic: String,
    #[serde(default)]
    partition: i32,
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    ts: Option<i64>,
    /// Flat: `[name, value, name, value, ...]`.
    #[serde(default)]
    headers: Option<Vec<Option<String>>>,
    #[serde(default)]
    payload: Option<String>,
}

impl Envelope {
    /// Parses one line.
    ///
    /// kcat writes binary values (protobuf payloads) byte for byte into the JSON string, so
    /// such a line is not UTF-8; it is read as Latin-1, where each byte is one character, and
    /// each character of the payload and header values is turned back into its byte.
    pub fn parse(line: &[u8]) -> Result<Envelope, BadInput> {
        let (parsed, bytes_as_chars) = match std::str::from_utf8(line) {
            Ok(text) => (serde_json::from_str::<Line>(text), false),
            Err(_) => {
                let latin1: String = line.iter().map(|&b| char::from(b)).collect();
                (serde_json::from_str::<Line>(&latin1), true)
            }
        };
        let l = parsed.map_err(|e| BadInput {
            reason: BadReason::InvalidJson,
            detail: format!(
                "not a kcat -J envelope ({{\"topic\", \"partition\", \"offset\", \"headers\", \"payload\"}}): {e}"
            ),
        })?;
        let flat = l.headers.unwrap_or_default();
        if flat.len() % 2 != 0 {
            return Err(BadInput {
                reason: BadReason::InvalidValue,
                detail: "envelope field `headers` must list names and values in pairs".into(),
            });
        }
        let bytes = |s: String| -> Vec<u8> {
            if !bytes_as_chars {
                return s.into_bytes();
            }
            let mut out = Vec::with_capacity(s.len());
            for c in s.chars() {
                match u8::try_from(u32::from(c)) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
            out
        };
        let headers = flat
            .chunks(2)
            .map(|c| {
                let name = c.first().cloned().flatten().unwrap_or_default();
                let value = c.get(1).cloned().flatten().unwrap_or_default();
                (String::from_utf8_lossy(&bytes(name)).into_owned(), bytes(value))
            })
            .collect();
        Ok(Envelope {
            topic: l.topic,
            partition: l.partition,
            offset: l.offset,
            ts: l.ts,
            headers,
            payload: l.payload.map(bytes),
        })
    }

    /// Headers as `(name, value)` pairs.
    pub fn header_pairs(&self) -> Vec<(&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect()
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
        assert_eq!(e.payload.as_deref(), Some(&br#"{"instances":[[1,2]]}"#[..]));
    }

    #[test]
    fn binary_payloads_as_kcat_writes_them_come_back_byte_for_byte() {
        // kcat escapes control bytes and quotes, and writes bytes >= 0x80 as they are.
        let mut line = br#"{"topic":"seldon.p.model.m.inputs","partition":0,"offset":3,"ts":5,"headers":["x-request-id","r-1"],"key":null,"payload":"\u0000\n\"a"#.to_vec();
        line.extend_from_slice(&[0xff, 0x80, 0xc3, 0xa9]);
        line.extend_from_slice(br#""}"#);
        let e = Envelope::parse(&line).expect("parses");
        assert_eq!(e.payload.as_deref(), Some(&[0u8, b'\n', b'"', b'a', 0xff, 0x80, 0xc3, 0xa9][..]));
        assert_eq!(e.header_pairs(), vec![("x-request-id", &b"r-1"[..])]);
    }

    #[test]
    fn odd_headers_and_non_envelopes_are_named() {
        let odd = Envelope::parse(br#"{"topic":"t","headers":["a"],"payload":"x"}"#).unwrap_err();
        assert!(odd.detail.contains("pairs"), "{odd}");
        let not = Envelope::parse(br#"{"type":"request"}"#).unwrap_err();
        assert!(not.detail.contains("kcat -J"), "{not}");
    }
}
