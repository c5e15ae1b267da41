//! Extractors whose rejections are [`AppError`]s, so that every failure has the JSON
//! shape: axum's own extractors, derived with a custom rejection.

use axum::extract::{FromRequest, FromRequestParts, Path, Query};
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// A JSON body (`axum::Json`): 415 without a JSON `Content-Type`, 400 `invalid_json` when
/// it does not parse, 422 `validation_failed` when a field has the wrong type (naming
/// the field), 413 beyond the body limit. Unknown fields are ignored.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct ApiJson<T>(pub T);

/// The `{id}` of a path. An id that is not a positive integer names nothing: 404.
#[derive(Clone, Copy, Debug, Deserialize, FromRequestParts)]
#[serde(try_from = "i64")]
#[from_request(via(Path), rejection(AppError))]
pub struct Id(pub i64);

impl TryFrom<i64> for Id {
    type Error = &'static str;

    fn try_from(id: i64) -> Result<Self, Self::Error> {
        if id > 0 {
            Ok(Self(id))
        } else {
            Err("ids are positive")
        }
    }
}

/// The default page size of lists.
pub const DEFAULT_LIMIT: i64 = 50;
/// The largest page size of lists.
pub const MAX_LIMIT: i64 = 500;

/// `?limit=` (default 50, 1 to 500) and `?offset=` (default 0) of a list; call
/// `garde::Validate::validate` before use.
#[derive(Clone, Copy, Debug, Deserialize, FromRequestParts, garde::Validate)]
#[from_request(via(Query), rejection(AppError))]
pub struct Pagination {
    /// Items per page.
    #[serde(default = "default_limit")]
    #[garde(range(min = 1, max = MAX_LIMIT))]
    pub limit: i64,
    /// Items skipped.
    #[serde(default)]
    #[garde(range(min = 0))]
    pub offset: i64,
}

fn default_limit() -> i64 {
    DEFAULT_LIMIT
}

/// One page of a list: `{"items":[...],"total":N,"limit":L,"offset":O}`.
#[derive(Debug, Serialize)]
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
