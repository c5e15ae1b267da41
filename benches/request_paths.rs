//! Time per request through the paths users take: an axum `Router` called as
//! `axum::serve` calls it, and a hyper service behind hyper-util's `auto` server
//! connection (see `benches/scenarios/mod.rs`), bare, behind the floors (the simplest
//! end-of-body layers), behind ours (default options, duration only, full options),
//! behind `axum-prometheus` and behind a hand-written `prometheus-client` middleware. On
//! 1 thread, and on 2 threads at once (each its own current-thread runtime, same route).
//!
//! Two ways to run it:
//!
//! - criterion: `cargo bench --bench request_paths`, then `benches/report.py time` for
//!   the table; `-- --save-baseline before` and `benches/report.py time --baseline
//!   before` compare two runs.
//! - interleaved rounds, for a shared machine: `cargo bench --bench request_paths --
//!   --interleaved NAME` runs every scenario in turn, `REQUESTS` requests each
//!   (default 100,000), for `ROUNDS` rounds (default 7), the order of the configurations
//!   changing every round, and writes the time per request of every round to
//!   `target/request_paths/NAME.json`; `benches/report.py time --interleaved NAME` prints
//!   the medians and the spread of the ratios between rounds. A slow drift of the
//!   machine (another build starting) moves every configuration of a round alike.

mod scenarios;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use criterion::Criterion;
use scenarios::{App, Config, Workers};

const PATHS: [&str; 2] = ["axum_router", "hyper_server"];

fn threads_name(threads: usize) -> &'static str {
    if threads == 1 {
        "1_thread"
    } else {
        "2_threads"
    }
}

/// The workers of one scenario: `threads` clients of `app` on `path`, each on a thread
/// and a current-thread runtime of its own.
fn workers(path: &str, threads: usize, app: &App) -> Workers {
    let app = app.clone();
    match path {
        "axum_router" => Workers::start(threads, move |_| {
            let client = app.axum_client();
            async move { client }
        }),
        _ => Workers::start(threads, move |_| {
            let app = app.clone();
            async move { app.hyper_client().await }
        }),
    }
}

fn bench(c: &mut Criterion) {
    let apps = Config::ALL.map(App::new);
    for threads in [1, 2] {
        for path in PATHS {
            let mut group = c.benchmark_group(format!("{path}/{}", threads_name(threads)));
            for app in &apps {
                // Started when criterion first runs the bench (not at all when a filter
                // leaves it out), kept for all of its samples.
                let mut started = None;
                group.bench_function(app.config().name(), |b| {
                    let workers = started.get_or_insert_with(|| workers(path, threads, app));
                    b.iter_custom(|iters| workers.run(iters));
                });
            }
            group.finish();
        }
    }
}

/// The interleaved rounds: see the module docs.
fn interleaved(name: &str) {
    let env = |key: &str, default: u64| {
        std::env::var(key)
            .ok()
            .map(|value| value.parse().expect("a number"))
            .unwrap_or(default)
    };
    let rounds = env("ROUNDS", 7);
    let requests = env("REQUESTS", 100_000);
    let load_start = load_average();
    let apps = Config::ALL.map(App::new);
    let mut blocks = Vec::new();
    for threads in [1, 2] {
        for path in PATHS {
            let scenarios: Vec<_> = apps
                .iter()
                .map(|app| (app.config(), workers(path, threads, app)))
                .collect();
            for (_, workers) in &scenarios {
                workers.run(requests / 10);
            }
            blocks.push((format!("{path}/{}", threads_name(threads)), scenarios));
        }
    }
    let mut figures: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds as usize {
        // Every round starts with another configuration, and every other round goes
        // backwards, so that no configuration always follows the same one.
        for (block, scenarios) in &blocks {
            let n = scenarios.len();
            let mut order: Vec<usize> = (0..n).map(|i| (i + round) % n).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let (config, workers) = &scenarios[i];
                let elapsed: Duration = workers.run(requests);
                figures
                    .entry(format!("{block}/{}", config.name()))
                    .or_default()
                    .push(elapsed.as_nanos() as f64 / requests as f64);
            }
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    let mut json = format!(
        "{{\"rounds\": {rounds}, \"requests\": {requests}, \"load_average_start\": \"{load_start}\", \
         \"load_average_end\": \"{}\", \"figures\": {{",
        load_average()
    );
    for (i, (key, values)) in figures.iter().enumerate() {
        let values: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
        let comma = if i == 0 { "" } else { ", " };
        write!(json, "{comma}\"{key}\": [{}]", values.join(", ")).expect("a string");
    }
    json.push_str("}}\n");
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/request_paths");
    std::fs::create_dir_all(&directory).expect("target/request_paths");
    let file = directory.join(format!("{name}.json"));
    std::fs::write(&file, json).expect("the results are written");
    println!("wrote {}", file.display());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|arg| arg == "--interleaved") {
        let name = args.get(i + 1).map_or("latest", String::as_str);
        interleaved(name);
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
