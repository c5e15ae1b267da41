//! `GET /health`: 200 `{"status":"ok","database":"ok"}`, or 503
//! `{"status":"error","database":"error"}` when the database does not answer within
//! [`TIMEOUT`].

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;

/// How long the check waits for the database.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health`.
pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match tokio::time::timeout(TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "database": "ok"})),
        ),
        outcome => {
            let reason = match outcome {
                Ok(Err(error)) => error.to_string(),
                _ => format!("no answer within {TIMEOUT:?}"),
            };
            tracing::warn!(reason, "health check: the database is unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "error", "database": "error"})),
            )
        }
    }
}
