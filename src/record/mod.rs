//! The recording engine: what every family of the crate (HTTP served, gRPC served and
//! sent, HTTP sent) records its calls into. It knows HTTP messages, which every one of
//! them is, and nothing of routes, gRPC or clients: those are [`CallFamily`] types in their
//! own modules.
//!
//! # A call, from start to series
//!
//! 1. A family's service starts the call: it packs what it knows of the request into a
//!    [`Key`] (its own layout of [`Field`]s), counts it in flight with
//!    [`Shared::start`], and makes the [`Guard`] that will record it exactly once.
//! 2. The [`ResponseFuture`] runs the inner future. When the response head arrives, the
//!    family's [`CallFamily::read_head`] classifies it (the user's classifier for HTTP, the
//!    `grpc-status` for gRPC), and the guard moves into the [`ResponseBody`].
//! 3. The call ends at the first of: the end of the body (its trailers read by the
//!    family), a head with no body to follow, an inner error, a body error, a panic in
//!    the inner code, or the future or body dropped. The guard then hands the
//!    [`Recorder`] what it carried (its `Call`: the key, start time, status, error id,
//!    sizes and trace), which the recorder reads in place.
//! 4. The recorder reads the clock, takes the call out of its in-flight gauge, asks the
//!    family for the series of that key and [`End`] ([`CallFamily::series_key`]: `None` sends
//!    it to the overflow series), finds or creates the series in its lock-free [`Table`] within the
//!    cardinality limit, and observes into its sharded histograms.
//! 5. At scrape time, the family encodes its families from the recorder's tables
//!    ([`CallFamily::encode`]): names, labels, types.
//!
//! The exact rules of "finished", as users read them, are in the module docs of
//! [`http_metrics`](crate::http_metrics).
//!
//! Hot-path rules (of every family's calls; the one exception is the gRPC family of calls
//! served, whose calls to a method it has not named yet take a short lock, see
//! `grpc/served.rs`): nothing on it takes a lock, allocates once a series exists, or writes
//! to memory another thread writes at the same time but its own shard of the in-flight
//! and histogram cells ([`sharded`](crate::sharded)); a family's decisions are made once
//! per call, on packed integers.

mod body;
mod future;
mod guard;
mod key;
mod labels;
mod recorder;
mod table;
mod tasks;

use std::fmt;

use http::{HeaderMap, StatusCode};
use prometheus_client::encoding::DescriptorEncoder;

use crate::classify::{Classified, Classify};

pub use body::ResponseBody;
pub(crate) use body::declared_length;
pub use future::ResponseFuture;
// Public only to be named by the sealed `http_metrics::RequestSize`: unreachable from
// outside the crate.
#[allow(unreachable_pub)]
#[doc(hidden)]
pub use guard::RequestBytes;
pub(crate) use guard::{Guard, RequestFacts, request_bytes_counter};
pub(crate) use key::{Field, Key};
pub use labels::UrlScheme;
pub(crate) use labels::{Method, OVERFLOW_LABEL, OverflowLabels, encode_server};
pub(crate) use recorder::{ActiveGauges, Histograms, Recorder, Series, Shared};
pub(crate) use table::Table;
pub(crate) use tasks::Monitor;

/// What one kind of call is recorded as: its key, how its responses are read, which
/// series an ended call goes to, and its metric families.
///
/// Implemented by one type per protocol and side, each in its own module:
/// `http_metrics::ServerRequests`, `grpc::ServerCalls`, `grpc::ClientCalls` and
/// `client_metrics::ClientRequests`. The engine calls it with the family's type known
/// (no dispatch) everywhere but through a guard, which is one type whatever its family:
/// its head and trailers are read through function pointers the family chose
/// ([`ReadHead`], [`ReadEnd`]), and its end reaches the family's recorder through a trait
/// object ([`Recorder`]'s `Sink`, one virtual call per call, and one more to intern a
/// classifier's `error_type` on a failure).
pub(crate) trait CallFamily: fmt::Debug + Send + Sync + Sized + 'static {
    /// How many in-flight gauges the family keeps (HTTP: one per method and scheme);
    /// 0 when it publishes none, which spares its calls the two atomic adds.
    const ACTIVE_SLOTS: usize;

    /// The first error id of a classifier's values: the ids from
    /// [`error_id::FIRST_FAMILY`] to this one are the family's own (gRPC's codes).
    const FIRST_CUSTOM_ERROR: u8 = error_id::FIRST_FAMILY;

    /// The in-flight gauge of a call that started with `key`, in its group.
    fn active_slot(key: Key) -> usize;

    /// How many groups of `ACTIVE_SLOTS` in-flight gauges the family keeps beyond the
    /// first: made when a call first needs one, so that a family can keep gauges per
    /// label value (HTTP with `Naming::AxumPrometheus`: per route) without allocating
    /// them all at once. None by default.
    fn active_groups(&self) -> usize {
        0
    }

    /// The group of the in-flight gauge of a call that started with `key`: 0, the first
    /// (made with the recorder), or up to [`active_groups`](Self::active_groups). Asked
    /// only when there are groups beyond the first, out of line: a family without them
    /// pays one comparison per call start and end.
    fn active_group(&self, key: Key) -> usize {
        let _ = key;
        0
    }

    /// The id of an error type that names one of the family's own errors (a gRPC code
    /// name), if it is one: such values are not interned as the classifier's.
    fn own_error(value: &str) -> Option<u8> {
        let _ = value;
        None
    }

    /// Reads a response head into the guard ([`Guard::classified`], [`Guard::fail`]):
    /// the verdict of the user's classifier by default. Returns how the end of the body
    /// is read when the head leaves the verdict to it (the trailers).
    fn read_head<C: Classify<E>, E>(
        classify: &C,
        guard: &mut Guard,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<ReadEnd<C>> {
        classified_head::<C, E>(classify, guard, status, headers)
    }

    /// The key of the series a call that started with `key` and ended as `end` is
    /// recorded in: only the labels the family's metrics have, statuses that mean the
    /// same made one. `None`: the overflow series. The key a call starts with may carry
    /// more than labels (gRPC's deadline, or a slot holding the name of a method not yet
    /// named): what the family needs at its end. Called exactly once per call, when it
    /// ends: a family may release there what the call's key holds.
    fn series_key(&self, key: Key, end: End) -> Option<Key>;

    /// The family's metric families, from the recorder's tables, at scrape time.
    fn encode(recorder: &Recorder<Self>, encoder: DescriptorEncoder<'_>) -> fmt::Result;
}

/// How a call ended, as the engine saw it: what a family makes its series key of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct End {
    /// The response's status code; 0 when no response head came (the inner service
    /// failed, panicked or was dropped before one).
    pub(crate) status: u16,
    /// The error, an [`error_id`]; [`error_id::NONE`] for a success.
    pub(crate) error: u8,
    /// Whether the inner service returned an error (named by the classifier in
    /// `error`) instead of a response.
    pub(crate) inner_error: bool,
    /// How long the call lasted: a family with deadlines tells a cancelled call past its
    /// deadline from one before it.
    pub(crate) seconds: f64,
}

/// How a response head is read: set the verdict on the guard, and say how the body's
/// end is read if the head leaves the verdict to it. [`CallFamily::read_head`] of a family,
/// chosen when the call starts.
pub(crate) type ReadHead<C> = fn(&C, &mut Guard, StatusCode, &HeaderMap) -> Option<ReadEnd<C>>;

/// How the end of a body is read: its trailers (`None` when it ended without any) into
/// the guard's verdict.
pub(crate) type ReadEnd<C> = fn(&C, &mut Guard, Option<&HeaderMap>);

/// The reading of HTTP responses: the classifier's verdict on the head, and on the
/// trailers when it leaves the verdict to them.
#[inline]
fn classified_head<C: Classify<E>, E>(
    classify: &C,
    guard: &mut Guard,
    status: StatusCode,
    headers: &HeaderMap,
) -> Option<ReadEnd<C>> {
    match classify.classify_response(status, headers) {
        Classified::Success => None,
        Classified::Failure(error_type) => {
            guard.classified(Some(&error_type));
            None
        }
        Classified::AtEnd => Some(classified_end::<C, E>),
    }
}

/// The classifier's verdict on a body's trailers.
fn classified_end<C: Classify<E>, E>(
    classify: &C,
    guard: &mut Guard,
    trailers: Option<&HeaderMap>,
) {
    let error = classify.classify_end(trailers);
    guard.classified(error.as_ref());
}

/// The errors of a call as small numbers: the engine's own, then a family's
/// ([`CallFamily::FIRST_CUSTOM_ERROR`]), then the classifier's values, interned by the
/// recorder up to a limit.
pub(crate) mod error_id {
    /// Not a failure (a family may still call it one: a 5xx status).
    pub(crate) const NONE: u8 = 0;
    /// A failure of no known kind (the classifier's default for an inner error).
    pub(crate) const OTHER: u8 = 1;
    /// A panic unwound through the inner service, future or body.
    pub(crate) const PANIC: u8 = 2;
    /// The future or body was dropped before the end.
    pub(crate) const CANCELLED: u8 = 3;
    /// The body returned an error.
    pub(crate) const BODY_ERROR: u8 = 4;
    /// The first id a family can give its own errors.
    pub(crate) const FIRST_FAMILY: u8 = 5;
    /// The engine's values, by id, as `error_type` spells them.
    pub(crate) const NAMES: [&str; 5] = ["", "_OTHER", "panic", "cancelled", "body_error"];
}
