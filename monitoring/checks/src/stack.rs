//! The pieces of a monitoring stack on 127.0.0.1, for the end-to-end tests: the example
//! apps built from this workspace, real Prometheus, VictoriaMetrics and Alertmanager
//! processes from Debian's packages, and a client for their HTTP APIs.
//!
//! Every process is a [`Process`]: its output goes to a log file, it is killed when the
//! test ends, and when the test fails its log's last lines are printed. Every wait is
//! bounded and fails saying what did not answer.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The objectives the invoicing app declares (`OBJECTIVES` in its `telemetry.rs`): the
/// SLO rules must give one error budget each, whatever the number of replicas.
pub const INVOICING_OBJECTIVES: usize = 7;

/// The Debian packages the end-to-end tests run, and the command that installs them.
pub const INSTALL: &str =
    "apt-get install -y prometheus prometheus-alertmanager victoria-metrics jsonnet docker-compose";

/// Fails the test, naming the install command, unless every one of `tools` is on `PATH`.
///
/// # Panics
///
/// When a tool is missing.
pub fn require(tools: &[&str]) {
    require_from(tools, INSTALL);
}

/// Fails the test, naming `install`, unless every one of `tools` is on `PATH`.
///
/// # Panics
///
/// When a tool is missing.
pub fn require_from(tools: &[&str], install: &str) {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| which(tool).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "missing: {}. Install with: {install}",
        missing.join(", ")
    );
}

/// The path of `tool` on `PATH`, if it is there.
pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(tool))
        .find(|path| path.is_file())
}

/// The workspace root (`monitoring/checks/../..`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// The `monitoring/` folder.
pub fn monitoring() -> PathBuf {
    workspace().join("monitoring")
}

/// The files of `monitoring/<folder>/` (`prometheus/rules`, `promclient/rules`) whose names
/// end with `suffix` (`.rules.yml`, `.test.yml`), sorted: whatever files the folder holds
/// today.
///
/// # Panics
///
/// When the folder cannot be read.
pub fn rule_files(folder: &str, suffix: &str) -> Vec<PathBuf> {
    let dir = monitoring().join(folder);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().ends_with(suffix))
        })
        .collect();
    files.sort();
    files
}

/// Runs `command` to its end: its output (stdout, then stderr) when it exits 0.
///
/// # Errors
///
/// When it cannot start or exits non-zero: the command, its exit status and its whole
/// output, for the failure message.
pub fn run(command: &mut Command) -> Result<String, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: cannot start: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(format!("{command:?}: {}\n{text}", output.status))
    }
}

/// Runs Debian's `jsonnet` with `monitoring/` on its import path (`-J`) and `args`: its
/// standard output.
///
/// # Panics
///
/// When jsonnet is missing (naming the install command) or fails (with its error).
pub fn jsonnet(args: &[&str]) -> String {
    require(&["jsonnet"]);
    let mut command = Command::new("jsonnet");
    command.arg("-J").arg(monitoring()).args(args);
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: cannot start: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("jsonnet writes UTF-8")
}

/// The path of a binary of the example apps (`invoicing`, `loadgen`, `pdp`), built once per
/// test process with `cargo build -p invoicing -p pdp --bins` (cargo releases its lock on
/// the target dir before it runs the tests, so this does not wait on the outer build).
/// `EXAMPLES_PROFILE=release` builds and runs the release binaries instead, for figures
/// that stand for production (`cargo build` alone is the debug build).
///
/// # Panics
///
/// When the build fails.
pub fn example_binary(name: &str) -> PathBuf {
    static TARGET: OnceLock<PathBuf> = OnceLock::new();
    let target = TARGET.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let release = std::env::var("EXAMPLES_PROFILE").is_ok_and(|profile| profile == "release");
        let status = Command::new(&cargo)
            .current_dir(workspace())
            .args(["build", "--quiet", "-p", "invoicing", "-p", "pdp", "--bins"])
            .args(release.then_some("--release"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build -p invoicing -p pdp failed");
        let metadata = Command::new(&cargo)
            .current_dir(workspace())
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .expect("cargo metadata runs");
        let metadata: Value =
            serde_json::from_slice(&metadata.stdout).expect("cargo metadata prints JSON");
        PathBuf::from(
            metadata["target_directory"]
                .as_str()
                .expect("cargo metadata names the target directory"),
        )
        .join(if release { "release" } else { "debug" })
    });
    target.join(name)
}

/// Starts the invoicing app with its API on `127.0.0.1:port` and its `/metrics` on
/// `127.0.0.1:metrics_port` (`METRICS_ADDR`: the app serves it on its own listener), its
/// data in `<dir>/<name>/`, submitting invoices to the PDP at `pdp_port` when there is
/// one, with the extra environment variables `env` (`METRICS_NAMING`, …), and waits for
/// its `/health` and its `/metrics`.
pub fn start_invoicing(
    name: &str,
    dir: &Path,
    port: u16,
    metrics_port: u16,
    pdp_port: Option<u16>,
    env: &[(&str, &str)],
) -> Process {
    let data = dir.join(name);
    fs::create_dir_all(&data).expect("the app's data folder");
    let mut command = Command::new(example_binary("invoicing"));
    command
        .env("BIND", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", data.join("invoicing.db").display()),
        )
        .env("UPLOADS_DIR", data.join("uploads"))
        .env("PDF_DIR", data.join("pdf-a3"))
        .env("RUST_LOG", "warn");
    if let Some(pdp_port) = pdp_port {
        command.env("PDP_ADDR", format!("127.0.0.1:{pdp_port}"));
    }
    command.envs(env.iter().copied());
    let mut app = Process::start(name, dir, &mut command);
    for url in [
        format!("http://127.0.0.1:{port}/health"),
        format!("http://127.0.0.1:{metrics_port}/metrics"),
    ] {
        app.wait_for(&url, Duration::from_secs(60));
    }
    app
}

/// Starts Debian's `prometheus-alertmanager` with the shipped
/// `monitoring/alertmanager/alertmanager.yml` on `127.0.0.1:<port>` (no cluster), and waits
/// until it is ready.
///
/// # Panics
///
/// When it does not start or get ready within a minute.
pub fn start_alertmanager(dir: &Path, port: u16) -> Process {
    let mut alertmanager = Process::start(
        "alertmanager",
        dir,
        Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                monitoring().join("alertmanager/alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address="),
    );
    alertmanager.wait_for(
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(60),
    );
    alertmanager
}

/// A free TCP port on 127.0.0.1 (bound, read and released: another process could take it
/// in between, which loopback tests on one machine accept).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// A process of the stack, killed (and waited for) on drop.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with its output in `<dir>/<name>.log`.
    ///
    /// # Panics
    ///
    /// When it cannot start.
    pub fn start(name: &str, dir: &Path, command: &mut Command) -> Process {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("a log file in the test's temporary folder");
        let err = out.try_clone().expect("a second handle on the log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {command:?}: {e}"));
        Process {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// Waits until `url` answers 2xx, at most `timeout`.
    ///
    /// # Panics
    ///
    /// When it does not, or when the process exits first, with the log's last lines.
    pub fn wait_for(&mut self, url: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if get(url).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}) before {url} answered", self.name);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer {url} within {timeout:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to exit, at most `timeout`: for one that stops by itself
    /// (`loadgen`).
    ///
    /// # Panics
    ///
    /// When it is still running after `timeout` (it is killed on drop).
    pub fn finish(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {timeout:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `n` lines of its log.
    pub fn tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGKILL: nothing these tests start keeps state worth a clean shutdown.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- last lines of {}.log\n{}", self.name, self.tail(20));
        }
    }
}

/// `GET url`: the body of a 2xx answer, or what went wrong.
pub fn get(url: &str) -> Result<String, String> {
    agent()
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))
}

/// `POST url` with a JSON body: the body of a 2xx answer, or what went wrong.
pub fn post_json(url: &str, body: &Value) -> Result<String, String> {
    agent()
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string())
        .map_err(|e| format!("POST {url}: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("POST {url}: {e}"))
}

/// `GET url` with `headers`: the status code, whatever it is (a 404 is an answer), or the
/// transport error.
pub fn get_status(url: &str, headers: &[(&str, &str)]) -> Result<u16, String> {
    let mut request = agent().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    // Read the body: the connection goes back to the pool.
    let _ = response.body_mut().read_to_string();
    Ok(response.status().as_u16())
}

/// Issues the same invoice number from two sellers that share a SIRET, through the
/// invoicing app on `app_port`: the PDP refuses the second one as a duplicate, which gives
/// the gRPC dashboard non-OK codes to show. Returns the `pdp_status` of both invoices,
/// once the PDP has answered them (the app submits them in the background: its answer
/// to the `POST` has the PDP's when the PDP answers within `PDP_TIMEOUT`).
///
/// # Panics
///
/// When the app does not answer with JSON, or the PDP's answers are not there within
/// 30 s.
pub fn issue_duplicate_invoices(app_port: u16) -> Vec<String> {
    let api = |path: &str, body: Value| -> Value {
        let url = format!("http://127.0.0.1:{app_port}{path}");
        let text = post_json(&url, &body).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
    };
    let client = api("/api/clients", json!({"name": "PDP client"}))["id"].clone();
    (1..=2)
        .map(|n| {
            let seller = api(
                "/api/sellers",
                json!({"name": format!("PDP seller {n}"), "siret": "73282932000074", "city": "Paris"}),
            )["id"]
                .clone();
            let invoice = api(
                "/api/invoices",
                json!({
                    "seller_id": seller, "client_id": client, "number": "PDP-1",
                    "issue_date": "2026-12-01", "status": "issued",
                    "lines": [{"description": "x", "quantity": 1, "unit_price_cents": 100, "vat_rate": 20}],
                }),
            );
            let url = format!("http://127.0.0.1:{app_port}/api/invoices/{}", invoice["id"]);
            eventually(Duration::from_secs(30), || {
                let text = get(&url)?;
                let invoice: Value = serde_json::from_str(&text)
                    .map_err(|e| format!("{url}: not JSON ({e}): {text}"))?;
                invoice["pdp_status"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{url}: not answered by the PDP yet: {text}"))
            })
        })
        .collect()
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    })
}

/// A Prometheus-compatible HTTP API: Prometheus itself, or VictoriaMetrics.
#[derive(Debug, Clone)]
pub struct PromApi {
    /// `http://127.0.0.1:<port>` (VictoriaMetrics: the same; it serves `/api/v1/…`).
    pub url: String,
}

impl PromApi {
    /// The API at `url`.
    pub fn new(url: impl Into<String>) -> PromApi {
        PromApi { url: url.into() }
    }

    /// `GET /api/v1/<path>?<params>`: the `data` of a `success` answer.
    ///
    /// # Errors
    ///
    /// The transport error, or the API's `error` answer.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let url = format!("{}/api/v1/{path}", self.url);
        let response = agent()
            .get(&url)
            .query_pairs(params.iter().copied())
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .map_err(|e| format!("{url}: {e}"))?
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{url}: {e}"))?;
        let body: Value = serde_json::from_str(&response)
            .map_err(|e| format!("{url} {params:?}: not JSON ({e}): {response}"))?;
        if body["status"] != "success" {
            return Err(format!("{url} {params:?}: {body}"));
        }
        Ok(body["data"].clone())
    }

    /// The result vector of the instant query `expr`.
    ///
    /// # Panics
    ///
    /// When the query fails: the tests want to know which.
    pub fn query(&self, expr: &str) -> Vec<Value> {
        let data = self
            .api("query", &[("query", expr)])
            .unwrap_or_else(|e| panic!("{e}"));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single number `expr` returns, `None` when it returns no series.
    ///
    /// # Panics
    ///
    /// When it returns several series or a value that is not a number.
    pub fn scalar(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr);
        assert!(result.len() <= 1, "{expr}: {} series", result.len());
        result.first().map(|series| value(series, expr))
    }

    /// The series `expr` returns, keyed by the value of `label`.
    pub fn by_label(&self, expr: &str, label: &str) -> BTreeMap<String, f64> {
        self.query(expr)
            .iter()
            .map(|series| {
                (
                    series["metric"][label]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    value(series, expr),
                )
            })
            .collect()
    }

    /// Waits until every gRPC call series (the PDP's server side, the app's client side)
    /// has two samples in the last minute: `rate()` over a new series, such as the
    /// PDP's `ALREADY_EXISTS` after the duplicate invoices, needs two.
    ///
    /// # Panics
    ///
    /// When one still has fewer after `timeout`.
    pub fn wait_for_two_samples_of_the_call_series(&self, timeout: Duration) {
        eventually(timeout, || {
            for (metric, job) in [
                ("rpc_server_call_duration_seconds_count", "pdp"),
                ("rpc_client_call_duration_seconds_count", "invoicing"),
            ] {
                let expr = format!(r#"min(count_over_time({metric}{{job="{job}"}}[1m]))"#);
                let samples = self.scalar(&expr).unwrap_or(0.0);
                if samples < 2.0 {
                    return Err(format!("{expr} is {samples}"));
                }
            }
            Ok(())
        });
    }

    /// The values of `label` on the series matching `selector`.
    pub fn label_values(&self, selector: &str, label: &str) -> Vec<String> {
        let data = self
            .api("series", &[("match[]", selector)])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut values: Vec<String> = data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|series| series[label].as_str().map(str::to_owned))
            .collect();
        values.sort();
        values.dedup();
        values
    }
}

/// The number in an instant vector's sample.
///
/// # Panics
///
/// When it is not one (`expr` says which query).
pub fn value(series: &Value, expr: &str) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("{expr}: not a number in {series}"))
}

/// Polls `check` every 250 ms until it returns `Ok`, at most `timeout`: for values that
/// become true once scrapes, remote writes and rule evaluations have caught up.
///
/// # Panics
///
/// With the last `Err` when the time is up.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(e) if Instant::now() >= deadline => panic!("after {timeout:?}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// The sum of the samples of `metric` whose labels include every `(name, value)` of
/// `labels`, in a text exposition (`/metrics`).
pub fn exposition_sum(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, rest) = line.split_once(' ')?;
            let (name, label_text) = series.split_once('{').unwrap_or((series, ""));
            if name != metric {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
            all.then(|| rest.split(' ').next()?.parse::<f64>().ok())?
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_command_says_its_status_and_output() {
        let error =
            run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"])).unwrap_err();
        assert!(
            error.contains("exit status: 3") && error.contains("out\nerr"),
            "{error}"
        );
        assert_eq!(
            run(Command::new("sh").args(["-c", "echo ok"])),
            Ok("ok\n".into())
        );
    }

    #[test]
    fn exposition_sum_adds_the_matching_samples_only() {
        let text = "# TYPE x counter\n\
                    x_total{route=\"/a\",code=\"200\"} 3\n\
                    x_total{route=\"/a\",code=\"500\"} 1 1700000000\n\
                    x_total{route=\"/b\",code=\"200\"} 10\n\
                    x_total_created{route=\"/a\"} 5\n";
        assert_eq!(exposition_sum(text, "x_total", &[("route", "/a")]), 4.0);
        assert_eq!(exposition_sum(text, "x_total", &[]), 14.0);
        assert_eq!(exposition_sum(text, "x_total", &[("code", "404")]), 0.0);
    }
}
