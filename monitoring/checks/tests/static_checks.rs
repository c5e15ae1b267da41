//! The files of `monitoring/` checked with the real tools, no server started: `promtool`
//! (the Prometheus config, every rule file and every rule test of both presets:
//! `prometheus/rules/` and the generated `promclient/rules/`), `monitoring/mixin/generate.sh --check` (the generated files are up
//! to date), `docker-compose config -q`, `amtool check-config`, and the alerts' own rules:
//! summary, description and runbook annotations, a runbook that is a section of
//! `monitoring/README.md`, a `page` or `ticket` severity, and a rule test where each alert
//! fires and one where it stays quiet.
//!
//! The rule files are globbed (`*/rules/*.rules.yml`, `*.test.yml`): a file added
//! or merged there is checked without a change here. Each failed command's output is in
//! the failure message. Needs `promtool`, `amtool`, `jsonnet` and `docker-compose` from
//! Debian; fails naming the install command when one is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use monitoring_checks::stack::{jsonnet, monitoring, require, rule_files, run};
use serde_json::Value;

/// Runs `command`, prints its output, and fails with it when the command fails.
fn check(command: &mut Command) {
    match run(command) {
        Ok(output) => println!("{command:?}\n{output}"),
        Err(failure) => panic!("{failure}"),
    }
}

/// `path` read as YAML.
fn yaml(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file of a folder has a name")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn the_tools_are_installed() {
    require(&["promtool", "amtool", "jsonnet", "docker-compose"]);
    for (tool, arg) in [
        ("promtool", "--version"),
        ("amtool", "--version"),
        ("jsonnet", "--version"),
        ("docker-compose", "version"),
    ] {
        let output = run(Command::new(tool).arg(arg)).unwrap_or_else(|e| panic!("{e}"));
        println!("{}", output.lines().next().unwrap_or_default());
    }
}

#[test]
fn promtool_checks_the_prometheus_config() {
    require(&["promtool"]);
    check(
        Command::new("promtool")
            .args(["check", "config"])
            .arg(monitoring().join("prometheus/prometheus.yml")),
    );
}

/// The rule folders: the default preset's and the PromClient one's (generated).
const RULE_FOLDERS: [&str; 2] = ["prometheus/rules", "promclient/rules"];

#[test]
fn promtool_checks_every_rule_file() {
    require(&["promtool"]);
    for folder in RULE_FOLDERS {
        let files = rule_files(folder, ".rules.yml");
        assert!(!files.is_empty(), "no monitoring/{folder}/*.rules.yml");
        check(
            Command::new("promtool")
                .args(["check", "rules"])
                .args(&files),
        );
    }
}

#[test]
fn the_rule_tests_pass() {
    require(&["promtool"]);
    for folder in RULE_FOLDERS {
        let files: Vec<String> = rule_files(folder, ".test.yml")
            .iter()
            .map(|f| file_name(f))
            .collect();
        assert!(!files.is_empty(), "no monitoring/{folder}/*.test.yml");
        // In the rules folder: the tests name their rule files relative to it.
        check(
            Command::new("promtool")
                .current_dir(monitoring().join(folder))
                .args(["test", "rules"])
                .args(&files),
        );
    }
}

#[test]
fn the_files_generated_from_the_mixin_are_up_to_date() {
    require(&["jsonnet"]);
    check(Command::new(monitoring().join("mixin/generate.sh")).arg("--check"));
}

/// `mixin/yaml.libsonnet` writes what `std.manifestYamlDoc` writes, on the shapes the rule
/// files have and on those they do not have yet.
#[test]
fn the_mixins_yaml_writer_writes_what_std_manifest_yaml_doc_writes() {
    let value = r#"{
        groups: [{ name: 'a', rules: [{ expr: 'sum(x{a="b"})\n/\n2\n', 'for': '5m', labels: {} }] }],
        empty: [], none: null, yes: true, no: false, n: 0.25, big: 1e21, negative: -3,
        nested: [[1, [2, []]], [{ a: { b: [] } }], {}],
        'needs quotes': 'tab\t, quote ", backslash \\, \u0007, é → …',
        'true': 'a reserved key', '': 'an empty key', multi: 'no final newline\nhere',
        blank: '', lines: '\n\n',
    }"#;
    let expr = format!(
        "local v = {value}; local ours = (import 'mixin/yaml.libsonnet')(v); \
         local theirs = std.manifestYamlDoc(v, indent_array_in_object=true, quote_keys=false); \
         if ours == theirs then 'same' else 'ours:\n' + ours + '\nstd:\n' + theirs"
    );
    assert_eq!(jsonnet(&["-S", "-e", &expr]).trim(), "same");
}

#[test]
fn the_compose_file_is_valid() {
    require(&["docker-compose"]);
    check(
        Command::new("docker-compose")
            .arg("-f")
            .arg(monitoring().join("docker-compose.yml"))
            .args(["config", "-q"]),
    );
}

#[test]
fn amtool_checks_the_alertmanager_config() {
    require(&["amtool"]);
    check(
        Command::new("amtool")
            .arg("check-config")
            .arg(monitoring().join("alertmanager/alertmanager.yml")),
    );
}

/// The anchor GitHub gives a heading: lower case, every character that is not a letter,
/// a digit, `-` or `_` dropped, each space a `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of the headings of a Markdown page, as GitHub makes them: a second heading
/// with the same text gets `-1`, a third `-2`; lines in fenced code blocks are no headings.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let hashes = line.len() - line.trim_start_matches('#').len();
        if fenced || !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = anchor(&line[hashes..]);
        let n = seen.entry(base.clone()).or_default();
        anchors.insert(if *n == 0 { base } else { format!("{base}-{n}") });
        *n += 1;
    }
    anchors
}

#[test]
fn anchors_follow_github() {
    let page = "# Tests\n## Alerts and runbooks\n### `Foo` (bar)!\n```sh\n# not a heading\n```\n## Tests\n#nospace\n";
    assert_eq!(
        anchors(page),
        BTreeSet::from([
            "tests".to_owned(),
            "alerts-and-runbooks".to_owned(),
            "foo-bar".to_owned(),
            "tests-1".to_owned(),
        ])
    );
}

#[test]
fn every_alert_has_annotations_a_runbook_section_a_severity_and_two_test_cases() {
    let readme = fs::read_to_string(monitoring().join("README.md")).expect("monitoring/README.md");
    let sections = anchors(&readme);
    let mut alerts: BTreeMap<String, Value> = BTreeMap::new();
    for file in rule_files("prometheus/rules", ".rules.yml") {
        for group in yaml(&file)["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                if let Some(name) = rule["alert"].as_str() {
                    alerts.insert(name.to_owned(), rule.clone());
                }
            }
        }
    }
    assert!(
        !alerts.is_empty(),
        "no alert in monitoring/prometheus/rules/"
    );
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for file in rule_files("prometheus/rules", ".test.yml") {
        for test in yaml(&file)["tests"].as_array().into_iter().flatten() {
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap_or_default().to_owned();
                let firing = case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
                if firing {
                    fires.insert(name);
                } else {
                    quiet.insert(name);
                }
            }
        }
    }
    let mut errors = Vec::new();
    for (name, rule) in &alerts {
        let annotations = &rule["annotations"];
        for key in ["summary", "description", "runbook"] {
            if annotations[key].as_str().is_none_or(str::is_empty) {
                errors.push(format!("{name}: no {key} annotation"));
            }
        }
        let runbook = annotations["runbook"].as_str().unwrap_or_default();
        let section = runbook.rsplit_once('#').map_or("", |(_, anchor)| anchor);
        if !runbook.contains("monitoring/README.md#") || !sections.contains(section) {
            errors.push(format!(
                "{name}: runbook {runbook:?} is not a section of monitoring/README.md"
            ));
        }
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        if !["page", "ticket"].contains(&severity) {
            errors.push(format!(
                "{name}: severity must be page or ticket, not {severity:?}"
            ));
        }
        if !fires.contains(name) {
            errors.push(format!("{name}: no test case where it fires"));
        }
        if !quiet.contains(name) {
            errors.push(format!("{name}: no test case where it stays quiet"));
        }
    }
    assert!(errors.is_empty(), "alerts:\n  {}", errors.join("\n  "));
    println!(
        "{} alerts, each with summary, description, a runbook section, a firing and a quiet test case",
        alerts.len()
    );
}

/// The port `prometheus.yml` scrapes the invoicing replicas on is the one the app's image
/// serves `/metrics` on (`METRICS_ADDR` in the Dockerfile), not its API's (`PORT`), which
/// does not serve it; and the compose file publishes that port.
#[test]
fn prometheus_scrapes_the_port_the_image_serves_metrics_on() {
    let dockerfile =
        fs::read_to_string(monitoring().join("Dockerfile")).expect("monitoring/Dockerfile");
    let env = |name: &str| -> String {
        let prefix = format!("{name}=");
        dockerfile
            .split_whitespace()
            .find_map(|word| word.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name} in monitoring/Dockerfile's ENV"))
            .to_owned()
    };
    let metrics_addr = env("METRICS_ADDR");
    let (host, metrics_port) = metrics_addr
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("METRICS_ADDR={metrics_addr} is not host:port"));
    assert_eq!(host, "0.0.0.0", "reachable from Prometheus's container");
    assert_ne!(metrics_port, env("PORT"), "/metrics on a port of its own");

    let prometheus = yaml(&monitoring().join("prometheus/prometheus.yml"));
    let job = prometheus["scrape_configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|job| job["job_name"] == "invoicing")
        .expect("an invoicing job in prometheus.yml");
    let scraped: Vec<String> = job["dns_sd_configs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|sd| sd["port"].to_string())
        .collect();
    assert_eq!(scraped, [metrics_port], "{job}");

    let compose = yaml(&monitoring().join("docker-compose.yml"));
    let published: Vec<&str> = compose["services"]["app"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        published
            .iter()
            .any(|mapping| mapping.ends_with(&format!(":{metrics_port}"))),
        "the app's metrics port is published: {published:?}"
    );
}
