//! The monitoring stack end to end on 127.0.0.1, without Docker: the PDP, the invoicing app
//! submitting to it, a real Alertmanager, and a real Prometheus whose configuration is the
//! shipped `prometheus/prometheus.yml` with the targets rewritten to the test's ports, 1 s
//! intervals, absolute rule file paths and the test's Alertmanager. `loadgen` drives
//! traffic (20 s at 100 requests per second; `LOAD_SECONDS` overrides the duration), then
//! two sellers with one SIRET issue the same invoice, which the PDP refuses as a duplicate.
//!
//! Through Prometheus's HTTP API, once it has scraped the last requests and evaluated every
//! rule group after that: the targets are up and Alertmanager is active; every dashboard
//! variable offers values and every panel query returns series
//! ([`dashboards::run_against`], the walk the other tests share); every rule has health
//! `ok`; the SLO rules give one error budget per objective the app declares (7), error
//! ratios for the routes loadgen drives and none for routes without an objective. It
//! prints the alerts firing at the end.
//!
//! It runs twice: with the app's default OpenTelemetry names against `prometheus/rules/`
//! and `grafana/dashboards/`, and with `METRICS_NAMING=promclient` against
//! `promclient/rules/` and `promclient/dashboards/` (the gRPC dashboard is shared).
//!
//! Needs `prometheus`, `promtool` and `prometheus-alertmanager` from Debian; fails naming
//! the install command when one is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use monitoring_checks::dashboards;
use monitoring_checks::stack::{
    INVOICING_OBJECTIVES, Process, PromApi, eventually, example_binary, exposition_sum, free_port,
    get, issue_duplicate_invoices, monitoring, require, run, start_alertmanager, start_invoicing,
    value,
};
use serde_json::{Value, json};

/// The routes loadgen drives whose objectives must have an error ratio:
/// `(http_route, objective)`.
const MEASURED: &[(&str, &str)] = &[
    ("/api/invoices", "availability"),
    ("/api/invoices", "latency"),
    ("/api/invoices/{id}", "latency"),
];

/// The test's Prometheus configuration: `shipped` with 1 s intervals, the rule files as
/// absolute paths (relative to `monitoring/<rules_base>/`: `prometheus`, or `promclient` for
/// the PromClient rules), the test's Alertmanager, and each job's targets replaced by the
/// address `targets` gives it.
///
/// # Errors
///
/// When the shipped file has a job that `targets` does not know.
fn test_config(
    shipped: &Value,
    rules_base: &str,
    targets: &BTreeMap<&str, String>,
    alertmanager: &str,
) -> Result<Value, String> {
    let mut config = shipped.clone();
    for key in ["scrape_interval", "scrape_timeout", "evaluation_interval"] {
        config["global"][key] = json!("1s");
    }
    let base = monitoring().join(rules_base);
    let rule_files: Vec<String> = config["rule_files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|file| {
            base.join(file.as_str().unwrap_or_default())
                .display()
                .to_string()
        })
        .collect();
    config["rule_files"] = json!(rule_files);
    config["alerting"]["alertmanagers"] =
        json!([{"static_configs": [{"targets": [alertmanager]}]}]);
    for scrape in config["scrape_configs"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        let job = scrape["job_name"].as_str().unwrap_or_default().to_owned();
        let target = targets.get(job.as_str()).ok_or_else(|| {
            format!(
                "the end-to-end test knows no target for job {job:?} of prometheus.yml: add it to end_to_end.rs"
            )
        })?;
        let scrape = scrape
            .as_object_mut()
            .ok_or_else(|| format!("job {job:?} is not a mapping"))?;
        scrape.retain(|key, _| !key.ends_with("_sd_configs") && key != "static_configs");
        scrape.insert(
            "static_configs".into(),
            json!([{"targets": [target.as_str()]}]),
        );
    }
    Ok(config)
}

#[test]
fn the_test_config_refuses_an_unknown_job() {
    let shipped = json!({
        "global": {}, "rule_files": ["rules/*.rules.yml"], "alerting": {},
        "scrape_configs": [
            {"job_name": "invoicing", "dns_sd_configs": [{"names": ["app"]}]},
            {"job_name": "billing", "static_configs": [{"targets": ["billing:80"]}]},
        ],
    });
    let known = BTreeMap::from([("invoicing", "127.0.0.1:1".to_owned())]);
    let error = test_config(&shipped, "prometheus", &known, "127.0.0.1:2").unwrap_err();
    assert!(error.contains("\"billing\""), "{error}");
    let known = BTreeMap::from([
        ("invoicing", "127.0.0.1:1".to_owned()),
        ("billing", "127.0.0.1:3".to_owned()),
    ]);
    let config =
        test_config(&shipped, "prometheus", &known, "127.0.0.1:2").expect("every job known");
    assert_eq!(
        config["scrape_configs"][0],
        json!({"job_name": "invoicing", "static_configs": [{"targets": ["127.0.0.1:1"]}]})
    );
    assert_eq!(config["global"]["evaluation_interval"], "1s");
    assert!(
        config["rule_files"][0]
            .as_str()
            .is_some_and(|f| f.starts_with('/') && f.ends_with("prometheus/rules/*.rules.yml"))
    );
}

/// A naming preset of the app (`METRICS_NAMING`) and the monitoring generated for it.
#[derive(Clone, Copy, Debug)]
enum Preset {
    /// OpenTelemetry names: `prometheus/rules/`, `grafana/dashboards/`.
    Otel,
    /// PromClient names: `promclient/rules/`, `promclient/dashboards/` and the gRPC
    /// dashboard of `grafana/dashboards/` (its names are the same in both).
    PromClient,
}

impl Preset {
    fn env(self) -> &'static str {
        match self {
            Self::Otel => "otel",
            Self::PromClient => "promclient",
        }
    }

    fn rules_base(self) -> &'static str {
        match self {
            Self::Otel => "prometheus",
            Self::PromClient => "promclient",
        }
    }

    fn route_label(self) -> &'static str {
        match self {
            Self::Otel => "http_route",
            Self::PromClient => "route",
        }
    }

    fn dashboards(self) -> Vec<dashboards::Dashboard> {
        let shared = dashboards::load(&monitoring().join("grafana/dashboards"));
        match self {
            Self::Otel => shared,
            Self::PromClient => {
                let mut all = dashboards::load(&monitoring().join("promclient/dashboards"));
                all.extend(shared.into_iter().filter(|d| d.file == "rpc.json"));
                all
            }
        }
    }
}

/// The label `name` of a result series.
fn label<'a>(series: &'a Value, name: &str) -> &'a str {
    series["metric"][name].as_str().unwrap_or_default()
}

#[test]
fn prometheus_scrapes_the_apps_and_every_dashboard_query_and_rule_answers() {
    end_to_end(Preset::Otel);
}

/// The same with the app's metrics named as PromClient names them, the PromClient rules
/// and the PromClient dashboards.
#[test]
fn the_promclient_rules_and_dashboards_answer_for_a_promclient_app() {
    end_to_end(Preset::PromClient);
}

fn end_to_end(preset: Preset) {
    println!("\n  naming preset: {preset:?}");
    require(&["prometheus", "promtool", "prometheus-alertmanager"]);
    let started = Instant::now();
    let load_seconds: u64 = std::env::var("LOAD_SECONDS")
        .ok()
        .map(|s| s.parse().expect("LOAD_SECONDS is a number of seconds"))
        .unwrap_or(20);
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dir = tmp.path();
    let wait = Duration::from_secs(60);
    let (app_port, metrics_port, pdp_port, prom_port, am_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    // Prometheus scrapes the app's metrics listener (METRICS_ADDR), not its API.
    let app_api = format!("127.0.0.1:{app_port}");
    let app_instance = format!("127.0.0.1:{metrics_port}");
    let pdp_instance = format!("127.0.0.1:{pdp_port}");

    // The shipped configuration, rewritten for this test: checked first, so that an
    // unknown job fails before anything starts.
    let shipped_path = monitoring().join("prometheus/prometheus.yml");
    let shipped: Value = yaml_serde::from_str(
        &fs::read_to_string(&shipped_path).expect("monitoring/prometheus/prometheus.yml"),
    )
    .expect("prometheus.yml is YAML");
    let targets = BTreeMap::from([
        ("prometheus", format!("127.0.0.1:{prom_port}")),
        ("invoicing", app_instance.clone()),
        ("pdp", pdp_instance.clone()),
    ]);
    let config = test_config(
        &shipped,
        preset.rules_base(),
        &targets,
        &format!("127.0.0.1:{am_port}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let config_path = dir.join("prometheus.yml");
    // JSON is YAML: Prometheus reads this file as it is.
    fs::write(&config_path, config.to_string()).expect("the test's prometheus.yml");
    run(Command::new("promtool")
        .args(["check", "config"])
        .arg(&config_path))
    .unwrap_or_else(|e| panic!("the generated prometheus.yml: {e}"));
    println!("  rule files: {}", config["rule_files"]);

    let mut pdp = Process::start(
        "pdp",
        dir,
        Command::new(example_binary("pdp"))
            .env("PDP_BIND", &pdp_instance)
            .env("PDP_STEP", "20"),
    );
    pdp.wait_for(&format!("http://{pdp_instance}/metrics"), wait);
    let app = start_invoicing(
        "invoicing",
        dir,
        app_port,
        metrics_port,
        Some(pdp_port),
        &[("METRICS_NAMING", preset.env())],
    );
    let alertmanager = start_alertmanager(dir, am_port);
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let mut prometheus = Process::start(
        "prometheus",
        dir,
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
    );
    prometheus.wait_for(&format!("{prom_url}/-/ready"), wait);
    let api = PromApi::new(prom_url);

    println!("\n  loadgen for {load_seconds} s at 100 requests per second");
    let mut loadgen = Process::start(
        "loadgen",
        dir,
        Command::new(example_binary("loadgen"))
            .args(["--url", &format!("http://{app_api}")])
            .args(["--duration", &format!("{load_seconds}s"), "--rate", "100"]),
    );
    let status = loadgen.finish(Duration::from_secs(load_seconds + 30));
    assert!(status.success(), "loadgen: {status}\n{}", loadgen.tail(20));
    println!("{}", loadgen.tail(5));

    println!("\n  invoices the PDP refuses as duplicates (two sellers, one SIRET):");
    let statuses = issue_duplicate_invoices(app_port);
    println!("    pdp_status: {statuses:?}");
    let pdp_metrics = get(&format!("http://{pdp_instance}/metrics")).expect("the PDP's /metrics");
    let app_metrics = get(&format!("http://{app_instance}/metrics")).expect("the app's /metrics");
    for (who, text, family) in [
        (
            "the PDP",
            &pdp_metrics,
            "rpc_server_call_duration_seconds_count",
        ),
        (
            "the app",
            &app_metrics,
            "rpc_client_call_duration_seconds_count",
        ),
    ] {
        println!("  {who}'s /metrics:");
        for line in text.lines().filter(|line| line.starts_with(family)) {
            println!("    {line}");
        }
    }

    // Prometheus has scraped the last calls: its totals are the apps' own.
    eventually(Duration::from_secs(30), || {
        for (expr, text, family) in [
            (
                r#"sum(rpc_server_call_duration_seconds_count{job="pdp"})"#,
                &pdp_metrics,
                "rpc_server_call_duration_seconds_count",
            ),
            (
                r#"sum(rpc_client_call_duration_seconds_count{job="invoicing"})"#,
                &app_metrics,
                "rpc_client_call_duration_seconds_count",
            ),
        ] {
            let own = exposition_sum(text, family, &[]);
            let scraped = api.scalar(expr).unwrap_or(0.0);
            if own == 0.0 || scraped != own {
                return Err(format!("{expr} is {scraped}, the /metrics say {own}"));
            }
        }
        Ok(())
    });
    api.wait_for_two_samples_of_the_call_series(Duration::from_secs(30));
    // And every rule group has been evaluated since.
    let now = api.scalar("vector(time())").expect("time() is a number");
    eventually(Duration::from_secs(30), || {
        let oldest = api
            .scalar("min(prometheus_rule_group_last_evaluation_timestamp_seconds)")
            .unwrap_or(0.0);
        if oldest > now {
            Ok(())
        } else {
            Err(format!(
                "a rule group was last evaluated at {oldest}, before {now}"
            ))
        }
    });

    let mut failures = Vec::new();

    // Targets.
    let active = api.api("targets", &[]).unwrap_or_else(|e| panic!("{e}"));
    let active = active["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    println!();
    for target in &active {
        let job = target["labels"]["job"].as_str().unwrap_or_default();
        let instance = target["labels"]["instance"].as_str().unwrap_or_default();
        let health = target["health"].as_str().unwrap_or_default();
        println!("  target {job:<11} {instance:<16} {health}");
        if health != "up" {
            failures.push(format!("target {job} is {health}: {}", target["lastError"]));
        }
    }
    let jobs: BTreeSet<&str> = active
        .iter()
        .filter_map(|target| target["labels"]["job"].as_str())
        .collect();
    for job in ["invoicing", "pdp"] {
        if !jobs.contains(job) {
            failures.push(format!("no {job} target"));
        }
    }
    let up = api.query(r#"up{job="invoicing"} == 1"#);
    if up.len() != 1 {
        failures.push(format!(
            r#"up{{job="invoicing"}} == 1 returned {} series"#,
            up.len()
        ));
    }
    let alertmanagers = api
        .api("alertmanagers", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    if alertmanagers["activeAlertmanagers"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        failures.push(format!(
            "prometheus has no active alertmanager: {alertmanagers}"
        ));
    }

    // Dashboards: every variable, then every panel query with the variables set.
    let instances = BTreeMap::from([
        ("invoicing".to_owned(), app_instance.clone()),
        ("pdp".to_owned(), pdp_instance.clone()),
    ]);
    failures.extend(dashboards::run_against(
        &api,
        &preset.dashboards(),
        &instances,
        "10s",
    ));

    // Rules.
    let groups = api.api("rules", &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut rules = 0;
    println!();
    for group in groups["groups"].as_array().into_iter().flatten() {
        let name = group["name"].as_str().unwrap_or_default();
        let list = group["rules"].as_array().cloned().unwrap_or_default();
        let mut healths = BTreeSet::new();
        for rule in &list {
            rules += 1;
            let health = rule["health"].as_str().unwrap_or_default();
            healths.insert(health.to_owned());
            if health != "ok" {
                failures.push(format!(
                    "rule {} in {name}: health {health} {}",
                    rule["name"], rule["lastError"]
                ));
            }
        }
        println!(
            "  rule group {name:<18} {:>2} rules, health: {}",
            list.len(),
            healths.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    if rules == 0 {
        failures.push("prometheus loaded no rule".into());
    }

    // The objectives the app declares, through the generic SLO rules: one budget per
    // declared objective, error ratios for those of the routes loadgen drives, none for
    // the others.
    println!();
    let budgets = api.query(r#"job_route:slo_error_budget:ratio{job="invoicing"}"#);
    let mut declared = BTreeSet::new();
    for series in &budgets {
        let (route, objective) = (
            label(series, preset.route_label()),
            label(series, "objective"),
        );
        println!(
            "  objective {route:<32} {objective:<13} budget {:.6}",
            value(series, "budget")
        );
        declared.insert((route.to_owned(), objective.to_owned()));
    }
    if budgets.len() != INVOICING_OBJECTIVES {
        failures.push(format!(
            "expected the app's {INVOICING_OBJECTIVES} objectives, the rules see {}: {declared:?}",
            budgets.len()
        ));
    }
    let ratios = api.query(r#"job_route:slo_errors:ratio_rate5m{job="invoicing"}"#);
    let mut measured = BTreeSet::new();
    for series in &ratios {
        let (route, objective) = (
            label(series, preset.route_label()),
            label(series, "objective"),
        );
        println!(
            "  bad ratio 5m {route:<29} {objective:<13} {:.4}",
            value(series, "ratio")
        );
        measured.insert((route.to_owned(), objective.to_owned()));
    }
    for (route, objective) in MEASURED {
        if !measured.contains(&((*route).to_owned(), (*objective).to_owned())) {
            failures.push(format!(
                "no job_route:slo_errors:ratio_rate5m for ({route}, {objective}): {measured:?}"
            ));
        }
    }
    let undeclared: Vec<_> = measured.difference(&declared).collect();
    if !undeclared.is_empty() {
        failures.push(format!(
            "error ratios for routes without an objective: {undeclared:?}"
        ));
    }
    let alerts = api.api("alerts", &[]).unwrap_or_else(|e| panic!("{e}"));
    let firing: BTreeSet<&str> = alerts["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|alert| alert["state"] == "firing")
        .filter_map(|alert| alert["labels"]["alertname"].as_str())
        .collect();
    println!(
        "  {rules} rules evaluated; alerts firing now: {}",
        if firing.is_empty() {
            "none".to_owned()
        } else {
            firing.into_iter().collect::<Vec<_>>().join(", ")
        }
    );

    assert!(
        failures.is_empty(),
        "end to end:\n  {}",
        failures.join("\n  ")
    );
    println!(
        "\n  end to end: all checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    drop((prometheus, alertmanager, app, pdp));
}
