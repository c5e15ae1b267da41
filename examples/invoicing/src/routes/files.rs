//! Static files: `/uploads/*` from `UPLOADS_DIR`, `/pdf-a3/*` from `PDF_DIR`.
//!
//! `ServeDir` decodes the path and refuses any component that is not a plain name
//! (`..`, a root, a drive prefix), so nothing outside those folders is ever served;
//! `tests/app/files.rs` tries the usual escapes. Directories are not listed, and files
//! are sent with `X-Content-Type-Options: nosniff` so that a browser never runs an
//! upload as something else than its type.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::middleware::map_response;
use axum::response::Response;
use http_body::{Frame, SizeHint};
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
        .layer(map_response(end_at_content_length))
}

/// Makes a file body say it has ended once `Content-Length` bytes are out.
///
/// hyper stops polling a response body as soon as it has written `Content-Length` bytes,
/// without waiting for the body to return its end; a file body from `ServeDir` does not
/// announce its end (`is_end_stream`) after its last chunk, so the metrics layer, which
/// relies on that, would see a body dropped before its end and record every download as
/// `error_type="cancelled"`.
async fn end_at_content_length(response: Response) -> Response {
    let length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match length {
        Some(length) => response.map(|body| {
            Body::new(EndAtLength {
                inner: body,
                remaining: length,
            })
        }),
        None => response,
    }
}

struct EndAtLength {
    inner: Body,
    remaining: u64,
}

impl http_body::Body for EndAtLength {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            let sent = frame.data_ref().map_or(0, |data| data.len() as u64);
            self.remaining = self.remaining.saturating_sub(sent);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
