//! Exemplars: the trace of a recent request beside each duration bucket.
//!
//! Where the trace comes from: a [`TraceContextSource`], by default [`Traceparent`] (the
//! W3C `traceparent` request header, when its sampled flag is set). Where it goes: one
//! [`ExemplarSlot`] per classic bucket of each series, written without a lock (a
//! sequence counter, retried by the reader, never waited on by the writer) and at most
//! once per [`REPLACE_INTERVAL_MS`] per bucket; read at scrape time into the
//! OpenMetrics and protobuf expositions of the crate's [`Exporter`](crate::Exporter),
//! by way of [`splice`].

#[cfg(feature = "opentelemetry")]
mod otel;
pub(crate) mod splice;

use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Extensions, HeaderMap};

#[cfg(feature = "opentelemetry")]
pub use otel::CurrentSpan;

/// A bucket's exemplar is replaced at most this often (milliseconds): a hot bucket's
/// slot is written about once a second, not once a request, so that threads recording
/// into it do not fight over its cache line; Prometheus keeps one exemplar per scrape
/// and series anyway.
pub(crate) const REPLACE_INTERVAL_MS: u64 = 1_000;

/// The trace and span a request belongs to: what an exemplar links to.
///
/// ```
/// use tower_prometheus::TraceContext;
///
/// let context = TraceContext::from_traceparent(
///     b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
/// )
/// .expect("sampled and well-formed");
/// assert_eq!(context.trace_id(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
/// assert_eq!(context.span_id(), 0x00f067aa0ba902b7);
/// // Not sampled: no exemplar.
/// assert!(TraceContext::from_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    // Two halves rather than a `u128`: 8-byte alignment keeps the request's guard small.
    trace_high: u64,
    trace_low: u64,
    // Non-zero: `Option<TraceContext>` is no bigger than the context.
    span: NonZeroU64,
}

impl TraceContext {
    /// A trace and span id; `None` when either is zero (the W3C invalid ids).
    pub fn new(trace_id: u128, span_id: u64) -> Option<Self> {
        let span = NonZeroU64::new(span_id)?;
        (trace_id != 0).then_some(Self {
            trace_high: (trace_id >> 64) as u64,
            trace_low: trace_id as u64,
            span,
        })
    }

    /// The context of a W3C `traceparent` header value
    /// (`{version}-{trace id}-{parent id}-{flags}`, lower-case hex), when it is
    /// well-formed and its sampled flag is set; `None` otherwise, never an error.
    ///
    /// Version `00` is exactly 55 bytes; a later version may append fields after a `-`,
    /// as the specification allows; version `ff` is invalid.
    pub fn from_traceparent(value: &[u8]) -> Option<Self> {
        Self::parse_traceparent::<true>(value)
    }

    /// The ids of a well-formed `traceparent` header value, sampled or not: what a
    /// caller sent, for checking a span against (`otel.rs`).
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn from_any_traceparent(value: &[u8]) -> Option<Self> {
        Self::parse_traceparent::<false>(value)
    }

    /// [`from_traceparent`](Self::from_traceparent), which requires the sampled flag
    /// when `SAMPLED` is true; inlined into each, so that the default source's code is
    /// what it was before the other existed.
    #[inline(always)]
    fn parse_traceparent<const SAMPLED: bool>(value: &[u8]) -> Option<Self> {
        // Fixed width: every field at a known offset, the 48 hex digits read eight at a
        // time (`hex8`), their validity folded into one flag checked once at the end.
        let (head, rest) = value.split_first_chunk::<55>()?;
        if !rest.is_empty() && rest[0] != b'-' {
            return None;
        }
        if head[2] != b'-' || head[35] != b'-' || head[52] != b'-' {
            return None;
        }
        let (version, version_ok) = hex2(head[0], head[1]);
        let (flags, flags_ok) = hex2(head[53], head[54]);
        let chunk = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&head[at..at + 8]);
            hex8(bytes)
        };
        let (t0, b0) = chunk(3);
        let (t1, b1) = chunk(11);
        let (t2, b2) = chunk(19);
        let (t3, b3) = chunk(27);
        let (s0, b4) = chunk(36);
        let (s1, b5) = chunk(44);
        if !(version_ok && flags_ok) || (b0 | b1 | b2 | b3 | b4 | b5) != 0 {
            return None;
        }
        if version == 0xff || (version == 0 && !rest.is_empty()) || (SAMPLED && flags & 1 == 0) {
            return None;
        }
        let high = (u64::from(t0) << 32) | u64::from(t1);
        let low = (u64::from(t2) << 32) | u64::from(t3);
        let span = NonZeroU64::new((u64::from(s0) << 32) | u64::from(s1))?;
        ((high | low) != 0).then_some(Self {
            trace_high: high,
            trace_low: low,
            span,
        })
    }

    /// The 128-bit trace id.
    pub fn trace_id(&self) -> u128 {
        (u128::from(self.trace_high) << 64) | u128::from(self.trace_low)
    }

    /// The 64-bit span id.
    pub fn span_id(&self) -> u64 {
        self.span.get()
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("trace_id", &format_args!("{:032x}", self.trace_id()))
            .field("span_id", &format_args!("{:016x}", self.span))
            .finish()
    }
}

/// Eight bytes of lower-case hex digits (W3C Trace Context allows no upper case) as a
/// number, the first digit the most significant, all eight bytes at once in a `u64`
/// ("SWAR"); with a non-zero second value when any byte is not such a digit.
#[inline]
fn hex8(bytes: [u8; 8]) -> (u32, u64) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x80 * ONES;
    let x = u64::from_be_bytes(bytes);
    // Bytes from 0x80 are invalid; with their high bit cleared, no sum below carries
    // from one byte into the next.
    let not_ascii = x & HIGH;
    let x = x & !HIGH;
    // Each byte's high bit: whether it is at least `lo`.
    let at_least = |lo: u8| (x + (0x80 - u64::from(lo)) * ONES) & HIGH;
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let letter = at_least(b'a') & !at_least(b'f' + 1);
    let invalid = not_ascii | ((digit | letter) ^ HIGH);
    // '0'..='9' are 0x30..=0x39, 'a'..='f' 0x61..=0x66: the low nibble, plus 9 for a
    // letter (bit 6 set).
    let nibbles = (x & (0x0f * ONES)) + ((x >> 6) & ONES) * 9;
    // Pack the eight nibbles (one per byte) into 32 bits: pairs, then quads, then all.
    let pairs = ((nibbles >> 4) | nibbles) & 0x00ff_00ff_00ff_00ff;
    let quads = ((pairs >> 8) | pairs) & 0x0000_ffff_0000_ffff;
    let value = ((quads >> 16) | quads) as u32;
    (value, invalid)
}

/// Two lower-case hex digits as a number, and whether both were such digits.
#[inline]
fn hex2(high: u8, low: u8) -> (u8, bool) {
    let (high, low) = (HEX_DIGITS[usize::from(high)], HEX_DIGITS[usize::from(low)]);
    ((high << 4) | (low & 0x0f), (high | low) & 0x80 == 0)
}

/// The value of each lower-case hex digit; `0x80` for any other byte.
static HEX_DIGITS: [u8; 256] = {
    let mut table = [0x80u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// The `traceparent` header's name, made once (a `&str` name is parsed at each lookup).
const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// Where the layer finds the trace context of a request, for its exemplars: called once
/// per request (when exemplars are on), in the service's `call`, with the request's
/// headers and extensions.
///
/// Implemented by [`Traceparent`] (the default: the caller's trace, from the W3C header),
/// by `CurrentSpan` (feature `opentelemetry`: the span this service records for the
/// request, with `tracing-opentelemetry`), and by every closure
/// `Fn(&HeaderMap, &Extensions) -> Option<TraceContext>`, as tower-http's hooks are.
///
/// A source of your own, say one that reads the current `tracing` span's OpenTelemetry
/// context (what `CurrentSpan` does, with the checks its docs describe) and falls back
/// on the header:
///
/// ```
/// use http::{Extensions, HeaderMap};
/// use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
/// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
/// use prometheus_client::registry::Registry;
/// use tower_prometheus::{HttpMetricsLayer, TraceContext, TraceContextSource, Traceparent};
/// use tracing_opentelemetry::OpenTelemetrySpanExt as _;
/// use tracing_subscriber::layer::SubscriberExt as _;
///
/// fn current_span(headers: &HeaderMap, extensions: &Extensions) -> Option<TraceContext> {
///     let context = tracing::Span::current().context();
///     let span = context.span();
///     let span = span.span_context();
///     if span.is_sampled() {
///         TraceContext::new(
///             u128::from_be_bytes(span.trace_id().to_bytes()),
///             u64::from_be_bytes(span.span_id().to_bytes()),
///         )
///     } else {
///         Traceparent.trace_context(headers, extensions)
///     }
/// }
///
/// let layer = HttpMetricsLayer::builder()
///     .exemplars(true)
///     .trace_context(current_span)
///     .build(&mut Registry::default())?;
///
/// // What it reads inside a span that tracing-opentelemetry exports: that span's ids.
/// let exporter = InMemorySpanExporter::default();
/// let provider = SdkTracerProvider::builder()
///     .with_simple_exporter(exporter.clone())
///     .build();
/// let subscriber = tracing_subscriber::registry()
///     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("doc")));
/// let read = tracing::subscriber::with_default(subscriber, || {
///     let span = tracing::info_span!("request");
///     let _entered = span.enter();
///     current_span(&HeaderMap::new(), &Extensions::new())
/// });
/// let exported = exporter.get_finished_spans().expect("spans");
/// let read = read.expect("a sampled span");
/// assert_eq!(read.trace_id().to_be_bytes(), exported[0].span_context.trace_id().to_bytes());
/// assert_eq!(read.span_id().to_be_bytes(), exported[0].span_context.span_id().to_bytes());
/// # Ok::<(), tower_prometheus::Error>(())
/// ```
pub trait TraceContextSource: Send + Sync + 'static {
    /// The trace context of the request with these headers and extensions, if it has
    /// one that should be an exemplar (sampled).
    fn trace_context(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<TraceContext>;
}

impl<F> TraceContextSource for F
where
    F: Fn(&HeaderMap, &Extensions) -> Option<TraceContext> + Send + Sync + 'static,
{
    fn trace_context(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<TraceContext> {
        self(headers, extensions)
    }
}

/// The default [`TraceContextSource`]: the W3C `traceparent` request header, when it is
/// well-formed and sampled ([`TraceContext::from_traceparent`]).
///
/// ```
/// use http::{Extensions, HeaderMap, HeaderValue};
/// use tower_prometheus::{Traceparent, TraceContextSource};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("traceparent", HeaderValue::from_static(
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
/// ));
/// assert!(Traceparent.trace_context(&headers, &Extensions::new()).is_some());
/// assert!(Traceparent.trace_context(&HeaderMap::new(), &Extensions::new()).is_none());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Traceparent;

impl TraceContextSource for Traceparent {
    #[inline]
    fn trace_context(&self, headers: &HeaderMap, _: &Extensions) -> Option<TraceContext> {
        TraceContext::from_traceparent(headers.get(TRACEPARENT)?.as_bytes())
    }
}

/// One bucket's exemplar: a sequence counter (odd while written) and the fields.
#[derive(Default)]
pub(crate) struct ExemplarSlot {
    /// When the exemplar may be replaced, in milliseconds since the recorder's epoch
    /// (an `Instant`), reckoned from the request's end `Instant` that the guard reads
    /// anyway: 0 while the slot is empty. Only writers read it; deciding costs no clock
    /// read of its own.
    due: AtomicU64,
    sequence: AtomicU64,
    trace_high: AtomicU64,
    trace_low: AtomicU64,
    span: AtomicU64,
    value: AtomicU64,
    /// Unix time in milliseconds; 0 while the slot is empty.
    millis: AtomicU64,
}

/// An exemplar as read at scrape time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Exemplar {
    pub(crate) context: TraceContext,
    pub(crate) value: f64,
    /// Unix time in milliseconds.
    pub(crate) millis: u64,
}

/// Whether a slot due at `due` (0: empty) may be replaced at `now`, both in
/// milliseconds of the same monotonic clock.
#[inline]
fn is_due(due: u64, now: u64) -> bool {
    now >= due
}

impl ExemplarSlot {
    /// Replaces the exemplar with this one, unless the current one is younger than
    /// [`REPLACE_INTERVAL_MS`] (at `now`, milliseconds of the recorder's monotonic
    /// clock) or another thread is writing it: never waits. Out of line: only requests
    /// with a trace context call it; a slot that is not due costs one relaxed load, and
    /// the wall clock (for the exemplar's timestamp) is read only to write.
    #[inline(never)]
    pub(crate) fn offer(&self, context: TraceContext, value: f64, now: u64) {
        let due = self.due.load(Ordering::Relaxed);
        if !is_due(due, now) {
            return;
        }
        // One winner per interval, however many threads saw the slot due.
        let next = now.saturating_add(REPLACE_INTERVAL_MS).max(1);
        if self
            .due
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |now| now.as_millis() as u64)
            .max(1);
        let sequence = self.sequence.load(Ordering::Relaxed);
        if sequence & 1 == 1
            || self
                .sequence
                .compare_exchange(sequence, sequence + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        fence(Ordering::Release);
        self.trace_high.store(context.trace_high, Ordering::Relaxed);
        self.trace_low.store(context.trace_low, Ordering::Relaxed);
        self.span.store(context.span.get(), Ordering::Relaxed);
        self.value.store(value.to_bits(), Ordering::Relaxed);
        self.millis.store(millis, Ordering::Relaxed);
        self.sequence.store(sequence + 2, Ordering::Release);
    }

    /// The exemplar, if there is one and a few tries read it whole.
    pub(crate) fn read(&self) -> Option<Exemplar> {
        for _ in 0..4 {
            let before = self.sequence.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let (high, low) = (
                self.trace_high.load(Ordering::Relaxed),
                self.trace_low.load(Ordering::Relaxed),
            );
            let span = self.span.load(Ordering::Relaxed);
            let value = f64::from_bits(self.value.load(Ordering::Relaxed));
            let millis = self.millis.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.sequence.load(Ordering::Relaxed) == before {
                // Written whole by `offer`, from a context: the ids are not zero.
                let context = TraceContext::new((u128::from(high) << 64) | u128::from(low), span)?;
                return Some(Exemplar {
                    context,
                    value,
                    millis,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLED: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_traceparent_as_the_w3c_specifies() {
        let context = TraceContext::from_traceparent(SAMPLED).expect("valid");
        assert_eq!(context.trace_id(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(context.span_id(), 0x00f067aa0ba902b7);
        // Other flags beside sampled; a future version with more fields.
        assert!(
            TraceContext::from_traceparent(
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
            )
            .is_some()
        );
        assert!(
            TraceContext::from_traceparent(
                b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
            )
            .is_some()
        );
        for bad in [
            &b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"[..], // not sampled
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",      // zero trace
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",      // zero span
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",      // upper case
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",      // version ff
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",    // 00 with more
            b"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",      // dash moved
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",       // short
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",     // no dash after
            b"",
            b"zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert_eq!(
                TraceContext::from_traceparent(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Every byte value at every hex digit's place: accepted exactly when it is a
    /// lower-case hex digit, read as that digit.
    #[test]
    fn each_hex_digit_is_read_or_refused() {
        let hex_places = (0..2).chain(3..35).chain(36..52).chain(53..55);
        for at in hex_places {
            for byte in 0..=255u8 {
                let mut value = SAMPLED.to_vec();
                value[at] = byte;
                let digit = match byte {
                    b'0'..=b'9' => Some(byte - b'0'),
                    b'a'..=b'f' => Some(byte - b'a' + 10),
                    _ => None,
                };
                let parsed = TraceContext::from_traceparent(&value);
                let Some(digit) = digit else {
                    assert_eq!(parsed, None, "byte {byte:#x} at {at}");
                    continue;
                };
                // Refused only for what the specification refuses: version ff, a flags
                // byte without the sampled bit, a zero id (not reachable by one digit).
                let expected = match at {
                    0 | 1 => (digit != 0xf || value[1 - at] != b'f').then_some(()),
                    54 => (digit & 1 == 1).then_some(()),
                    _ => Some(()),
                };
                assert_eq!(
                    parsed.is_some(),
                    expected.is_some(),
                    "byte {byte:#x} at {at}"
                );
                if let Some(context) = parsed {
                    let shown = format!("{:032x}{:016x}", context.trace_id(), context.span_id());
                    let index = match at {
                        3..=34 => Some(at - 3),
                        36..=51 => Some(at - 4),
                        _ => None,
                    };
                    if let Some(index) = index {
                        assert_eq!(shown.as_bytes()[index], byte, "at {at}");
                    }
                }
            }
        }
    }

    /// Random bytes and mutations of a valid header: never a panic, and a context only
    /// for what parses back to the same 55 bytes.
    #[test]
    fn random_traceparents_never_panic() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        };
        for _ in 0..20_000 {
            let mut value = SAMPLED.to_vec();
            for _ in 0..next() % 4 {
                let at = (next() as usize) % (value.len() + 1);
                match next() % 3 {
                    0 if at < value.len() => value[at] = next() as u8,
                    1 => value.insert(at.min(value.len()), next() as u8),
                    _ => value.truncate(at),
                }
            }
            if let Some(context) = TraceContext::from_traceparent(&value) {
                let printed = format!(
                    "{}-{:032x}-{:016x}-",
                    String::from_utf8_lossy(&value[..2]),
                    context.trace_id(),
                    context.span_id()
                );
                assert_eq!(printed.as_bytes(), &value[..53]);
            }
        }
    }

    /// Time is the `now` the recorder passes (its monotonic clock at the request's
    /// end): injected here, so the test counts replacements, never waits.
    #[test]
    fn a_slot_keeps_one_exemplar_replaced_at_a_bounded_rate() {
        let slot = ExemplarSlot::default();
        assert_eq!(slot.read(), None);
        let first = TraceContext::new(1, 2).expect("non-zero");
        let second = TraceContext::new(3, 4).expect("non-zero");
        // An empty slot takes the first offer, even at the clock's start.
        slot.offer(first, 0.5, 0);
        let read = slot.read().expect("one exemplar");
        assert_eq!((read.context, read.value), (first, 0.5));
        // Within the interval, every offer is refused; once it has passed, one is taken.
        for now in [1, REPLACE_INTERVAL_MS / 2, REPLACE_INTERVAL_MS - 1] {
            slot.offer(second, 0.7, now);
            assert_eq!(slot.read().map(|e| e.context), Some(first), "at {now} ms");
        }
        slot.offer(second, 0.7, REPLACE_INTERVAL_MS);
        let read = slot.read().expect("one exemplar");
        assert_eq!((read.context, read.value), (second, 0.7));
        // The interval restarts from that replacement, not from the first.
        slot.offer(first, 0.9, REPLACE_INTERVAL_MS + 1);
        assert_eq!(slot.read().map(|e| e.context), Some(second));
        slot.offer(first, 0.9, 5 * REPLACE_INTERVAL_MS);
        assert_eq!(slot.read().map(|e| e.context), Some(first));
        // The decision alone: due from `due` on, and an empty slot (0) always.
        assert!(is_due(0, 0));
        assert!(!is_due(1_000, 999));
        assert!(is_due(1_000, 1_000));
    }

    #[test]
    fn concurrent_writers_never_tear_an_exemplar() {
        let slot = std::sync::Arc::new(ExemplarSlot::default());
        let writers: Vec<_> = (1..=4u64)
            .map(|n| {
                let slot = slot.clone();
                std::thread::spawn(move || {
                    let context =
                        TraceContext::new(u128::from(n) * 0x1_0000_0001, n).expect("non-zero");
                    // Each offer a full interval after the last: every one is due.
                    for i in 0..20_000 {
                        slot.offer(context, n as f64, (i + 1) * REPLACE_INTERVAL_MS);
                    }
                })
            })
            .collect();
        for _ in 0..20_000 {
            if let Some(exemplar) = slot.read() {
                let n = exemplar.context.span_id();
                assert_eq!(exemplar.context.trace_id(), u128::from(n) * 0x1_0000_0001);
                assert_eq!(exemplar.value, n as f64);
            }
        }
        for writer in writers {
            writer.join().expect("no panic");
        }
    }
}
