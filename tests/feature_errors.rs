//! Options that need a feature are build errors without it, and the error names the
//! feature: checked by building a small crate of a user's, which depends on this one
//! with its default features off, with `cargo check` (offline, in a target dir of its
//! own under `CARGO_TARGET_TMPDIR`, so that the first run builds its few dependencies
//! once and later runs reuse them).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A user's crate with `main` as its `src/main.rs`, depending on tower-prometheus
/// without its default features; gives its directory.
fn user_crate(name: &str, main: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("feature-errors")
        .join(name);
    std::fs::create_dir_all(dir.join("src")).expect("a scratch directory");
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.0.0"
edition = "2024"
publish = false

# Not a member of the workspace it sits in.
[workspace]

[dependencies]
tower-prometheus = {{ path = {root:?}, default-features = false }}
"#,
        root = env!("CARGO_MANIFEST_DIR"),
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("written");
    std::fs::write(dir.join("src/main.rs"), main).expect("written");
    // The workspace's lock file: the versions it was tested with, all in the local
    // registry cache, so that `--offline` resolves.
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"),
            dir.join("Cargo.lock"),
        )
        .expect("the lock file copied");
    }
    dir
}

/// `cargo check` of the crate at `dir`: whether it built, and its standard error.
fn cargo_check(dir: &Path) -> (bool, String) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["check", "--offline", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env(
            "CARGO_TARGET_DIR",
            dir.parent().expect("a parent").join("target"),
        )
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const WITHOUT: &str = r#"
use tower_prometheus::HttpMetricsLayer;
use tower_prometheus::prometheus_client::registry::Registry;

fn main() {
    let layer = HttpMetricsLayer::builder()
        .exemplars(true)
        .build(&mut Registry::default());
    assert!(layer.is_ok());
}
"#;

const WITH: &str = r#"
use tower_prometheus::{HttpMetricsLayer, NativeBuckets};
use tower_prometheus::prometheus_client::registry::Registry;

fn main() {
    let layer = HttpMetricsLayer::builder()
        .native_histograms(true)
        .native_buckets(NativeBuckets::duration_seconds())
        .build(&mut Registry::default());
    assert!(layer.is_ok());
}
"#;

#[test]
fn native_histograms_without_protobuf_are_a_build_error_naming_the_feature() {
    // The same crate without the native options builds: what fails below is the call.
    let (built, stderr) = cargo_check(&user_crate("without_native", WITHOUT));
    assert!(
        built,
        "a user's crate without the options builds:\n{stderr}"
    );

    let (built, stderr) = cargo_check(&user_crate("with_native", WITH));
    assert!(
        !built,
        "native_histograms without `protobuf` must not build"
    );
    let message =
        "`native_histograms` and `native_buckets` need the feature `protobuf` of tower-prometheus";
    assert_eq!(
        stderr.matches(message).count(),
        2,
        "each setter's error names the feature:\n{stderr}"
    );
    assert!(
        stderr.contains(r#"features = ["protobuf"]"#),
        "the error says what to write in Cargo.toml:\n{stderr}"
    );
}
