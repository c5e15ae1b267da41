//! Checks on the files of `monitoring/`, run by `cargo test -p monitoring-checks`.
//!
//! Its tests (in `tests/`) read the Grafana dashboards in `monitoring/grafana/dashboards/`
//! and fail fast, without a Prometheus server, when an expression does not parse as PromQL
//! or a panel breaks a rule of the dashboards (a unit on every panel, every rate over
//! `$__rate_interval`, the provisioned datasource uid). [`dashboards`] is the dashboard
//! walk they use, written once for the static checks and the end-to-end run.

pub mod dashboards;
pub mod stack;
