//! Accept errors and TLS handshake failures, each named by a small fixed set of kinds.

use std::io;

/// Why an `accept` failed: the `error_type` of the accept-error counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// `EMFILE` (the process's open-files limit, `ulimit -n`) or `ENFILE` (the
    /// system's): the connection waits in the listen backlog until a descriptor is free.
    FdLimit,
    /// `ENOMEM`, `ENOBUFS`: the kernel could not allocate the socket.
    OutOfMemory,
    /// The peer gave up before the connection was accepted (`ECONNABORTED`, a reset):
    /// nothing is wrong with the server, and the next accept goes on at once.
    ConnectionAborted,
    /// Anything else (`EPERM` from a firewall rule, `EPROTO`, …).
    Other,
}

impl AcceptError {
    pub(crate) const COUNT: usize = 4;
    pub(crate) const ALL: [Self; Self::COUNT] = [
        Self::FdLimit,
        Self::OutOfMemory,
        Self::ConnectionAborted,
        Self::Other,
    ];

    pub(crate) fn of(error: &io::Error) -> Self {
        if let Some(kind) = error.raw_os_error().and_then(of_errno) {
            return kind;
        }
        match error.kind() {
            io::ErrorKind::OutOfMemory => Self::OutOfMemory,
            io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused => Self::ConnectionAborted,
            _ => Self::Other,
        }
    }

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::FdLimit => "fd_limit",
            Self::OutOfMemory => "out_of_memory",
            Self::ConnectionAborted => "connection_aborted",
            Self::Other => "_OTHER",
        }
    }

    /// Whether the accept loop waits before it tries again: not when only one
    /// connection was lost, as axum's loop does.
    pub(crate) fn backs_off(self) -> bool {
        self != Self::ConnectionAborted
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(unix)]
fn of_errno(errno: i32) -> Option<AcceptError> {
    match errno {
        libc::EMFILE | libc::ENFILE => Some(AcceptError::FdLimit),
        libc::ENOMEM | libc::ENOBUFS => Some(AcceptError::OutOfMemory),
        _ => None,
    }
}

#[cfg(windows)]
fn of_errno(errno: i32) -> Option<AcceptError> {
    // WSAEMFILE and WSAENOBUFS (winsock2.h).
    match errno {
        10024 => Some(AcceptError::FdLimit),
        10055 => Some(AcceptError::OutOfMemory),
        _ => None,
    }
}

#[cfg(not(any(unix, windows)))]
fn of_errno(_errno: i32) -> Option<AcceptError> {
    None
}

/// How a TLS handshake (or any handshake measured with
/// [`MeteredStream::handshake`](super::MeteredStream::handshake)) ended: the `error_type`
/// of the handshake histogram, none for a success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handshake {
    Done,
    /// The client closed the connection during the handshake (TCP health checks and
    /// port scanners do).
    UnexpectedEof,
    ConnectionReset,
    /// The handshake's bytes were refused (rustls reports protocol errors, unknown
    /// certificates and unsupported versions so).
    InvalidData,
    TimedOut,
    /// The handshake's future was dropped before it ended (a timeout around it, a
    /// shutdown).
    Cancelled,
    Other,
}

impl Handshake {
    pub(crate) const COUNT: usize = 7;
    pub(crate) const ALL: [Self; Self::COUNT] = [
        Self::Done,
        Self::UnexpectedEof,
        Self::ConnectionReset,
        Self::InvalidData,
        Self::TimedOut,
        Self::Cancelled,
        Self::Other,
    ];

    pub(crate) fn of(error: &io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::UnexpectedEof => Self::UnexpectedEof,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Self::ConnectionReset,
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => Self::InvalidData,
            io::ErrorKind::TimedOut => Self::TimedOut,
            _ => Self::Other,
        }
    }

    /// The `error_type` label value; none for a handshake that succeeded.
    pub(crate) fn error_type(self) -> Option<&'static str> {
        match self {
            Self::Done => None,
            Self::UnexpectedEof => Some("unexpected_eof"),
            Self::ConnectionReset => Some("connection_reset"),
            Self::InvalidData => Some("invalid_data"),
            Self::TimedOut => Some("timeout"),
            Self::Cancelled => Some("cancelled"),
            Self::Other => Some("_OTHER"),
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_named_by_errno_then_by_kind() {
        #[cfg(unix)]
        for (errno, kind) in [
            (libc::EMFILE, AcceptError::FdLimit),
            (libc::ENFILE, AcceptError::FdLimit),
            (libc::ENOMEM, AcceptError::OutOfMemory),
            (libc::ENOBUFS, AcceptError::OutOfMemory),
            (libc::ECONNABORTED, AcceptError::ConnectionAborted),
            (libc::EPERM, AcceptError::Other),
            (libc::EPROTO, AcceptError::Other),
        ] {
            assert_eq!(
                AcceptError::of(&io::Error::from_raw_os_error(errno)),
                kind,
                "errno {errno}"
            );
        }
        assert_eq!(
            AcceptError::of(&io::ErrorKind::ConnectionReset.into()),
            AcceptError::ConnectionAborted
        );
        assert_eq!(
            AcceptError::of(&io::Error::other("custom")),
            AcceptError::Other
        );
        for (i, kind) in AcceptError::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert_eq!(kind.backs_off(), *kind != AcceptError::ConnectionAborted);
        }
        assert_eq!(AcceptError::FdLimit.as_str(), "fd_limit");
    }

    #[test]
    fn handshake_outcomes_have_one_label_value_each() {
        for (i, outcome) in Handshake::ALL.iter().enumerate() {
            assert_eq!(outcome.index(), i);
        }
        let values: std::collections::BTreeSet<_> = Handshake::ALL
            .iter()
            .filter_map(|outcome| outcome.error_type())
            .collect();
        assert_eq!(values.len(), Handshake::COUNT - 1);
        assert_eq!(
            Handshake::of(&io::ErrorKind::UnexpectedEof.into()),
            Handshake::UnexpectedEof
        );
        assert_eq!(
            Handshake::of(&io::Error::new(io::ErrorKind::InvalidData, "bad record")),
            Handshake::InvalidData
        );
    }
}
