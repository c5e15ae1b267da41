//! Instructions per request (callgrind, through gungraun) on the paths of
//! `benches/request_paths.rs`: the same scenarios, counted instead of timed, so that a
//! figure means the same on every machine and a change of a few percent shows.
//!
//! Each benchmark connects a client and warms it up (`scenarios::WARM_UP_REQUESTS`) in
//! its setup, which callgrind does not count, then counts [`REQUESTS`] requests; the
//! figure per request is the count divided by the requests (by twice as many on two
//! threads, where only the requests of the two worker threads are counted).
//!
//! Run it with `scripts/instructions.sh`, which installs valgrind and the gungraun
//! runner when they are missing, prints the table per request and compares it with
//! `benches/instructions.baseline`. By hand: `cargo bench --bench request_instructions`.
//!
//! Under `cargo test --benches` (no `--bench` argument) it runs each scenario once,
//! natively, so that it keeps compiling and running without valgrind.

mod scenarios;

use std::hint::black_box;

use gungraun::{
    Callgrind, EntryPoint, LibraryBenchmarkConfig, library_benchmark, library_benchmark_group,
};
use scenarios::{App, AxumClient, Config, Connected, HyperClient};

/// Requests counted per benchmark and thread.
pub const REQUESTS: u64 = 2_000;

fn axum_router(config: Config) -> Connected<AxumClient> {
    let client = App::new(config).axum_client();
    Connected::new(|| async move { client })
}

fn hyper_server(config: Config) -> Connected<HyperClient> {
    let app = App::new(config);
    Connected::new(|| async move { app.hyper_client().await })
}

/// The counted part of a thread of the two-thread benchmarks (the toggle of callgrind).
#[inline(never)]
fn counted_axum_requests(connected: &mut Connected<AxumClient>, n: u64) {
    connected.run(n);
}

/// The counted part of a thread of the two-thread benchmarks (the toggle of callgrind).
#[inline(never)]
fn counted_hyper_requests(connected: &mut Connected<HyperClient>, n: u64) {
    connected.run(n);
}

/// Two threads at once, each with its own client and runtime on one app.
fn two_threads<C, S>(app: App, setup: S, counted: fn(&mut Connected<C>, u64))
where
    S: Fn(&App) -> Connected<C> + Sync,
    C: scenarios::Client,
{
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let mut connected = setup(&app);
                counted(&mut connected, REQUESTS);
                black_box(connected);
            });
        }
    });
}

fn two_threads_config() -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config.tool(
        Callgrind::with_args([
            "--toggle-collect=request_instructions::counted_axum_requests",
            "--toggle-collect=request_instructions::counted_hyper_requests",
        ])
        .entry_point(EntryPoint::None),
    );
    config
}

#[library_benchmark]
#[bench::bare(args = (Config::Bare), setup = axum_router)]
#[bench::floor(args = (Config::Floor), setup = axum_router)]
#[bench::floor_traced(args = (Config::FloorTraced), setup = axum_router)]
#[bench::floor_body_sizes(args = (Config::FloorBodySizes), setup = axum_router)]
#[bench::floor_shared(args = (Config::FloorShared), setup = axum_router)]
#[bench::tower_prometheus(args = (Config::TowerPrometheus), setup = axum_router)]
#[bench::tower_prometheus_duration_only(args = (Config::TowerPrometheusDurationOnly), setup = axum_router)]
#[bench::tower_prometheus_full_options(args = (Config::TowerPrometheusFullOptions), setup = axum_router)]
#[cfg_attr(feature = "task-metrics", bench::tower_prometheus_task_metrics(args = (Config::TowerPrometheusTaskMetrics), setup = axum_router))]
#[cfg_attr(feature = "protobuf", bench::tower_prometheus_native_exemplars(args = (Config::TowerPrometheusNativeExemplars), setup = axum_router))]
#[bench::tower_prometheus_axum_preset(args = (Config::TowerPrometheusAxumPreset), setup = axum_router)]
#[bench::axum_prometheus(args = (Config::AxumPrometheus), setup = axum_router)]
#[bench::hand_written_prometheus_client(args = (Config::HandWritten), setup = axum_router)]
fn axum_router_1_thread(mut connected: Connected<AxumClient>) -> Connected<AxumClient> {
    connected.run(REQUESTS);
    connected
}

#[library_benchmark]
#[bench::bare(args = (Config::Bare), setup = hyper_server)]
#[bench::floor(args = (Config::Floor), setup = hyper_server)]
#[bench::floor_traced(args = (Config::FloorTraced), setup = hyper_server)]
#[bench::floor_body_sizes(args = (Config::FloorBodySizes), setup = hyper_server)]
#[bench::floor_shared(args = (Config::FloorShared), setup = hyper_server)]
#[bench::tower_prometheus(args = (Config::TowerPrometheus), setup = hyper_server)]
#[bench::tower_prometheus_duration_only(args = (Config::TowerPrometheusDurationOnly), setup = hyper_server)]
#[bench::tower_prometheus_full_options(args = (Config::TowerPrometheusFullOptions), setup = hyper_server)]
#[cfg_attr(feature = "task-metrics", bench::tower_prometheus_task_metrics(args = (Config::TowerPrometheusTaskMetrics), setup = hyper_server))]
#[cfg_attr(feature = "protobuf", bench::tower_prometheus_native_exemplars(args = (Config::TowerPrometheusNativeExemplars), setup = hyper_server))]
#[bench::tower_prometheus_axum_preset(args = (Config::TowerPrometheusAxumPreset), setup = hyper_server)]
#[bench::axum_prometheus(args = (Config::AxumPrometheus), setup = hyper_server)]
#[bench::hand_written_prometheus_client(args = (Config::HandWritten), setup = hyper_server)]
fn hyper_server_1_thread(mut connected: Connected<HyperClient>) -> Connected<HyperClient> {
    connected.run(REQUESTS);
    connected
}

#[library_benchmark(config = two_threads_config())]
#[bench::bare(args = (Config::Bare), setup = App::new)]
#[bench::floor(args = (Config::Floor), setup = App::new)]
#[bench::floor_traced(args = (Config::FloorTraced), setup = App::new)]
#[bench::floor_body_sizes(args = (Config::FloorBodySizes), setup = App::new)]
#[bench::floor_shared(args = (Config::FloorShared), setup = App::new)]
#[bench::tower_prometheus(args = (Config::TowerPrometheus), setup = App::new)]
#[bench::tower_prometheus_duration_only(args = (Config::TowerPrometheusDurationOnly), setup = App::new)]
#[bench::tower_prometheus_full_options(args = (Config::TowerPrometheusFullOptions), setup = App::new)]
#[cfg_attr(feature = "task-metrics", bench::tower_prometheus_task_metrics(args = (Config::TowerPrometheusTaskMetrics), setup = App::new))]
#[cfg_attr(feature = "protobuf", bench::tower_prometheus_native_exemplars(args = (Config::TowerPrometheusNativeExemplars), setup = App::new))]
#[bench::tower_prometheus_axum_preset(args = (Config::TowerPrometheusAxumPreset), setup = App::new)]
#[bench::axum_prometheus(args = (Config::AxumPrometheus), setup = App::new)]
#[bench::hand_written_prometheus_client(args = (Config::HandWritten), setup = App::new)]
fn axum_router_2_threads(app: App) {
    two_threads(
        app,
        |app| {
            let client = app.axum_client();
            Connected::new(|| async move { client })
        },
        counted_axum_requests,
    );
}

#[library_benchmark(config = two_threads_config())]
#[bench::bare(args = (Config::Bare), setup = App::new)]
#[bench::floor(args = (Config::Floor), setup = App::new)]
#[bench::floor_traced(args = (Config::FloorTraced), setup = App::new)]
#[bench::floor_body_sizes(args = (Config::FloorBodySizes), setup = App::new)]
#[bench::floor_shared(args = (Config::FloorShared), setup = App::new)]
#[bench::tower_prometheus(args = (Config::TowerPrometheus), setup = App::new)]
#[bench::tower_prometheus_duration_only(args = (Config::TowerPrometheusDurationOnly), setup = App::new)]
#[bench::tower_prometheus_full_options(args = (Config::TowerPrometheusFullOptions), setup = App::new)]
#[cfg_attr(feature = "task-metrics", bench::tower_prometheus_task_metrics(args = (Config::TowerPrometheusTaskMetrics), setup = App::new))]
#[cfg_attr(feature = "protobuf", bench::tower_prometheus_native_exemplars(args = (Config::TowerPrometheusNativeExemplars), setup = App::new))]
#[bench::tower_prometheus_axum_preset(args = (Config::TowerPrometheusAxumPreset), setup = App::new)]
#[bench::axum_prometheus(args = (Config::AxumPrometheus), setup = App::new)]
#[bench::hand_written_prometheus_client(args = (Config::HandWritten), setup = App::new)]
fn hyper_server_2_threads(app: App) {
    two_threads(
        app,
        |app| {
            let app = app.clone();
            Connected::new(|| async move { app.hyper_client().await })
        },
        counted_hyper_requests,
    );
}

library_benchmark_group!(name = axum_router; benchmarks = axum_router_1_thread, axum_router_2_threads);
library_benchmark_group!(name = hyper_server; benchmarks = hyper_server_1_thread, hyper_server_2_threads);

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
    gungraun::main!(library_benchmark_groups = axum_router, hyper_server);
    main();
}

/// Every scenario once, natively: what `cargo test --benches` checks.
fn run_once() {
    for config in Config::ALL {
        let mut axum = axum_router(config);
        counted_axum_requests(&mut axum, 1);
        let mut hyper = hyper_server(config);
        counted_hyper_requests(&mut hyper, 1);
        two_threads(
            App::new(config),
            |app| {
                let client = app.axum_client();
                Connected::new(|| async move { client })
            },
            |connected, _| connected.run(1),
        );
        println!("{}: ran once on both paths", config.name());
    }
}
