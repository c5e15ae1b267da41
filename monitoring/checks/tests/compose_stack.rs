//! The stack of `docker-compose.yml`, up in Docker the way a user brings it up, checked
//! through the real containers.
//!
//! From a copy of the workspace as a fresh clone holds it (git's files, no `target/`), with
//! `docker compose` where the plugin is installed and Debian's `docker-compose` otherwise:
//! `up -d --build`, every healthcheck waited for, then through the published ports:
//! Prometheus scrapes the app (found by DNS as `app`), the PDP (`pdp:50051`) and itself, and
//! sends to Alertmanager (`alertmanager:9093`), every target up; every rule group evaluated
//! and every rule healthy; the app answers on its published ports (the API, `/metrics`)
//! and submits invoices to the PDP by its service name. The app's container is then paused (frozen: its scrapes
//! time out) until `TargetDown` fires and Alertmanager has received it, and stopped:
//! Docker's DNS drops its record, the target disappears and `TargetMissing` is pending (it
//! fires after 5 minutes, too long to wait for here). `down -v` must leave no container,
//! volume or network of the project, and free the ports. The app's image, built from the
//! test's binaries under the compose file's name, is removed at the end.
//!
//! Images: the upstream ones when the engine has them or can pull them; when the pull
//! fails (no registry here), stand-ins under the same names, built from Debian (see
//! [`monitoring_checks::docker`]); the test prints which. Grafana has no Debian package:
//! its container is left out of this run (the other services are named on `up`'s command
//! line); its provisioning is
//! checked statically here (paths mounted, datasource pointing at `prometheus:9090`) and
//! its dashboards by `tests/dashboards.rs` and the end-to-end runs.
//!
//! The app image is built with the Dockerfile's `host` target (`APP_BUILD_TARGET=host`),
//! which takes binaries built on the host: the stand-in for the `rust` builder image (no
//! registry here, and a release compile in a container would take most of CI's time) is
//! the host's own toolchain, run as the Dockerfile's `build` stage runs it (`cargo build
//! --locked -p invoicing -p pdp --bins`) on the very build context Docker receives
//! (exported from a throwaway image): what `.dockerignore` hides is not there, and
//! `--locked` must hold. In the debug profile, whose dependencies CI has built already;
//! `APP_HOST_PROFILE=release` for the release one. `APP_BUILD_TARGET=runtime` builds the
//! user's default target instead, compiling in `rust:<version>-slim-bookworm` (stood in
//! for, when the pull fails, by the host's toolchain of that version and its registry
//! cache, offline): many minutes more.
//!
//! Starts `dockerd` when no engine answers (as root) and stops it at the end. Needs
//! `docker.io`, `docker-compose` and `debootstrap` from Debian: fails naming the install
//! command when one is missing. Uses the ports of the compose file (3010, 9110, 50051,
//! 9090, 9093 on 127.0.0.1): fails when one is taken. About 3 minutes with the images built,
//! 5 from none (debootstrap and the stand-ins, about 2 minutes).

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use monitoring_checks::docker::{self, Compose, Engine, INSTALL, fresh_clone};
use monitoring_checks::stack::{
    PromApi, eventually, get, issue_duplicate_invoices, monitoring, require_from, run,
};
use serde_json::Value;

/// The compose project of the test: not `monitoring`, the name a user's own
/// `docker compose -f monitoring/docker-compose.yml up` gets, so that the test never
/// touches a stack a user runs.
const PROJECT: &str = "towerprom-stack-check";

/// The services started: every one but Grafana.
const SERVICES: &[&str] = &["app", "pdp", "prometheus", "alertmanager"];

fn yaml(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The seconds since `start`, for the output.
fn secs(start: Instant) -> String {
    format!("{:.0} s", start.elapsed().as_secs_f64())
}

/// Brings the project down (`down -v`) when the test fails half-way, after printing what
/// compose says of its containers and their last log lines.
struct Teardown<'a> {
    compose: &'a Compose,
    /// The app's image, built by this run from its own binaries: removed, so that a
    /// user's `up` without `--build` never runs it.
    app_image: String,
    armed: bool,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if thread::panicking() {
            for args in [&["ps"][..], &["logs", "--no-color", "--tail=25"][..]] {
                match self.compose.run(args) {
                    Ok(out) | Err(out) => eprintln!("---- {}\n{out}", self.compose.display(args)),
                }
            }
        }
        if let Err(e) = self.compose.run(&["down", "-v", "--remove-orphans"]) {
            eprintln!("{e}");
        }
        let _ = docker::docker(&["rmi", &self.app_image]);
    }
}

#[test]
fn the_stack_comes_up_in_docker_and_alerts_reach_alertmanager() {
    let started = Instant::now();
    require_from(&["docker", "debootstrap", "git"], INSTALL);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let engine = Engine::ensure(dir.path());
    println!(
        "engine: Docker {} ({})",
        engine.version,
        if engine.started_here() {
            "dockerd started by this test, stopped at its end"
        } else {
            "already running"
        }
    );

    // The workspace as a fresh clone holds it, and the compose file in it.
    let clone = dir.path().join("clone");
    let files = fresh_clone(&clone);
    let file = clone.join("monitoring/docker-compose.yml");
    println!("fresh clone: {files} files copied to {}", clone.display());
    let compose_file = yaml(&file);
    check_grafana_provisioning(&compose_file);

    // The Dockerfile's target: `host` unless APP_BUILD_TARGET says `runtime` (the user's
    // default, a release compile in the Rust image: many minutes more).
    let target = std::env::var("APP_BUILD_TARGET").unwrap_or_else(|_| "host".to_owned());
    assert!(
        target == "host" || target == "runtime",
        "APP_BUILD_TARGET={target}: `host` or `runtime`"
    );
    let dockerfile = clone.join("monitoring/Dockerfile");
    let base = from_image(&dockerfile, "base");
    let rust = from_image(&dockerfile, "build");

    // The images: the runtime base of the Dockerfile, the Rust image when it compiles, the
    // services'.
    let mut images = vec![base.clone()];
    if target == "runtime" {
        images.push(rust.clone());
    }
    for service in ["prometheus", "alertmanager"] {
        let image = compose_file["services"][service]["image"]
            .as_str()
            .unwrap_or_else(|| panic!("services.{service}.image in the compose file"));
        images.push(image.to_owned());
    }
    println!("images ({}):", secs(started));
    let mut provenance = BTreeMap::new();
    for image in &images {
        let t = Instant::now();
        let source = docker::provide(image, dir.path());
        println!("  {image}: {source} [{}]", secs(t));
        provenance.insert(image.clone(), source);
    }
    if target == "host" {
        println!(
            "  {rust}: not used: the app image is built with the Dockerfile's `host` target, \
             from binaries the host's toolchain builds on the build context (next)"
        );
    }
    println!(
        "  {}: left out of this run (no Debian package to stand in for it)",
        compose_file["services"]["grafana"]["image"]
            .as_str()
            .unwrap_or("grafana")
    );

    let mut env = vec![("APP_BUILD_TARGET", target.clone())];
    if target == "host" {
        // The stand-in for the Rust builder: the `build` stage's command on the host, run
        // on the context Docker receives. Debug binaries unless APP_HOST_PROFILE says
        // otherwise: CI has built the dependencies in that profile already.
        let profile = std::env::var("APP_HOST_PROFILE").unwrap_or_else(|_| "debug".to_owned());
        let t = Instant::now();
        build_on_the_host(&clone, &base, &profile);
        println!(
            "app binaries: cargo build --locked -p invoicing -p pdp --bins (profile {profile}) \
             on the build context, {} ({})",
            run(Command::new("rustc").arg("--version"))
                .unwrap_or_default()
                .trim(),
            secs(t)
        );
        env.push(("APP_HOST_PROFILE", profile));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let compose = Compose::new(&file, PROJECT, &env);
    println!("compose: {}", compose.version);
    // Leftovers of an interrupted run of this test.
    compose
        .run(&["down", "-v", "--remove-orphans"])
        .unwrap_or_else(|e| panic!("{e}"));
    for port in [3010, 9110, 50051, 9090, 9093] {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "127.0.0.1:{port}, a port of the compose file, is taken: stop what listens \
             there (a stack of your own? `docker compose -f monitoring/docker-compose.yml \
             down`) and run the test again"
        );
    }

    let app_image = compose_file["services"]["app"]["image"]
        .as_str()
        .expect("services.app.image in the compose file")
        .to_owned();
    let mut teardown = Teardown {
        compose: &compose,
        app_image: app_image.clone(),
        armed: true,
    };
    // Every service but Grafana, named: with `--scale grafana=0`, docker-compose 1.29
    // still pulls Grafana's image.
    let mut up = vec!["up", "-d", "--build"];
    up.extend(SERVICES);
    println!("{}", compose.display(&up));
    let t = Instant::now();
    compose.run(&up).unwrap_or_else(|e| panic!("{e}"));
    println!("  up returned after {}", secs(t));
    let health = wait_until_healthy(&compose, Duration::from_secs(180));
    for (service, state) in &health {
        println!("  {service}: {state}");
    }
    assert_eq!(
        health.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut sorted = SERVICES.to_vec();
            sorted.sort_unstable();
            sorted
        },
        "the running services"
    );
    println!("  every healthcheck passed after {}", secs(t));

    let app_port = published_port(&compose, "app", 3000);
    let metrics_port = published_port(&compose, "app", 9100);
    let prometheus = PromApi::new(format!(
        "http://127.0.0.1:{}",
        published_port(&compose, "prometheus", 9090)
    ));
    let alertmanager = format!(
        "http://127.0.0.1:{}",
        published_port(&compose, "alertmanager", 9093)
    );

    // The app through its published port, and the PDP through the app (by service name).
    let health_body =
        get(&format!("http://127.0.0.1:{app_port}/health")).unwrap_or_else(|e| panic!("{e}"));
    println!("app on 127.0.0.1:{app_port}: /health answers {health_body}");
    let exposition =
        get(&format!("http://127.0.0.1:{metrics_port}/metrics")).unwrap_or_else(|e| panic!("{e}"));
    let families = exposition
        .lines()
        .filter(|line| line.starts_with("# TYPE "))
        .count();
    assert!(
        families > 0,
        "the app's /metrics on 127.0.0.1:{metrics_port}: no metric family in {exposition}"
    );
    println!("  its /metrics on 127.0.0.1:{metrics_port}: {families} metric families");
    let submissions = issue_duplicate_invoices(app_port);
    println!("  two invoices with one number submitted to the PDP (pdp:50051): {submissions:?}");
    assert_eq!(submissions.len(), 2);
    assert_ne!(
        submissions[0], submissions[1],
        "the PDP accepts the first invoice and refuses the duplicate"
    );

    // Prometheus: targets by service name, Alertmanager, rules.
    let t = Instant::now();
    let targets = eventually(Duration::from_secs(90), || targets_up(&prometheus));
    for target in &targets {
        println!("  target {target}");
    }
    let alertmanagers = eventually(Duration::from_secs(60), || {
        let data = prometheus.api("alertmanagers", &[])?;
        let urls: Vec<String> = data["activeAlertmanagers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|am| am["url"].as_str().map(str::to_owned))
            .collect();
        if urls.iter().any(|url| url.contains("//alertmanager:9093/")) {
            Ok(urls)
        } else {
            Err(format!("active Alertmanagers: {urls:?}"))
        }
    });
    println!("  alertmanager {alertmanagers:?}: active");
    let (groups, rules) = eventually(Duration::from_secs(90), || rules_healthy(&prometheus));
    println!(
        "  {rules} rules in {groups} groups, every group evaluated, every rule healthy ({} after \
         the healthchecks)",
        secs(t)
    );

    // An alert forced to fire: the app's container frozen, its scrapes time out.
    let pause = ["pause", "app"];
    println!("{}", compose.display(&pause));
    let t = Instant::now();
    compose.run(&pause).unwrap_or_else(|e| panic!("{e}"));
    let received = eventually(Duration::from_secs(240), || {
        alert_received(&alertmanager, "TargetDown", "invoicing")
    });
    println!(
        "  TargetDown{{job=\"invoicing\"}} fired and Alertmanager received it after {}: {received}",
        secs(t)
    );
    compose
        .run(&["unpause", "app"])
        .unwrap_or_else(|e| panic!("{e}"));

    // Stopped, the app leaves Docker's DNS: its target disappears, TargetMissing is pending.
    let stop = ["stop", "app"];
    println!("{}", compose.display(&stop));
    let t = Instant::now();
    compose.run(&stop).unwrap_or_else(|e| panic!("{e}"));
    println!("  stopped after {}", secs(t));
    eventually(Duration::from_secs(120), || {
        let alerts = prometheus.api("alerts", &[])?;
        let missing = alerts["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|alert| alert["labels"]["alertname"] == "TargetMissing");
        match missing {
            Some(alert) => Ok(alert["state"].as_str().unwrap_or_default().to_owned()),
            None => Err(format!("no TargetMissing among {alerts}")),
        }
    });
    println!(
        "  the app's target gone from discovery, TargetMissing pending after {} (fires after 5m)",
        secs(t)
    );

    // Down: nothing of the project left.
    let down = ["down", "-v"];
    println!("{}", compose.display(&down));
    let t = Instant::now();
    compose.run(&down).unwrap_or_else(|e| panic!("{e}"));
    teardown.armed = false;
    docker::docker(&["rmi", &app_image]).unwrap_or_else(|e| panic!("{e}"));
    let label = format!("label=com.docker.compose.project={PROJECT}");
    for (what, args) in [
        (
            "containers",
            &["ps", "-a", "-q", "--filter", label.as_str()][..],
        ),
        (
            "volumes",
            &["volume", "ls", "-q", "--filter", label.as_str()][..],
        ),
        (
            "networks",
            &["network", "ls", "-q", "--filter", label.as_str()][..],
        ),
    ] {
        let left = docker::docker(args).unwrap_or_else(|e| panic!("{e}"));
        assert!(left.trim().is_empty(), "{what} left after down -v: {left}");
    }
    for port in [app_port, metrics_port, 50051, 9090, 9093] {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "127.0.0.1:{port} still taken after down -v"
        );
    }
    println!(
        "  no container, volume or network left, ports free ({}); {app_image} removed",
        secs(t)
    );
    let stand_ins: Vec<&String> = provenance
        .iter()
        .filter(|(_, source)| source.is_stand_in())
        .map(|(image, _)| image)
        .collect();
    println!(
        "done in {}; stand-ins used: {}",
        secs(started),
        if stand_ins.is_empty() {
            "none".to_owned()
        } else {
            format!("{stand_ins:?}")
        }
    );
    drop(teardown);
    drop(engine);
}

/// The image of the Dockerfile's stage `stage` (`FROM <image> AS <stage>`).
fn from_image(dockerfile: &Path, stage: &str) -> String {
    let text = fs::read_to_string(dockerfile).expect("the Dockerfile");
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                ["FROM", image, as_, name] if as_.eq_ignore_ascii_case("as") && name == stage => {
                    Some(image.to_owned())
                }
                _ => None,
            }
        })
        .next()
        .unwrap_or_else(|| panic!("no `FROM <image> AS {stage}` in the Dockerfile"))
}

/// Builds the binaries of the `host` target as the `build` stage would: the context Docker
/// receives from `clone` (a throwaway image of `COPY . /context` on `base`, copied out to
/// `<target dir>/compose-stack/context`, one place for every run, so that cargo rebuilds
/// in place), then `cargo build --locked` in it, in the `profile` given, with the
/// workspace's target dir (its dependencies are already compiled); the binaries land in
/// `clone`'s `target/<profile>/`, where the `host` stage takes them.
fn build_on_the_host(clone: &Path, base: &str, profile: &str) {
    let image = format!("{PROJECT}/context:latest");
    let mut build = Command::new("sh");
    build.args([
        "-c",
        &format!(
            "printf 'FROM {base}\\nCOPY . /context\\n' | docker build --quiet --tag {image} -f - {}",
            clone.display()
        ),
    ]);
    run(&mut build).unwrap_or_else(|e| panic!("the build context, as an image: {e}"));
    let container = docker::docker(&["create", &image])
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_owned();
    let target_dir = target_directory();
    let context = target_dir.join("compose-stack/context");
    if context.exists() {
        fs::remove_dir_all(&context).unwrap_or_else(|e| panic!("{}: {e}", context.display()));
    }
    fs::create_dir_all(context.parent().expect("a parent")).expect("target/compose-stack");
    let copied = docker::docker(&[
        "cp",
        &format!("{container}:/context"),
        &context.display().to_string(),
    ]);
    let _ = docker::docker(&["rm", &container]);
    let _ = docker::docker(&["rmi", &image]);
    copied.unwrap_or_else(|e| panic!("{e}"));
    println!(
        "build context: {} files of the clone's {} (.dockerignore hides the others)",
        count_files(&context),
        count_files(clone)
    );

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cargo_build = Command::new(&cargo);
    cargo_build
        .current_dir(&context)
        .env("CARGO_TARGET_DIR", &target_dir)
        .args([
            "build",
            "--quiet",
            "--locked",
            "-p",
            "invoicing",
            "-p",
            "pdp",
            "--bins",
        ]);
    if profile != "debug" {
        cargo_build.args(["--profile", profile]);
    }
    run(&mut cargo_build).unwrap_or_else(|e| {
        panic!("the Dockerfile's build stage, on the build context Docker receives: {e}")
    });
    let bin = clone.join("target").join(profile);
    fs::create_dir_all(&bin).expect("target/<profile> in the clone");
    for name in ["invoicing", "loadgen", "pdp"] {
        fs::copy(target_dir.join(profile).join(name), bin.join(name))
            .unwrap_or_else(|e| panic!("target/{profile}/{name}: {e}"));
    }
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}

/// The workspace's target directory (`cargo metadata`).
fn target_directory() -> std::path::PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let metadata = run(Command::new(cargo).current_dir(monitoring()).args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    let start = metadata.find('{').expect("cargo metadata prints JSON");
    let metadata: Value =
        serde_json::from_str(&metadata[start..]).expect("cargo metadata prints JSON");
    metadata["target_directory"]
        .as_str()
        .expect("cargo metadata names the target directory")
        .into()
}

/// Grafana's container is not started here: its mounts must still name the provisioning
/// and dashboards folders of `monitoring/grafana`, and the provisioned datasource must
/// reach Prometheus by its service name.
fn check_grafana_provisioning(compose_file: &Value) {
    let grafana = &compose_file["services"]["grafana"];
    let volumes: Vec<&str> = grafana["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (folder, mount) in [
        ("./grafana/provisioning", "/etc/grafana/provisioning"),
        ("./grafana/dashboards", "/var/lib/grafana/dashboards"),
    ] {
        assert!(
            volumes
                .iter()
                .any(|v| v.starts_with(&format!("{folder}:{mount}"))),
            "grafana mounts {folder} at {mount}: {volumes:?}"
        );
        assert!(
            monitoring().join(folder).is_dir(),
            "{folder} exists in monitoring/"
        );
    }
    let datasources = monitoring().join("grafana/provisioning/datasources");
    let urls: Vec<String> = fs::read_dir(&datasources)
        .unwrap_or_else(|e| panic!("{}: {e}", datasources.display()))
        .flatten()
        .flat_map(|entry| {
            yaml(&entry.path())["datasources"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|source| source["url"].as_str().map(str::to_owned))
        .collect();
    assert!(
        urls.iter().any(|url| url == "http://prometheus:9090"),
        "a provisioned datasource at http://prometheus:9090 (the service name): {urls:?}"
    );
}

/// Waits until every container of the project is running and, when it has a healthcheck,
/// healthy: each service's state, or the failure.
fn wait_until_healthy(compose: &Compose, timeout: Duration) -> BTreeMap<String, String> {
    let start = Instant::now();
    let mut healthy_after = BTreeMap::new();
    eventually(timeout, || {
        let ids = compose.run(&["ps", "-q"])?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Err("no container".to_owned());
        }
        let mut args = vec![
            "inspect",
            "--format",
            "{{index .Config.Labels \"com.docker.compose.service\"}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
        ];
        args.extend(&ids);
        let states = docker::docker(&args)?;
        let mut waiting = Vec::new();
        for line in states.lines() {
            let [service, status, health] = line.split_whitespace().collect::<Vec<_>>()[..] else {
                return Err(format!("docker inspect: {line}"));
            };
            if status != "running" || !(health == "healthy" || health == "none") {
                waiting.push(format!("{service} {status} {health}"));
            } else {
                healthy_after
                    .entry(service.to_owned())
                    .or_insert_with(|| format!("{status}, {health} after {}", secs(start)));
            }
        }
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("waiting for: {}", waiting.join(", ")))
        }
    });
    healthy_after
}

/// The host port compose published for `service`'s `port`.
fn published_port(compose: &Compose, service: &str, port: u16) -> u16 {
    let out = compose
        .run(&["port", service, &port.to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    let address = out.trim();
    assert!(
        address.starts_with("127.0.0.1:"),
        "{service}:{port} is published on {address}, not on 127.0.0.1 only"
    );
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("compose port {service} {port}: {out}"))
}

/// Every active target, once those of the jobs `prometheus`, `invoicing` (discovered as
/// `app`) and `pdp` (at `pdp:50051`) are there and every one is up.
fn targets_up(prometheus: &PromApi) -> Result<Vec<String>, String> {
    let data = prometheus.api("targets", &[("state", "active")])?;
    let targets = data["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut lines = Vec::new();
    let mut jobs = BTreeMap::new();
    for target in &targets {
        let job = target["labels"]["job"].as_str().unwrap_or_default();
        let instance = target["labels"]["instance"].as_str().unwrap_or_default();
        let health = target["health"].as_str().unwrap_or_default();
        let found_as = target["discoveredLabels"]["__meta_dns_name"]
            .as_str()
            .map(|name| format!(", found by DNS as `{name}`"))
            .unwrap_or_default();
        if health != "up" {
            return Err(format!("{job} {instance} is {health}: {target}"));
        }
        *jobs.entry(job.to_owned()).or_insert(0) += 1;
        lines.push(format!("{job} {instance}{found_as}: up"));
    }
    let by_name = |job: &str, check: &dyn Fn(&Value) -> bool| {
        targets
            .iter()
            .any(|t| t["labels"]["job"] == job && check(t))
    };
    if !by_name("invoicing", &|t| {
        t["discoveredLabels"]["__meta_dns_name"] == "app"
    }) {
        return Err(format!(
            "no invoicing target discovered as `app`: {lines:?}"
        ));
    }
    if !by_name("pdp", &|t| t["labels"]["instance"] == "pdp:50051") {
        return Err(format!("no pdp target at pdp:50051: {lines:?}"));
    }
    if !jobs.contains_key("prometheus") {
        return Err(format!("no prometheus target: {lines:?}"));
    }
    lines.sort();
    Ok(lines)
}

/// `(groups, rules)` once every rule group has been evaluated and every rule is healthy.
fn rules_healthy(prometheus: &PromApi) -> Result<(usize, usize), String> {
    let data = prometheus.api("rules", &[])?;
    let groups = data["groups"].as_array().cloned().unwrap_or_default();
    if groups.is_empty() {
        return Err("no rule group loaded".to_owned());
    }
    let mut rules = 0;
    for group in &groups {
        let name = group["name"].as_str().unwrap_or_default();
        if group["lastEvaluation"]
            .as_str()
            .is_none_or(|at| at.starts_with("0001-"))
        {
            return Err(format!("group {name} not evaluated yet"));
        }
        for rule in group["rules"].as_array().into_iter().flatten() {
            rules += 1;
            if rule["health"] != "ok" {
                return Err(format!("group {name}: rule {rule} is not healthy"));
            }
        }
    }
    Ok((groups.len(), rules))
}

/// The alert `alertname` of `job` as Alertmanager holds it (`/api/v2/alerts`), once it does.
fn alert_received(alertmanager: &str, alertname: &str, job: &str) -> Result<String, String> {
    let body = get(&format!("{alertmanager}/api/v2/alerts"))?;
    let alerts: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    alerts
        .as_array()
        .into_iter()
        .flatten()
        .find(|alert| alert["labels"]["alertname"] == alertname && alert["labels"]["job"] == job)
        .map(|alert| {
            format!(
                "{} {{severity={}, instance={}}}, {}, since {}",
                alertname,
                alert["labels"]["severity"],
                alert["labels"]["instance"],
                alert["status"]["state"],
                alert["startsAt"].as_str().unwrap_or_default()
            )
        })
        .ok_or_else(|| format!("Alertmanager has no {alertname} for {job}: {body}"))
}
