//! The scale-out path on real engines, on 127.0.0.1: three replicas of the invoicing app
//! and two of the PDP, scraped by two Prometheus servers that shard the targets between
//! them (`hashmod` relabelling on the address), each remote-writing to one central
//! VictoriaMetrics; `vmalert` evaluates the shipped recording and SLO rules against it.
//!
//! Through the central store's API, after the traffic stops: every target is up and was
//! scraped by exactly the shard `hashmod` gives it; the request counters per route are the
//! sums of the replicas' own `/metrics`; every dashboard query returns series; the SLO rules
//! give one error budget per declared objective (7, not one per replica). It prints the
//! figures `monitoring/README.md` quotes: series per replica, samples per second ingested,
//! scrape duration per target.
//!
//! Needs `prometheus`, `victoria-metrics` (with `vmalert`) and `prometheus-alertmanager`
//! from Debian; fails naming the install command when one is missing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use monitoring_checks::dashboards;
use monitoring_checks::stack::{
    INVOICING_OBJECTIVES, Process, PromApi, eventually, example_binary, exposition_sum, free_port,
    get, issue_duplicate_invoices, monitoring, require, start_alertmanager,
};
use serde_json::{Value, json};

const APPS: usize = 3;
const PDPS: usize = 2;
const SHARDS: u64 = 2;
/// How long each replica gets traffic, and at what rate (requests per second).
const LOAD: &str = "10s";
const RATE: &str = "40";

/// The shard Prometheus's `hashmod` relabelling gives `address` (model/relabel: MD5, the
/// last 8 bytes as a big-endian integer, modulo the shard count).
fn hashmod(address: &str, modulus: u64) -> u64 {
    let digest = Md5::digest(address.as_bytes());
    let last: [u8; 8] = digest[8..].try_into().expect("MD5 has 16 bytes");
    u64::from_be_bytes(last) % modulus
}

/// Ports for the apps' metrics listeners (the targets) and the PDPs such that each shard
/// scrapes at least one app.
fn ports() -> (Vec<u16>, Vec<u16>) {
    loop {
        let apps: Vec<u16> = (0..APPS).map(|_| free_port()).collect();
        let pdps: Vec<u16> = (0..PDPS).map(|_| free_port()).collect();
        let shards: Vec<u64> = apps
            .iter()
            .map(|port| hashmod(&format!("127.0.0.1:{port}"), SHARDS))
            .collect();
        let mut all = apps.clone();
        all.extend(&pdps);
        all.sort_unstable();
        all.dedup();
        if all.len() == APPS + PDPS && (0..SHARDS).all(|shard| shards.contains(&shard)) {
            return (apps, pdps);
        }
    }
}

/// The configuration of shard `shard`: both jobs with every target, of which `hashmod`
/// keeps this shard's, and a remote write to the central store. JSON is YAML.
fn scraper_config(shard: u64, apps: &[u16], pdps: &[u16], central: &str) -> Value {
    let targets = |ports: &[u16]| -> Vec<String> {
        ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect()
    };
    let sharded = |job: &str, ports: &[u16]| {
        json!({
            "job_name": job,
            "static_configs": [{"targets": targets(ports)}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "modulus": SHARDS,
                 "target_label": "__tmp_shard", "action": "hashmod"},
                {"source_labels": ["__tmp_shard"], "regex": shard.to_string(), "action": "keep"},
            ],
        })
    };
    json!({
        "global": {
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            // Which shard wrote a series: the central store keeps them apart.
            "external_labels": {"cluster": "local", "shard": shard.to_string()},
        },
        "scrape_configs": [sharded("invoicing", apps), sharded("pdp", pdps)],
        "remote_write": [{
            "url": format!("{central}/api/v1/write"),
            "queue_config": {"batch_send_deadline": "1s"},
        }],
    })
}

#[test]
fn sharded_prometheus_servers_remote_write_the_totals_of_all_replicas() {
    require(&[
        "prometheus",
        "victoria-metrics",
        "vmalert",
        "prometheus-alertmanager",
    ]);
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dir = tmp.path();
    let wait = Duration::from_secs(60);
    // Prometheus scrapes the apps' metrics listeners (METRICS_ADDR); loadgen calls their
    // APIs.
    let (app_ports, pdp_ports) = ports();
    let api_ports: Vec<u16> = (0..APPS).map(|_| free_port()).collect();

    // The central store and the rules evaluated against it.
    let vm_port = free_port();
    let central = format!("http://127.0.0.1:{vm_port}");
    let mut vm = Process::start(
        "victoria-metrics",
        dir,
        Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{vm_port}"))
            .arg(format!("-storageDataPath={}", dir.join("vm").display()))
            .arg("-retentionPeriod=1d")
            // Queries see samples as soon as they are written (the default hides the last
            // 30 s), and no cached result hides a newer one.
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache"),
    );
    vm.wait_for(&format!("{central}/health"), wait);
    let am_port = free_port();
    let alertmanager = start_alertmanager(dir, am_port);
    let vmalert_port = free_port();
    let mut vmalert_command = Command::new("vmalert");
    vmalert_command
        .arg(format!("-httpListenAddr=127.0.0.1:{vmalert_port}"))
        .arg(format!("-datasource.url={central}"))
        .arg(format!("-remoteWrite.url={central}"))
        .arg(format!("-notifier.url=http://127.0.0.1:{am_port}"))
        .arg("-evaluationInterval=1s");
    for rules in ["recording.rules.yml", "slo.rules.yml"] {
        vmalert_command.arg(format!(
            "-rule={}",
            monitoring().join("prometheus/rules").join(rules).display()
        ));
    }
    let mut vmalert = Process::start("vmalert", dir, &mut vmalert_command);
    vmalert.wait_for(&format!("http://127.0.0.1:{vmalert_port}/health"), wait);

    // The replicas: each app submits to one of the PDPs.
    let mut replicas = Vec::new();
    for (i, port) in pdp_ports.iter().enumerate() {
        let mut pdp = Process::start(
            &format!("pdp-{i}"),
            dir,
            Command::new(example_binary("pdp"))
                .env("PDP_BIND", format!("127.0.0.1:{port}"))
                .env("PDP_STEP", "20"),
        );
        pdp.wait_for(&format!("http://127.0.0.1:{port}/metrics"), wait);
        replicas.push(pdp);
    }
    for (i, port) in app_ports.iter().enumerate() {
        let data = dir.join(format!("app-{i}"));
        fs::create_dir_all(&data).expect("the app's data folder");
        let mut app = Process::start(
            &format!("invoicing-{i}"),
            dir,
            Command::new(example_binary("invoicing"))
                .env("BIND", "127.0.0.1")
                .env("PORT", api_ports[i].to_string())
                .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
                .env("PDP_ADDR", format!("127.0.0.1:{}", pdp_ports[i % PDPS]))
                .env(
                    "DATABASE_URL",
                    format!("sqlite://{}", data.join("invoicing.db").display()),
                )
                .env("UPLOADS_DIR", data.join("uploads"))
                .env("PDF_DIR", data.join("pdf-a3"))
                .env("RUST_LOG", "warn"),
        );
        app.wait_for(&format!("http://127.0.0.1:{}/health", api_ports[i]), wait);
        app.wait_for(&format!("http://127.0.0.1:{port}/metrics"), wait);
        replicas.push(app);
    }

    // The two scrapers.
    let mut scrapers = Vec::new();
    let mut scraper_urls = Vec::new();
    for shard in 0..SHARDS {
        let port = free_port();
        let config = dir.join(format!("shard-{shard}.yml"));
        fs::write(
            &config,
            scraper_config(shard, &app_ports, &pdp_ports, &central).to_string(),
        )
        .expect("the scraper's configuration");
        let mut prometheus = Process::start(
            &format!("prometheus-shard-{shard}"),
            dir,
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("tsdb-{shard}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        );
        let url = format!("http://127.0.0.1:{port}");
        prometheus.wait_for(&format!("{url}/-/ready"), wait);
        scrapers.push(prometheus);
        scraper_urls.push(url);
    }

    // Each target is scraped by the shard hashmod gives it, and by that shard only.
    let mut report = String::new();
    for (shard, url) in scraper_urls.iter().enumerate() {
        let api = PromApi::new(url.clone());
        let mut expected: Vec<String> = app_ports
            .iter()
            .chain(&pdp_ports)
            .map(|port| format!("127.0.0.1:{port}"))
            .filter(|address| hashmod(address, SHARDS) == shard as u64)
            .collect();
        expected.sort();
        // Up, not only discovered: the first scrape has happened.
        let active = eventually(wait, || {
            let targets = api.api("targets", &[])?;
            let mut up: Vec<String> = targets["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["health"] == "up")
                .map(|t| {
                    t["labels"]["instance"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect();
            up.sort();
            if up == expected {
                Ok(up)
            } else {
                Err(format!(
                    "shard {shard} scrapes {up:?}, hashmod gives it {expected:?}: {targets}"
                ))
            }
        });
        writeln!(report, "  shard {shard} scrapes {}", active.join(" ")).expect("a String");
    }
    print!("{report}");

    // Traffic to every app at once, then a reading of the samples ingested.
    let ingested = || -> f64 {
        let text = get(&format!("{central}/metrics")).expect("VictoriaMetrics's /metrics");
        exposition_sum(
            &text,
            "vm_rows_inserted_total",
            &[("type", "promremotewrite")],
        )
    };
    let before = (Instant::now(), ingested());
    let handles: Vec<_> = api_ports
        .iter()
        .map(|port| {
            let url = format!("http://127.0.0.1:{port}");
            thread::spawn(move || {
                Command::new(example_binary("loadgen"))
                    .args(["--url", &url, "--duration", LOAD, "--rate", RATE])
                    .output()
                    .expect("loadgen runs")
            })
        })
        .collect();
    for handle in handles {
        let output = handle.join().expect("the loadgen thread");
        assert!(
            output.status.success(),
            "loadgen failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let after = (Instant::now(), ingested());
    // Two sellers with one SIRET: the PDP behind the first app refuses the second invoice
    // as a duplicate, so that the gRPC dashboard has non-OK codes to show.
    let pdp_statuses = issue_duplicate_invoices(api_ports[0]);
    println!("\n  invoices submitted twice to the PDP: {pdp_statuses:?}");
    let samples_per_second = (after.1 - before.1) / (after.0 - before.0).as_secs_f64();

    // The central store's totals are the sums of the replicas' own counters, once the
    // last scrapes after the traffic have been written.
    let central_api = PromApi::new(central.clone());
    let replica_metrics = |ports: &[u16]| -> Vec<String> {
        ports
            .iter()
            .map(|port| get(&format!("http://127.0.0.1:{port}/metrics")).expect("/metrics"))
            .collect()
    };
    let routes = ["/api/invoices", "/api/invoices/{id}", "/api/clients"];
    let totals = eventually(Duration::from_secs(30), || {
        let texts = replica_metrics(&app_ports);
        let central_counts = central_api.by_label(
            r#"sum by (http_route) (http_server_request_duration_seconds_count{job="invoicing"})"#,
            "http_route",
        );
        let mut lines = Vec::new();
        for route in routes {
            let replicas: f64 = texts
                .iter()
                .map(|text| {
                    exposition_sum(
                        text,
                        "http_server_request_duration_seconds_count",
                        &[("http_route", route)],
                    )
                })
                .sum();
            let stored = central_counts.get(route).copied().unwrap_or(0.0);
            if replicas == 0.0 || stored != replicas {
                return Err(format!(
                    "{route}: the replicas' /metrics add up to {replicas}, the central store says {stored}"
                ));
            }
            lines.push(format!("  {route:<22} {replicas:>6} requests"));
        }
        let texts = replica_metrics(&pdp_ports);
        let replicas: f64 = texts
            .iter()
            .map(|text| exposition_sum(text, "rpc_server_call_duration_seconds_count", &[]))
            .sum();
        let stored = central_api
            .scalar(r#"sum(rpc_server_call_duration_seconds_count{job="pdp"})"#)
            .unwrap_or(0.0);
        if stored != replicas {
            return Err(format!(
                "PDP calls: the replicas' /metrics add up to {replicas}, the central store says {stored}"
            ));
        }
        lines.push(format!("  {:<22} {replicas:>6} calls", "PDP (gRPC)"));
        Ok(lines)
    });
    println!("\n  the central store's totals, equal to the sums of the replicas' /metrics:");
    for line in totals {
        println!("{line}");
    }
    let up = central_api.by_label("count by (job) (up == 1)", "job");
    assert_eq!(up.get("invoicing"), Some(&(APPS as f64)), "up: {up:?}");
    assert_eq!(up.get("pdp"), Some(&(PDPS as f64)), "up: {up:?}");

    // The SLO rules, evaluated by vmalert on the central store: one budget per objective
    // the app declares, whatever the number of replicas publishing it.
    let budgets = eventually(Duration::from_secs(30), || {
        let budgets = central_api.query(r#"job_route:slo_error_budget:ratio{job="invoicing"}"#);
        let ratios = central_api.query(r#"job_route:slo_errors:ratio_rate5m{job="invoicing"}"#);
        if budgets.len() != INVOICING_OBJECTIVES || ratios.is_empty() {
            return Err(format!(
                "expected the app's {INVOICING_OBJECTIVES} error budgets and error ratios, vmalert wrote {} budgets and {} ratios: {budgets:?}",
                budgets.len(),
                ratios.len()
            ));
        }
        Ok((budgets, ratios))
    });
    println!("\n  SLO rules on the central store (vmalert):");
    for series in budgets.1 {
        println!(
            "  bad ratio 5m {:<32} {:<13} {:.4}",
            series["metric"]["http_route"].as_str().unwrap_or_default(),
            series["metric"]["objective"].as_str().unwrap_or_default(),
            monitoring_checks::stack::value(&series, "ratio")
        );
    }
    assert_eq!(budgets.0.len(), INVOICING_OBJECTIVES);

    // Every dashboard query against the central store.
    central_api.wait_for_two_samples_of_the_call_series(Duration::from_secs(30));
    let instances = BTreeMap::from([
        (
            "invoicing".to_owned(),
            format!("127.0.0.1:{}", app_ports[0]),
        ),
        ("pdp".to_owned(), format!("127.0.0.1:{}", pdp_ports[0])),
    ]);
    let failures = dashboards::run_against(
        &central_api,
        &dashboards::load(&monitoring().join("grafana/dashboards")),
        &instances,
        "1m",
    );
    assert!(
        failures.is_empty(),
        "dashboards on the central store:\n  {}",
        failures.join("\n  ")
    );

    // The figures.
    println!("\n  figures (1 s scrape interval):");
    for target in central_api.query("scrape_samples_scraped") {
        let job = target["metric"]["job"].as_str().unwrap_or_default();
        let instance = target["metric"]["instance"].as_str().unwrap_or_default();
        let series = monitoring_checks::stack::value(&target, "scrape_samples_scraped");
        let duration = |function: &str| {
            central_api
                .scalar(&format!(
                    r#"{function}(scrape_duration_seconds{{instance="{instance}"}}[1m])"#
                ))
                .map_or(f64::NAN, |seconds| seconds * 1000.0)
        };
        println!(
            "  {job:<9} {instance:<16} {series:>5} series per scrape, scrape duration avg {:.1} ms, max {:.1} ms",
            duration("avg_over_time"),
            duration("max_over_time"),
        );
    }
    println!("  samples ingested by the central store: {samples_per_second:.0}/s");
    drop((scrapers, replicas, vmalert, alertmanager, vm));
}
