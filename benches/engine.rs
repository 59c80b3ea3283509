//! The engine: ingesting decoded events with every rule on, a window evaluation of drift, and
//! a whole replay (read, decode, decide) of the `mixed` scenario.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftwatch::config::Config;
use driftwatch::engine::{Engine, Position};
use driftwatch::event::{decode, Event};
use driftwatch::replay::{replay, ReplayOptions};

fn scenario(name: &str, minutes: i64) -> Vec<u8> {
    let mut buf = Vec::new();
    driftwatch::sim::write_scenario(name, 1, 1.0, Some(minutes * 60_000), &mut buf).expect("simulate");
    buf
}

fn bench(c: &mut Criterion) {
    let text = scenario("mixed", 20);
    let events: Vec<Event<'_>> = text.split(|&b| b == b'\n').filter_map(|l| decode(l).ok()).collect();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.sample_size(10);
    g.bench_function("ingest_mixed", |b| {
        b.iter_batched(
            || Engine::new(Config::default()),
            |mut engine| {
                for (i, ev) in events.iter().enumerate() {
                    let _ = engine.ingest(ev, Position { source: 0, offset: i as u64 });
                }
                engine.finish();
                engine.drain_commands().count()
            },
            BatchSize::LargeInput,
        )
    });

    // Drift alone: a model at 20 req/s with six features; per-event cost and per-window cost.
    let drift_text = scenario("numeric-drift", 60);
    let drift_events: Vec<Event<'_>> = drift_text.split(|&b| b == b'\n').filter_map(|l| decode(l).ok()).collect();
    g.throughput(Throughput::Elements(drift_events.len() as u64));
    g.bench_function("ingest_drift_model_60_windows", |b| {
        b.iter_batched(
            || Engine::new(Config::default()),
            |mut engine| {
                for ev in &drift_events {
                    let _ = engine.ingest(ev, Position { source: 0, offset: 0 });
                }
                engine.finish();
                engine.drain_commands().count()
            },
            BatchSize::LargeInput,
        )
    });

    let path = std::env::temp_dir().join(format!("driftwatch-bench-{}.jsonl", std::process::id()));
    std::fs::write(&path, &text).expect("write sample");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("replay_mixed_file", |b| {
        b.iter(|| {
            let mut engine = Engine::new(Config::default());
            let opts = ReplayOptions { quiet: true, ..ReplayOptions::default() };
            replay(&mut engine, std::slice::from_ref(&path), &mut std::io::sink(), &opts).expect("replay").commands
        })
    });
    g.finish();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, bench);
criterion_main!(benches);
