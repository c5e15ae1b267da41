//! The family of gRPC calls served: `rpc_server_call_duration_seconds` and
//! `rpc_server_active_calls`, recorded by the HTTP layer for the requests that are gRPC
//! calls.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use http::{HeaderMap, Request, StatusCode};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabel, EncodeLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::DeadlineField;
use super::code::{self, Code};
use super::encode::{CallLabels, encode_durations};
use crate::classify::Classify;
use crate::exemplar::TraceContext;
use crate::histogram::Buckets;
use crate::record::{
    CallFamily, End, Field, Guard, Histograms, Key, Method, ReadEnd, Recorder, RequestBytes,
    RequestFacts, Shared, Table, error_id,
};

/// The method id of `_OTHER`, the method of calls to a method that is not named (see
/// [`ServerCalls`]): the first in the table.
const OTHER_METHOD: u64 = 1;

const ERROR: Field = Field::first(8);
/// The method's id; while [`PENDING`], the slot of [`ServerCalls::pending`] that keeps
/// its name ([`NO_SLOT`]: none does). Ids are below the cardinality limit, at most
/// [`SERIES_LIMIT`](crate::http_metrics::SERIES_LIMIT) + 1: 24 bits hold them.
const METHOD: Field = Field::after(ERROR, 24);
/// The method id of methods beyond the cardinality limit: their series overflow.
const OVERFLOW_METHOD: u64 = METHOD.max();
/// Set while the call's method is not named: it started pending.
const PENDING: Field = Field::after(METHOD, 1);
/// Set when the response head was a gRPC response stream: the method's handler served
/// the call, which names its method.
const SERVED: Field = Field::after(PENDING, 1);
/// The call's deadline, until it ends.
const DEADLINE: DeadlineField = DeadlineField::after(SERVED, 24);

/// The slot of a pending call whose name is not kept.
const NO_SLOT: u64 = METHOD.max();

/// How many methods not yet named a server keeps the names of at once, for their calls
/// in flight (the calls of one method share one).
pub(crate) const PENDING_NAMES: usize = 64;

/// The longest method name (path, without its leading `/`) kept for a call in flight:
/// the pending names take at most 64 KiB, whatever clients send.
pub(crate) const MAX_PENDING_NAME: usize = 1024;

/// How many methods may be named by an answer that is a status alone (see
/// [`ServerCalls`]): a layer in front of the router (authentication, load shedding) can
/// answer so for a made-up method, so these names are bounded apart.
pub(crate) const NAMED_BY_STATUS: usize = 32;

/// The family of gRPC calls served: the full method of each call, `package.Service/Method`.
///
/// # Which methods are named
///
/// The method of a call is its request path, which the client chooses. A method is
/// named (interned in the method table, which holds at most `max_series` names for the
/// life of the process) only once one of its calls is served: answered with a gRPC
/// response stream (HTTP 200, `content-type: application/grpc…`, no `grpc-status` in the
/// head), which only the method's handler sends. A call answered by a status alone (a
/// trailers-only response) may come from a layer in front of the router for any path (an
/// authentication layer's `UNAUTHENTICATED`, a load shedder's `RESOURCE_EXHAUSTED`): it
/// names its method only among the first [`NAMED_BY_STATUS`] so named, and never when
/// the status is `UNIMPLEMENTED` (the router's answer to a method it does not have),
/// `CANCELLED` or `DEADLINE_EXCEEDED` (the client's doing). A call that ended before any
/// answer names nothing. Until its method is named, a call is recorded as `_OTHER`.
/// Made-up methods, however many, never take the place of the real ones.
///
/// A call to a named method costs one lookup. The name of a method not yet named is
/// kept from the start of its call to the end in one of [`PENDING_NAMES`] slots, shared
/// by the calls of that method in flight, and released with the last of them. With every
/// slot taken (that many methods not yet named in flight at once), or for a name longer
/// than [`MAX_PENDING_NAME`], the call is `_OTHER` if it was not served, and in the
/// overflow series if it was (its name was not kept).
///
/// The pending slots are behind one mutex, taken at the start and at the end of each
/// call to a method not yet named: the only lock on any family's request path. A real
/// method takes it until its first call is served; a flood of made-up methods takes it
/// for every call, which serialises those calls' bookkeeping (a few slot comparisons)
/// and leaves the calls to named methods, which never take it, unaffected.
pub(crate) struct ServerCalls {
    /// Full methods to their ids: the named methods.
    methods: Table<Box<str>, u32>,
    /// The names of methods not yet named, while calls of theirs are in flight.
    pending: Mutex<Pending>,
}

/// The methods not yet named that calls in flight hold.
struct Pending {
    /// [`PENDING_NAMES`] slots.
    slots: Vec<Option<PendingName>>,
    /// How many methods a status alone has named, at most [`NAMED_BY_STATUS`].
    named_by_status: usize,
}

/// What the end of a call says of its method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Evidence {
    /// Its handler answered it with a response stream: the method exists.
    Served,
    /// It was answered by a status alone that a client does not choose: the method may
    /// exist.
    Status,
    /// Nothing: answered `UNIMPLEMENTED`, cancelled, past its deadline, or not answered.
    None,
}

/// The name of a method not yet named, and how many calls in flight hold it.
struct PendingName {
    name: Box<str>,
    calls: usize,
}

impl ServerCalls {
    /// A recorder of calls served, its families registered in `registry`; its duration
    /// buckets keep exemplars when `exemplars` is true (the HTTP layer's option).
    pub(crate) fn register(
        buckets: Buckets,
        max_series: usize,
        exemplars: bool,
        registry: &mut Registry,
    ) -> std::sync::Arc<Recorder<Self>> {
        let family = Self {
            methods: Table::new(max_series),
            pending: Mutex::new(Pending {
                slots: (0..PENDING_NAMES).map(|_| None).collect(),
                named_by_status: 0,
            }),
        };
        let other = family.method_id("_OTHER");
        debug_assert_eq!(other, OTHER_METHOD);
        let histograms = Histograms {
            exemplars,
            ..Histograms::duration(buckets, max_series)
        };
        Recorder::register(family, histograms, registry)
    }

    /// The id of a full method, interned; [`OVERFLOW_METHOD`] past the limit.
    fn method_id(&self, method: &str) -> u64 {
        self.methods
            .get_or_insert(method, |len| (method.into(), len as u32 + 1))
            .map_or(OVERFLOW_METHOD, |id| u64::from(*id))
    }

    /// Starts recording a gRPC call that entered the HTTP layer at `start`, with its
    /// trace when exemplars are on: out of line, so that the HTTP layer's path for other
    /// requests stays as short as it was.
    #[inline(never)]
    pub(crate) fn start<B>(
        shared: &Shared<Self>,
        start: Instant,
        request: &Request<B>,
        trace: Option<TraceContext>,
    ) -> Guard {
        let path = super::full_method(request.uri().path());
        let method = match shared.family.methods.get(path) {
            Some(id) => METHOD.set(Key(0), u64::from(*id)),
            None => shared.family.pend(path),
        };
        let key = DEADLINE.set(method, request.headers());
        let handle = shared.start(key);
        let facts = RequestFacts::new(request.version(), Method::Post);
        Guard::new(handle, start, key, facts, RequestBytes::Unknown, trace)
    }

    /// The key of a call to a method not named yet: pending, its name kept in a slot if
    /// one is free.
    #[cold]
    #[inline(never)]
    fn pend(&self, method: &str) -> Key {
        let slot = self.keep(method).map_or(NO_SLOT, |slot| slot as u64);
        PENDING.set(METHOD.set(Key(0), slot), 1)
    }

    /// The slot that keeps `method` for one more call in flight: the one that already
    /// does, else a free one; `None` when none is free or the name is too long.
    fn keep(&self, method: &str) -> Option<usize> {
        if method.len() > MAX_PENDING_NAME {
            return None;
        }
        // Nothing panics while the lock is held but an allocation failure.
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let slots = &mut pending.slots;
        let mut free = None;
        for (index, slot) in slots.iter_mut().enumerate() {
            match slot {
                Some(pending) if *pending.name == *method => {
                    pending.calls += 1;
                    return Some(index);
                }
                Some(_) => {}
                None => {
                    free.get_or_insert(index);
                }
            }
        }
        let index = free?;
        slots[index] = Some(PendingName {
            name: method.into(),
            calls: 1,
        });
        Some(index)
    }

    /// The method id of a call that started pending in `slot` and has ended with this
    /// `evidence`: its method named if the evidence is enough (see [`ServerCalls`]) or
    /// was named since by another call, else `_OTHER`. Releases the call's hold on the
    /// slot: called once per such call.
    #[cold]
    #[inline(never)]
    fn settle(&self, slot: u64, evidence: Evidence) -> u64 {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let pending = &mut *pending;
        let Some(Some(kept)) = usize::try_from(slot)
            .ok()
            .and_then(|slot| pending.slots.get_mut(slot))
        else {
            // Its name was not kept.
            return match evidence {
                Evidence::Served => OVERFLOW_METHOD,
                _ => OTHER_METHOD,
            };
        };
        let named = self.methods.get(&*kept.name).map(|id| u64::from(*id));
        let id = match (named, evidence) {
            (Some(id), _) => id,
            (None, Evidence::Served) => self.method_id(&kept.name),
            (None, Evidence::Status) if pending.named_by_status < NAMED_BY_STATUS => {
                // Interned under the lock, so counted exactly.
                let id = self.method_id(&kept.name);
                if id != OVERFLOW_METHOD {
                    pending.named_by_status += 1;
                }
                id
            }
            (None, _) => OTHER_METHOD,
        };
        kept.calls -= 1;
        if kept.calls == 0 {
            pending.slots[slot as usize] = None;
        }
        id
    }

    /// How many method names are kept for calls in flight.
    #[cfg(test)]
    fn pending_names(&self) -> usize {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.slots.iter().filter(|slot| slot.is_some()).count()
    }
}

impl CallFamily for ServerCalls {
    const ACTIVE_SLOTS: usize = 1;
    const FIRST_CUSTOM_ERROR: u8 = code::FIRST_CUSTOM_ERROR;

    fn active_slot(_: Key) -> usize {
        0
    }

    fn own_error(value: &str) -> Option<u8> {
        Code::from_name(value).map(Code::error_id)
    }

    fn read_head<C: Classify<E>, E>(
        classify: &C,
        guard: &mut Guard,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<ReadEnd<C>> {
        let key = guard.key();
        if PENDING.get(key) == 1
            && status == StatusCode::OK
            && !headers.contains_key("grpc-status")
            && super::is_grpc_content_type(headers)
        {
            guard.set_key(SERVED.set(key, 1));
        }
        super::read_head::<C, true>(classify, guard, status, headers)
    }

    /// A call cancelled by the engine (its future or body dropped) is `CANCELLED`, or
    /// `DEADLINE_EXCEEDED` past its `grpc-timeout`; an inner error the classifier calls
    /// `cancelled` keeps that name, past the deadline or not. A call that started pending gets its
    /// method's id now (see [`ServerCalls`]): this is where its slot is released.
    fn series_key(&self, key: Key, end: End) -> Option<Key> {
        let error = match end.error {
            error_id::NONE => Code::Unknown.error_id(),
            error_id::CANCELLED if !end.inner_error && DEADLINE.passed(key, end.seconds) => {
                Code::DeadlineExceeded.error_id()
            }
            error_id::CANCELLED => Code::Cancelled.error_id(),
            error => error,
        };
        let method = if PENDING.get(key) == 1 {
            let evidence = if SERVED.get(key) == 1 {
                Evidence::Served
            } else if end.status != 0
                && !end.inner_error
                && Code::of_error_id(error).is_some_and(|code| {
                    !matches!(
                        code,
                        Code::Unimplemented | Code::Cancelled | Code::DeadlineExceeded
                    )
                })
            {
                Evidence::Status
            } else {
                Evidence::None
            };
            self.settle(METHOD.get(key), evidence)
        } else {
            METHOD.get(key)
        };
        if method == OVERFLOW_METHOD {
            return None;
        }
        Some(ERROR.set(METHOD.set(Key(0), method), u64::from(error)))
    }

    fn encode(recorder: &Recorder<Self>, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let methods = recorder.family.methods.names_by_id(|id| Some(*id as usize));
        encode_durations(
            recorder,
            &mut encoder,
            "rpc_server_call_duration",
            "Duration of RPCs served, until the response stream ended.",
            |key, errors| CallLabels {
                error: ERROR.get(key) as u8,
                custom: errors.get(ERROR.get(key) as usize).copied().flatten(),
                method: methods.get(METHOD.get(key) as usize).copied().flatten(),
                client: false,
                server: None,
            },
        )?;
        if recorder.active.seen(0) {
            let mut family = encoder.encode_descriptor(
                "rpc_server_active_calls",
                "Number of RPCs in flight on the server.",
                None,
                MetricType::Gauge,
            )?;
            family
                .encode_family(&SystemLabel)?
                .encode_gauge(&recorder.active.value(0))?;
        }
        Ok(())
    }
}

/// The labels of the in-flight gauge of served calls.
struct SystemLabel;

impl EncodeLabelSet for SystemLabel {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        ("rpc_system_name", super::SYSTEM).encode(encoder.encode_label())
    }
}

impl std::fmt::Debug for ServerCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCalls")
            .field("methods", &self.methods.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(max_series: usize) -> std::sync::Arc<Recorder<ServerCalls>> {
        ServerCalls::register(
            Buckets::duration_seconds(),
            max_series,
            false,
            &mut Registry::default(),
        )
    }

    /// The end of a call answered by the status `code` alone, or with a stream.
    fn answered(code: Code) -> End {
        End {
            status: 200,
            error: code.error_id(),
            inner_error: false,
            seconds: 0.01,
        }
    }

    /// The method of the series a call to `path` ends in, the response stream `served`
    /// or not; `None`: the overflow series.
    fn method_of(
        recorder: &Recorder<ServerCalls>,
        path: &str,
        served: bool,
        end: End,
    ) -> Option<String> {
        let family = &recorder.family;
        let key = match family.methods.get(path) {
            Some(id) => METHOD.set(Key(0), u64::from(*id)),
            None => family.pend(path),
        };
        let key = if served { SERVED.set(key, 1) } else { key };
        let series = family.series_key(key, end)?;
        let id = METHOD.get(series);
        let name = family
            .methods
            .iter()
            .find(|(_, method)| u64::from(**method) == id)
            .map(|(name, _)| name.to_string());
        Some(name.expect("a named method"))
    }

    #[test]
    fn made_up_methods_are_other_and_name_nothing() {
        let recorder = family(10);
        for n in 0..1_000 {
            let method = method_of(
                &recorder,
                &format!("made.Up/M{n}"),
                false,
                answered(Code::Unimplemented),
            );
            assert_eq!(method.as_deref(), Some("_OTHER"));
            let cancelled = End {
                status: 0,
                error: error_id::CANCELLED,
                inner_error: false,
                seconds: 0.01,
            };
            let method = method_of(&recorder, &format!("made.Up/C{n}"), false, cancelled);
            assert_eq!(method.as_deref(), Some("_OTHER"));
        }
        assert_eq!(recorder.family.methods.len(), 1, "only _OTHER");
        assert_eq!(recorder.family.pending_names(), 0, "every slot released");
        // A real method, served: named, and then found without pending.
        let served = method_of(&recorder, "real.S/Get", true, answered(Code::Ok));
        assert_eq!(served.as_deref(), Some("real.S/Get"));
        let failed = method_of(
            &recorder,
            "real.S/Get",
            false,
            answered(Code::Unimplemented),
        );
        assert_eq!(
            failed.as_deref(),
            Some("real.S/Get"),
            "a named method keeps its name"
        );
        assert_eq!(recorder.family.pending_names(), 0);
    }

    #[test]
    fn a_status_alone_names_a_bounded_number_of_methods() {
        let recorder = family(1_000);
        for n in 0..100 {
            let method = method_of(
                &recorder,
                &format!("p.S/M{n}"),
                false,
                answered(Code::Unauthenticated),
            );
            let expected = if n < NAMED_BY_STATUS {
                format!("p.S/M{n}")
            } else {
                "_OTHER".to_owned()
            };
            assert_eq!(method.as_deref(), Some(expected.as_str()));
        }
        for code in [Code::Cancelled, Code::DeadlineExceeded, Code::Unimplemented] {
            assert_eq!(
                method_of(&recorder, "p.S/Late", false, answered(code)).as_deref(),
                Some("_OTHER")
            );
        }
        // A served call still names its method.
        assert_eq!(
            method_of(&recorder, "p.S/Late", true, answered(Code::Cancelled)).as_deref(),
            Some("p.S/Late")
        );
    }

    #[test]
    fn calls_in_flight_share_a_slot_and_the_slots_are_bounded() {
        let recorder = family(1_000);
        let family = &recorder.family;
        let first = family.pend("p.S/Watch");
        let second = family.pend("p.S/Watch");
        assert_eq!(
            METHOD.get(first),
            METHOD.get(second),
            "one slot for one method"
        );
        assert_eq!(family.pending_names(), 1);
        let others: Vec<Key> = (1..PENDING_NAMES)
            .map(|n| family.pend(&format!("p.S/M{n}")))
            .collect();
        assert_eq!(family.pending_names(), PENDING_NAMES);
        let full = family.pend("p.S/OneTooMany");
        assert_eq!(METHOD.get(full), NO_SLOT);
        assert_eq!(
            family
                .series_key(full, answered(Code::Unimplemented))
                .map(|k| METHOD.get(k)),
            Some(OTHER_METHOD)
        );
        assert_eq!(
            family.series_key(SERVED.set(family.pend("p.S/Again"), 1), answered(Code::Ok)),
            None,
            "served, its name not kept: the overflow series"
        );
        let long = "p.S/".to_owned() + &"x".repeat(MAX_PENDING_NAME);
        for key in others {
            family.series_key(key, answered(Code::Unimplemented));
        }
        assert_eq!(METHOD.get(family.pend(&long)), NO_SLOT, "too long to keep");
        // The first call ends served: the method is named, the slot held by the second.
        let named = family
            .series_key(SERVED.set(first, 1), answered(Code::Ok))
            .expect("a series");
        assert_eq!(family.pending_names(), 1);
        let later = family
            .series_key(second, answered(Code::Cancelled))
            .expect("a series");
        assert_eq!(METHOD.get(later), METHOD.get(named), "named by the first");
        assert_eq!(family.pending_names(), 0);
    }

    #[test]
    fn past_the_limit_served_methods_overflow() {
        let recorder = family(3);
        assert_eq!(
            method_of(&recorder, "p.S/A", true, answered(Code::Ok)).as_deref(),
            Some("p.S/A")
        );
        assert_eq!(
            method_of(&recorder, "p.S/B", true, answered(Code::Ok)).as_deref(),
            Some("p.S/B")
        );
        assert_eq!(
            method_of(&recorder, "p.S/C", true, answered(Code::Ok)),
            None
        );
        assert_eq!(recorder.family.pending_names(), 0);
    }
}
