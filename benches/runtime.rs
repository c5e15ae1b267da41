//! One scrape of the Tokio runtime collector and of the process collector.
//!
//! `cargo bench --bench runtime`

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tower_prometheus::{ProcessCollector, RuntimeCollector};

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let _entered = runtime.enter();
    let mut runtime_registry = Registry::default();
    runtime_registry
        .register_collector(Box::new(RuntimeCollector::new().expect("inside a runtime")));
    let mut process_registry = Registry::default();
    process_registry.register_collector(Box::new(ProcessCollector::new()));

    let mut group = c.benchmark_group("scrape_collector");
    for (name, registry) in [
        ("runtime", &runtime_registry),
        ("process", &process_registry),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut text = String::new();
                encode(&mut text, registry).expect("encodes");
                text
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
