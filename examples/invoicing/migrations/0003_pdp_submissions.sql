-- The outbox of PDP submissions (src/outbox.rs): one row per issued invoice to submit,
-- written in the transaction that issues it, with the invoice's data as sent and the key
-- of every attempt. The service's background task sends the due rows (next_attempt_ms,
-- milliseconds since the Unix epoch, is also the lease of an attempt in flight), and
-- marks a row answered in the transaction that stores the answer in invoices.pdp_status.
CREATE TABLE pdp_submissions (
    invoice_id        INTEGER PRIMARY KEY REFERENCES invoices (id) ON DELETE CASCADE,
    submission_key    TEXT    NOT NULL UNIQUE,
    seller_siret      TEXT    NOT NULL,
    number            TEXT    NOT NULL,
    issue_date        TEXT    NOT NULL,
    currency          TEXT    NOT NULL,
    total_gross_cents INTEGER NOT NULL,
    client_name       TEXT    NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms   INTEGER NOT NULL,
    last_error        TEXT,
    created_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    answered_at       TEXT
);

CREATE INDEX pdp_submissions_pending ON pdp_submissions (next_attempt_ms)
    WHERE answered_at IS NULL;
