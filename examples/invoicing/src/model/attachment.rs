//! Attachment records. The files themselves live in `UPLOADS_DIR` under their stored
//! name; see `routes::attachments` for how they get there.

use serde::Serialize;

use crate::db::{self, Db};
use crate::error::AppError;
use crate::extract::Pagination;

/// An attachment as answered.
#[derive(Debug, Serialize)]
pub struct Attachment {
    /// Its id.
    pub id: i64,
    /// The name the client gave the file (its last path component), for display.
    pub filename: String,
    /// The type found in the file's first bytes, not the one the client claimed.
    pub content_type: String,
    /// Its size in bytes.
    pub size: i64,
    /// Where to download it: `/uploads/{stored name}`.
    pub url: String,
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: i64,
    filename: String,
    stored_name: String,
    content_type: String,
    size: i64,
}

impl From<Row> for Attachment {
    fn from(row: Row) -> Self {
        Self {
            id: row.id,
            url: format!("/uploads/{}", row.stored_name),
            filename: row.filename,
            content_type: row.content_type,
            size: row.size,
        }
    }
}

/// What [`insert`] records.
#[derive(Debug)]
pub struct NewAttachment<'a> {
    /// The invoice it belongs to.
    pub invoice_id: i64,
    /// The client's name for it.
    pub filename: &'a str,
    /// The server's name for it in `UPLOADS_DIR`.
    pub stored_name: &'a str,
    /// The sniffed type.
    pub content_type: &'static str,
    /// Its size in bytes.
    pub size: i64,
}

/// Records an attachment; 404 if the invoice was deleted meanwhile.
pub async fn insert(db: &Db, new: &NewAttachment<'_>) -> Result<Attachment, AppError> {
    let query = sqlx::query_as::<_, Row>(
        "INSERT INTO attachments (invoice_id, filename, stored_name, content_type, size) \
         VALUES (?, ?, ?, ?, ?) RETURNING id, filename, stored_name, content_type, size",
    )
    .bind(new.invoice_id)
    .bind(new.filename)
    .bind(new.stored_name)
    .bind(new.content_type)
    .bind(new.size);
    match db
        .timed("insert_attachment", query.fetch_one(db.pool()))
        .await
    {
        Ok(row) => Ok(row.into()),
        Err(error) if db::is_foreign_key_violation(&error) => Err(AppError::NotFound(format!(
            "no invoice with id {}",
            new.invoice_id
        ))),
        Err(error) => Err(error.into()),
    }
}

/// One page of the attachments of an invoice, by id, and how many it has.
pub async fn list(
    db: &Db,
    invoice_id: i64,
    page: Pagination,
) -> Result<(Vec<Attachment>, i64), AppError> {
    let (rows, total) = db
        .timed("list_attachments", async {
            let mut conn = db.pool().acquire().await?;
            let total: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM attachments WHERE invoice_id = ?")
                    .bind(invoice_id)
                    .fetch_one(&mut *conn)
                    .await?;
            let rows = sqlx::query_as::<_, Row>(
                "SELECT id, filename, stored_name, content_type, size FROM attachments \
                 WHERE invoice_id = ? ORDER BY id LIMIT ? OFFSET ?",
            )
            .bind(invoice_id)
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&mut *conn)
            .await?;
            Ok::<_, sqlx::Error>((rows, total))
        })
        .await?;
    Ok((rows.into_iter().map(Into::into).collect(), total))
}
