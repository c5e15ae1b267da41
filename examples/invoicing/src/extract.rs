//! Extractors whose rejections are [`AppError`]s, so that every failure has the JSON shape.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;

use crate::error::{AppError, FieldErrors};

/// A JSON object body: 415 without a JSON `Content-Type`, 400 `invalid_json` when it does
/// not parse, 422 `validation_failed` when it is not an object or a field has the wrong
/// type (naming the field), 413 beyond the body limit. Unknown fields are ignored.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(AppError::UnsupportedMediaType(
                "expected a body with Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::PayloadTooLarge("the request body is too large".into())
                } else {
                    AppError::BadRequest("the request body could not be read".into())
                }
            })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|error| AppError::InvalidJson(format!("the body is not JSON: {error}")))?;
        if !value.is_object() {
            return Err(AppError::field("body", "must be a JSON object"));
        }
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|error| {
                let path = error.path().to_string();
                let field = if path == "." { "body".to_owned() } else { path };
                AppError::field(field, error.into_inner().to_string())
            })
    }
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5
            && essence[..essence.len() - 5].contains('/')
            && essence.to_ascii_lowercase().ends_with("+json"))
}

/// The `{id}` of a path. An id that is not a positive integer names nothing: 404.
#[derive(Clone, Copy, Debug)]
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let not_found = || AppError::NotFound("no such resource".into());
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found())?;
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(Id(id)),
            _ => Err(not_found()),
        }
    }
}

/// The query string as name → value, parsed further by [`Pagination`] and the filters.
#[derive(Debug, Default)]
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(params)| Params(params))
            .map_err(|rejection| AppError::field("query", rejection.body_text()))
    }
}

impl Params {
    /// An optional integer parameter at least `min`; errors go to `errors`.
    pub fn integer(&self, name: &str, min: i64, errors: &mut FieldErrors) -> Option<i64> {
        let raw = self.0.get(name)?;
        match raw.trim().parse::<i64>() {
            Ok(value) if value >= min => Some(value),
            _ => {
                errors.insert(name.into(), format!("must be an integer ≥ {min}"));
                None
            }
        }
    }

    /// An optional text parameter.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// The default page size of lists.
pub const DEFAULT_LIMIT: i64 = 50;
/// The largest page size of lists.
pub const MAX_LIMIT: i64 = 500;

/// `limit` (default 50, at most 500) and `offset` (default 0) of a list.
#[derive(Clone, Copy, Debug)]
pub struct Pagination {
    /// Items per page.
    pub limit: i64,
    /// Items skipped.
    pub offset: i64,
}

impl Pagination {
    /// Reads `limit` and `offset`; a value out of range is a field error.
    pub fn from_params(params: &Params, errors: &mut FieldErrors) -> Self {
        let limit = params.integer("limit", 1, errors);
        if limit.is_some_and(|limit| limit > MAX_LIMIT) {
            errors.insert("limit".into(), format!("must be at most {MAX_LIMIT}"));
        }
        let offset = params.integer("offset", 0, errors);
        Self {
            limit: limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT),
            offset: offset.unwrap_or(0),
        }
    }
}

/// One page of a list: `{"items":[...],"total":N,"limit":L,"offset":O}`.
#[derive(Debug, serde::Serialize)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// How many items match, on every page.
    pub total: i64,
    /// The page size asked for.
    pub limit: i64,
    /// The items skipped.
    pub offset: i64,
}

impl Pagination {
    /// The page answered for these items, of `total` matching.
    pub fn page<T>(self, items: Vec<T>, total: i64) -> Page<T> {
        Page {
            items,
            total,
            limit: self.limit,
            offset: self.offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let check = |value: &'static str| is_json(Some(&header::HeaderValue::from_static(value)));
        assert!(check("application/json"));
        assert!(check("application/json; charset=utf-8"));
        assert!(check("Application/JSON"));
        assert!(check("application/merge-patch+json"));
        assert!(!check("text/plain"));
        assert!(!check("+json"));
        assert!(!check("application/jsonx"));
        assert!(!is_json(None));
    }
}
