//! Cost per tracked version: replaying the `services` scenario (two versions per service, one
//! request a second each) at 100 and 10,000 versions, and building the view the HTTP API and
//! metrics publish at 10,000 versions.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftwatch::config::Config;
use driftwatch::engine::{Engine, Position};
use driftwatch::event::{decode, Event};

fn services(n: usize, minutes: i64) -> Vec<u8> {
    let mut buf = Vec::new();
    driftwatch::sim::write_spec(driftwatch::sim::services(n), 1, 1.0, Some(minutes * 60_000), &mut buf)
        .expect("simulate");
    buf
}

fn run(events: &[Event<'_>]) -> Engine {
    let mut engine = Engine::new(Config::default());
    for (i, ev) in events.iter().enumerate() {
        let _ = engine.ingest(ev, Position { source: 0, offset: i as u64 });
    }
    engine
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("versions");
    g.sample_size(10);
    for (n, minutes) in [(50, 30), (5_000, 3)] {
        let text = services(n, minutes);
        let events: Vec<Event<'_>> = text.split(|&b| b == b'\n').filter_map(|l| decode(l).ok()).collect();
        g.throughput(Throughput::Elements(events.len() as u64));
        g.bench_function(format!("ingest_{}_versions", 2 * n), |b| {
            b.iter_batched(
                || (),
                |()| {
                    let mut engine = run(&events);
                    engine.finish();
                    engine.drain_commands().count()
                },
                BatchSize::LargeInput,
            )
        });
        if n == 5_000 {
            let mut engine = run(&events);
            engine.keep_view_quantiles(true);
            g.throughput(Throughput::Elements(engine.overview().len() as u64));
            g.bench_function("view_10000_versions", |b| b.iter(|| engine.overview().len()));
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
