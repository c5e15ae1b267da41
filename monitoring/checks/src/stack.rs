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
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The Debian packages the end-to-end tests run, and the command that installs them.
pub const INSTALL: &str =
    "apt-get install -y prometheus prometheus-alertmanager victoria-metrics jsonnet docker-compose";

/// Fails the test, naming the install command, unless every one of `tools` is on `PATH`.
///
/// # Panics
///
/// When a tool is missing.
pub fn require(tools: &[&str]) {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| which(tool).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "missing: {}. Install with: {INSTALL}",
        missing.join(", ")
    );
}

fn which(tool: &str) -> Option<PathBuf> {
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
