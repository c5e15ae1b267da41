//! Names, label names and help texts made valid, as metrics-exporter-prometheus makes
//! them, and the names a family's samples take.

use std::sync::Arc;

use metrics::Key;

use super::Kind;

/// A valid metric name: every character that is not `[a-zA-Z0-9_]` (or a leading digit)
/// becomes `_`, as metrics-exporter-prometheus does (`http.requests` is
/// `http_requests`, `1xx` is `_xx`), except that colons become `_` too: Prometheus keeps
/// them for recording rules.
pub(super) fn metric_name(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| match c {
            'a'..='z' | 'A'..='Z' | '_' => c,
            '0'..='9' if i > 0 => c,
            _ => '_',
        })
        .collect()
}

/// A valid label name, by the same rule; a leading `__` (reserved by Prometheus) loses
/// one `_`, and a name the exposition itself uses (`le` on a histogram,
/// `otel_metric_overflow`) is prefixed with `exported_`, as Prometheus does with
/// labels that clash with its own.
pub(super) fn label_name(name: &str, kind: Kind) -> String {
    let mut valid = metric_name(name);
    while valid.starts_with("__") {
        valid.remove(0);
    }
    if valid.is_empty() {
        valid.push('_');
    }
    if valid == OVERFLOW_LABEL || (kind == Kind::Histogram && valid == "le") {
        valid.insert_str(0, "exported_");
    }
    valid
}

/// The label of the series that takes the label sets beyond the cap.
pub(super) const OVERFLOW_LABEL: &str = "otel_metric_overflow";

/// The labels of a series, as it is published: valid names, sorted by name, the first of
/// two labels of one name kept.
pub(super) type Labels = Box<[(Arc<str>, Arc<str>)]>;

pub(super) fn labels(key: &Key, kind: Kind) -> Labels {
    let mut labels: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(key.labels().len());
    for label in key.labels() {
        let name = label_name(label.key(), kind);
        if labels.iter().all(|(seen, _)| **seen != *name) {
            labels.push((name.into(), label.value().into()));
        }
    }
    // Stable: the first of two equal names stays first, and the other was dropped.
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    labels.into_boxed_slice()
}

/// A help text both text formats accept: line breaks become spaces. (The Prometheus
/// text encoder escapes backslashes and line feeds, the OpenMetrics one writes the text
/// as it is: a line feed would end the line there.)
pub(super) fn help(text: &str) -> String {
    text.replace("\r\n", " ").replace(['\n', '\r'], " ")
}

/// The names a family called `name` (its unit included, a counter's `_total` not)
/// writes: its own and its samples'. Two families clash when these meet.
pub(super) fn sample_names(name: &str, kind: Kind) -> Vec<String> {
    let suffixes: &[&str] = match kind {
        Kind::Counter => &["", "_total", "_created"],
        Kind::Gauge => &[""],
        Kind::Histogram => &["", "_bucket", "_count", "_sum", "_created"],
    };
    suffixes.iter().map(|s| format!("{name}{s}")).collect()
}

/// The base unit a `metrics` unit is published in, as Prometheus wants it, and the
/// factor from one to the other: milliseconds are published as seconds (values times
/// 0.001), kibibytes as bytes, a percentage as a ratio (times 0.01); a count has no
/// suffix. (metrics-exporter-prometheus appends the unit as it is, `_milliseconds`,
/// which promtool rejects: "use base unit".)
pub(super) fn base_unit(unit: metrics::Unit) -> Option<(&'static str, f64)> {
    use metrics::Unit;
    Some(match unit {
        Unit::Count => return None,
        Unit::Percent => ("ratio", 0.01),
        Unit::Seconds => ("seconds", 1.0),
        Unit::Milliseconds => ("seconds", 1e-3),
        Unit::Microseconds => ("seconds", 1e-6),
        Unit::Nanoseconds => ("seconds", 1e-9),
        Unit::Bytes => ("bytes", 1.0),
        Unit::Kibibytes => ("bytes", 1024.0),
        Unit::Mebibytes => ("bytes", 1024.0 * 1024.0),
        Unit::Gibibytes => ("bytes", 1024.0 * 1024.0 * 1024.0),
        Unit::Tebibytes => ("bytes", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        Unit::BitsPerSecond => ("bits_per_second", 1.0),
        Unit::KilobitsPerSecond => ("bits_per_second", 1e3),
        Unit::MegabitsPerSecond => ("bits_per_second", 1e6),
        Unit::GigabitsPerSecond => ("bits_per_second", 1e9),
        Unit::TerabitsPerSecond => ("bits_per_second", 1e12),
        Unit::CountPerSecond => ("per_second", 1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_as_metrics_exporter_prometheus_makes_them() {
        for (given, made) in [
            ("http.requests", "http_requests"),
            ("foo_bar", "foo_bar"),
            ("1foobar", "_foobar"),
            ("123", "_23"),
            ("*", "_"),
            ("a-b c", "a_b_c"),
            ("é", "_"),
            // Colons are kept by metrics-exporter-prometheus, not here.
            ("foo1:bar2", "foo1_bar2"),
        ] {
            assert_eq!(metric_name(given), made, "{given}");
        }
    }

    #[test]
    fn label_names() {
        assert_eq!(label_name("http.method", Kind::Counter), "http_method");
        assert_eq!(label_name("__name__", Kind::Counter), "_name__");
        assert_eq!(label_name("1a", Kind::Counter), "_a");
        assert_eq!(label_name("", Kind::Counter), "_");
        assert_eq!(label_name("le", Kind::Counter), "le");
        assert_eq!(label_name("le", Kind::Histogram), "exported_le");
        assert_eq!(
            label_name("otel_metric_overflow", Kind::Gauge),
            "exported_otel_metric_overflow"
        );
    }

    #[test]
    fn labels_are_sorted_and_unique() {
        let key = Key::from_parts(
            "x",
            vec![
                metrics::Label::new("b", "1"),
                metrics::Label::new("a.b", "2"),
                metrics::Label::new("a_b", "3"),
            ],
        );
        let made = labels(&key, Kind::Counter);
        let made: Vec<(&str, &str)> = made.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(made, [("a_b", "2"), ("b", "1")]);
    }

    #[test]
    fn help_texts_fit_on_one_line() {
        assert_eq!(help("a \\ b\nc \"d\"\r\ne"), "a \\ b c \"d\" e");
    }
}
