//! Decoding events: driftwatch's row-wise decoder against arrow-json into record batches.
//!
//! Both read the same JSON Lines (5 minutes of the `mixed` scenario: app requests with RFC 3339
//! timestamps, model predictions with epoch-millisecond timestamps, nested features, labels).
//! The arrow side needs one schema for all of them, so it gets the most favourable one that
//! still covers them: `timestamp`, `prediction` and `label` as strings (numbers coerced), and
//! `features` either as the exact struct of the fraud model (`struct` — only possible when every
//! model's features are known in advance) or as a string map (`map` — what arbitrary models
//! need). Timestamps are then parsed into epoch milliseconds column-wise, so that both sides end
//! with the event time the engine needs. Run: `cargo bench --bench arrow_json_decode`.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Builder, RecordBatch};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::json::ReaderBuilder;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use driftwatch::event::Decoder;
use driftwatch::time::parse_rfc3339;

fn events() -> Vec<u8> {
    let mut buf = Vec::new();
    driftwatch::sim::write_scenario("mixed", 1, 1.0, Some(5 * 60_000), &mut buf).expect("simulate");
    buf
}

fn schema(features_as_map: bool) -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let features = if features_as_map {
        let entries = Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Utf8, true),
            ])),
            false,
        );
        DataType::Map(Arc::new(entries), false)
    } else {
        DataType::Struct(Fields::from(vec![
            Field::new("amount", DataType::Float64, true),
            s("country"),
            Field::new("age", DataType::Float64, true),
            s("device"),
            Field::new("is_new", DataType::Boolean, true),
            Field::new("ext_score", DataType::Float64, true),
        ]))
    };
    Arc::new(Schema::new(vec![
        s("type"),
        s("timestamp"),
        s("event_id"),
        s("app"),
        s("app_version"),
        s("model"),
        s("model_version"),
        Field::new("latency_ms", DataType::Float64, true),
        s("error"),
        Field::new("features", features, true),
        s("prediction"),
        s("label"),
    ]))
}

/// Event times of a batch, in epoch milliseconds.
fn timestamps(batch: &RecordBatch) -> usize {
    let ts = batch.column(1).as_string::<i32>();
    let mut out = Int64Builder::with_capacity(ts.len());
    for t in ts.iter() {
        let ms = t.and_then(|t| match t.parse::<i64>() {
            Ok(ms) => Some(ms),
            Err(_) => parse_rfc3339(t).ok(),
        });
        out.append_option(ms);
    }
    out.finish().len()
}

/// Decodes all of `data` in micro-batches of `batch_size` rows; returns the rows decoded.
fn arrow_decode(data: &[u8], schema: SchemaRef, batch_size: usize) -> usize {
    arrow_decode_with(data, schema, batch_size, timestamps)
}

/// [`arrow_decode`], doing `per_batch` with each batch.
fn arrow_decode_with(data: &[u8], schema: SchemaRef, batch_size: usize, per_batch: fn(&RecordBatch) -> usize) -> usize {
    let mut decoder = ReaderBuilder::new(schema)
        .with_batch_size(batch_size)
        .with_coerce_primitive(true)
        .build_decoder()
        .expect("decoder");
    let mut rest = data;
    let mut rows = 0;
    loop {
        let n = decoder.decode(rest).expect("decode");
        rest = &rest[n..];
        match decoder.flush().expect("flush") {
            Some(batch) => rows += per_batch(&batch),
            None if rest.is_empty() => break,
            None => {}
        }
    }
    rows
}

/// Decodes every line with the decoder `replay` uses; returns the events decoded.
fn row_decode(data: &[u8]) -> usize {
    let mut decoder = Decoder::default();
    let mut rows = 0;
    for line in data.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        if let Ok(ev) = decoder.decode(line) {
            rows += usize::from(ev.ts > 0);
            decoder.recycle(ev);
        }
    }
    rows
}

fn bench(c: &mut Criterion) {
    let data = events();
    let lines = data.iter().filter(|&&b| b == b'\n').count();
    // Both sides must see every event.
    assert_eq!(row_decode(&data), lines);
    assert_eq!(arrow_decode(&data, schema(false), 1024), lines);
    assert_eq!(arrow_decode(&data, schema(true), 1024), lines);

    let mut g = c.benchmark_group("decode_events");
    g.throughput(Throughput::Elements(lines as u64));
    g.bench_function("row_wise", |b| b.iter(|| row_decode(&data)));
    for (name, as_map) in [("struct", false), ("map", true)] {
        for batch in [1024usize, 8192] {
            let s = schema(as_map);
            g.bench_function(format!("arrow_json_{name}_{batch}"), |b| {
                b.iter_batched(|| s.clone(), |s| arrow_decode(&data, s, batch), BatchSize::SmallInput)
            });
        }
    }
    // The same without parsing timestamps: the decoder alone.
    let s = schema(false);
    g.bench_function("arrow_json_struct_1024_without_timestamps", |b| {
        b.iter_batched(
            || s.clone(),
            |s| arrow_decode_with(&data, s, 1024, RecordBatch::num_rows),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
