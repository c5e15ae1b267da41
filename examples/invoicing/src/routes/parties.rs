//! `/api/sellers` and `/api/clients`: the same five routes over two tables.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::AppState;
use crate::error::AppError;
use crate::extract::{ApiJson, Id, Page, Pagination};
use crate::model::party::{self, CLIENTS, Kind, PartyInput, SELLERS};

/// `/api/sellers` and `/api/sellers/{id}`.
pub fn sellers() -> Router<AppState> {
    router("/api/sellers", SELLERS)
}

/// `/api/clients` and `/api/clients/{id}`.
pub fn clients() -> Router<AppState> {
    router("/api/clients", CLIENTS)
}

fn router(base: &'static str, kind: Kind) -> Router<AppState> {
    Router::new()
        .route(
            base,
            get(move |state, page| list(state, page, kind))
                .post(move |state, body| create(state, body, base, kind)),
        )
        .route(
            &format!("{base}/{{id}}"),
            get(move |state, id| show(state, id, kind))
                .put(move |state, id, body| update(state, id, body, kind))
                .delete(move |state, id| remove(state, id, kind)),
        )
}

async fn list(
    State(state): State<AppState>,
    page: Pagination,
    kind: Kind,
) -> Result<Json<Page<party::Party>>, AppError> {
    garde::Validate::validate(&page)?;
    let (items, total) = party::list(&state.db, kind, page).await?;
    Ok(Json(page.page(items, total)))
}

async fn create(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<PartyInput>,
    base: &'static str,
    kind: Kind,
) -> Result<Response, AppError> {
    let new = input.check(kind)?;
    let party = party::insert(&state.db, kind, &new).await?;
    let location = format!("{base}/{}", party.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(party),
    )
        .into_response())
}

async fn show(
    State(state): State<AppState>,
    Id(id): Id,
    kind: Kind,
) -> Result<Json<party::Party>, AppError> {
    Ok(Json(party::get(&state.db, kind, id).await?))
}

async fn update(
    State(state): State<AppState>,
    Id(id): Id,
    ApiJson(input): ApiJson<PartyInput>,
    kind: Kind,
) -> Result<Json<party::Party>, AppError> {
    let new = input.check(kind)?;
    Ok(Json(party::update(&state.db, kind, id, &new).await?))
}

async fn remove(
    State(state): State<AppState>,
    Id(id): Id,
    kind: Kind,
) -> Result<StatusCode, AppError> {
    party::delete(&state.db, kind, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
