//! What hot-path logging costs when its level is disabled: tracing checks a per-callsite
//! cache (one relaxed load and a compare), so a `trace!`/`debug!` in the per-chunk path is
//! near free at the default `info` level. An enabled `info!` into a sink is shown for scale.
//!
//! Run: `cargo bench --bench logging`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

fn logging(c: &mut Criterion) {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");

    let mut group = c.benchmark_group("per-chunk logging at level info");
    let mut chunk = 0u64;
    group.bench_function("no log statement (baseline)", |b| {
        b.iter(|| {
            chunk = chunk.wrapping_add(1);
            black_box(chunk)
        })
    });
    group.bench_function("disabled trace! with two fields", |b| {
        b.iter(|| {
            chunk = chunk.wrapping_add(1);
            tracing::trace!(chunk = black_box(chunk), bytes = 3878, "chunk sent");
            black_box(chunk)
        })
    });
    group.bench_function("disabled debug! with two fields", |b| {
        b.iter(|| {
            chunk = chunk.wrapping_add(1);
            tracing::debug!(chunk = black_box(chunk), bytes = 3878, "chunk sent");
            black_box(chunk)
        })
    });
    group.bench_function("enabled info! into a sink (for scale)", |b| {
        b.iter(|| {
            chunk = chunk.wrapping_add(1);
            tracing::info!(chunk = black_box(chunk), bytes = 3878, "chunk sent");
            black_box(chunk)
        })
    });
    group.finish();
}

criterion_group!(benches, logging);
criterion_main!(benches);
