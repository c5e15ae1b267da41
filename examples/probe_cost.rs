//! What the event-loop lag probe costs at rest: the CPU time of this process while an
//! otherwise idle Tokio runtime waits, without and then with the runtime collector.
//!
//! ```sh
//! cargo run --release --example probe_cost            # 10 s per phase
//! SECONDS_PER_PHASE=30 LAG_RESOLUTION_MS=100 cargo run --release --example probe_cost
//! ```
//!
//! CPU time is the sum of `/proc/self/task/*/schedstat` (nanoseconds on CPU per
//! thread), so it includes the probe's own thread. Linux only.

use std::time::Duration;

use tower_prometheus::Metrics;

/// Nanoseconds all threads of this process have spent on a CPU.
fn cpu_nanos() -> Result<u64, Box<dyn std::error::Error>> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let schedstat = std::fs::read_to_string(task?.path().join("schedstat"))?;
        let on_cpu: u64 = schedstat
            .split_whitespace()
            .next()
            .ok_or("empty schedstat")?
            .parse()?;
        total += on_cpu;
    }
    Ok(total)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = match std::env::var("SECONDS_PER_PHASE") {
        Ok(value) => value.parse()?,
        Err(_) => 10,
    };
    let resolution = match std::env::var("LAG_RESOLUTION_MS") {
        Ok(value) => Duration::from_millis(value.parse()?),
        Err(_) => tower_prometheus::DEFAULT_LAG_RESOLUTION,
    };
    println!("lag probe resolution: {resolution:?}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let idle = Duration::from_secs(seconds);
    let mut results = Vec::new();
    for probe in [false, true] {
        let nanos = runtime.block_on(async {
            let metrics = Metrics::builder()
                .runtime(probe)
                .lag_resolution(resolution)
                .build()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let before = cpu_nanos()?;
            tokio::time::sleep(idle).await;
            let used = cpu_nanos()? - before;
            drop(metrics);
            Ok::<_, Box<dyn std::error::Error>>(used)
        })?;
        let share = nanos as f64 / idle.as_nanos() as f64 * 100.0;
        println!(
            "probe {:>3}: {:>8.3} ms of CPU in {seconds} s idle = {share:.3}% of one core",
            if probe { "on" } else { "off" },
            nanos as f64 / 1e6
        );
        results.push(nanos);
    }
    let extra = results[1].saturating_sub(results[0]) as f64;
    println!(
        "the probe costs {:.3} ms of CPU per second at rest ({:.3}% of one core)",
        extra / 1e6 / seconds as f64,
        extra / idle.as_nanos() as f64 * 100.0
    );
    Ok(())
}
