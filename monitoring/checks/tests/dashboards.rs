//! Every Grafana dashboard of `monitoring/grafana/dashboards/` is checked without a server:
//! each panel expression and each variable's selector parses as PromQL once the Grafana
//! variables are replaced by plausible values, and the dashboards keep the rules of
//! `monitoring/README.md` (provisioned datasource uid, units, `$__rate_interval`, no
//! import placeholders). `monitoring/test.sh` runs the same expressions against a real
//! Prometheus.

use std::collections::BTreeMap;
use std::path::Path;

use monitoring_checks::dashboards::{self, Dashboard, load};

/// The uid of the datasource provisioned in `grafana/provisioning/datasources/`.
const DATASOURCE_UID: &str = "prometheus";

/// Grafana variables and the values they are replaced with, longest names first so that
/// `$__rate_interval` is not read as `$__rate` followed by text.
const VARIABLES: &[(&str, &str)] = &[
    ("$__rate_interval", "1m"),
    ("$__interval", "15s"),
    ("$__range", "1h"),
    ("$instance", "10.0.0.2:3000"),
    ("$route", "/api/invoices/{id}"),
    ("$job", "invoicing"),
];

fn dashboards() -> Vec<Dashboard> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../grafana/dashboards");
    let dashboards = load(&dir);
    assert!(
        dashboards.len() >= 2,
        "expected the Service overview and Runtime dashboards in {}",
        dir.display()
    );
    dashboards
}

fn substitute(expr: &str) -> String {
    let values: BTreeMap<String, String> = VARIABLES
        .iter()
        .map(|(name, value)| (name[1..].to_owned(), (*value).to_owned()))
        .collect();
    dashboards::substitute(expr, &values)
}

fn parse(expr: &str) -> Result<(), String> {
    let substituted = substitute(expr);
    if substituted.contains('$') {
        return Err(format!("unknown variable in {substituted}"));
    }
    promql_parser::parser::parse(&substituted)
        .map(drop)
        .map_err(|e| format!("{e}\n    in {substituted}"))
}

/// The range of every `rate(…)`/`irate(…)` call in `expr`, as written.
fn rate_ranges(expr: &str) -> Vec<String> {
    let mut ranges = Vec::new();
    let bytes = expr.as_bytes();
    let mut from = 0;
    while let Some(found) = expr[from..].find("rate(") {
        let open = from + found + "rate".len();
        let mut depth = 0;
        let mut end = open;
        for (i, &b) in bytes.iter().enumerate().skip(open) {
            match b {
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = i;
                break;
            }
        }
        let call = &expr[open..=end];
        let mut rest = call;
        while let Some(start) = rest.find('[') {
            let close = rest[start..].find(']').expect("a closed range") + start;
            ranges.push(rest[start + 1..close].to_owned());
            rest = &rest[close + 1..];
        }
        from = open;
    }
    ranges
}

#[test]
fn every_panel_expression_parses_as_promql() {
    let mut failures = Vec::new();
    let mut count = 0;
    for dashboard in dashboards() {
        for panel in dashboard.panels() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                count += 1;
                if let Err(e) = parse(expr) {
                    failures.push(format!("{} / {}: {e}", dashboard.file, panel["title"]));
                }
            }
        }
    }
    assert!(count >= 20, "only {count} expressions found");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_variable_selector_parses_as_promql() {
    let mut failures = Vec::new();
    for dashboard in dashboards() {
        let variables = dashboard.json["templating"]["list"].as_array().unwrap();
        let names: Vec<&str> = variables
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        for wanted in ["job", "instance"] {
            if !names.contains(&wanted) {
                failures.push(format!("{}: no ${wanted} variable", dashboard.file));
            }
        }
        for variable in variables {
            let query = variable["query"]["query"]
                .as_str()
                .or(variable["query"].as_str())
                .unwrap_or_default();
            let Some(args) = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
            else {
                failures.push(format!(
                    "{}: {query} is not label_values(…)",
                    dashboard.file
                ));
                continue;
            };
            let selector = args
                .rsplit_once(',')
                .map_or(args, |(selector, _label)| selector);
            if let Err(e) = parse(selector) {
                failures.push(format!("{} / ${}: {e}", dashboard.file, variable["name"]));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn service_overview_has_a_route_variable() {
    let service = dashboards()
        .into_iter()
        .find(|d| d.json["title"] == "Service overview")
        .expect("the Service overview dashboard");
    let variables = service.json["templating"]["list"].as_array().unwrap();
    assert!(variables.iter().any(|v| v["name"] == "route"));
}

#[test]
fn dashboards_follow_the_house_rules() {
    let mut failures = Vec::new();
    for dashboard in dashboards() {
        let file = &dashboard.file;
        if dashboard.json.get("__inputs").is_some() || dashboard.text.contains("${DS_") {
            failures.push(format!("{file}: import placeholders (__inputs, ${{DS_…}})"));
        }
        if dashboard.json["uid"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            failures.push(format!("{file}: no fixed uid"));
        }
        for panel in dashboard.panels() {
            if panel["type"] == "row" {
                continue;
            }
            let title = &panel["title"];
            if panel["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
            {
                failures.push(format!("{file} / {title}: no unit"));
            }
            if panel["description"].as_str().unwrap_or_default().is_empty() {
                failures.push(format!("{file} / {title}: no description"));
            }
            let sources = std::iter::once(&panel["datasource"]).chain(
                panel["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| &t["datasource"]),
            );
            for source in sources {
                if source["uid"] != DATASOURCE_UID {
                    failures.push(format!("{file} / {title}: datasource {source}"));
                }
            }
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                for range in rate_ranges(expr) {
                    if range != "$__rate_interval" {
                        failures.push(format!(
                            "{file} / {title}: rate over [{range}], not [$__rate_interval]"
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_checks_catch_mistakes() {
    assert!(parse("sum by (le) (rate(x_bucket{job=~\"$job\"}[$__rate_interval]))").is_ok());
    assert!(parse("sum by (le) (rate(x_bucket{job=~\"$job\"}[$__rate_interval])").is_err());
    assert!(parse("rate(x[$__unknown])").is_err());
    assert_eq!(
        rate_ranges("sum(rate(a[5m])) / sum(irate(b{c=\"d\"}[$__rate_interval]))"),
        ["5m", "$__rate_interval"]
    );
    assert_eq!(rate_ranges("changes(a[$__range])"), Vec::<String>::new());
}
