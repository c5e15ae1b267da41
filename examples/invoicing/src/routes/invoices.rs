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
use crate::model::invoice::{self, Filters, Invoice, InvoiceInput, NewInvoice};
use crate::outbox::{Outbox, Ticket};

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
    let ticket = submission_ticket(&state, &new);
    let (created, queued) =
        invoice::insert(&state.db, &new, ticket.as_ref().map(Ticket::key)).await?;
    state.telemetry.business.invoice_created(new.status);
    let created = first_attempt(&state, created, ticket.filter(|_| queued)).await;
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
    let ticket = submission_ticket(&state, &new);
    let (updated, queued) =
        invoice::update(&state.db, id, &new, ticket.as_ref().map(Ticket::key)).await?;
    Ok(Json(
        first_attempt(&state, updated, ticket.filter(|_| queued)).await,
    ))
}

/// A submission key to queue the submission under, for an issued invoice with a PDP
/// configured.
fn submission_ticket(state: &AppState, new: &NewInvoice) -> Option<Ticket> {
    state
        .outbox
        .as_ref()
        .filter(|_| new.status == "issued")
        .map(Outbox::ticket)
}

/// With a PDP configured, an invoice that becomes issued is submitted by the service: its
/// submission was written in the transaction that issued it ([`crate::outbox`]). This
/// waits a little for the first attempt (a `ticket` of the queued submission), and reads
/// the invoice again, so that the answer shows the PDP's answer (`pdp_status`) when it
/// is quick, or the submission pending (`pdp_status` null, `pdp_attempts`,
/// `pdp_last_error`). Neither the PDP's refusal nor its absence fails the request, and
/// the submission does not depend on it: a client that leaves changes nothing.
async fn first_attempt(state: &AppState, invoice: Invoice, ticket: Option<Ticket>) -> Invoice {
    let Some(ticket) = ticket else {
        return invoice;
    };
    ticket.wait().await;
    match invoice::get(&state.db, invoice.id()).await {
        Ok(read) => read,
        // Committed: answer what was written rather than an error.
        Err(error) => {
            tracing::warn!(?error, "cannot read an issued invoice back");
            invoice
        }
    }
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
