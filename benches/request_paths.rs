//! Time per request through the paths users take: an axum `Router` called as
//! `axum::serve` calls it, and a hyper service behind hyper-util's `auto` server
//! connection (see `benches/scenarios/mod.rs`), bare, behind the floors (the simplest
//! end-of-body layers), behind ours (default options, duration only, full options),
//! behind `axum-prometheus` and behind a hand-written `prometheus-client` middleware. On
//! 1 thread, and on 2 threads at once (each its own current-thread runtime, same route).
//!
//! `cargo bench --bench request_paths`, then `benches/table.py` for the table;
//! `-- --save-baseline before` and `benches/table.py --baseline before` compare two runs.

mod scenarios;

use criterion::{Criterion, criterion_group, criterion_main};
use scenarios::{App, AxumClient, Config, Workers};

fn bench(c: &mut Criterion) {
    let apps = Config::ALL.map(App::new);
    for threads in [1, 2] {
        let suffix = if threads == 1 {
            "1_thread"
        } else {
            "2_threads"
        };

        let mut group = c.benchmark_group(format!("axum_router/{suffix}"));
        for app in &apps {
            let app = app.clone();
            // Started when criterion first runs the bench (not at all when a filter
            // leaves it out), kept for all of its samples.
            let mut workers = None;
            group.bench_function(app.config().name(), |b| {
                let workers = workers.get_or_insert_with(|| {
                    let app = app.clone();
                    Workers::start(threads, move |_| {
                        let router = app.router();
                        async move { AxumClient::new(router) }
                    })
                });
                b.iter_custom(|iters| workers.run(iters));
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("hyper_server/{suffix}"));
        for app in &apps {
            let app = app.clone();
            let mut workers = None;
            group.bench_function(app.config().name(), |b| {
                let workers = workers.get_or_insert_with(|| {
                    let app = app.clone();
                    Workers::start(threads, move |_| {
                        let app = app.clone();
                        async move { app.hyper_client().await }
                    })
                });
                b.iter_custom(|iters| workers.run(iters));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
