//! How two runs' commands are compared: without what legitimately differs between runs of the
//! same decisions. Shared by `common` and `kafka_support`.

use serde_json::Value;

/// A command without the fields that legitimately differ between runs of the same decisions:
/// `issued_at` (wall clock) and the input offsets (positions in different files); fractional
/// numbers rounded by [`round_floats`].
pub fn comparable(c: &Value) -> Value {
    let mut c = c.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("issued_at");
    }
    if let Some(e) = c.get_mut("evidence").and_then(Value::as_object_mut) {
        e.remove("input_offsets");
    }
    round_floats(&mut c);
    c
}

/// Every fractional number rounded to 12 significant digits. The decisions, counts, windows and
/// ids of two runs must agree exactly; a statistic may differ in its last bits when a platform
/// changes a process's floating-point rounding mode, which says nothing about driftwatch.
pub fn round_floats(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(r) = n.as_f64().and_then(|x| format!("{x:.11e}").parse::<f64>().ok()) {
                if let Some(r) = serde_json::Number::from_f64(r) {
                    *n = r;
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(round_floats),
        Value::Object(o) => o.values_mut().for_each(round_floats),
        _ => {}
    }
}
