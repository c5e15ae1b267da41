//! Checks on the files of `monitoring/`, run by `cargo test -p monitoring-checks` (or
//! `monitoring/test.sh`, the same with the output shown, one test at a time).
//!
//! Its tests (in `tests/`): `static_checks` runs the real tools on the files (promtool,
//! amtool, docker-compose config, the mixin's `generate.sh --check`) and checks the alerts'
//! annotations, runbooks and test cases; `dashboards` parses every dashboard expression as
//! PromQL, no server; `end_to_end`, `native_histograms` and `scale_out` start the example
//! apps and real Prometheus, Alertmanager and VictoriaMetrics processes on 127.0.0.1 and
//! check through their HTTP APIs; `compose_stack` brings `docker-compose.yml` up in Docker
//! as a user does and checks it through the containers. [`dashboards`] is the dashboard
//! walk they use, written once for the static checks and the live runs; [`stack`] the
//! processes, ports and API client of the live runs; [`docker`] the engine, compose, the
//! images and their stand-ins of the Docker run.

pub mod dashboards;
pub mod docker;
pub mod stack;
