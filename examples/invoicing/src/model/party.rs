//! Sellers and clients: the same fields, in two tables. A seller must have a SIRET.

use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::error::AppError;
use crate::extract::Pagination;
use crate::validate;

/// What differs between sellers and clients.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    table: &'static str,
    /// The column of `invoices` that references this kind.
    invoice_column: &'static str,
    /// `seller` or `client`, for messages.
    pub singular: &'static str,
    /// Whether `siret` is required.
    siret_required: bool,
    ops: Ops,
}

#[derive(Clone, Copy, Debug)]
struct Ops {
    insert: &'static str,
    get: &'static str,
    list: &'static str,
    update: &'static str,
    delete: &'static str,
}

/// Sellers: the issuers of invoices; `siret` required.
pub const SELLERS: Kind = Kind {
    table: "sellers",
    invoice_column: "seller_id",
    singular: "seller",
    siret_required: true,
    ops: Ops {
        insert: "insert_seller",
        get: "get_seller",
        list: "list_sellers",
        update: "update_seller",
        delete: "delete_seller",
    },
};

/// Clients: the recipients of invoices; `siret` optional.
pub const CLIENTS: Kind = Kind {
    table: "clients",
    invoice_column: "client_id",
    singular: "client",
    siret_required: false,
    ops: Ops {
        insert: "insert_client",
        get: "get_client",
        list: "list_clients",
        update: "update_client",
        delete: "delete_client",
    },
};

/// The body of `POST` and `PUT`, normalised as it is read (trimmed; codes without
/// spaces, upper-cased) and checked by `garde`. Every field is optional here so that a
/// missing one is reported by name in a 422, with the others.
#[derive(Debug, Default, Deserialize, garde::Validate)]
#[serde(default)]
#[garde(context(Kind))]
pub struct PartyInput {
    #[serde(deserialize_with = "validate::trimmed")]
    #[garde(required, length(chars, max = 200), custom(validate::plain))]
    name: Option<String>,
    #[serde(deserialize_with = "validate::code")]
    #[garde(custom(siret_rule))]
    siret: Option<String>,
    #[serde(deserialize_with = "validate::code")]
    #[garde(custom(validate::vat_number))]
    vat_number: Option<String>,
    #[serde(deserialize_with = "validate::trimmed")]
    #[garde(length(chars, max = 500), custom(validate::plain))]
    address: Option<String>,
    #[serde(deserialize_with = "validate::trimmed")]
    #[garde(length(chars, max = 20), custom(validate::plain))]
    postal_code: Option<String>,
    #[serde(deserialize_with = "validate::trimmed")]
    #[garde(length(chars, max = 200), custom(validate::plain))]
    city: Option<String>,
    #[serde(deserialize_with = "validate::code")]
    #[garde(custom(validate::country))]
    country: Option<String>,
    #[serde(deserialize_with = "validate::trimmed")]
    #[garde(length(max = 254), email)]
    email: Option<String>,
}

/// The SIRET, required for sellers.
fn siret_rule(value: &Option<String>, kind: &Kind) -> garde::Result {
    match value {
        Some(siret) => validate::siret(siret),
        None if kind.siret_required => Err(garde::Error::new("not set")),
        None => Ok(()),
    }
}

/// A validated party, ready to be written.
#[derive(Debug)]
pub struct NewParty {
    name: String,
    siret: Option<String>,
    vat_number: Option<String>,
    address: Option<String>,
    postal_code: Option<String>,
    city: Option<String>,
    country: String,
    email: Option<String>,
}

impl PartyInput {
    /// Checks every field, reporting all the wrong ones at once.
    pub fn check(self, kind: Kind) -> Result<NewParty, AppError> {
        garde::Validate::validate_with(&self, &kind)?;
        Ok(NewParty {
            name: self.name.unwrap_or_default(),
            siret: self.siret,
            vat_number: self.vat_number,
            address: self.address,
            postal_code: self.postal_code,
            city: self.city,
            country: self.country.unwrap_or_else(|| "FR".into()),
            email: self.email,
        })
    }
}

/// A seller or a client, as stored and answered.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Party {
    /// Its id.
    pub id: i64,
    name: String,
    siret: Option<String>,
    vat_number: Option<String>,
    address: Option<String>,
    postal_code: Option<String>,
    city: Option<String>,
    country: String,
    email: Option<String>,
    created_at: String,
    updated_at: String,
}

const COLUMNS: &str = "id, name, siret, vat_number, address, postal_code, city, country, email, created_at, updated_at";

/// Inserts a party.
pub async fn insert(db: &Db, kind: Kind, party: &NewParty) -> Result<Party, AppError> {
    let sql = format!(
        "INSERT INTO {} (name, siret, vat_number, address, postal_code, city, country, email) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}",
        kind.table
    );
    let query = bind(sqlx::query_as::<_, Party>(&sql), party);
    Ok(db
        .timed(kind.ops.insert, query.fetch_one(db.pool()))
        .await?)
}

/// The party with this id, or 404.
pub async fn get(db: &Db, kind: Kind, id: i64) -> Result<Party, AppError> {
    let sql = format!("SELECT {COLUMNS} FROM {} WHERE id = ?", kind.table);
    let query = sqlx::query_as::<_, Party>(&sql).bind(id);
    db.timed(kind.ops.get, query.fetch_optional(db.pool()))
        .await?
        .ok_or_else(|| not_found(kind, id))
}

/// One page of parties, by id, and how many there are.
pub async fn list(db: &Db, kind: Kind, page: Pagination) -> Result<(Vec<Party>, i64), AppError> {
    let count = format!("SELECT COUNT(*) FROM {}", kind.table);
    let select = format!(
        "SELECT {COLUMNS} FROM {} ORDER BY id LIMIT ? OFFSET ?",
        kind.table
    );
    let (total, items) = db
        .timed(kind.ops.list, async {
            let mut conn = db.pool().acquire().await?;
            let total: i64 = sqlx::query_scalar(&count).fetch_one(&mut *conn).await?;
            let items = sqlx::query_as::<_, Party>(&select)
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&mut *conn)
                .await?;
            Ok::<_, sqlx::Error>((total, items))
        })
        .await?;
    Ok((items, total))
}

/// Replaces every field of the party with this id, or 404.
pub async fn update(db: &Db, kind: Kind, id: i64, party: &NewParty) -> Result<Party, AppError> {
    let sql = format!(
        "UPDATE {} SET name = ?, siret = ?, vat_number = ?, address = ?, postal_code = ?, \
         city = ?, country = ?, email = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
         WHERE id = ? RETURNING {COLUMNS}",
        kind.table
    );
    let query = bind(sqlx::query_as::<_, Party>(&sql), party).bind(id);
    db.timed(kind.ops.update, query.fetch_optional(db.pool()))
        .await?
        .ok_or_else(|| not_found(kind, id))
}

/// Deletes the party with this id: 404 if there is none, 409 if invoices reference it.
pub async fn delete(db: &Db, kind: Kind, id: i64) -> Result<(), AppError> {
    let exists = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE id = ?)", kind.table);
    let referenced = format!(
        "SELECT EXISTS (SELECT 1 FROM invoices WHERE {} = ?)",
        kind.invoice_column
    );
    let delete = format!("DELETE FROM {} WHERE id = ?", kind.table);
    db.timed(kind.ops.delete, async {
        let mut tx = db.begin_write().await?;
        let found: bool = sqlx::query_scalar(&exists)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if !found {
            return Err(not_found(kind, id));
        }
        let used: bool = sqlx::query_scalar(&referenced)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if used {
            return Err(AppError::Conflict(format!(
                "{} {id} is referenced by invoices",
                kind.singular
            )));
        }
        sqlx::query(&delete).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    })
    .await
}

fn bind<'q>(
    query: sqlx::query::QueryAs<'q, sqlx::Sqlite, Party, sqlx::sqlite::SqliteArguments<'q>>,
    party: &'q NewParty,
) -> sqlx::query::QueryAs<'q, sqlx::Sqlite, Party, sqlx::sqlite::SqliteArguments<'q>> {
    query
        .bind(&party.name)
        .bind(&party.siret)
        .bind(&party.vat_number)
        .bind(&party.address)
        .bind(&party.postal_code)
        .bind(&party.city)
        .bind(&party.country)
        .bind(&party.email)
}

fn not_found(kind: Kind, id: i64) -> AppError {
    AppError::NotFound(format!("no {} with id {id}", kind.singular))
}
