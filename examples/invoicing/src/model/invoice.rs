//! Invoices and their lines. Totals are computed here, never taken from the client; see
//! [`crate::money`] for the rounding.

use serde::{Deserialize, Serialize};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

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
pub const MAX_QUANTITY: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
/// The largest unit price, in cents (one billion euros).
pub const MAX_UNIT_PRICE_CENTS: i64 = 100_000_000_000;

/// The body of `POST` and `PUT`, checked by `garde`; every field optional so that each
/// missing one is named.
#[derive(Debug, Default, Deserialize, garde::Validate)]
#[serde(default)]
pub struct InvoiceInput {
    #[garde(required, range(min = 1))]
    seller_id: Option<i64>,
    #[garde(required, range(min = 1))]
    client_id: Option<i64>,
    #[serde(deserialize_with = "validate::trimmed")]
    #[garde(required, length(chars, max = 50), custom(validate::plain))]
    number: Option<String>,
    #[garde(required, custom(validate::date))]
    issue_date: Option<String>,
    #[garde(custom(validate::date), custom(not_before(&self.issue_date)))]
    due_date: Option<String>,
    #[serde(deserialize_with = "validate::code")]
    #[garde(custom(validate::currency))]
    currency: Option<String>,
    #[garde(custom(known_status))]
    status: Option<String>,
    #[garde(required, length(min = 1, max = MAX_LINES), dive)]
    lines: Option<Vec<LineInput>>,
}

/// One line of [`InvoiceInput`]. Quantities and rates are read exactly from the JSON
/// text ([`validate::exact_decimal`]), never through `f64`.
#[derive(Debug, Default, Deserialize, garde::Validate)]
#[serde(default)]
pub struct LineInput {
    #[serde(deserialize_with = "validate::trimmed")]
    #[garde(required, length(chars, max = 500), custom(validate::plain))]
    description: Option<String>,
    #[serde(deserialize_with = "validate::exact_decimal")]
    #[garde(required, custom(validate::decimal(true, MAX_QUANTITY, 3)))]
    quantity: Option<Decimal>,
    #[garde(required, range(min = 0, max = MAX_UNIT_PRICE_CENTS))]
    unit_price_cents: Option<i64>,
    #[serde(deserialize_with = "validate::exact_decimal")]
    #[garde(required, custom(validate::decimal(false, Decimal::ONE_HUNDRED, 2)))]
    vat_rate: Option<Decimal>,
}

/// The due date is not before a valid issue date.
fn not_before(issue_date: &Option<String>) -> impl FnOnce(&Option<String>, &()) -> garde::Result {
    move |due_date, context| match (issue_date, due_date) {
        (Some(issue), Some(due)) if validate::date(issue_date, context).is_ok() && due < issue => {
            Err(garde::Error::new("must not be before issue_date"))
        }
        _ => Ok(()),
    }
}

fn known_status(value: &Option<String>, _: &()) -> garde::Result {
    match value.as_deref().map(status) {
        Some(None) => Err(garde::Error::new(
            "must be one of draft, issued, paid, cancelled",
        )),
        _ => Ok(()),
    }
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
    pub fn check(self) -> Result<NewInvoice, AppError> {
        garde::Validate::validate(&self)?;
        let lines: Vec<(String, Line)> = self
            .lines
            .unwrap_or_default()
            .into_iter()
            .map(|line| {
                let amounts = Line {
                    quantity: line.quantity.unwrap_or_default(),
                    unit_price_cents: line.unit_price_cents.unwrap_or_default(),
                    vat_rate: line.vat_rate.unwrap_or_default(),
                };
                (line.description.unwrap_or_default(), amounts)
            })
            .collect();
        let amounts: Vec<Line> = lines.iter().map(|(_, line)| *line).collect();
        let totals = money::totals(&amounts)
            .ok_or_else(|| AppError::field("lines", "the totals are too large"))?;
        Ok(NewInvoice {
            seller_id: self.seller_id.unwrap_or_default(),
            client_id: self.client_id.unwrap_or_default(),
            number: self.number.unwrap_or_default(),
            issue_date: self.issue_date.unwrap_or_default(),
            due_date: self.due_date,
            currency: self.currency.unwrap_or_else(|| "EUR".into()),
            status: self.status.as_deref().and_then(status).unwrap_or("draft"),
            lines,
            totals,
        })
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

    /// Its PDF (see [`crate::pdf`]): number, parties, dates, one row per line, totals.
    /// CPU work, a few milliseconds for a thousand lines: run it off the runtime.
    pub fn to_pdf(&self) -> Vec<u8> {
        let row = &self.row;
        let money = |cents: i64| {
            let sign = if cents < 0 { "-" } else { "" };
            let cents = cents.unsigned_abs();
            format!("{sign}{}.{:02} {}", cents / 100, cents % 100, row.currency)
        };
        let mut lines = vec![
            format!("Seller #{}    Client #{}", row.seller_id, row.client_id),
            format!(
                "Issued {}    Due {}    Status {}",
                row.issue_date,
                row.due_date.as_deref().unwrap_or("-"),
                row.status
            ),
            String::new(),
        ];
        for (n, line) in self.lines.iter().enumerate() {
            lines.push(format!(
                "{:>4}. {}",
                n + 1,
                line.description.chars().take(60).collect::<String>()
            ));
            lines.push(format!(
                "      {} x {}  VAT {}%  =  {}",
                line.quantity,
                money(line.unit_price_cents),
                line.vat_rate,
                money(line.net_cents)
            ));
        }
        lines.push(String::new());
        lines.push(format!("Total net    {}", money(row.total_net_cents)));
        lines.push(format!("Total VAT    {}", money(row.total_vat_cents)));
        lines.push(format!("Total        {}", money(row.total_gross_cents)));
        crate::pdf::render(&format!("Invoice {}", row.number), &lines)
    }
}

/// Writes the submission of the invoice `id` to the PDP into the outbox
/// (`pdp_submissions`, see [`crate::outbox`]), in the caller's transaction, under `key`,
/// if the invoice is issued and was never queued nor answered: whether it was queued.
async fn queue_submission(
    conn: &mut SqliteConnection,
    id: i64,
    key: &str,
) -> Result<bool, sqlx::Error> {
    let queued = sqlx::query(
        "INSERT INTO pdp_submissions (invoice_id, submission_key, seller_siret, number, \
         issue_date, currency, total_gross_cents, client_name, next_attempt_ms) \
         SELECT invoices.id, ?, sellers.siret, invoices.number, invoices.issue_date, \
         invoices.currency, invoices.total_gross_cents, clients.name, ? \
         FROM invoices JOIN sellers ON sellers.id = invoices.seller_id \
         JOIN clients ON clients.id = invoices.client_id \
         WHERE invoices.id = ? AND invoices.status = 'issued' AND invoices.pdp_status IS NULL \
         ON CONFLICT (invoice_id) DO NOTHING",
    )
    .bind(key)
    .bind(crate::outbox::now_ms())
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(queued == 1)
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
    /// The PDP's answer to its submission, once answered (with `PDP_ADDR` set).
    pdp_status: Option<String>,
    /// The key of its submission, once queued.
    pdp_submission_key: Option<String>,
    /// The attempts of its submission so far, once queued.
    pdp_attempts: Option<i64>,
    /// What the last attempt that got no decision got instead (`UNAVAILABLE: …`).
    pdp_last_error: Option<String>,
    created_at: String,
    updated_at: String,
}

const COLUMNS: &str = "id, seller_id, client_id, number, issue_date, due_date, currency, status, \
     total_net_cents, total_vat_cents, total_gross_cents, pdp_status, \
     (SELECT submission_key FROM pdp_submissions WHERE invoice_id = invoices.id) \
       AS pdp_submission_key, \
     (SELECT attempts FROM pdp_submissions WHERE invoice_id = invoices.id) AS pdp_attempts, \
     (SELECT last_error FROM pdp_submissions WHERE invoice_id = invoices.id) AS pdp_last_error, \
     created_at, updated_at";

/// A line as answered: quantity and VAT rate as exact JSON numbers (`1.5`, `20`).
#[derive(Debug, Serialize)]
struct LineOutput {
    description: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    quantity: Decimal,
    unit_price_cents: i64,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    vat_rate: Decimal,
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
            quantity: Decimal::new(row.quantity_milli, 3).normalize(),
            unit_price_cents: row.unit_price_cents,
            vat_rate: Decimal::new(row.vat_rate_bp, 2).normalize(),
            net_cents: row.net_cents,
        }
    }
}

/// The filters of the list: `?seller_id=&client_id=&status=`; call
/// `garde::Validate::validate` before use.
#[derive(Clone, Debug, Default, Deserialize, axum::extract::FromRequestParts, garde::Validate)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct Filters {
    /// Only this seller's invoices.
    #[garde(range(min = 1))]
    pub seller_id: Option<i64>,
    /// Only this client's invoices.
    #[garde(range(min = 1))]
    pub client_id: Option<i64>,
    /// Only invoices with this status.
    #[garde(custom(known_status))]
    pub status: Option<String>,
}

/// Inserts an invoice and its lines, and with a `submission_key`, its submission to the
/// PDP if it is issued, in one transaction. Returns the invoice, and whether its
/// submission was queued.
pub async fn insert(
    db: &Db,
    invoice: &NewInvoice,
    submission_key: Option<&str>,
) -> Result<(Invoice, bool), AppError> {
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
        let queued = match submission_key {
            Some(key) => queue_submission(&mut tx, id, key).await?,
            None => false,
        };
        let created = fetch(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
        tx.commit().await?;
        Ok((created, queued))
    })
    .await
}

/// Replaces the invoice with this id and its lines, or 404; with a `submission_key`,
/// queues its submission to the PDP if it becomes issued, in the same transaction.
/// Returns the invoice, and whether its submission was queued.
pub async fn update(
    db: &Db,
    id: i64,
    invoice: &NewInvoice,
    submission_key: Option<&str>,
) -> Result<(Invoice, bool), AppError> {
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
        let queued = match submission_key {
            Some(key) => queue_submission(&mut tx, id, key).await?,
            None => false,
        };
        let updated = fetch(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
        tx.commit().await?;
        Ok((updated, queued))
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
        // Validated: quantities have at most 3 decimals, rates 2, and the totals fit.
        let scaled = |value: Decimal, by: i64| (value * Decimal::from(by)).to_i64();
        let (Some(net_cents), Some(quantity_milli), Some(vat_rate_bp)) = (
            line.net_cents(),
            scaled(line.quantity, 1000),
            scaled(line.vat_rate, 100),
        ) else {
            return Err(sqlx::Error::Protocol("a line out of range".into()));
        };
        sqlx::query(
            "INSERT INTO invoice_lines (invoice_id, position, description, quantity_milli, \
             unit_price_cents, vat_rate_bp, net_cents) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(position as i64)
        .bind(description)
        .bind(quantity_milli)
        .bind(line.unit_price_cents)
        .bind(vat_rate_bp)
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
    if let Some(status) = &filters.status {
        query.push(word).push("status = ").push_bind(status.clone());
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
