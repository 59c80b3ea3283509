//! A single-pass JSON scanner specialised for event objects.
//!
//! General JSON parsers build a value or drive a visitor per token; events are flat objects
//! with one nested `features` object, so this scanner reads the line once, borrows every
//! string that has no escapes, keeps only the fields the contract names and validates the
//! grammar of everything else it skips. It accepts exactly what RFC 8259 accepts (a
//! differential property test checks it against `serde_json`), with the same nesting limit.

use std::borrow::Cow;

use crate::event::{BadInput, BadReason, FeatureValue, Features};

/// Nesting deeper than this is rejected, as `serde_json` does.
const MAX_DEPTH: usize = 128;

/// A JSON value as loosely typed as the wire allows, validated after scanning so that every
/// error can name its field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Loose<'a> {
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Bool(bool),
    Null,
    Object,
    Array,
}

impl Loose<'_> {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Loose::Int(_) | Loose::Float(_) => "a number",
            Loose::Str(_) => "a string",
            Loose::Bool(_) => "a boolean",
            Loose::Null => "null",
            Loose::Object => "an object",
            Loose::Array => "an array",
        }
    }
}

/// The fields of an event object, before validation.
#[derive(Debug, Default)]
pub(crate) struct RawEvent<'a> {
    pub kind: Option<Loose<'a>>,
    pub timestamp: Option<Loose<'a>>,
    pub event_id: Option<Loose<'a>>,
    pub app: Option<Loose<'a>>,
    pub app_version: Option<Loose<'a>>,
    pub model: Option<Loose<'a>>,
    pub model_version: Option<Loose<'a>>,
    pub latency_ms: Option<Loose<'a>>,
    pub features: Features<'a>,
    pub features_bad: Option<BadInput>,
    pub prediction: Option<Loose<'a>>,
    pub label: Option<Loose<'a>>,
    pub error: Option<Loose<'a>>,
}

#[derive(Debug)]
enum Fail {
    /// Not JSON: what was expected and where.
    Syntax(&'static str, usize),
    /// A number too large for a finite double.
    Overflow(usize),
    /// A string that is not UTF-8.
    Utf8(usize),
}

type R<T> = Result<T, Fail>;

struct Scanner<'a> {
    /// The whole line, already known to be UTF-8, so strings are sliced, not re-validated.
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\n' || c == b'\t' || c == b'\r' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn expect(&mut self, c: u8, what: &'static str) -> R<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Fail::Syntax(what, self.i))
        }
    }

    /// A string starting at the opening quote; borrowed when it has no escapes.
    fn string(&mut self) -> R<Cow<'a, str>> {
        self.expect(b'"', "a string")?;
        let start = self.i;
        let b = self.b;
        let mut i = start;
        // Eight bytes at a time while none of them is a quote, a backslash or a control
        // character (SWAR: a zero byte of `v ^ pattern` or a byte below 0x20 sets its high bit).
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = b.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            let quote = v ^ (ONES * u64::from(b'"'));
            let slash = v ^ (ONES * u64::from(b'\\'));
            let special = (quote.wrapping_sub(ONES) & !quote)
                | (slash.wrapping_sub(ONES) & !slash)
                | (v.wrapping_sub(ONES * 0x20) & !v);
            if special & HIGHS != 0 {
                break;
            }
            i += 8;
        }
        loop {
            let Some(&c) = b.get(i) else { return Err(Fail::Syntax("a closing quote", i)) };
            match c {
                b'"' => {
                    self.i = i + 1;
                    // Quotes are ASCII, so both ends are character boundaries.
                    return self.text.get(start..i).map(Cow::Borrowed).ok_or(Fail::Utf8(start));
                }
                b'\\' => {
                    self.i = i;
                    return self.escaped(start).map(Cow::Owned);
                }
                0..=0x1f => return Err(Fail::Syntax("no control character in a string", i)),
                _ => {}
            }
            i += 1;
        }
    }

    /// The rest of a string with escapes, from `start` (after the opening quote).
    fn escaped(&mut self, start: usize) -> R<String> {
        let b = self.b;
        let mut out: Vec<u8> = Vec::with_capacity(self.i - start + 16);
        out.extend_from_slice(&b[start..self.i]);
        loop {
            let Some(&c) = b.get(self.i) else { return Err(Fail::Syntax("a closing quote", self.i)) };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = b.get(self.i) else { return Err(Fail::Syntax("an escape", self.i)) };
                    self.i += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if b.get(self.i) != Some(&b'\\') || b.get(self.i + 1) != Some(&b'u') {
                                    return Err(Fail::Syntax("a low surrogate", self.i));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(Fail::Syntax("a low surrogate", self.i));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(Fail::Syntax("no lone low surrogate", self.i));
                            } else {
                                hi
                            };
                            let ch = char::from_u32(code).ok_or(Fail::Syntax("a code point", self.i))?;
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => return Err(Fail::Syntax("a valid escape", self.i - 1)),
                    }
                }
                0..=0x1f => return Err(Fail::Syntax("no control character in a string", self.i - 1)),
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|e| Fail::Utf8(start + e.utf8_error().valid_up_to()))
    }

    fn hex4(&mut self) -> R<u32> {
        let s = self.b.get(self.i..self.i + 4).ok_or(Fail::Syntax("four hex digits", self.i))?;
        let mut v = 0u32;
        for &c in s {
            let d = (c as char).to_digit(16).ok_or(Fail::Syntax("four hex digits", self.i))?;
            v = v * 16 + d;
        }
        self.i += 4;
        Ok(v)
    }

    fn number(&mut self) -> R<Loose<'a>> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while matches!(b.get(i), Some(b'0'..=b'9')) {
                    i += 1;
                }
            }
            _ => return Err(Fail::Syntax("a digit", i)),
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            if !matches!(b.get(i), Some(b'0'..=b'9')) {
                return Err(Fail::Syntax("a digit after the decimal point", i));
            }
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !matches!(b.get(i), Some(b'0'..=b'9')) {
                return Err(Fail::Syntax("a digit in the exponent", i));
            }
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        self.i = i;
        // The slice holds only ASCII digits, signs, '.', 'e'.
        let text = std::str::from_utf8(&b[start..i]).map_err(|_| Fail::Syntax("a number", start))?;
        if integer {
            if let Ok(v) = text.parse::<i64>() {
                return Ok(Loose::Int(v));
            }
        }
        let f: f64 = text.parse().map_err(|_| Fail::Syntax("a number", start))?;
        if f.is_finite() {
            Ok(Loose::Float(f))
        } else {
            Err(Fail::Overflow(start))
        }
    }

    fn literal(&mut self, word: &'static [u8], v: Loose<'a>) -> R<Loose<'a>> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(Fail::Syntax("true, false or null", self.i))
        }
    }

    /// Any value; nested objects and arrays are validated and skipped.
    fn value(&mut self, depth: usize) -> R<Loose<'a>> {
        match self.peek() {
            Some(b'"') => self.string().map(Loose::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true", Loose::Bool(true)),
            Some(b'f') => self.literal(b"false", Loose::Bool(false)),
            Some(b'n') => self.literal(b"null", Loose::Null),
            Some(b'{') => self.skip_container::<true>(depth + 1).map(|()| Loose::Object),
            Some(b'[') => self.skip_container::<false>(depth + 1).map(|()| Loose::Array),
            _ => Err(Fail::Syntax("a value", self.i)),
        }
    }

    /// Skips an object (`OBJECT`) or an array whose opening byte is next: the members' or
    /// items' values are checked as JSON and dropped.
    fn skip_container<const OBJECT: bool>(&mut self, depth: usize) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(Fail::Syntax("less nesting", self.i));
        }
        let (open, close) = if OBJECT { (b'{', b'}') } else { (b'[', b']') };
        self.expect(open, if OBJECT { "an object" } else { "an array" })?;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if OBJECT {
                self.string()?;
                self.ws();
                self.expect(b':', "a colon")?;
                self.ws();
            }
            self.value(depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b) if b == close => {
                    self.i += 1;
                    return Ok(());
                }
                _ => {
                    let what = if OBJECT { "a comma or a closing brace" } else { "a comma or a closing bracket" };
                    return Err(Fail::Syntax(what, self.i));
                }
            }
        }
    }

    /// The `features` value, decoded straight into `out`; values of the wrong type are noted in
    /// `bad` (the JSON stays valid, so the event is rejected by name, not as garbage).
    fn features(&mut self, out: &mut Features<'a>, bad: &mut Option<BadInput>) -> R<()> {
        out.clear();
        *bad = None;
        if self.peek() != Some(b'{') {
            let v = self.value(1)?;
            if v != Loose::Null {
                *bad = Some(BadInput::new(
                    BadReason::WrongType,
                    format!("field `features` must be an object, got {}", v.type_name()),
                ));
            }
            return Ok(());
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let name = self.string()?;
            self.ws();
            self.expect(b':', "a colon")?;
            self.ws();
            let v = self.value(2)?;
            let value = match v {
                Loose::Int(i) => Some(FeatureValue::Num(i as f64)),
                Loose::Float(f) => Some(FeatureValue::Num(f)),
                Loose::Str(s) => Some(FeatureValue::Str(s)),
                Loose::Bool(b) => Some(FeatureValue::Bool(b)),
                Loose::Null => Some(FeatureValue::Null),
                other @ (Loose::Object | Loose::Array) => {
                    if bad.is_none() {
                        *bad = Some(BadInput::new(
                            BadReason::WrongType,
                            format!(
                                "feature `{name}` must be a number, string, boolean or null, got {}",
                                other.type_name()
                            ),
                        ));
                    }
                    None
                }
            };
            if let Some(value) = value {
                // A repeated name keeps its last value, as JSON objects do.
                match out.iter_mut().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = value,
                    None => out.push((name, value)),
                }
            }
            self.ws();
            if self.after_member()? {
                return Ok(());
            }
        }
    }

    fn event(&mut self, raw: &mut RawEvent<'a>) -> R<()> {
        self.expect(b'{', "an object")?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.expect(b':', "a colon")?;
            self.ws();
            let slot = match key.as_ref() {
                "type" => &mut raw.kind,
                "timestamp" => &mut raw.timestamp,
                "event_id" => &mut raw.event_id,
                "app" => &mut raw.app,
                "app_version" => &mut raw.app_version,
                "model" => &mut raw.model,
                "model_version" => &mut raw.model_version,
                "latency_ms" => &mut raw.latency_ms,
                "prediction" => &mut raw.prediction,
                "label" => &mut raw.label,
                "error" => &mut raw.error,
                "features" => {
                    self.features(&mut raw.features, &mut raw.features_bad)?;
                    self.ws();
                    if self.after_member()? {
                        return Ok(());
                    }
                    continue;
                }
                _ => {
                    self.value(1)?;
                    self.ws();
                    if self.after_member()? {
                        return Ok(());
                    }
                    continue;
                }
            };
            *slot = Some(self.value(1)?);
            self.ws();
            if self.after_member()? {
                return Ok(());
            }
        }
    }

    /// After a member: `,` (more follow, false) or `}` (done, true).
    #[inline]
    fn after_member(&mut self) -> R<bool> {
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(false)
            }
            Some(b'}') => {
                self.i += 1;
                Ok(true)
            }
            _ => Err(Fail::Syntax("a comma or a closing brace", self.i)),
        }
    }
}

fn describe(f: Fail) -> BadInput {
    match f {
        Fail::Syntax(what, at) => {
            BadInput::new(BadReason::InvalidJson, format!("not valid JSON: expected {what} at byte {at}"))
        }
        Fail::Overflow(at) => {
            BadInput::new(BadReason::NonFiniteNumber, format!("the number at byte {at} is too large to be finite"))
        }
        Fail::Utf8(at) => BadInput::new(BadReason::InvalidUtf8, format!("invalid UTF-8 in the string at byte {at}")),
    }
}

/// Scans one event object (the whole of `b`, surrounding whitespace allowed).
pub(crate) fn scan_event<'a>(b: &'a [u8], raw: &mut RawEvent<'a>) -> Result<(), BadInput> {
    let text = std::str::from_utf8(b).map_err(|e| {
        BadInput::new(BadReason::InvalidUtf8, format!("the line is not UTF-8 (invalid byte at {})", e.valid_up_to()))
    })?;
    let mut s = Scanner { text, b, i: 0 };
    s.ws();
    if s.peek() != Some(b'{') {
        // Tell a JSON value of another kind from garbage.
        let valid = s.value(0).is_ok() && {
            s.ws();
            s.i == b.len()
        };
        return Err(if valid {
            BadInput::new(BadReason::NotAnObject, "the line is valid JSON but not an object")
        } else {
            BadInput::new(BadReason::InvalidJson, "not valid JSON: expected an object")
        });
    }
    s.event(raw).map_err(describe)?;
    s.ws();
    if s.i != b.len() {
        return Err(BadInput::new(
            BadReason::InvalidJson,
            format!("not valid JSON: trailing characters at byte {}", s.i),
        ));
    }
    Ok(())
}
