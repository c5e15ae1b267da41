//! Static files: `/uploads/*` from `UPLOADS_DIR`, `/pdf-a3/*` from `PDF_DIR`.
//!
//! `ServeDir` decodes the path and refuses any component that is not a plain name
//! (`..`, a root, a drive prefix), so nothing outside those folders is ever served;
//! `tests/app/files.rs` tries the usual escapes. Directories are not listed, and files
//! are sent with `X-Content-Type-Options: nosniff` so that a browser never runs an
//! upload as something else than its type.

use axum::Router;
use axum::http::{HeaderValue, header};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;
use crate::config::Config;

/// The two static folders.
pub fn router(config: &Config) -> Router<AppState> {
    let serve = |dir| ServeDir::new(dir).append_index_html_on_directories(false);
    Router::new()
        .nest_service("/uploads", serve(&config.uploads_dir))
        .nest_service("/pdf-a3", serve(&config.pdf_dir))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}
