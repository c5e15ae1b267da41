//! One error type for every handler, and one JSON shape for every error response:
//!
//! ```json
//! {"error":{"code":"validation_failed","message":"...","fields":{"name":"required"}}}
//! ```
//!
//! `fields` is present on `validation_failed` only. Internal errors are logged with their
//! details and answered with a generic message.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Field name → what is wrong with it.
pub type FieldErrors = BTreeMap<String, String>;

/// Everything a handler can answer instead of a success.
#[derive(Debug)]
pub enum AppError {
    /// 400 `invalid_json`: the body is not JSON.
    InvalidJson(String),
    /// 400 `bad_request`: a malformed request that is not JSON (a broken multipart body).
    BadRequest(String),
    /// 404 `not_found`.
    NotFound(String),
    /// 405 `method_not_allowed`.
    MethodNotAllowed,
    /// 409 `conflict`: a duplicate, or a deletion of something still referenced.
    Conflict(String),
    /// 413 `payload_too_large`.
    PayloadTooLarge(String),
    /// 415 `unsupported_media_type`.
    UnsupportedMediaType(String),
    /// 422 `validation_failed`, with what is wrong with each field.
    Validation(FieldErrors),
    /// 500 `internal`: logged, never sent.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    /// A 422 about one field.
    pub fn field(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(FieldErrors::from([(name.into(), message.into())]))
    }

    /// A 500 from anything that is an error.
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }

    /// The status code of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        Self::Internal(error.into())
    }
}

impl From<std::io::Error> for AppError {
    fn from(error: std::io::Error) -> Self {
        Self::Internal(error.into())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a FieldErrors>,
}

/// The JSON error response with this status, code and message.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    fields: Option<&FieldErrors>,
) -> Response {
    let body = Body {
        error: Detail {
            code,
            message,
            fields,
        },
    };
    (status, Json(body)).into_response()
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::InvalidJson(message) => error_response(status, "invalid_json", message, None),
            Self::BadRequest(message) => error_response(status, "bad_request", message, None),
            Self::NotFound(message) => error_response(status, "not_found", message, None),
            Self::MethodNotAllowed => error_response(
                status,
                "method_not_allowed",
                "this method is not allowed on this resource",
                None,
            ),
            Self::Conflict(message) => error_response(status, "conflict", message, None),
            Self::PayloadTooLarge(message) => {
                error_response(status, "payload_too_large", message, None)
            }
            Self::UnsupportedMediaType(message) => {
                error_response(status, "unsupported_media_type", message, None)
            }
            Self::Validation(fields) => error_response(
                status,
                "validation_failed",
                "some fields are invalid",
                Some(fields),
            ),
            Self::Internal(error) => {
                tracing::error!(error = %error, "internal error");
                internal_response()
            }
        }
    }
}

fn internal_response() -> Response {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal server error",
        None,
    )
}

/// The code of an error response with this status, for responses made outside the
/// handlers (axum's 405, `ServeDir`'s 404, a body limit).
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        StatusCode::RANGE_NOT_SATISFIABLE => "range_not_satisfiable",
        status if status.is_server_error() => "internal",
        _ => "error",
    }
}

/// Middleware: gives error responses that are not JSON yet (made by axum, `ServeDir`,
/// a layer) the JSON shape, keeping their status and headers (`Allow` on a 405).
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let message = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    let message = match status {
        StatusCode::NOT_FOUND => "no such resource".to_owned(),
        status if status.is_server_error() => "internal server error".to_owned(),
        _ => message,
    };
    let fresh = error_response(status, code_of(status), &message, None);
    // The length is the new body's; every other header stays (`Allow` on a 405,
    // `Content-Range: bytes */N` on a 416).
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (_, body) = fresh.into_parts();
    Response::from_parts(parts, body)
}

/// For `CatchPanicLayer`: a panic is logged and answered as a JSON 500.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    tracing::error!(panic = message, "handler panicked");
    internal_response()
}

/// The handler of requests no route matched.
pub async fn not_found() -> AppError {
    AppError::NotFound("no such resource".into())
}
