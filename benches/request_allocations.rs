//! Heap allocations per request on the paths of `benches/request_paths.rs`, per
//! configuration, counted by a global allocator that counts the allocations of the
//! calling thread (every task of a scenario runs on it: current-thread runtime).
//!
//! The hyper path boxes nothing around a layer, so there "ours − bare" is what our layer
//! allocates. On the axum path, a route behind `Router::layer` costs three allocations per
//! request whatever the layer (the layered route's boxed service cloned, its future
//! boxed, its response body boxed again into an axum `Body`), and a fourth when the layer
//! wraps the request body (boxed again too): the difference between the two paths,
//! "axum's boxing", is what any layer applied there pays; the floors show it for the
//! simplest layer, and `ALLOCATION_SITES=1` shows each allocation.
//!
//! `cargo bench --bench request_allocations` prints the table; under `cargo test
//! --benches` it also checks that ours adds no allocation per request on the hyper path
//! and that every configuration of ours recorded every request under its route.
//!
//! `ALLOCATION_SITES=1 cargo bench --bench request_allocations` prints, instead, the
//! allocations of one request of each configuration on the axum path: size and the
//! innermost frames of the stack that made it.

mod scenarios;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};

use scenarios::{App, Client, Config, Connected};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Whether to note where allocations come from (off while noting one).
    static SITES_ON: Cell<bool> = const { Cell::new(false) };
    static SITES: RefCell<Vec<(usize, String)>> = const { RefCell::new(Vec::new()) };
}

/// Notes the size and the innermost frames of an allocation, when `SITES_ON`.
fn note_site(size: usize) {
    if !SITES_ON.try_with(|on| on.replace(false)).unwrap_or(false) {
        return;
    }
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    let frames: Vec<&str> = trace
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("at "))
        .filter_map(|line| line.split_once(": ").map(|(_, name)| name))
        .skip_while(|name| {
            ["backtrace", "note_site", "Counting", "alloc::", "__rust"]
                .iter()
                .any(|inner| name.contains(inner))
        })
        .take(4)
        .collect();
    SITES.with(|sites| sites.borrow_mut().push((size, frames.join(" <- "))));
    SITES_ON.with(|on| on.set(true));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local `Cell`, which itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        note_site(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as it is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `realloc` is passed on as it is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Requests counted per scenario, after the warm-up.
const REQUESTS: u64 = 1_000;

/// Allocations per request of `connected` (warmed up already).
fn per_request<C: Client>(connected: &mut Connected<C>) -> f64 {
    let before = ALLOCATIONS.with(Cell::get);
    connected.run(REQUESTS);
    (ALLOCATIONS.with(Cell::get) - before) as f64 / REQUESTS as f64
}

/// The allocations of one request of each configuration on the axum path.
fn allocation_sites() {
    for config in Config::ALL {
        let client = App::new(config).axum_client();
        let mut axum = Connected::new(|| async move { client });
        SITES_ON.with(|on| on.set(true));
        axum.run(1);
        SITES_ON.with(|on| on.set(false));
        let sites = SITES.with(|sites| std::mem::take(&mut *sites.borrow_mut()));
        println!("\n{}: {} allocations", config.name(), sites.len());
        for (size, frames) in sites {
            println!("  {size:>5} B  {frames}");
        }
    }
}

fn main() {
    if std::env::var_os("ALLOCATION_SITES").is_some() {
        allocation_sites();
        return;
    }
    let total = scenarios::WARM_UP_REQUESTS + REQUESTS;
    let mut rows = Vec::new();
    for config in Config::ALL {
        let app = App::new(config);
        let client = app.axum_client();
        let mut axum = Connected::new(|| async move { client });
        let axum_allocations = per_request(&mut axum);
        if let Some(recorded) = app.recorded_requests() {
            assert_eq!(recorded, total, "{}: axum requests recorded", config.name());
        }
        let app = App::new(config);
        let hyper_app = app.clone();
        let mut hyper = Connected::new(|| async move { hyper_app.hyper_client().await });
        let hyper_allocations = per_request(&mut hyper);
        if let Some(recorded) = app.recorded_requests() {
            assert_eq!(
                recorded,
                total,
                "{}: hyper requests recorded",
                config.name()
            );
        }
        rows.push((config, axum_allocations, hyper_allocations));
    }

    let (_, axum_bare, hyper_bare) = rows[0];
    println!(
        "allocations per request ({REQUESTS} requests after {} of warm-up)",
        scenarios::WARM_UP_REQUESTS
    );
    println!(
        "{:<32} {:>12} {:>12} {:>14} {:>14} {:>16}",
        "configuration", "axum Router", "hyper", "axum − bare", "hyper − bare", "axum's boxing"
    );
    for (config, axum, hyper) in &rows {
        println!(
            "{:<32} {:>12.2} {:>12.2} {:>+14.2} {:>+14.2} {:>+16.2}",
            config.name(),
            axum,
            hyper,
            axum - axum_bare,
            hyper - hyper_bare,
            (axum - axum_bare) - (hyper - hyper_bare),
        );
    }

    // Not exactly equal: hyper renews its cached `Date` header once a second, one
    // allocation whenever a run crosses a second (0.001 per request here), so a slow run
    // may count one more than another. An allocation per request would add 1.
    // `tower_prometheus_native_exemplars` is left out: its client adds a `traceparent`
    // header that bare's does not send (its `HeaderMap` allocates); tests/allocations.rs
    // compares it with a bare service receiving the same header: no allocation.
    for (config, _, hyper) in &rows {
        // (Its floor, the one that sends the same header, is `FloorTraced`.)
        if config
            .floor()
            .is_some_and(|floor| floor != Config::FloorTraced)
        {
            assert!(
                (hyper - hyper_bare).abs() < 0.5,
                "{}: ours allocates on the hyper path, where nothing boxes around it \
                 ({hyper} per request, bare {hyper_bare})",
                config.name()
            );
        }
    }
    println!("ours adds 0 allocations per request on the hyper path (checked)");
}
