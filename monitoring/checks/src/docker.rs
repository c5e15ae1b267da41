//! Docker for the stack's test (`tests/compose_stack.rs`): the engine, started when none
//! answers; compose, the `docker compose` plugin or Debian's `docker-compose`; the images
//! the compose file and the Dockerfile name, pulled, or stood in for under their upstream
//! names when the pull fails; and the workspace as a fresh clone holds it.
//!
//! The stand-ins are built here, from Debian: `debian:bookworm-slim` from `debootstrap
//! --variant=minbase bookworm` and `docker import`, `prom/prometheus` and
//! `prom/alertmanager` from Debian's `prometheus` and `prometheus-alertmanager` packages on
//! that base, with the upstream images' entrypoints, default commands, paths, user and
//! volumes; `rust:<version>-slim-bookworm` (only when the test builds the Dockerfile's
//! default target) from the host's own toolchain of that version. They carry the label [`STAND_IN_LABEL`], so that a later run tells them from
//! the upstream images, tries the pull again, and rebuilds them when their recipe changed.

use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::stack::{require_from, run, workspace};

/// The Debian packages the Docker test needs, and the command that installs them.
pub const INSTALL: &str = "apt-get install -y docker.io docker-compose debootstrap";

/// The label every stand-in image carries: what it stands in for and the recipe's version.
pub const STAND_IN_LABEL: &str = "org.tower-prometheus.stand-in";

/// The version of the recipes below: a stand-in whose label names another version is
/// rebuilt. Bump it when a recipe changes.
const RECIPE: u32 = 1;

/// The Debian mirror the base image is bootstrapped from.
const MIRROR: &str = "http://deb.debian.org/debian";

/// `docker <args>`: its output when it exits 0.
///
/// # Errors
///
/// The command, its status and its output otherwise.
pub fn docker(args: &[&str]) -> Result<String, String> {
    run(Command::new("docker").args(args))
}

/// The Docker engine the test talks to: one that was running already, or `dockerd`
/// started by [`Engine::ensure`] and stopped (SIGTERM, then SIGKILL after 30 s) on drop.
#[derive(Debug)]
pub struct Engine {
    /// The engine's version (`docker version`'s server).
    pub version: String,
    dockerd: Option<(Child, PathBuf)>,
}

impl Engine {
    /// The engine that answers, or a `dockerd` started now (as root: `dockerd` with its
    /// defaults, its log in `<dir>/dockerd.log`) and waited for, at most a minute.
    ///
    /// # Panics
    ///
    /// When `docker` or (with no engine running) `dockerd` is missing, naming
    /// [`INSTALL`]; when no engine runs and the user is not root; when `dockerd` exits or
    /// does not answer within a minute, with its log's last lines.
    pub fn ensure(dir: &Path) -> Engine {
        require_from(&["docker"], INSTALL);
        if let Ok(version) = server_version() {
            return Engine {
                version,
                dockerd: None,
            };
        }
        require_from(&["dockerd"], INSTALL);
        let uid = run(Command::new("id").arg("-u")).unwrap_or_default();
        assert!(
            uid.trim() == "0",
            "no Docker engine answers, and only root can start one: start it \
             (`sudo systemctl start docker`, or `sudo dockerd &`) and run the test again"
        );
        let log = dir.join("dockerd.log");
        let out = File::create(&log).expect("dockerd's log file");
        let err = out.try_clone().expect("a second handle on dockerd's log");
        let mut child = Command::new("dockerd")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dockerd: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(version) = server_version() {
                return Engine {
                    version,
                    dockerd: Some((child, log)),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("dockerd exited ({status}):\n{}", tail(&log, 30));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dockerd did not answer within a minute:\n{}",
                    tail(&log, 30)
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Whether this test started the engine (and stops it at its end).
    pub fn started_here(&self) -> bool {
        self.dockerd.is_some()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let Some((child, log)) = self.dockerd.as_mut() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        eprintln!(
            "dockerd did not stop within 30 s of SIGTERM, killed:\n{}",
            tail(log, 20)
        );
    }
}

fn server_version() -> Result<String, String> {
    docker(&["version", "--format", "{{.Server.Version}}"]).map(|v| v.trim().to_owned())
}

fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Compose, as a user runs it: `docker compose` where the plugin is installed, Debian's
/// `docker-compose` otherwise, on one compose file under one project name.
#[derive(Debug, Clone)]
pub struct Compose {
    program: Vec<String>,
    /// What runs, with its version: `docker-compose version 1.29.2, build unknown`.
    pub version: String,
    file: PathBuf,
    project: String,
    env: Vec<(String, String)>,
}

impl Compose {
    /// Compose for `file` under the project name `project`, with the extra environment
    /// `env` (the compose file's variables).
    ///
    /// # Panics
    ///
    /// When neither the plugin nor `docker-compose` runs, naming [`INSTALL`].
    pub fn new(file: &Path, project: &str, env: &[(&str, &str)]) -> Compose {
        let (program, version) = if let Ok(version) = docker(&["compose", "version"]) {
            (vec!["docker".to_owned(), "compose".to_owned()], version)
        } else {
            require_from(&["docker-compose"], INSTALL);
            let version = run(Command::new("docker-compose").arg("version"))
                .unwrap_or_else(|e| panic!("{e}"));
            (vec!["docker-compose".to_owned()], version)
        };
        Compose {
            program,
            version: version.lines().next().unwrap_or_default().to_owned(),
            file: file.to_owned(),
            project: project.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// The command line a user types for `args`, for the test's output.
    pub fn display(&self, args: &[&str]) -> String {
        let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "{}{}{} -f {} -p {} {}",
            env.join(" "),
            if env.is_empty() { "" } else { " " },
            self.program.join(" "),
            self.file.display(),
            self.project,
            args.join(" ")
        )
    }

    /// Runs compose with `args` to its end: its output.
    ///
    /// # Errors
    ///
    /// The command, its status and its output when it fails.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new(&self.program[0]);
        command
            .args(&self.program[1..])
            .arg("-f")
            .arg(&self.file)
            .args(["-p", &self.project])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        run(&mut command)
    }

    /// The project name: compose's label `com.docker.compose.project` on everything it
    /// creates.
    pub fn project(&self) -> &str {
        &self.project
    }
}

/// Where an image came from in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// The upstream image, already in the engine.
    Present,
    /// The upstream image, pulled now.
    Pulled,
    /// The pull failed: a stand-in built now.
    StandInBuilt {
        /// What it is made of.
        recipe: String,
        /// Why the pull failed (its first line).
        pull_error: String,
    },
    /// The pull failed: the stand-in an earlier run built, of the same recipe.
    StandInKept {
        /// What it is made of.
        recipe: String,
        /// Why the pull failed (its first line).
        pull_error: String,
    },
}

impl Provenance {
    /// Whether the image is a stand-in.
    pub fn is_stand_in(&self) -> bool {
        matches!(
            self,
            Provenance::StandInBuilt { .. } | Provenance::StandInKept { .. }
        )
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::Present => write!(f, "upstream image, already present"),
            Provenance::Pulled => write!(f, "upstream image, pulled"),
            Provenance::StandInBuilt { recipe, pull_error } => {
                write!(
                    f,
                    "STAND-IN built now: {recipe} (pull failed: {pull_error})"
                )
            }
            Provenance::StandInKept { recipe, pull_error } => write!(
                f,
                "STAND-IN from an earlier run: {recipe} (pull failed: {pull_error})"
            ),
        }
    }
}

/// Makes `image` available to the engine: the upstream image when it is there or can be
/// pulled, its stand-in otherwise (built in `dir` when missing or of an older recipe). A
/// stand-in already present does not stop the pull from being tried again.
///
/// # Panics
///
/// When the pull fails and there is no recipe for `image`, or the stand-in's build fails.
pub fn provide(image: &str, dir: &Path) -> Provenance {
    let label = docker(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{STAND_IN_LABEL}\"}}}}"),
        image,
    ]);
    // An image without the label is the upstream one.
    if label
        .as_ref()
        .is_ok_and(|label| label.trim().is_empty() || label.trim() == "<no value>")
    {
        return Provenance::Present;
    }
    let pull_error = match docker(&["pull", "--quiet", image]) {
        Ok(_) => return Provenance::Pulled,
        Err(e) => first_error_line(&e),
    };
    let recipe = recipe(image).unwrap_or_else(|| {
        panic!("{image}: the pull failed ({pull_error}) and there is no stand-in for it")
    });
    let wanted = stand_in_label(image, &recipe);
    if label.is_ok_and(|label| label.trim() == wanted) {
        return Provenance::StandInKept { recipe, pull_error };
    }
    match image.split(':').next().unwrap_or_default() {
        "debian" => build_debian(image, &wanted, dir),
        "rust" => build_rust(image, &wanted, dir),
        _ => {
            let dockerfile = stand_in_dockerfile(image, &wanted)
                .expect("a recipe's image has a Dockerfile or is debian");
            build_from_stdin(image, &dockerfile, dir);
        }
    }
    Provenance::StandInBuilt { recipe, pull_error }
}

/// The line of `docker pull`'s failure that says why (the first is the command).
fn first_error_line(error: &str) -> String {
    let line = error
        .lines()
        .skip(1)
        .find(|line| !line.trim().is_empty())
        .unwrap_or(error);
    line.trim()
        .trim_start_matches("Error response from daemon: ")
        .to_owned()
}

fn stand_in_label(image: &str, recipe: &str) -> String {
    format!("{image} stood in for by {recipe} (recipe {RECIPE})")
}

/// What the stand-in for `image` is made of, when there is one.
pub fn recipe(image: &str) -> Option<String> {
    let (repository, tag) = image.split_once(':').unwrap_or((image, "latest"));
    match (repository, tag) {
        ("debian", "bookworm-slim") => {
            Some("debootstrap --variant=minbase bookworm, docker import".to_owned())
        }
        ("prom/prometheus", _) => {
            Some("Debian bookworm's prometheus package on debian:bookworm-slim".to_owned())
        }
        ("prom/alertmanager", _) => Some(
            "Debian bookworm's prometheus-alertmanager package on debian:bookworm-slim".to_owned(),
        ),
        ("rust", tag) if tag.ends_with("-slim-bookworm") => Some(format!(
            "the host's Rust {} toolchain and registry cache (offline), gcc and libc6-dev on \
             debian:bookworm-slim",
            tag.trim_end_matches("-slim-bookworm")
        )),
        _ => None,
    }
}

/// The Dockerfile of the stand-in for `image` (`prom/prometheus`, `prom/alertmanager`),
/// labelled `label`: Debian's package on the engine's `debian:bookworm-slim`, laid out as
/// the upstream image (binaries in `/bin`, default configuration, consoles, entrypoint,
/// default command, user `nobody`, working directory and volume). The upstream images are
/// busybox based: `wget` is installed for the compose file's healthchecks.
pub fn stand_in_dockerfile(image: &str, label: &str) -> Option<String> {
    let body = match image.split(':').next().unwrap_or_default() {
        // Debian: /usr/bin/prometheus and promtool (/bin is /usr/bin), its example
        // configuration and consoles under /etc/prometheus.
        "prom/prometheus" => PROMETHEUS,
        // Debian: /usr/bin/prometheus-alertmanager and amtool, its example configuration
        // in /etc/prometheus/alertmanager.yml.
        "prom/alertmanager" => ALERTMANAGER,
        _ => return None,
    };
    Some(format!(
        "FROM debian:bookworm-slim\nLABEL {STAND_IN_LABEL}=\"{label}\"\n{body}"
    ))
}

const PROMETHEUS: &str = r#"RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* \
    && test -x /bin/prometheus && test -x /bin/promtool \
    && mkdir -p /usr/share/prometheus /prometheus \
    && mv /etc/prometheus/console_libraries /etc/prometheus/consoles /usr/share/prometheus/ \
    && ln -s /usr/share/prometheus/console_libraries /usr/share/prometheus/consoles /etc/prometheus/ \
    && chown -R nobody:nogroup /etc/prometheus /prometheus
USER nobody
EXPOSE 9090
VOLUME ["/prometheus"]
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.console.libraries=/usr/share/prometheus/console_libraries", "--web.console.templates=/usr/share/prometheus/consoles"]
"#;

const ALERTMANAGER: &str = r#"RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus-alertmanager wget \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s prometheus-alertmanager /usr/bin/alertmanager \
    && test -x /bin/alertmanager && test -x /bin/amtool \
    && mkdir -p /etc/alertmanager /alertmanager \
    && cp /etc/prometheus/alertmanager.yml /etc/alertmanager/alertmanager.yml \
    && chown -R nobody:nogroup /etc/alertmanager /alertmanager
USER nobody
EXPOSE 9093
VOLUME ["/alertmanager"]
WORKDIR /alertmanager
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
"#;

fn build_from_stdin(image: &str, dockerfile: &str, dir: &Path) {
    let log = dir.join(format!("build-{}.log", image.replace(['/', ':'], "_")));
    let out = File::create(&log).expect("a build log");
    let err = out.try_clone().expect("a second handle on the build log");
    let mut child = Command::new("docker")
        .args(["build", "--tag", image, "-"])
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("docker build: {e}"));
    child
        .stdin
        .take()
        .expect("docker build's stdin")
        .write_all(dockerfile.as_bytes())
        .expect("the Dockerfile written to docker build");
    let status = child.wait().expect("docker build's status");
    assert!(
        status.success(),
        "building the stand-in {image} failed ({status}):\n{dockerfile}\n{}",
        tail(&log, 40)
    );
}

/// The stand-in for `rust:<version>-slim-bookworm`: the host's toolchain (which must be
/// that version) copied into `/usr/local/rustup/toolchains/`, `cargo`, `rustc` and
/// `rustdoc` on the upstream image's `PATH` (`/usr/local/cargo/bin`), and the C toolchain
/// the upstream image installs (gcc, libc6-dev). No rustup. It builds offline
/// (`CARGO_NET_OFFLINE`), from the host's registry index and crate archives: the host has
/// fetched the crates of `Cargo.lock`, and a container may not reach crates.io as the host
/// does.
fn build_rust(image: &str, label: &str, dir: &Path) {
    let tag = image
        .split_once(':')
        .map(|(_, tag)| tag)
        .unwrap_or_default();
    let version = tag.trim_end_matches("-slim-bookworm");
    let host = run(Command::new("rustc").arg("--version")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        host.starts_with(&format!("rustc {version} ")),
        "the stand-in for {image} is the host's toolchain, which is {}: install Rust \
         {version} (`rustup toolchain install {version}`) and run with RUSTUP_TOOLCHAIN={version}",
        host.trim()
    );
    let sysroot =
        run(Command::new("rustc").args(["--print", "sysroot"])).unwrap_or_else(|e| panic!("{e}"));
    let context = dir.join("rust-context");
    let toolchain = context.join("toolchain");
    fs::create_dir_all(&toolchain).expect("the stand-in's build context");
    // bin/ and lib/: the compilers and the standard library, not share/ (the docs).
    for part in ["bin", "lib"] {
        run(Command::new("cp")
            .arg("-a")
            .arg(Path::new(sysroot.trim()).join(part))
            .arg(&toolchain))
        .unwrap_or_else(|e| panic!("{e}"));
    }
    // The host's registry index and crate archives: the stand-in builds offline, with the
    // crates the host has fetched for Cargo.lock.
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let registry = context.join("registry");
    fs::create_dir_all(&registry).expect("the stand-in's registry folder");
    for part in ["index", "cache"] {
        run(Command::new("cp")
            .arg("-a")
            .arg(cargo_home.join("registry").join(part))
            .arg(&registry))
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let installed = format!("/usr/local/rustup/toolchains/{version}-x86_64-unknown-linux-gnu");
    fs::write(
        context.join("Dockerfile"),
        format!(
            r#"FROM debian:bookworm-slim
LABEL {STAND_IN_LABEL}="{label}"
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION={version}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY toolchain {installed}
COPY registry /usr/local/cargo/registry
ENV CARGO_NET_OFFLINE=true
RUN mkdir -p /usr/local/cargo/bin \
    && for tool in cargo rustc rustdoc; do ln -s {installed}/bin/$tool /usr/local/cargo/bin/$tool; done \
    && cargo --version && rustc --version
"#
        ),
    )
    .expect("the stand-in's Dockerfile");
    let log = dir.join("build-rust.log");
    let out = File::create(&log).expect("a build log");
    let err = out.try_clone().expect("a second handle on the build log");
    let status = Command::new("docker")
        .args(["build", "--tag", image])
        .arg(&context)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .expect("docker build runs");
    let _ = fs::remove_dir_all(&context);
    assert!(
        status.success(),
        "building the stand-in {image} failed ({status}):\n{}",
        tail(&log, 40)
    );
}

/// The stand-in for `debian:bookworm-slim`: a minimal bookworm root from `debootstrap`,
/// given what the upstream image adds (the security and updates suites, apt's clean-up
/// and no-translation settings, no documentation), then imported.
fn build_debian(image: &str, label: &str, dir: &Path) {
    require_from(&["debootstrap"], INSTALL);
    let root = dir.join("debian-rootfs");
    let log = dir.join("debootstrap.log");
    let out = File::create(&log).expect("debootstrap's log");
    let err = out
        .try_clone()
        .expect("a second handle on debootstrap's log");
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&root)
        .arg(MIRROR)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .expect("debootstrap runs");
    assert!(
        status.success(),
        "debootstrap --variant=minbase bookworm failed ({status}):\n{}",
        tail(&log, 30)
    );
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        fs::create_dir_all(path.parent().expect("a file in a folder")).expect("a folder");
        fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    };
    let _ = fs::remove_file(root.join("etc/apt/sources.list"));
    write(
        "etc/apt/sources.list.d/debian.sources",
        &format!(
            "Types: deb\nURIs: {MIRROR}\nSuites: bookworm bookworm-updates\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb\nURIs: {MIRROR}-security\nSuites: bookworm-security\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    );
    write(
        "etc/apt/apt.conf.d/docker-clean",
        "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\n\
         APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\n\
         Dir::Cache::pkgcache \"\";\nDir::Cache::srcpkgcache \"\";\n",
    );
    write(
        "etc/apt/apt.conf.d/docker-no-languages",
        "Acquire::Languages \"none\";\n",
    );
    write(
        "etc/dpkg/dpkg.cfg.d/docker",
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n\
         path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n\
         path-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n",
    );
    for cache in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        for entry in fs::read_dir(root.join(cache))
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.path().is_file() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    let import = format!(
        "tar --numeric-owner -C {root} -c . | docker import --change 'CMD [\"bash\"]' \
         --change 'LABEL {STAND_IN_LABEL}=\"{label}\"' - {image}",
        root = root.display()
    );
    run(Command::new("bash").args(["-o", "pipefail", "-c", &import]))
        .unwrap_or_else(|e| panic!("{e}"));
    fs::remove_dir_all(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    // An image that cannot run a shell must not stay under the upstream name.
    if let Err(e) = docker(&["run", "--rm", image, "sh", "-c", "apt-get --version"]) {
        let _ = docker(&["rmi", image]);
        panic!("the stand-in {image} does not run: {e}");
    }
}

/// Copies the files of the workspace that a fresh clone would hold (git's tracked files,
/// as they are in the working tree, and the untracked ones it does not ignore) into
/// `dest`: no `target/`, no local data. Returns how many.
///
/// # Panics
///
/// When git fails or a file cannot be copied.
pub fn fresh_clone(dest: &Path) -> usize {
    let root = workspace();
    let list = run(Command::new("git").current_dir(&root).args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]))
    .unwrap_or_else(|e| panic!("the workspace's files (a git checkout is needed): {e}"));
    let mut copied = 0;
    for file in list.split('\0').filter(|f| !f.is_empty()) {
        let from = root.join(file);
        // Deleted in the working tree, not yet committed.
        if !from.is_file() {
            continue;
        }
        let to = dest.join(file);
        fs::create_dir_all(to.parent().expect("a file in a folder")).expect("a folder");
        fs::copy(&from, &to).unwrap_or_else(|e| panic!("{} -> {}: {e}", file, to.display()));
        copied += 1;
    }
    copied
}
