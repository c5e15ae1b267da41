//! One error type for every handler, and one JSON shape for every error response:
//!
//! ```json
//! {"error":{"code":"validation_failed","message":"...","fields":{"name":"not set"}}}
//! ```
//!
//! `fields` is present on `validation_failed` only. Internal errors are logged with their
//! details and answered with a generic message. The rejections of axum's extractors
//! (`Json`, `Query`, `Path`, `Multipart`) and `garde`'s reports convert into an
//! [`AppError`], so that the extractors of [`crate::extract`] reject in this shape.
//!
//! A request whose client went away before the end of its body is not answered: see
//! [`AppError::ClientGone`] and [`abandon_if_client_gone`].

use std::collections::BTreeMap;
use std::error::Error as StdError;

use axum::Json;
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Request, multipart::MultipartRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::serve::ClientGone;

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
    /// 408 `request_timeout`: the body did not arrive within `REQUEST_BODY_TIMEOUT`.
    RequestTimeout,
    /// 409 `conflict`: a duplicate, or a deletion of something still referenced.
    Conflict(String),
    /// 413 `payload_too_large`.
    PayloadTooLarge(String),
    /// 415 `unsupported_media_type`.
    UnsupportedMediaType(String),
    /// 422 `validation_failed`, with what is wrong with each field.
    Validation(FieldErrors),
    /// The client went away before the end of its request body (connection closed or
    /// reset): nobody is left to answer. Under the server of [`crate::serve`] the
    /// connection is dropped unanswered, which the HTTP metrics record as a cancellation
    /// (`499`, `error_type="cancelled"`); elsewhere (tests without a socket) it answers
    /// `499 client_gone`.
    ClientGone,
    /// 500 `internal`: logged, never sent.
    Internal(Box<dyn StdError + Send + Sync>),
}

/// The status of [`AppError::ClientGone`] where something must be answered (nginx's).
const CLIENT_CLOSED_REQUEST: u16 = 499;

impl AppError {
    /// A 422 about one field.
    pub fn field(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(FieldErrors::from([(name.into(), message.into())]))
    }

    /// A 500 from anything that is an error.
    pub fn internal(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }

    /// What a failure to read the request body means, from its chain of causes: the
    /// client went away (the connection was closed or reset mid-body), the body took too
    /// long (`REQUEST_BODY_TIMEOUT`), or what `otherwise` says (too large, malformed).
    pub fn from_body_error(
        error: &(dyn StdError + 'static),
        otherwise: impl FnOnce() -> Self,
    ) -> Self {
        use std::io::ErrorKind;
        for cause in std::iter::successors(Some(error), |cause| (*cause).source()) {
            if cause.is::<tower_http::timeout::TimeoutError>() {
                return Self::RequestTimeout;
            }
            let gone = cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    ErrorKind::UnexpectedEof
                        | ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                )
            }) || cause
                .downcast_ref::<hyper::Error>()
                .is_some_and(|error| error.is_incomplete_message() || error.is_canceled());
            if gone {
                return Self::ClientGone;
            }
        }
        otherwise()
    }

    /// The status code of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::ClientGone => {
                StatusCode::from_u16(CLIENT_CLOSED_REQUEST).unwrap_or(StatusCode::BAD_REQUEST)
            }
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

/// `garde`'s report: every invalid field, by its path (`lines[0].quantity`); the first
/// message of a field wins.
impl From<garde::Report> for AppError {
    fn from(report: garde::Report) -> Self {
        let mut fields = FieldErrors::new();
        for (path, error) in report.iter() {
            let path = path.to_string();
            let path = if path.is_empty() { "body".into() } else { path };
            fields
                .entry(path)
                .or_insert_with(|| error.message().to_string());
        }
        Self::Validation(fields)
    }
}

/// The field and message of a `serde` error that `serde_path_to_error` located, found in
/// the causes of an extractor's rejection.
fn located<E: StdError + 'static>(rejection: &(dyn StdError + 'static)) -> Option<AppError> {
    let located = std::iter::successors(Some(rejection), |cause| (*cause).source())
        .find_map(|cause| cause.downcast_ref::<serde_path_to_error::Error<E>>())?;
    let path = located.path().to_string();
    let field = if path == "." { "body".to_owned() } else { path };
    let message = located.inner().to_string();
    // serde_json adds where in the text; the field says where in the document.
    let message = message.split(" at line ").next().unwrap_or_default();
    Some(AppError::field(field, message))
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(error) => located::<serde_json::Error>(&error)
                .unwrap_or_else(|| Self::field("body", error.body_text())),
            JsonRejection::JsonSyntaxError(error) => Self::InvalidJson(error.body_text()),
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType(
                "expected a body with Content-Type: application/json".into(),
            ),
            JsonRejection::BytesRejection(error) => Self::from_body_error(&error, || {
                if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Self::PayloadTooLarge("the request body is too large".into())
                } else {
                    Self::BadRequest("the request body could not be read".into())
                }
            }),
            other => Self::BadRequest(other.body_text()),
        }
    }
}

/// A query string that does not deserialize names its parameter: 422.
impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        located::<serde::de::value::Error>(&rejection)
            .unwrap_or_else(|| Self::field("query", rejection.body_text()))
    }
}

/// A path parameter that does not deserialize (an id that is not a positive integer)
/// names nothing: 404.
impl From<PathRejection> for AppError {
    fn from(_: PathRejection) -> Self {
        Self::NotFound("no such resource".into())
    }
}

impl From<MultipartRejection> for AppError {
    fn from(rejection: MultipartRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<MultipartError> for AppError {
    fn from(error: MultipartError) -> Self {
        Self::from_body_error(&error, || {
            if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Self::PayloadTooLarge("the request body is too large".into())
            } else {
                Self::BadRequest(error.body_text())
            }
        })
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
        let message = match &self {
            Self::InvalidJson(message)
            | Self::BadRequest(message)
            | Self::NotFound(message)
            | Self::Conflict(message)
            | Self::PayloadTooLarge(message)
            | Self::UnsupportedMediaType(message) => message.as_str(),
            Self::MethodNotAllowed => "this method is not allowed on this resource",
            Self::RequestTimeout => "the request body did not arrive in time",
            Self::Validation(_) => "some fields are invalid",
            Self::ClientGone => "the client closed the connection before the end of its request",
            Self::Internal(error) => {
                tracing::error!(error = %error, "internal error");
                return internal_response();
            }
        };
        let fields = match &self {
            Self::Validation(fields) => Some(fields),
            _ => None,
        };
        let code = match self {
            Self::InvalidJson(_) => "invalid_json",
            _ => code_of(status),
        };
        let mut response = error_response(status, code, message, fields);
        if matches!(self, Self::ClientGone) {
            response.extensions_mut().insert(Abandoned);
        }
        response
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

/// The code of an error response with this status, for [`AppError`] and for responses
/// made outside the handlers (axum's 405, `ServeDir`'s 404 and 416, the body limit's 413,
/// the timeout's 503).
fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        416 => "range_not_satisfiable",
        422 => "validation_failed",
        CLIENT_CLOSED_REQUEST => "client_gone",
        503 => "unavailable",
        500..=599 => "internal",
        _ => "error",
    }
}

/// Middleware: gives error responses that are not JSON yet (made by axum, `ServeDir`,
/// a layer) the JSON shape, keeping their status and headers (`Allow` on a 405,
/// `Content-Range` on a 416).
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
    let message = match status {
        StatusCode::NOT_FOUND => "no such resource".to_owned(),
        StatusCode::SERVICE_UNAVAILABLE => "the request took too long to answer".to_owned(),
        status if status.is_server_error() => "internal server error".to_owned(),
        status => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    };
    let fresh = error_response(status, code_of(status), &message, None);
    // The length is the new body's; every other header stays.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (_, body) = fresh.into_parts();
    Response::from_parts(parts, body)
}

/// Marks the response of [`AppError::ClientGone`].
#[derive(Clone, Copy, Debug)]
struct Abandoned;

/// Middleware, inside the HTTP metrics layer: when a handler found that its client went
/// away ([`AppError::ClientGone`]), asks the server to drop the connection
/// ([`ClientGone::abandon`]) and never completes, instead of answering nobody. The
/// server then drops this request's future, which the metrics layer records as
/// cancelled. Without the server's handle (tests through `oneshot`), the `499` response
/// goes through.
pub async fn abandon_if_client_gone(request: Request, next: Next) -> Response {
    let connection = request.extensions().get::<ClientGone>().cloned();
    let response = next.run(request).await;
    match connection {
        Some(connection) if response.extensions().get::<Abandoned>().is_some() => {
            tracing::info!("the client went away before the end of its request: not answered");
            connection.abandon();
            std::future::pending().await
        }
        _ => response,
    }
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
