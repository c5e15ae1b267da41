//! Accept failing for lack of file descriptors (`EMFILE`), for real: this test lowers the
//! open-files limit of its own process (`setrlimit`), which is why it is the only test of
//! its binary (cargo runs each test binary as a process of its own).
//!
//! An `axum::serve` through the metered listener, 5 descriptors left under the limit, 30
//! clients connecting: 5 are accepted, the next accepts fail with `EMFILE`, counted as
//! `error_type="fd_limit"`, and the loop pauses instead of spinning. Once the clients
//! leave, their descriptors are free again: the waiting connections are accepted and
//! closed, every count is exact, and the server answers a request.
#![cfg(all(feature = "connections", target_os = "linux"))]

mod common;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::{Sample, parse, value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tower_prometheus::Metrics;

const PATIENCE: Duration = Duration::from_secs(30);

fn scrape(metrics: &Metrics) -> Vec<Sample> {
    parse(&common::prometheus_text(metrics.registry()))
}

fn on(samples: &[Sample], name: &str, addr: SocketAddr, error_type: Option<&str>) -> f64 {
    let port = addr.port().to_string();
    let mut labels = vec![
        ("server_address", "127.0.0.1"),
        ("server_port", port.as_str()),
        ("network_transport", "tcp"),
        ("network_type", "ipv4"),
    ];
    labels.extend(error_type.map(|kind| ("error_type", kind)));
    value(samples, name, &labels).unwrap_or_else(|| panic!("no {name} in {samples:#?}"))
}

/// Scrapes until `done` says so (or the patience runs out).
async fn until(metrics: &Metrics, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let samples = scrape(metrics);
        if done(&samples) || Instant::now() > deadline {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The soft and hard open-files limits.
fn nofile() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limits into the struct it is given.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(status, 0, "getrlimit: {}", std::io::Error::last_os_error());
    (limit.rlim_cur, limit.rlim_max)
}

fn set_soft_nofile(soft: u64) {
    let (_, hard) = nofile();
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct it is given.
    let status = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(status, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// The lowest free descriptor: the one the next `accept` gets.
fn lowest_free_fd() -> u64 {
    let file = std::fs::File::open("/dev/null").expect("/dev/null opens");
    u64::try_from(file.as_raw_fd()).expect("descriptors are positive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_failing_with_emfile_are_counted_paused_and_resumed_once_fds_are_free() {
    let metrics = Metrics::builder()
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let app: Router = Router::new().route("/health", get(|| async { "ok" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("an address");
    let served = metrics.listener(listener);
    tokio::spawn(async move { axum::serve(served, app).await });

    // The clients' sockets take their descriptors before the limit is lowered: only the
    // server's accepts need new ones afterwards.
    let attackers: Vec<TcpSocket> = (0..30)
        .map(|_| TcpSocket::new_v4().expect("a socket"))
        .collect();
    let late = TcpSocket::new_v4().expect("a socket");
    let (soft, _) = nofile();
    set_soft_nofile(lowest_free_fd() + 5);

    let started = Instant::now();
    let mut attackers = {
        let mut connected = Vec::new();
        for socket in attackers {
            // The listen backlog (1024) takes every one, accepted or not.
            connected.push(socket.connect(addr).await.expect("connected"));
        }
        connected
    };
    let samples = until(&metrics, |samples| {
        on(
            samples,
            "http_server_accept_errors_total",
            addr,
            Some("fd_limit"),
        ) >= 2.0
    })
    .await;
    let errors = on(
        &samples,
        "http_server_accept_errors_total",
        addr,
        Some("fd_limit"),
    );
    assert!(errors >= 2.0, "{samples:#?}");
    assert_eq!(
        on(&samples, "http_server_open_connections", addr, None),
        5.0
    );
    for other in ["out_of_memory", "connection_aborted", "_OTHER"] {
        assert_eq!(
            on(
                &samples,
                "http_server_accept_errors_total",
                addr,
                Some(other)
            ),
            0.0,
            "{other}"
        );
    }
    // The loop pauses 5 ms, 10, 20, … after errors in a row: no more errors than pauses
    // fit in the time elapsed (a loop without pauses would count thousands).
    let elapsed = started.elapsed();
    let mut fit = 0;
    let mut pauses = Duration::ZERO;
    let mut pause = Duration::from_millis(5);
    while pauses <= elapsed {
        pauses += pause;
        pause = (pause * 2).min(Duration::from_secs(1));
        fit += 1;
    }
    assert!(
        errors <= f64::from(fit + 1),
        "{errors} errors in {elapsed:?}"
    );

    // The clients leave: the 5 accepted connections close, their descriptors are free,
    // and the 25 waiting in the backlog are accepted (5 at a time) and closed in turn.
    for attacker in &mut attackers {
        attacker.shutdown().await.expect("shut down");
    }
    drop(attackers);
    until(&metrics, |samples| {
        on(
            samples,
            "http_server_connection_duration_seconds_count",
            addr,
            None,
        ) >= 30.0
    })
    .await;
    // One more scrape: a scrape reads the open gauge before the durations, so a
    // connection closing between the two reads is in both.
    let samples = scrape(&metrics);
    assert_eq!(
        on(
            &samples,
            "http_server_connection_duration_seconds_count",
            addr,
            None
        ),
        30.0
    );
    assert_eq!(
        on(&samples, "http_server_open_connections", addr, None),
        0.0
    );

    // And the server answers again, under the same limit.
    let mut stream = late.connect(addr).await.expect("connected");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("sent");
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("answered in time")
        .expect("read");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nok"), "{response}");
    set_soft_nofile(soft);
}
