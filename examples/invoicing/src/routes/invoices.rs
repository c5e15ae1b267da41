//! `/api/invoices`, `/api/invoices/{id}` and `/api/invoices/{id}/pdf`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::AppState;
use crate::config::PdfGeneration;
use crate::error::AppError;
use crate::extract::{ApiJson, Id, Page, Pagination};
use crate::model::invoice::{self, Filters, Invoice, InvoiceInput};

/// The invoice routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/invoices", get(list).post(create))
        .route("/api/invoices/{id}", get(show).put(update).delete(remove))
        .route("/api/invoices/{id}/pdf", get(pdf))
}

/// `GET /api/invoices?seller_id=&client_id=&status=&limit=&offset=`
async fn list(
    State(state): State<AppState>,
    page: Pagination,
    filters: Filters,
) -> Result<Json<Page<Invoice>>, AppError> {
    garde::Validate::validate(&page)?;
    garde::Validate::validate(&filters)?;
    let (items, total) = invoice::list(&state.db, &filters, page).await?;
    Ok(Json(page.page(items, total)))
}

async fn create(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<InvoiceInput>,
) -> Result<Response, AppError> {
    let new = input.check()?;
    let created = invoice::insert(&state.db, &new).await?;
    state.telemetry.business.invoice_created(new.status);
    let created = submit_if_issued(&state, created).await?;
    let location = format!("/api/invoices/{}", created.id());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    )
        .into_response())
}

async fn show(State(state): State<AppState>, Id(id): Id) -> Result<Json<Invoice>, AppError> {
    Ok(Json(invoice::get(&state.db, id).await?))
}

/// `GET /api/invoices/{id}/pdf`: the invoice as a PDF, generated from its data on each
/// request, where `PDF_GENERATION` says: on the blocking pool by default, so that the
/// CPU work does not hold a worker thread of the runtime.
async fn pdf(State(state): State<AppState>, Id(id): Id) -> Result<Response, AppError> {
    let invoice = invoice::get(&state.db, id).await?;
    let bytes = match state.config.pdf_generation {
        PdfGeneration::BlockingPool => tokio::task::spawn_blocking(move || invoice.to_pdf())
            .await
            .map_err(AppError::internal)?,
        PdfGeneration::Runtime => invoice.to_pdf(),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"invoice-{id}.pdf\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn update(
    State(state): State<AppState>,
    Id(id): Id,
    ApiJson(input): ApiJson<InvoiceInput>,
) -> Result<Json<Invoice>, AppError> {
    let new = input.check()?;
    let updated = invoice::update(&state.db, id, &new).await?;
    Ok(Json(submit_if_issued(&state, updated).await?))
}

/// Submits an invoice to the PDP (when one is configured) once it is issued, and keeps
/// its answer on the invoice (`pdp_status`). The PDP's refusal or absence does not fail
/// the request: the invoice is issued, and its `pdp_status` says what the PDP answered.
async fn submit_if_issued(state: &AppState, invoice: Invoice) -> Result<Invoice, AppError> {
    let Some(pdp) = state.pdp.as_ref().filter(|_| invoice.to_submit()) else {
        return Ok(invoice);
    };
    let id = invoice.id();
    let answer = pdp.submit(invoice::submission(&state.db, id).await?).await;
    invoice::set_pdp_status(&state.db, id, &answer).await
}

/// Deletes the invoice, its lines and its attachments (records and files).
async fn remove(State(state): State<AppState>, Id(id): Id) -> Result<StatusCode, AppError> {
    let files = invoice::delete(&state.db, id).await?;
    for name in files {
        let path = state.config.uploads_dir.join(&name);
        if let Err(error) = tokio::fs::remove_file(&path).await {
            tracing::warn!(path = %path.display(), %error, "cannot remove an attachment file");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
