//! The app in-process, through `app(state)` and `tower::ServiceExt::oneshot`, each test on
//! its own SQLite file in a temporary folder.

#[path = "../common/mod.rs"]
mod common;

mod crud;
mod errors;
mod files;
mod metrics;
mod pdf;
mod pdp;
