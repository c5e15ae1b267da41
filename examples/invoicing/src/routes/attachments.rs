//! `POST /api/invoices/{id}/attachments` (multipart, field `file`) and
//! `GET /api/invoices/{id}/attachments`.
//!
//! An upload is streamed to a temporary file in `UPLOADS_DIR` while it is counted and its
//! first bytes are checked: PDF (`%PDF-`), PNG (`\x89PNG\r\n\x1a\n`) or JPEG (`\xFF\xD8\xFF`)
//! only, whatever the client claims (415 otherwise), at most `MAX_UPLOAD_BYTES` (413
//! beyond). It is then renamed to a server-generated name (`{uuid}.{pdf|png|jpg}`), so no
//! client-chosen name ever reaches the file system, and recorded. A failed or abandoned
//! upload leaves no file behind.

use std::path::{Path, PathBuf};

use axum::extract::multipart::Field;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use tokio::io::AsyncWriteExt;
use tower_http::limit::RequestBodyLimitLayer;

use crate::AppState;
use crate::config::Config;
use crate::error::AppError;
use crate::extract::{Id, Page, Pagination};
use crate::model::attachment::{self, Attachment, NewAttachment};
use crate::model::invoice;

/// Room for the multipart headers and boundaries around the file, on top of
/// `MAX_UPLOAD_BYTES`.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// The attachment routes, with the body limit of uploads: a `Content-Length` beyond it
/// is refused before the body is read, and a body that runs past it is cut.
pub fn router(config: &Config) -> Router<AppState> {
    let limit = usize::try_from(config.max_upload_bytes.saturating_add(MULTIPART_OVERHEAD))
        .unwrap_or(usize::MAX);
    let upload = post(upload)
        .layer::<_, std::convert::Infallible>(RequestBodyLimitLayer::new(limit))
        .layer(DefaultBodyLimit::disable());
    Router::new().route("/api/invoices/{id}/attachments", upload.get(list))
}

async fn list(
    State(state): State<AppState>,
    Id(invoice_id): Id,
    page: Pagination,
) -> Result<Json<Page<Attachment>>, AppError> {
    garde::Validate::validate(&page)?;
    if !invoice::exists(&state.db, invoice_id).await? {
        return Err(no_invoice(invoice_id));
    }
    let (items, total) = attachment::list(&state.db, invoice_id, page).await?;
    Ok(Json(page.page(items, total)))
}

async fn upload(
    State(state): State<AppState>,
    Id(invoice_id): Id,
    request: Request,
) -> Result<Response, AppError> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .get(..19)
                .is_some_and(|start| start.eq_ignore_ascii_case("multipart/form-data"))
        });
    if !is_multipart {
        return Err(AppError::UnsupportedMediaType(
            "expected a multipart/form-data body with a field named file".into(),
        ));
    }
    if !invoice::exists(&state.db, invoice_id).await? {
        return Err(no_invoice(invoice_id));
    }
    let mut multipart = Multipart::from_request(request, &state).await?;
    while let Some(field) = multipart.next_field().await? {
        if field.name() == Some("file") {
            let created = store(&state, invoice_id, field).await?;
            return Ok((
                StatusCode::CREATED,
                [(header::LOCATION, created.url.clone())],
                Json(created),
            )
                .into_response());
        }
    }
    Err(AppError::field(
        "file",
        "required: a multipart field named file",
    ))
}

/// Streams the field to a temporary file, checks it, renames it and records it.
async fn store(
    state: &AppState,
    invoice_id: i64,
    mut field: Field<'_>,
) -> Result<Attachment, AppError> {
    let max = state.config.max_upload_bytes;
    let filename = display_name(field.file_name());
    let id = uuid::Uuid::new_v4();
    let dir = &state.config.uploads_dir;
    let mut temp = TempFile(Some(dir.join(format!(".{id}{PART_SUFFIX}"))));
    let mut file = tokio::fs::File::create(temp.path()).await?;

    let mut size: u64 = 0;
    let mut head: Vec<u8> = Vec::with_capacity(SNIFF_LEN);
    let mut kind = None;
    while let Some(chunk) = field.chunk().await? {
        size += chunk.len() as u64;
        if size > max {
            return Err(AppError::PayloadTooLarge(format!(
                "attachments are limited to {max} bytes"
            )));
        }
        if kind.is_none() {
            let wanted = (SNIFF_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..wanted]);
            if head.len() == SNIFF_LEN {
                kind = Some(sniff(&head)?);
            }
        }
        file.write_all(&chunk).await?;
    }
    let (content_type, extension) = match kind {
        Some(kind) => kind,
        None if head.is_empty() => return Err(AppError::field("file", "the file is empty")),
        None => sniff(&head)?,
    };
    // Acknowledged means stored: on disk before the 201.
    file.sync_all().await?;
    drop(file);

    let stored_name = format!("{id}.{extension}");
    let path = dir.join(&stored_name);
    tokio::fs::rename(temp.path(), &path).await?;
    temp.0 = Some(path);
    let record = NewAttachment {
        invoice_id,
        filename: &filename,
        stored_name: &stored_name,
        content_type,
        size: i64::try_from(size).map_err(AppError::internal)?,
    };
    let created = attachment::insert(&state.db, &record).await?;
    temp.keep();
    state.telemetry.business.attachment_stored(size);
    Ok(created)
}

/// The suffix of an upload being received: `.{uuid}.part`, a hidden name that the static
/// folders never serve.
const PART_SUFFIX: &str = ".part";

/// Removes the `.{uuid}.part` files that a crash (SIGKILL, power cut) left in `dir`
/// mid-upload, and returns how many. Run at start-up, before any upload can begin.
pub async fn remove_partial_uploads(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.')
            && name.ends_with(PART_SUFFIX)
            && entry.file_type().await?.is_file()
        {
            tokio::fs::remove_file(entry.path()).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Enough bytes to tell the accepted types apart.
const SNIFF_LEN: usize = 8;

/// The type of a file from its first bytes: (content type, extension), or 415.
fn sniff(head: &[u8]) -> Result<(&'static str, &'static str), AppError> {
    if head.starts_with(b"%PDF-") {
        Ok(("application/pdf", "pdf"))
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok(("image/png", "png"))
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(("image/jpeg", "jpg"))
    } else {
        Err(AppError::UnsupportedMediaType(
            "attachments must be PDF, PNG or JPEG files".into(),
        ))
    }
}

/// The client's file name, for display only: its last path component, without control
/// characters, at most 255 characters.
fn display_name(name: Option<&str>) -> String {
    let name = name
        .unwrap_or("")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(255)
        .collect::<String>();
    let name = name.trim();
    if name.is_empty() || name == "." || name == ".." {
        "file".to_owned()
    } else {
        name.to_owned()
    }
}

fn no_invoice(id: i64) -> AppError {
    AppError::NotFound(format!("no invoice with id {id}"))
}

/// A file removed when dropped unless kept: a failed, refused or abandoned (client gone,
/// future dropped) upload leaves nothing behind.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("a path until kept")
    }

    fn keep(&mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let Some(path) = self.0.take() else { return };
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), %error, "cannot remove a failed upload");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        assert_eq!(display_name(Some("invoice.pdf")), "invoice.pdf");
        assert_eq!(display_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(display_name(Some("C:\\Users\\me\\scan.png")), "scan.png");
        assert_eq!(display_name(Some("a\u{0}b\nc.pdf")), "abc.pdf");
        assert_eq!(display_name(Some("..")), "file");
        assert_eq!(display_name(Some("dir/")), "file");
        assert_eq!(display_name(None), "file");
        assert_eq!(display_name(Some(&"x".repeat(300))).len(), 255);
    }

    #[test]
    fn sniffs_the_three_types() {
        assert_eq!(sniff(b"%PDF-1.7\n").unwrap().0, "application/pdf");
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n").unwrap().0, "image/png");
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap().0, "image/jpeg");
        assert!(sniff(b"GIF89a").is_err());
        assert!(sniff(b"<html>").is_err());
        assert!(sniff(b"%PD").is_err());
    }
}
