-- Sellers and clients share their columns; the SIRET is required for sellers only.
CREATE TABLE sellers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    siret       TEXT    NOT NULL,
    vat_number  TEXT,
    address     TEXT,
    postal_code TEXT,
    city        TEXT,
    country     TEXT    NOT NULL DEFAULT 'FR',
    email       TEXT,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE clients (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    siret       TEXT,
    vat_number  TEXT,
    address     TEXT,
    postal_code TEXT,
    city        TEXT,
    country     TEXT    NOT NULL DEFAULT 'FR',
    email       TEXT,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE invoices (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    seller_id         INTEGER NOT NULL REFERENCES sellers (id) ON DELETE RESTRICT,
    client_id         INTEGER NOT NULL REFERENCES clients (id) ON DELETE RESTRICT,
    number            TEXT    NOT NULL,
    issue_date        TEXT    NOT NULL,
    due_date          TEXT,
    currency          TEXT    NOT NULL DEFAULT 'EUR',
    status            TEXT    NOT NULL DEFAULT 'draft'
                      CHECK (status IN ('draft', 'issued', 'paid', 'cancelled')),
    total_net_cents   INTEGER NOT NULL,
    total_vat_cents   INTEGER NOT NULL,
    total_gross_cents INTEGER NOT NULL,
    created_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (seller_id, number)
);

CREATE INDEX invoices_client_id ON invoices (client_id);
CREATE INDEX invoices_status ON invoices (status);

-- Quantities in thousandths, VAT rates in hundredths of a percent: exact integers.
CREATE TABLE invoice_lines (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_id       INTEGER NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    position         INTEGER NOT NULL,
    description      TEXT    NOT NULL,
    quantity_milli   INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    vat_rate_bp      INTEGER NOT NULL,
    net_cents        INTEGER NOT NULL
);

CREATE INDEX invoice_lines_invoice_id ON invoice_lines (invoice_id, position);

CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_id   INTEGER NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    filename     TEXT    NOT NULL,
    stored_name  TEXT    NOT NULL UNIQUE,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX attachments_invoice_id ON attachments (invoice_id);
