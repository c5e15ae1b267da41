//! Instructions (callgrind, through gungraun) that the connection metrics add per
//! connection and per request.
//!
//! - `per_connection`: [`CONNECTIONS`] connections accepted from an in-memory listener
//!   and dropped, through the bare listener and through `Metrics::listener`: the
//!   difference divided by [`CONNECTIONS`] is what a connection costs (its share of the
//!   open gauge, two clock reads, a histogram observation, the series' reference count).
//! - `per_request`: [`REQUESTS`] HTTP/1.1 requests on one keep-alive connection of a hyper
//!   server, over the bare in-memory stream and over the `MeteredStream` the wrapper
//!   accepted: the difference divided by [`REQUESTS`] is what a request costs (0: the
//!   stream's reads and writes are the inner stream's, inlined).
//!
//! Both sides of each pair do the same work but the wrapper's, on a current-thread
//! runtime, with their set-up (runtime, listener, connection, warm-up requests) outside
//! the count. Run it with `cargo bench --bench connection_instructions` (valgrind and
//! `gungraun-runner` at the version of gungraun in Cargo.lock, as for
//! `scripts/instructions.sh`); under `cargo test --benches` each scenario runs once,
//! natively.

use std::convert::Infallible;
use std::hint::black_box;
use std::io;

use bytes::Bytes;
use gungraun::{library_benchmark, library_benchmark_group};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::runtime::Runtime;
use tower_prometheus::Metrics;
use tower_prometheus::connections::{Accept, Endpoint, MeteredListener};

/// Connections counted per benchmark.
pub const CONNECTIONS: u64 = 1_000;

/// Requests counted per benchmark.
pub const REQUESTS: u64 = 1_000;

/// A listener of in-memory connections: each accept is the server end of a new duplex
/// pair, whose client end it drops.
struct InMemory;

impl Accept for InMemory {
    type Io = DuplexStream;
    type Addr = ();

    async fn accept(&mut self) -> io::Result<(DuplexStream, ())> {
        let (server, client) = tokio::io::duplex(4096);
        drop(client);
        Ok((server, ()))
    }

    fn local_addr(&self) -> io::Result<()> {
        Ok(())
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::from(std::net::SocketAddr::from(([127, 0, 0, 1], 3000)))
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn metrics() -> Metrics {
    Metrics::builder()
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options")
}

/// What the connections are accepted from. The bare one makes the same metrics and
/// wrapper, unused, so that the heap is in the same state for both.
enum Listener {
    Bare {
        listener: InMemory,
        _unused: Box<MeteredListener<InMemory>>,
    },
    Metered(Box<MeteredListener<InMemory>>),
}

fn listener(metered: bool) -> (Runtime, Listener) {
    let wrapped = Box::new(metrics().listener(InMemory));
    let listener = if metered {
        Listener::Metered(wrapped)
    } else {
        Listener::Bare {
            listener: InMemory,
            _unused: wrapped,
        }
    };
    (runtime(), listener)
}

#[inline(never)]
fn accept_and_drop(runtime: &Runtime, listener: &mut Listener, n: u64) {
    runtime.block_on(async {
        for _ in 0..n {
            match listener {
                Listener::Bare { listener, .. } => {
                    let (io, ()) = listener.accept().await.expect("in memory");
                    drop(black_box(io));
                }
                Listener::Metered(metered) => {
                    let (io, ()) = metered.accept().await;
                    drop(black_box(io));
                }
            }
        }
    });
}

#[library_benchmark]
#[bench::bare(setup = listener, args = (false))]
#[bench::metered(setup = listener, args = (true))]
fn per_connection((runtime, mut listener): (Runtime, Listener)) -> (Runtime, Listener) {
    accept_and_drop(&runtime, &mut listener, CONNECTIONS);
    (runtime, listener)
}

/// A hyper HTTP/1.1 server on one in-memory connection, and its client.
struct Served {
    runtime: Runtime,
    sender: SendRequest<Empty<Bytes>>,
    /// What the set-up made and keeps alive.
    kept: Option<Box<dyn std::any::Any>>,
}

fn serve<I>(runtime: Runtime, io: I, client: DuplexStream) -> Served
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let sender = runtime.block_on(async move {
        let service = hyper::service::service_fn(|_request| async {
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                b"hello",
            ))))
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service),
        );
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(client))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        sender
    });
    let mut served = Served {
        runtime,
        sender,
        kept: None,
    };
    requests(&mut served, 10);
    served
}

/// Answers one connection, given.
struct One(Option<DuplexStream>);

impl Accept for One {
    type Io = DuplexStream;
    type Addr = ();

    async fn accept(&mut self) -> io::Result<(DuplexStream, ())> {
        match self.0.take() {
            Some(io) => Ok((io, ())),
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<()> {
        Ok(())
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::default()
    }
}

/// A connected server, over the bare stream or the metered one. Both make the same
/// metrics and accept a connection through the wrapper (the bare one a connection it
/// does not use), so that the heap the requests allocate from is in the same state.
fn connected(metered: bool) -> Served {
    let runtime = runtime();
    let (server, client) = tokio::io::duplex(64 * 1024);
    let (spare, _spare_client) = tokio::io::duplex(64 * 1024);
    let (accepted, raw) = if metered {
        (server, spare)
    } else {
        (spare, server)
    };
    let metrics = metrics();
    let mut listener = metrics.listener(One(Some(accepted)));
    let (io, ()) = runtime.block_on(listener.accept());
    let mut served = if metered {
        serve(runtime, io, client)
    } else {
        let served = serve(runtime, raw, client);
        served.runtime.block_on(async { drop(io) });
        served
    };
    served.kept = Some(Box::new((metrics, listener, _spare_client)));
    served
}

#[inline(never)]
fn requests(served: &mut Served, n: u64) {
    let sender = &mut served.sender;
    served.runtime.block_on(async {
        for _ in 0..n {
            sender.ready().await.expect("ready");
            let response = sender
                .send_request(
                    http::Request::get("/")
                        .body(Empty::new())
                        .expect("a request"),
                )
                .await
                .expect("answered");
            let body = response.into_body().collect().await.expect("read");
            black_box(body);
        }
    });
}

#[library_benchmark]
#[bench::bare(setup = connected, args = (false))]
#[bench::metered(setup = connected, args = (true))]
fn per_request(mut served: Served) -> Served {
    requests(&mut served, REQUESTS);
    served
}

library_benchmark_group!(name = connections; benchmarks = per_connection, per_request);

fn main() {
    // As in request_instructions.rs: counted under `cargo bench`, once natively under
    // `cargo test --benches`.
    let counted = std::env::args()
        .skip(1)
        .any(|arg| arg == "--bench" || arg.starts_with("--gungraun"));
    if counted {
        callgrind();
    } else {
        for metered in [false, true] {
            let (runtime, mut listener) = listener(metered);
            accept_and_drop(&runtime, &mut listener, 3);
            let mut served = connected(metered);
            requests(&mut served, 3);
        }
    }
}

/// gungraun's harness (its `main!`, scoped here so that `main` can choose).
fn callgrind() {
    gungraun::main!(library_benchmark_groups = connections);
    main();
}
