//! Property tests: the decoder never panics and agrees with a reference JSON parser on what
//! is JSON and what is an object; merging window buckets equals aggregating their union.

use driftwatch::event::{decode, BadReason, EventType};
use driftwatch::stats::{Accuracy, DriftSketch, Latency, Merge, Traffic};
use driftwatch::window::{Ring, WindowSpec};
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z\\\\\"\u{e9}\u{1F600} ]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Event-like objects: the contract's fields with values of any type, present or not.
fn event_like() -> impl Strategy<Value = Value> {
    let field = |name: &'static str, good: BoxedStrategy<Value>| prop_oneof![3 => good.prop_map(move |v| Some((name, v))), 1 => json_value().prop_map(move |v| Some((name, v))), 1 => Just(None)];
    let s = |choices: &'static [&'static str]| prop::sample::select(choices).prop_map(Value::from).boxed();
    (
        field("type", s(&["request", "prediction", "error", "label", "click"])),
        field(
            "timestamp",
            prop_oneof![
                (946_684_800_000i64..4_102_444_800_000).prop_map(Value::from),
                Just(Value::from("2025-11-24T16:27:41.120Z"))
            ]
            .boxed(),
        ),
        field("event_id", s(&["e1", "e2"])),
        field("app", s(&["checkout"])),
        field("app_version", s(&["1", "2"])),
        field("model", s(&["fraud"])),
        field("model_version", s(&["7"])),
        field("latency_ms", (0.0f64..1e4).prop_map(Value::from).boxed()),
        field(
            "features",
            prop::collection::btree_map("[a-z]{1,4}", json_value(), 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
                .boxed(),
        ),
        field("prediction", prop_oneof![Just(Value::from(0.5)), Just(Value::from("fraud"))].boxed()),
        field("label", prop_oneof![Just(Value::from(1)), Just(Value::from("legit"))].boxed()),
    )
        .prop_map(|t| {
            let fields = [t.0, t.1, t.2, t.3, t.4, t.5, t.6, t.7, t.8, t.9, t.10];
            Value::Object(fields.into_iter().flatten().map(|(k, v)| (k.to_owned(), v)).collect())
        })
}

fn check_against_reference(bytes: &[u8]) {
    let ours = decode(bytes);
    match serde_json::from_slice::<Value>(bytes) {
        Err(e) => {
            let r = ours.as_ref().map(|_| ()).expect_err("accepted what is not JSON");
            assert!(
                matches!(r.reason, BadReason::InvalidJson | BadReason::InvalidUtf8 | BadReason::NonFiniteNumber),
                "reference says {e}, we say {r}"
            );
        }
        Ok(Value::Object(obj)) => match ours {
            Ok(ev) => {
                assert_eq!(Some(ev.kind.as_str()), obj.get("type").and_then(Value::as_str));
                let app = obj.get("app").and_then(Value::as_str);
                assert_eq!(
                    ev.app.as_ref().map(|(a, _)| a.as_ref()),
                    if ev.kind == EventType::Label { None } else { app }
                );
                if let Some(l) = ev.latency_ms {
                    // serde_json's default float parsing may be off by an ulp; ours is exact.
                    let r = obj.get("latency_ms").and_then(Value::as_f64).expect("latency in reference");
                    assert!((l - r).abs() <= 1e-12 * r.abs().max(1.0), "{l} vs {r}");
                }
                if ev.kind == EventType::Prediction {
                    let n = obj.get("features").and_then(Value::as_object).map_or(0, |f| f.len());
                    assert_eq!(ev.features.len(), n);
                }
            }
            Err(r) => assert!(
                !matches!(r.reason, BadReason::InvalidJson | BadReason::NotAnObject | BadReason::InvalidUtf8),
                "an object rejected as {r}"
            ),
        },
        Ok(_) => assert_eq!(ours.map(|_| ()).map_err(|r| r.reason), Err(BadReason::NotAnObject)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decoder_agrees_with_reference_on_json_values(v in json_value()) {
        check_against_reference(v.to_string().as_bytes());
    }

    #[test]
    fn decoder_agrees_with_reference_on_event_like_objects(v in event_like()) {
        check_against_reference(v.to_string().as_bytes());
    }

    #[test]
    fn decoder_agrees_with_reference_on_mutated_events(v in event_like(), cut in any::<prop::sample::Index>(), byte in any::<u8>(), mode in 0..3u8) {
        let mut b = v.to_string().into_bytes();
        let i = cut.index(b.len().max(1));
        match mode {
            0 => b.truncate(i),
            1 => if i < b.len() { b[i] = byte },
            _ => b.insert(i.min(b.len()), byte),
        }
        check_against_reference(&b);
    }

    #[test]
    fn merging_buckets_equals_aggregating_their_union(
        events in prop::collection::vec((0i64..600_000, any::<bool>(), 0.1f64..5_000.0, 0u8..4, any::<bool>()), 1..400),
    ) {
        let spec = WindowSpec { length: 300_000, step: 60_000, min_count: None, extend: 0, need: 0 };
        let mut ring_t: Ring<Traffic> = Ring::new(spec, 10);
        let mut ring_l: Ring<Latency> = Ring::new(spec, 10);
        let mut ring_a: Ring<Accuracy> = Ring::new(spec, 10);
        let mut ring_d: Ring<DriftSketch> = Ring::new(spec, 10);
        let (mut t, mut l, mut a, mut d) = (Traffic::default(), Latency::default(), Accuracy::default(), DriftSketch::default());
        for &(ts, err, lat, cat, right) in &events {
            for tr in [ring_t.at(ts), &mut t] {
                tr.events += 1;
                tr.errors += u64::from(err);
            }
            ring_l.at(ts).record(lat);
            l.record(lat);
            for acc in [ring_a.at(ts), &mut a] {
                acc.labelled += 1;
                acc.correct += u64::from(right);
            }
            for s in [ring_d.at(ts), &mut d] {
                s.events += 1;
                s.feature_mut(0).add_numeric(lat);
                s.feature_mut(1).add_category(u32::from(cat));
                s.prediction.add_numeric(-lat);
            }
        }
        prop_assert_eq!(ring_t.sum(0, 10), t);
        prop_assert_eq!(ring_a.sum(0, 10), a);
        prop_assert_eq!(ring_d.sum(0, 10), d.clone());
        // Packed buckets (as closed ones are) merge as they were.
        for (k, b) in ring_d.range_mut(0, 10).enumerate() {
            if k % 2 == 0 {
                b.pack();
            }
        }
        prop_assert_eq!(ring_d.sum(0, 10), d);
        let merged = ring_l.sum(0, 10);
        prop_assert_eq!(merged.entries(), l.entries());
        // Merge order does not matter.
        let mut reversed = Traffic::default();
        for (_, b) in ring_t.iter().collect::<Vec<_>>().into_iter().rev() {
            reversed.merge(b);
        }
        prop_assert_eq!(reversed, t);
    }
}
