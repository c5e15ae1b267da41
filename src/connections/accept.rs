//! What a listener must do to be measured: accept, with its errors, and say where it
//! listens.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

/// A listener whose accept errors are seen: the raw `accept` of a Tokio listener, not
/// `axum::serve::Listener`'s, which retries errors where nobody can count them.
///
/// Implemented for [`tokio::net::TcpListener`] and, on Unix,
/// [`tokio::net::UnixListener`]. Implement it for another listener (a vsock one, a
/// listener of a test harness) to measure it.
///
/// ```
/// use std::io;
/// use tower_prometheus::connections::{Accept, Endpoint};
///
/// /// A TCP listener that also logs every connection.
/// struct Logged(tokio::net::TcpListener);
///
/// impl Accept for Logged {
///     type Io = tokio::net::TcpStream;
///     type Addr = std::net::SocketAddr;
///
///     async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
///         let (stream, peer) = self.0.accept().await?;
///         println!("connection from {peer}");
///         Ok((stream, peer))
///     }
///
///     fn local_addr(&self) -> io::Result<Self::Addr> {
///         self.0.local_addr()
///     }
///
///     fn endpoint(&self) -> Endpoint {
///         self.0.endpoint()
///     }
/// }
/// ```
pub trait Accept: Send + 'static {
    /// The connection's stream.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The peer's address.
    type Addr: Send;

    /// The next connection, or the error of the `accept` that failed. Must be
    /// cancel-safe: `axum::serve` drops it when it shuts down.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, Self::Addr)>> + Send;

    /// The address this listener is bound to.
    fn local_addr(&self) -> io::Result<Self::Addr>;

    /// Where it listens, for the labels of its series ([`Endpoint::default`], no labels,
    /// when unknown).
    fn endpoint(&self) -> Endpoint;
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, Self::Addr)>> + Send {
        tokio::net::TcpListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        tokio::net::TcpListener::local_addr(self)
    }

    fn endpoint(&self) -> Endpoint {
        tokio::net::TcpListener::local_addr(self).map_or_else(|_| Endpoint::tcp(), Endpoint::from)
    }
}

#[cfg(unix)]
impl Accept for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, Self::Addr)>> + Send {
        tokio::net::UnixListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        tokio::net::UnixListener::local_addr(self)
    }

    fn endpoint(&self) -> Endpoint {
        let path = tokio::net::UnixListener::local_addr(self)
            .ok()
            .and_then(|addr| addr.as_pathname().map(|path| path.display().to_string()));
        Endpoint {
            address: path.map(String::into_boxed_str),
            port: None,
            transport: Some("unix"),
            network: None,
        }
    }
}

/// Where a listener listens: the labels of its series (`server_address`, `server_port`,
/// and with [`Naming::OpenTelemetry`](crate::Naming::OpenTelemetry)
/// `network_transport` and `network_type`, as the OpenTelemetry conventions of Kestrel's
/// connection metrics name them).
///
/// ```
/// use tower_prometheus::connections::Endpoint;
///
/// // server_address="127.0.0.1", server_port="3000", network_transport="tcp",
/// // network_type="ipv4".
/// let tcp = Endpoint::from("127.0.0.1:3000".parse::<std::net::SocketAddr>()?);
/// assert_eq!(tcp.to_string(), "127.0.0.1:3000");
/// // server_address="/run/app.sock", network_transport="unix".
/// let unix = Endpoint::unix("/run/app.sock");
/// assert_eq!(unix.to_string(), "/run/app.sock");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub(super) address: Option<Box<str>>,
    pub(super) port: Option<u16>,
    pub(super) transport: Option<&'static str>,
    pub(super) network: Option<&'static str>,
}

impl Endpoint {
    /// A Unix domain socket at `path`.
    pub fn unix(path: impl AsRef<std::path::Path>) -> Self {
        Self {
            address: Some(path.as_ref().display().to_string().into_boxed_str()),
            port: None,
            transport: Some("unix"),
            network: None,
        }
    }

    /// A TCP listener whose address is unknown.
    fn tcp() -> Self {
        Self {
            transport: Some("tcp"),
            ..Self::default()
        }
    }
}

impl From<SocketAddr> for Endpoint {
    /// A TCP listener bound to `addr`.
    fn from(addr: SocketAddr) -> Self {
        Self {
            address: Some(addr.ip().to_string().into_boxed_str()),
            port: Some(addr.port()),
            transport: Some("tcp"),
            network: Some(if addr.is_ipv4() { "ipv4" } else { "ipv6" }),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.address, self.port) {
            (Some(address), Some(port)) if address.contains(':') => {
                write!(f, "[{address}]:{port}")
            }
            (Some(address), Some(port)) => write!(f, "{address}:{port}"),
            (Some(address), None) => f.write_str(address),
            (None, Some(port)) => write!(f, ":{port}"),
            (None, None) => f.write_str(self.transport.unwrap_or("unknown")),
        }
    }
}
