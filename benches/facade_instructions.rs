//! Instructions per call of the `metrics` facade (callgrind, through gungraun), ours
//! (`MetricsRecorder`) beside metrics-exporter-prometheus 0.18 (`PrometheusRecorder`,
//! with buckets, so that histograms are histograms there too), each installed as the
//! global recorder as their users install it, on a series that exists already:
//!
//! - `counter_macro`: `counter!("orders", "kind" => "new").increment(1)`, static labels;
//! - `counter_kept`: `orders.increment(1)` on a handle the caller kept;
//! - `gauge_macro`: `gauge!("queue", "name" => "jobs").set(..)`;
//! - `histogram_macro`: `histogram!("latency", "route" => "/invoices").record(..)`.
//!
//! Each benchmark creates its series and 200 others in its setup, which callgrind does
//! not count, then counts [`CALLS`] calls: the figure per call is the count divided by
//! [`CALLS`]. Run it with `cargo bench --features metrics-facade --bench
//! facade_instructions` (valgrind and `gungraun-runner` 0.20.0, as
//! `scripts/instructions.sh` installs them). Under `cargo test --benches` it runs each
//! scenario once, natively, through `metrics::with_local_recorder`.

use std::hint::black_box;

use gungraun::{library_benchmark, library_benchmark_group};
use metrics::{Recorder, counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;
use prometheus_client::registry::Registry;
use tower_prometheus::MetricsRecorder;

/// Calls counted per benchmark.
pub const CALLS: u64 = 1_000;

/// The recorder measured.
#[derive(Clone, Copy, Debug)]
enum Peer {
    Ours,
    MetricsExporterPrometheus,
}

impl Peer {
    const ALL: [Peer; 2] = [Peer::Ours, Peer::MetricsExporterPrometheus];

    fn recorder(self) -> Box<dyn Recorder + Send + Sync> {
        match self {
            Peer::Ours => {
                // The registry lives as long as the recorder's collector is in it: for
                // the whole process.
                let registry = Box::leak(Box::new(Registry::default()));
                Box::new(
                    MetricsRecorder::builder()
                        .build(registry)
                        .expect("valid options"),
                )
            }
            Peer::MetricsExporterPrometheus => Box::new(
                PrometheusBuilder::new()
                    .set_buckets(tower_prometheus::Buckets::duration_seconds().bounds())
                    .expect("buckets")
                    .build_recorder(),
            ),
        }
    }
}

/// The series of every scenario, and 200 others.
fn create_series() {
    for i in 0..200 {
        counter!("filler", "i" => i.to_string()).increment(1);
    }
    counter_macro_calls(1);
    gauge_macro_calls(1);
    histogram_macro_calls(1);
}

/// `peer`'s recorder installed globally, its series created.
fn installed(peer: Peer) -> metrics::Counter {
    metrics::set_global_recorder(peer.recorder()).expect("one recorder per process");
    create_series();
    counter!("kept", "kind" => "new")
}

#[inline(never)]
fn counter_macro_calls(n: u64) {
    for _ in 0..n {
        counter!("orders", "kind" => "new").increment(black_box(1));
    }
}

#[inline(never)]
fn counter_kept_calls(counter: &metrics::Counter, n: u64) {
    for _ in 0..n {
        counter.increment(black_box(1));
    }
}

#[inline(never)]
fn gauge_macro_calls(n: u64) {
    for i in 0..n {
        gauge!("queue", "name" => "jobs").set(black_box(i as f64));
    }
}

#[inline(never)]
fn histogram_macro_calls(n: u64) {
    for _ in 0..n {
        histogram!("latency", "route" => "/invoices").record(black_box(0.02));
    }
}

#[library_benchmark]
#[bench::ours(args = (Peer::Ours), setup = installed)]
#[bench::metrics_exporter_prometheus(args = (Peer::MetricsExporterPrometheus), setup = installed)]
fn counter_macro(kept: metrics::Counter) -> metrics::Counter {
    counter_macro_calls(CALLS);
    kept
}

#[library_benchmark]
#[bench::ours(args = (Peer::Ours), setup = installed)]
#[bench::metrics_exporter_prometheus(args = (Peer::MetricsExporterPrometheus), setup = installed)]
fn counter_kept(kept: metrics::Counter) -> metrics::Counter {
    counter_kept_calls(&kept, CALLS);
    kept
}

#[library_benchmark]
#[bench::ours(args = (Peer::Ours), setup = installed)]
#[bench::metrics_exporter_prometheus(args = (Peer::MetricsExporterPrometheus), setup = installed)]
fn gauge_macro(kept: metrics::Counter) -> metrics::Counter {
    gauge_macro_calls(CALLS);
    kept
}

#[library_benchmark]
#[bench::ours(args = (Peer::Ours), setup = installed)]
#[bench::metrics_exporter_prometheus(args = (Peer::MetricsExporterPrometheus), setup = installed)]
fn histogram_macro(kept: metrics::Counter) -> metrics::Counter {
    histogram_macro_calls(CALLS);
    kept
}

library_benchmark_group!(
    name = facade;
    benchmarks = counter_macro, counter_kept, gauge_macro, histogram_macro
);

fn main() {
    // `cargo bench` passes `--bench`, and the gungraun runner `--gungraun-run` when it
    // runs this binary under valgrind; `cargo test --benches` passes neither.
    let counted = std::env::args()
        .skip(1)
        .any(|arg| arg == "--bench" || arg.starts_with("--gungraun"));
    if counted {
        callgrind();
    } else {
        run_once();
    }
}

/// gungraun's harness (its `main!`, scoped here so that `main` can choose).
fn callgrind() {
    gungraun::main!(library_benchmark_groups = facade);
    main();
}

/// Every scenario once per peer, natively, on a local recorder: what
/// `cargo test --benches` checks.
fn run_once() {
    for peer in Peer::ALL {
        let recorder = peer.recorder();
        metrics::with_local_recorder(&*recorder, || {
            create_series();
            let kept = counter!("kept", "kind" => "new");
            counter_macro_calls(1);
            counter_kept_calls(&kept, 1);
            gauge_macro_calls(1);
            histogram_macro_calls(1);
        });
        println!("{peer:?}: ran every scenario once");
    }
}
