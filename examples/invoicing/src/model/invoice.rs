//! Invoices and their lines. Totals are computed here, never taken from the client; see
//! [`crate::money`] for the rounding.

use serde::{Deserialize, Serialize};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::db::{self, Db};
use crate::error::{AppError, FieldErrors};
use crate::extract::Pagination;
use crate::money::{self, Line, Totals};
use crate::validate;

/// The statuses an invoice can have.
pub const STATUSES: [&str; 4] = ["draft", "issued", "paid", "cancelled"];

/// At most this many lines per invoice.
pub const MAX_LINES: usize = 1000;
/// The largest quantity of a line.
pub const MAX_QUANTITY: f64 = 1_000_000.0;
/// The largest unit price, in cents (one billion euros).
pub const MAX_UNIT_PRICE_CENTS: i64 = 100_000_000_000;

/// The body of `POST` and `PUT`; every field optional so that each missing one is named.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InvoiceInput {
    seller_id: Option<i64>,
    client_id: Option<i64>,
    number: Option<String>,
    issue_date: Option<String>,
    due_date: Option<String>,
    currency: Option<String>,
    status: Option<String>,
    lines: Option<Vec<LineInput>>,
}

/// One line of [`InvoiceInput`].
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LineInput {
    description: Option<String>,
    quantity: Option<f64>,
    unit_price_cents: Option<i64>,
    vat_rate: Option<f64>,
}

/// A validated invoice with its totals, ready to be written.
#[derive(Debug)]
pub struct NewInvoice {
    seller_id: i64,
    client_id: i64,
    number: String,
    issue_date: String,
    due_date: Option<String>,
    currency: String,
    /// Its status (one of [`STATUSES`]).
    pub status: &'static str,
    lines: Vec<(String, Line)>,
    totals: Totals,
}

/// The `'static` spelling of a status, if it is one.
pub fn status(value: &str) -> Option<&'static str> {
    STATUSES.iter().copied().find(|status| *status == value)
}

impl InvoiceInput {
    /// Checks every field and computes the totals, reporting all the wrong fields at once.
    pub fn validate(self) -> Result<NewInvoice, AppError> {
        let mut errors = FieldErrors::new();
        let mut error = |field: &str, message: &str| {
            errors.insert(field.to_owned(), message.to_owned());
        };
        let seller_id = match self.seller_id {
            Some(id) if id > 0 => id,
            Some(_) => {
                error("seller_id", "must be a positive id");
                0
            }
            None => {
                error("seller_id", "required");
                0
            }
        };
        let client_id = match self.client_id {
            Some(id) if id > 0 => id,
            Some(_) => {
                error("client_id", "must be a positive id");
                0
            }
            None => {
                error("client_id", "required");
                0
            }
        };
        let number = validate::text(self.number.as_deref(), 1, 50).unwrap_or_else(|message| {
            error("number", &message);
            String::new()
        });
        let issue_date = match self.issue_date.as_deref() {
            Some(date) => validate::date(date).unwrap_or_else(|message| {
                error("issue_date", &message);
                String::new()
            }),
            None => {
                error("issue_date", "required");
                String::new()
            }
        };
        let due_date = match self.due_date.as_deref().map(validate::date).transpose() {
            Ok(Some(due)) if !issue_date.is_empty() && due < issue_date => {
                error("due_date", "must not be before issue_date");
                None
            }
            Ok(due) => due,
            Err(message) => {
                error("due_date", &message);
                None
            }
        };
        let currency = validate::currency(self.currency.as_deref().unwrap_or("EUR"))
            .unwrap_or_else(|m| {
                error("currency", &m);
                String::new()
            });
        let status = match self.status.as_deref() {
            None => "draft",
            Some(value) => status(value).unwrap_or_else(|| {
                error("status", "must be one of draft, issued, paid, cancelled");
                "draft"
            }),
        };
        let mut lines = Vec::new();
        match self.lines {
            None => error("lines", "required"),
            Some(input) if input.is_empty() => error("lines", "at least one line is required"),
            Some(input) if input.len() > MAX_LINES => {
                error("lines", &format!("at most {MAX_LINES} lines"));
            }
            Some(input) => {
                for (index, line) in input.into_iter().enumerate() {
                    if let Some(line) = line.validate(index, &mut error) {
                        lines.push(line);
                    }
                }
            }
        }
        let totals = money::totals(&lines.iter().map(|(_, line)| *line).collect::<Vec<_>>());
        if totals.is_none() {
            error("lines", "the totals are too large");
        }
        match totals {
            Some(totals) if errors.is_empty() => Ok(NewInvoice {
                seller_id,
                client_id,
                number,
                issue_date,
                due_date,
                currency,
                status,
                lines,
                totals,
            }),
            _ => Err(AppError::Validation(errors)),
        }
    }
}

impl LineInput {
    fn validate(self, index: usize, error: &mut impl FnMut(&str, &str)) -> Option<(String, Line)> {
        let field = |name: &str| format!("lines[{index}].{name}");
        let description = validate::text(self.description.as_deref(), 1, 500)
            .map_err(|message| error(&field("description"), &message))
            .ok();
        let quantity_milli = match self.quantity {
            None => {
                error(&field("quantity"), "required");
                None
            }
            Some(quantity) if quantity <= 0.0 || quantity > MAX_QUANTITY => {
                error(
                    &field("quantity"),
                    &format!("must be > 0 and at most {MAX_QUANTITY}"),
                );
                None
            }
            Some(quantity) => money::scaled(quantity, 3).or_else(|| {
                error(&field("quantity"), "at most 3 decimals");
                None
            }),
        };
        let unit_price_cents = match self.unit_price_cents {
            None => {
                error(&field("unit_price_cents"), "required");
                None
            }
            Some(price) if !(0..=MAX_UNIT_PRICE_CENTS).contains(&price) => {
                error(
                    &field("unit_price_cents"),
                    &format!("must be between 0 and {MAX_UNIT_PRICE_CENTS}"),
                );
                None
            }
            Some(price) => Some(price),
        };
        let vat_rate_bp = match self.vat_rate {
            None => {
                error(&field("vat_rate"), "required");
                None
            }
            Some(rate) if !(0.0..=100.0).contains(&rate) => {
                error(&field("vat_rate"), "must be a percentage between 0 and 100");
                None
            }
            Some(rate) => money::scaled(rate, 2).or_else(|| {
                error(&field("vat_rate"), "at most 2 decimals");
                None
            }),
        };
        Some((
            description?,
            Line {
                quantity_milli: quantity_milli?,
                unit_price_cents: unit_price_cents?,
                vat_rate_bp: vat_rate_bp?,
            },
        ))
    }
}

/// An invoice as answered.
#[derive(Debug, Serialize)]
pub struct Invoice {
    #[serde(flatten)]
    row: InvoiceRow,
    lines: Vec<LineOutput>,
}

impl Invoice {
    /// Its id.
    pub fn id(&self) -> i64 {
        self.row.id
    }
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct InvoiceRow {
    id: i64,
    seller_id: i64,
    client_id: i64,
    number: String,
    issue_date: String,
    due_date: Option<String>,
    currency: String,
    status: String,
    total_net_cents: i64,
    total_vat_cents: i64,
    total_gross_cents: i64,
    created_at: String,
    updated_at: String,
}

const COLUMNS: &str = "id, seller_id, client_id, number, issue_date, due_date, currency, status, \
     total_net_cents, total_vat_cents, total_gross_cents, created_at, updated_at";

/// A line as answered: quantity and VAT rate back in their decimal form.
#[derive(Debug, Serialize)]
struct LineOutput {
    description: String,
    quantity: f64,
    unit_price_cents: i64,
    vat_rate: f64,
    net_cents: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct LineRow {
    invoice_id: i64,
    description: String,
    quantity_milli: i64,
    unit_price_cents: i64,
    vat_rate_bp: i64,
    net_cents: i64,
}

impl From<LineRow> for LineOutput {
    fn from(row: LineRow) -> Self {
        Self {
            description: row.description,
            quantity: row.quantity_milli as f64 / 1000.0,
            unit_price_cents: row.unit_price_cents,
            vat_rate: row.vat_rate_bp as f64 / 100.0,
            net_cents: row.net_cents,
        }
    }
}

/// The filters of the list.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    /// Only this seller's invoices.
    pub seller_id: Option<i64>,
    /// Only this client's invoices.
    pub client_id: Option<i64>,
    /// Only invoices with this status.
    pub status: Option<&'static str>,
}

/// Inserts an invoice and its lines, in one transaction.
pub async fn insert(db: &Db, invoice: &NewInvoice) -> Result<Invoice, AppError> {
    db.timed("insert_invoice", async {
        let mut tx = db.begin_write().await?;
        check_references(&mut tx, invoice, None).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO invoices (seller_id, client_id, number, issue_date, due_date, currency, \
             status, total_net_cents, total_vat_cents, total_gross_cents) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(invoice.seller_id)
        .bind(invoice.client_id)
        .bind(&invoice.number)
        .bind(&invoice.issue_date)
        .bind(&invoice.due_date)
        .bind(&invoice.currency)
        .bind(invoice.status)
        .bind(invoice.totals.net_cents)
        .bind(invoice.totals.vat_cents)
        .bind(invoice.totals.gross_cents)
        .fetch_one(&mut *tx)
        .await
        .map_err(|error| write_error(error, invoice))?;
        insert_lines(&mut tx, id, invoice).await?;
        let created = fetch(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
        tx.commit().await?;
        Ok(created)
    })
    .await
}

/// Replaces the invoice with this id and its lines, or 404.
pub async fn update(db: &Db, id: i64, invoice: &NewInvoice) -> Result<Invoice, AppError> {
    db.timed("update_invoice", async {
        let mut tx = db.begin_write().await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM invoices WHERE id = ?)")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if !exists {
            return Err(not_found(id));
        }
        check_references(&mut tx, invoice, Some(id)).await?;
        sqlx::query(
            "UPDATE invoices SET seller_id = ?, client_id = ?, number = ?, issue_date = ?, \
             due_date = ?, currency = ?, status = ?, total_net_cents = ?, total_vat_cents = ?, \
             total_gross_cents = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             WHERE id = ?",
        )
        .bind(invoice.seller_id)
        .bind(invoice.client_id)
        .bind(&invoice.number)
        .bind(&invoice.issue_date)
        .bind(&invoice.due_date)
        .bind(&invoice.currency)
        .bind(invoice.status)
        .bind(invoice.totals.net_cents)
        .bind(invoice.totals.vat_cents)
        .bind(invoice.totals.gross_cents)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|error| write_error(error, invoice))?;
        sqlx::query("DELETE FROM invoice_lines WHERE invoice_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_lines(&mut tx, id, invoice).await?;
        let updated = fetch(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
        tx.commit().await?;
        Ok(updated)
    })
    .await
}

/// The seller and client must exist (422), the number must be free for the seller (409).
async fn check_references(
    conn: &mut SqliteConnection,
    invoice: &NewInvoice,
    updating: Option<i64>,
) -> Result<(), AppError> {
    let mut errors = FieldErrors::new();
    let seller: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sellers WHERE id = ?)")
        .bind(invoice.seller_id)
        .fetch_one(&mut *conn)
        .await?;
    if !seller {
        errors.insert("seller_id".into(), "no such seller".into());
    }
    let client: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM clients WHERE id = ?)")
        .bind(invoice.client_id)
        .fetch_one(&mut *conn)
        .await?;
    if !client {
        errors.insert("client_id".into(), "no such client".into());
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let taken: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM invoices WHERE seller_id = ? AND number = ? AND id IS NOT ?)",
    )
    .bind(invoice.seller_id)
    .bind(&invoice.number)
    .bind(updating)
    .fetch_one(&mut *conn)
    .await?;
    if taken {
        return Err(duplicate(invoice));
    }
    Ok(())
}

fn duplicate(invoice: &NewInvoice) -> AppError {
    AppError::Conflict(format!(
        "seller {} already has an invoice numbered {:?}",
        invoice.seller_id, invoice.number
    ))
}

/// A constraint the checks above should have caught, in case they did not.
fn write_error(error: sqlx::Error, invoice: &NewInvoice) -> AppError {
    if db::is_unique_violation(&error) {
        duplicate(invoice)
    } else if db::is_foreign_key_violation(&error) {
        AppError::field("seller_id", "the seller or the client does not exist")
    } else {
        error.into()
    }
}

async fn insert_lines(
    conn: &mut SqliteConnection,
    id: i64,
    invoice: &NewInvoice,
) -> Result<(), sqlx::Error> {
    for (position, (description, line)) in invoice.lines.iter().enumerate() {
        let net_cents =
            i64::try_from(line.net_cents()).expect("validated: the totals fit in 64 bits");
        sqlx::query(
            "INSERT INTO invoice_lines (invoice_id, position, description, quantity_milli, \
             unit_price_cents, vat_rate_bp, net_cents) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(position as i64)
        .bind(description)
        .bind(line.quantity_milli)
        .bind(line.unit_price_cents)
        .bind(line.vat_rate_bp)
        .bind(net_cents)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The invoice with this id, with its lines.
async fn fetch(conn: &mut SqliteConnection, id: i64) -> Result<Option<Invoice>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM invoices WHERE id = ?");
    let Some(row) = sqlx::query_as::<_, InvoiceRow>(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let mut invoices = with_lines(conn, vec![row]).await?;
    Ok(invoices.pop())
}

/// Attaches their lines to `rows`, with one query.
async fn with_lines(
    conn: &mut SqliteConnection,
    rows: Vec<InvoiceRow>,
) -> Result<Vec<Invoice>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = QueryBuilder::<Sqlite>::new(
        "SELECT invoice_id, description, quantity_milli, unit_price_cents, vat_rate_bp, \
         net_cents FROM invoice_lines WHERE invoice_id IN (",
    );
    let mut ids = query.separated(", ");
    for row in &rows {
        ids.push_bind(row.id);
    }
    query.push(") ORDER BY invoice_id, position");
    let mut lines = query
        .build_query_as::<LineRow>()
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .peekable();
    let mut invoices: Vec<Invoice> = rows
        .into_iter()
        .map(|row| Invoice {
            row,
            lines: Vec::new(),
        })
        .collect();
    // Both are sorted by invoice id.
    let mut by_id: Vec<&mut Invoice> = invoices.iter_mut().collect();
    by_id.sort_by_key(|invoice| invoice.row.id);
    for invoice in by_id {
        while let Some(line) = lines.next_if(|line| line.invoice_id <= invoice.row.id) {
            if line.invoice_id == invoice.row.id {
                invoice.lines.push(line.into());
            }
        }
    }
    Ok(invoices)
}

/// The invoice with this id, or 404.
pub async fn get(db: &Db, id: i64) -> Result<Invoice, AppError> {
    db.timed("get_invoice", async {
        let mut conn = db.pool().acquire().await?;
        fetch(&mut conn, id).await
    })
    .await?
    .ok_or_else(|| not_found(id))
}

/// Whether an invoice with this id exists.
pub async fn exists(db: &Db, id: i64) -> Result<bool, AppError> {
    let query = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM invoices WHERE id = ?)").bind(id);
    Ok(db
        .timed("invoice_exists", query.fetch_one(db.pool()))
        .await?)
}

/// One page of the invoices matching `filters`, by id, and how many match.
pub async fn list(
    db: &Db,
    filters: &Filters,
    page: Pagination,
) -> Result<(Vec<Invoice>, i64), AppError> {
    let (items, total) = db
        .timed("list_invoices", async {
            let mut conn = db.pool().acquire().await?;
            let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM invoices");
            push_filters(&mut count, filters);
            let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
            let mut select = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM invoices"));
            push_filters(&mut select, filters);
            select.push(" ORDER BY id LIMIT ");
            select.push_bind(page.limit);
            select.push(" OFFSET ");
            select.push_bind(page.offset);
            let rows = select
                .build_query_as::<InvoiceRow>()
                .fetch_all(&mut *conn)
                .await?;
            let items = with_lines(&mut conn, rows).await?;
            Ok::<_, sqlx::Error>((items, total))
        })
        .await?;
    Ok((items, total))
}

fn push_filters(query: &mut QueryBuilder<'_, Sqlite>, filters: &Filters) {
    let mut word = " WHERE ";
    if let Some(seller_id) = filters.seller_id {
        query.push(word).push("seller_id = ").push_bind(seller_id);
        word = " AND ";
    }
    if let Some(client_id) = filters.client_id {
        query.push(word).push("client_id = ").push_bind(client_id);
        word = " AND ";
    }
    if let Some(status) = filters.status {
        query.push(word).push("status = ").push_bind(status);
    }
}

/// Deletes the invoice with this id, its lines and its attachment records, or 404.
/// Returns the stored names of its attachments, whose files the caller removes.
pub async fn delete(db: &Db, id: i64) -> Result<Vec<String>, AppError> {
    db.timed("delete_invoice", async {
        let mut tx = db.begin_write().await?;
        let files: Vec<String> =
            sqlx::query_scalar("SELECT stored_name FROM attachments WHERE invoice_id = ?")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        let deleted = sqlx::query("DELETE FROM invoices WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(not_found(id));
        }
        tx.commit().await?;
        Ok(files)
    })
    .await
}

fn not_found(id: i64) -> AppError {
    AppError::NotFound(format!("no invoice with id {id}"))
}
