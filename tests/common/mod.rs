//! Helpers shared by the integration tests: reading an exposition, calling promtool.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use prometheus_client::registry::Registry;

/// One sample line of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a text exposition (Prometheus 0.0.4 or OpenMetrics), label values
/// unescaped. Panics on a sample that appears twice with the same labels (Prometheus
/// would drop one: promtool does not catch it).
pub fn parse(text: &str) -> Vec<Sample> {
    let samples: Vec<Sample> = text
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| parse_line(line).unwrap_or_else(|| panic!("unparsable line {line:?}")))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for sample in &samples {
        assert!(
            seen.insert((&sample.name, &sample.labels)),
            "duplicate series {} {:?} in:\n{text}",
            sample.name,
            sample.labels
        );
    }
    samples
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        let end;
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    end = i;
                    break;
                }
                ',' => {}
                '=' => {
                    let (_, quote) = chars.next()?;
                    assert_eq!(quote, '"');
                    let mut value = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
        rest = &body[end + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The samples named `name` whose labels include all of `labels`.
pub fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The value of the one sample named `name` with exactly these labels.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let found: Vec<_> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == wanted)
        .collect();
    assert!(found.len() <= 1, "several samples {name} {labels:?}");
    found.first().map(|s| s.value)
}

/// The sum of the samples named `name` whose labels include `labels`.
pub fn total(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    find(samples, name, labels).iter().map(|s| s.value).sum()
}

/// The registry in the Prometheus text format.
pub fn prometheus_text(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)
        .expect("the registry encodes");
    text
}

/// The registry in OpenMetrics text.
pub fn openmetrics_text(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("the registry encodes");
    text
}

/// Runs `promtool check metrics` on `text`, panicking with its complaints if any.
/// promtool missing is a failure that names the install command, never a skip.
pub fn promtool_check_metrics(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "promtool could not be started ({error}); install it with: \
                 sudo apt-get install -y prometheus"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("promtool reads its input");
    let output = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics complained ({}):\n{said}\non:\n{text}",
        output.status
    );
    said
}

/// Parses `text` with the reference OpenMetrics parser of the Python
/// `prometheus-client` package, which rejects anything the standard does not allow.
pub fn python_openmetrics_check(text: &str) {
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        families = list(text_string_to_metric_families(sys.stdin.read()))\n\
        print(len(families))\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("python3 could not be started: {error}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("python reads its input");
    let output = child.wait_with_output().expect("python runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the Python prometheus-client package is missing; install it with: \
         python3 -m pip install prometheus-client"
    );
    assert!(
        output.status.success(),
        "the OpenMetrics parser rejected the exposition:\n{stderr}\non:\n{text}"
    );
}
