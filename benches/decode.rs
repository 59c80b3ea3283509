//! Decoding events: the row-wise decoder against parsing into `serde_json::Value` (the anchor
//! of the replay target), on the `mixed` scenario's lines.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftwatch::event::Decoder;

fn lines() -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    driftwatch::sim::write_scenario("mixed", 1, 1.0, Some(10 * 60_000), &mut buf).expect("simulate");
    buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

fn bench(c: &mut Criterion) {
    let lines = lines();
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("serde_json_value", |b| {
        b.iter(|| lines.iter().filter(|l| serde_json::from_slice::<serde_json::Value>(l).is_ok()).count())
    });
    g.bench_function("driftwatch_decoder", |b| {
        b.iter_batched_ref(
            Decoder::default,
            |d| {
                let mut ok = 0;
                for l in &lines {
                    if let Ok(ev) = d.decode(l) {
                        ok += 1;
                        d.recycle(ev);
                    }
                }
                ok
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
    println!("decode: {} lines, {:.1} MB", lines.len(), bytes as f64 / 1e6);
}

criterion_group!(benches, bench);
criterion_main!(benches);
