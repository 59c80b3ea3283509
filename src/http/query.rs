//! Query strings: strict parsing with errors that name the parameter.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::config::Kind;
use crate::engine::UnknownName;

/// A bad query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// The parameter at fault.
    pub parameter: String,
    /// What is wrong with it.
    pub message: String,
}

impl QueryError {
    /// An error about `parameter`.
    pub fn new(parameter: &str, message: String) -> QueryError {
        QueryError { parameter: parameter.to_owned(), message }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad parameter `{}`: {}", self.parameter, self.message)
    }
}

/// Parsed query parameters, each at most once.
#[derive(Debug, Default)]
pub struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// Parses `q`, refusing parameters not in `allowed`, repeated ones and bad encodings.
    pub fn parse(q: Option<&str>, allowed: &[&str]) -> Result<Params, QueryError> {
        let mut values = BTreeMap::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(k).map_err(|m| QueryError::new(k, m))?;
            let value = decode(v).map_err(|m| QueryError::new(&key, m))?;
            if !allowed.contains(&key.as_str()) {
                let known = if allowed.is_empty() {
                    "this endpoint takes none".to_owned()
                } else {
                    format!("known: {}", allowed.join(", "))
                };
                return Err(QueryError::new(&key, format!("unknown parameter ({known})")));
            }
            if values.insert(key.clone(), value).is_some() {
                return Err(QueryError::new(&key, "given more than once".into()));
            }
        }
        Ok(Params { values })
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of a free-text parameter, if given and not empty: generated clients send
    /// `name=` for a parameter left unset, and the description allows the empty string.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// The value of `key`, which must be one of `choices`.
    pub fn one_of(&self, key: &str, choices: &[&'static str]) -> Result<Option<&'static str>, QueryError> {
        self.choice(key, choices, |c| c)
    }

    /// The value of `key`, which must name one of `all`.
    pub fn choice<T: Copy>(&self, key: &str, all: &[T], name: fn(T) -> &'static str) -> Result<Option<T>, QueryError> {
        self.get(key)
            .map(|v| UnknownName::find(v, all, name).map_err(|e| QueryError::new(key, e.to_string())))
            .transpose()
    }

    /// The value of `key` parsed as a `T`, if given; the parse error is the message.
    pub fn parsed<T>(&self, key: &str) -> Result<Option<T>, QueryError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.get(key).map(|v| v.parse().map_err(|e: T::Err| QueryError::new(key, e.to_string()))).transpose()
    }

    /// The `limit` parameter: 1 to `max`, `default` when absent.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, QueryError> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(QueryError::new("limit", format!("must be a whole number from 1 to {max}, got `{v}`"))),
            },
        }
    }
}

fn hex(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a query component (`+` is a space).
fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let byte = b.get(i + 1).and_then(|&h| hex(h)).zip(b.get(i + 2).and_then(|&l| hex(l)));
                let Some((h, l)) = byte else {
                    return Err(format!("bad percent-encoding in `{s}`"));
                };
                out.push(h * 16 + l);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8 once decoded"))
}

/// Percent-encodes a path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// An opaque cursor naming the last target of a page.
pub fn encode_cursor(kind: &str, name: &str, version: &str) -> String {
    cursor_key(kind, name, version).iter().map(|b| format!("{b:02x}")).collect()
}

/// The position a cursor from [`encode_cursor`] names: the bytes of `kind\0name\0version`,
/// which order as the (kind, name, version) triples do. Any even-length hex string is a
/// position (the page starts after it), so only malformed hex is refused.
pub fn decode_cursor(c: &str, parameter: &str) -> Result<Vec<u8>, QueryError> {
    let bad = || QueryError::new(parameter, format!("`{c}` is not a cursor from next_cursor (hex digits in pairs)"));
    let b = c.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(bad());
    }
    b.chunks(2).map(|p| Some(hex(p[0])? * 16 + hex(p[1])?)).collect::<Option<Vec<u8>>>().ok_or_else(bad)
}

/// The bytes a target's cursor encodes, for comparing with [`decode_cursor`]'s.
pub fn cursor_key(kind: &str, name: &str, version: &str) -> Vec<u8> {
    format!("{kind}\u{0}{name}\u{0}{version}").into_bytes()
}

/// `kind/name` or `kind/name/version`.
pub fn parse_target(s: &str, parameter: &str) -> Result<(Kind, String, Option<String>), QueryError> {
    let bad = || {
        QueryError::new(parameter, format!("must be KIND/NAME or KIND/NAME/VERSION with KIND app or model, got `{s}`"))
    };
    let (kind, rest) = s.split_once('/').ok_or_else(bad)?;
    let kind = match kind {
        "app" => Kind::App,
        "model" => Kind::Model,
        _ => return Err(bad()),
    };
    let (name, version) = match rest.rsplit_once('/') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => (n.to_owned(), Some(v.to_owned())),
        None if !rest.is_empty() => (rest.to_owned(), None),
        _ => return Err(bad()),
    };
    Ok((kind, name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_repeated_and_malformed_parameters_are_named() {
        let e = Params::parse(Some("limit=5&colour=red"), &["limit"]).unwrap_err();
        assert_eq!(e.parameter, "colour");
        let e = Params::parse(Some("limit=5&limit=6"), &["limit"]).unwrap_err();
        assert_eq!(e.parameter, "limit");
        let e = Params::parse(Some("name=%zz"), &["name"]).unwrap_err();
        assert_eq!(e.parameter, "name");
        let p = Params::parse(Some("name=fraud%20v2&limit=7"), &["name", "limit"]).unwrap();
        assert_eq!(p.get("name"), Some("fraud v2"));
        assert_eq!(p.limit(100, 1000), Ok(7));
        let p = Params::parse(Some("name=&cursor=x"), &["name", "cursor"]).unwrap();
        assert_eq!((p.text("name"), p.text("cursor")), (None, Some("x")));
        let p = Params::parse(Some("limit=0"), &["limit"]).unwrap();
        assert_eq!(p.limit(100, 1000).unwrap_err().parameter, "limit");
    }

    #[test]
    fn values_of_a_closed_set_are_parsed_or_listed() {
        use crate::engine::TargetState;
        let p = Params::parse(Some("state=review&severity=loud"), &["state", "severity"]).unwrap();
        assert_eq!(p.parsed::<TargetState>("state"), Ok(Some(TargetState::Review)));
        assert_eq!(p.parsed::<TargetState>("absent"), Ok(None));
        let e = p.one_of("severity", &["critical", "warning", "info"]).unwrap_err();
        assert_eq!(e.to_string(), "bad parameter `severity`: must be one of critical, warning, info, got `loud`");
        let p = Params::parse(Some("state=ok"), &["state"]).unwrap();
        let e = p.parsed::<TargetState>("state").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad parameter `state`: must be one of healthy, suspect, rolled_back, retrain, review, promoted, got `ok`"
        );
    }

    #[test]
    fn cursors_round_trip_order_as_targets_and_reject_junk() {
        let c = encode_cursor("model", "fraud/eu", "7");
        assert_eq!(decode_cursor(&c, "cursor").unwrap(), cursor_key("model", "fraud/eu", "7"));
        // Byte order of the keys is the order of the (kind, name, version) triples.
        let triples = [("app", "a", "2"), ("app", "a.b", "1"), ("app", "ab", "0"), ("model", "a", "1")];
        for w in triples.windows(2) {
            assert!(w[0] < w[1] && cursor_key(w[0].0, w[0].1, w[0].2) < cursor_key(w[1].0, w[1].1, w[1].2));
        }
        assert!(decode_cursor("zz", "cursor").is_err());
        assert!(decode_cursor("abc", "cursor").is_err());
        assert_eq!(decode_cursor("", "cursor").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn targets_parse() {
        assert_eq!(parse_target("app/checkout", "t").unwrap(), (Kind::App, "checkout".into(), None));
        assert_eq!(parse_target("model/fraud/7", "t").unwrap(), (Kind::Model, "fraud".into(), Some("7".into())));
        assert!(parse_target("fleet/x", "t").is_err());
        assert!(parse_target("app/", "t").is_err());
    }
}
