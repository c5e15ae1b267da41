//! Submissions to the PDP, sent by the service rather than by the request that issued
//! the invoice: an outbox in the database and a task that empties it.
//!
//! - **Written down with the invoice.** The transaction that creates an issued invoice,
//!   or updates one to `issued`, also writes its submission into `pdp_submissions`
//!   (`model::invoice::queue_submission`): the invoice's data as it is sent, and a
//!   submission key (a UUID). An invoice is never issued without its submission, nor the
//!   reverse, whatever happens to the request or the process afterwards.
//! - **Sent by a task of the service** ([`Outbox::start`]), at most [`IN_FLIGHT`] at
//!   once, each attempt with the deadline `PDP_TIMEOUT`. An answer that is the PDP's
//!   decision on the invoice (a submission id, `INVALID_ARGUMENT`, `ALREADY_EXISTS`,
//!   `FAILED_PRECONDITION`, `OUT_OF_RANGE`) is kept on the invoice (`pdp_status`), in the
//!   transaction that marks the submission answered. Anything else (unreachable, deadline
//!   exceeded, overloaded, an error of the PDP's own) is tried again after a wait that
//!   doubles from 250 ms up to `PDP_RETRY_MAX`, less a random part of up to half (so that
//!   a backlog does not come back in one wave), for as long as it takes: an issued
//!   invoice must reach the PDP, and `PdpSubmissionsBacklog` tells someone when it does
//!   not.
//! - **Retries are safe**: every attempt carries the submission's key, and the PDP
//!   answers a key it has seen with the answer it gave first. A submission whose attempt
//!   reached the PDP while its answer was lost (a slow PDP past the deadline, the app
//!   killed) gets its submission id on the next attempt, not `ALREADY_EXISTS`; another
//!   invoice with the same SIRET and number, under its own key, still gets
//!   `ALREADY_EXISTS`.
//! - **Claimed with a lease**: one `UPDATE … RETURNING` takes the due rows and pushes
//!   their next attempt to the end of the attempt's deadline plus [`LEASE_MARGIN`], so
//!   that replicas sharing the database do not send a submission at the same time, and a
//!   row claimed by a process that died is due again when its lease ends. At start, every
//!   due row is sent: a restart forgets nothing.
//! - **The request waits a little**: the request that issued the invoice waits for the
//!   first attempt (at most `PDP_TIMEOUT` + [`ANSWER_MARGIN`], and at most half of
//!   `REQUEST_TIMEOUT`), so that the invoice it answers shows the PDP's answer when the
//!   PDP is quick. Whether the client waits or leaves changes nothing to the submission.
//!
//! Metrics (`crate::telemetry`): `invoicing_pdp_submissions_pending`,
//! `invoicing_pdp_submissions_oldest_pending_timestamp_seconds` (the
//! `PdpSubmissionsStuck` alert), `invoicing_pdp_submission_retries_total`,
//! `invoicing_pdp_submissions_answered_total`.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::pdp::{Attempt, Pdp};
use crate::telemetry::BusinessMetrics;

/// Attempts in flight at most.
pub const IN_FLIGHT: usize = 16;

/// The wait after a first failed attempt; it doubles with each attempt, up to
/// `PDP_RETRY_MAX`.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);

/// Added to `PDP_TIMEOUT` for the lease of an attempt: the time to record its outcome.
pub const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// How long the request that queued a submission waits beyond `PDP_TIMEOUT` for its first
/// attempt's outcome to be recorded.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// How often the task reads the table when nothing woke it: rows queued by another
/// replica, and the pending count.
pub const POLL: Duration = Duration::from_secs(5);

/// What is sent to the PDP of an issued invoice: a row of `pdp_submissions`.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Submission {
    /// The invoice.
    pub invoice_id: i64,
    /// The key of every attempt of this submission.
    pub submission_key: String,
    /// The seller's SIRET.
    pub seller_siret: String,
    /// The invoice number.
    pub number: String,
    /// `YYYY-MM-DD`.
    pub issue_date: String,
    /// ISO 4217.
    pub currency: String,
    /// The total, VAT included.
    pub total_gross_cents: i64,
    /// The client's name.
    pub client_name: String,
    /// Attempts made, this one included.
    pub attempts: i64,
}

/// The settings of the outbox.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// The deadline of an attempt (`PDP_TIMEOUT`).
    pub timeout: Duration,
    /// The longest wait between two attempts (`PDP_RETRY_MAX`).
    pub retry_max: Duration,
    /// How long a request waits for the first attempt of the submission it queued.
    pub answer_wait: Duration,
}

/// The outbox and its task. Cloning is cheap: clones share them.
#[derive(Clone, Debug)]
pub struct Outbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    pdp: Pdp,
    metrics: BusinessMetrics,
    settings: Settings,
    /// Wakes the task: a submission was queued.
    wake: Notify,
    /// The requests waiting for the first attempt of a submission, by its key.
    waiters: Mutex<HashMap<String, oneshot::Sender<()>>>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Random keys for the retries' jitter.
    jitter: std::collections::hash_map::RandomState,
}

impl Outbox {
    /// Starts the task that sends the submissions of `db` to `pdp`, beginning with those
    /// already due (left by a previous run).
    pub fn start(db: Db, pdp: Pdp, metrics: BusinessMetrics, settings: Settings) -> Self {
        let inner = Arc::new(Inner {
            db,
            pdp,
            metrics,
            settings,
            wake: Notify::new(),
            waiters: Mutex::default(),
            stop: CancellationToken::new(),
            task: Mutex::default(),
            jitter: std::collections::hash_map::RandomState::new(),
        });
        let task = tokio::spawn(run(inner.clone()));
        *lock(&inner.task) = Some(task);
        Self { inner }
    }

    /// A new submission key, and a ticket to wait for the first attempt of the
    /// submission queued under it.
    pub fn ticket(&self) -> Ticket {
        let key = uuid::Uuid::new_v4().to_string();
        let (sender, answered) = oneshot::channel();
        lock(&self.inner.waiters).insert(key.clone(), sender);
        Ticket {
            key,
            answered,
            outbox: self.clone(),
        }
    }

    /// Stops the task: attempts in flight are abandoned and their rows made due again,
    /// for the next start (the PDP answers a retry of one that reached it with its first
    /// answer). Call it before closing the database.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        let task = lock(&self.inner.task).take();
        let Some(task) = task else {
            return;
        };
        if let Err(error) = task.await {
            tracing::error!(%error, "the PDP submission task failed");
        }
    }
}

/// A submission key, registered to learn when the first attempt of its submission is
/// recorded. Dropping it (the request is gone) unregisters it and nothing else.
#[derive(Debug)]
pub struct Ticket {
    key: String,
    answered: oneshot::Receiver<()>,
    outbox: Outbox,
}

impl Ticket {
    /// The submission key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Wakes the task, and waits until the first attempt of the submission queued under
    /// this key is recorded, or `answer_wait` has passed.
    pub async fn wait(mut self) {
        self.outbox.inner.wake.notify_one();
        let wait = self.outbox.inner.settings.answer_wait;
        let _ = tokio::time::timeout(wait, &mut self.answered).await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.outbox.inner.waiters).remove(&self.key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch, the clock of `next_attempt_ms`.
pub fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The task: claims what is due, sends it, records the outcomes, until stopped.
async fn run(inner: Arc<Inner>) {
    let mut attempts: JoinSet<(Submission, Attempt)> = JoinSet::new();
    let mut sending: HashSet<i64> = HashSet::new();
    let mut first = true;
    loop {
        let room = IN_FLIGHT.saturating_sub(attempts.len());
        let mut claimed = false;
        if room > 0 {
            match inner.claim(room).await {
                Ok(due) => {
                    claimed = true;
                    for submission in due {
                        sending.insert(submission.invoice_id);
                        let pdp = inner.pdp.clone();
                        attempts.spawn(async move {
                            let attempt = pdp.submit(&submission).await;
                            (submission, attempt)
                        });
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot claim the due PDP submissions"),
            }
        }
        match inner.count_pending().await {
            Ok((pending, oldest)) => {
                inner.metrics.set_pdp_submissions_pending(pending, oldest);
                if first && pending > 0 {
                    tracing::info!(
                        pending,
                        "PDP submissions pending from a previous run: sending them"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "cannot count the pending PDP submissions"),
        }
        first = false;
        // The next due submission is worth waking for only if it can be claimed: with
        // every slot taken (the PDP stalls), or the claim failing, the loop would spin.
        let wait = if !claimed || attempts.len() >= IN_FLIGHT {
            POLL
        } else {
            match inner.next_due().await {
                Ok(Some(due)) => {
                    Duration::from_millis(u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0))
                        .min(POLL)
                }
                Ok(None) => POLL,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the next PDP submission due");
                    POLL
                }
            }
        };
        tokio::select! {
            biased;
            () = inner.stop.cancelled() => break,
            Some(done) = attempts.join_next(), if !attempts.is_empty() => match done {
                Ok((submission, attempt)) => {
                    sending.remove(&submission.invoice_id);
                    inner.record(&submission, attempt).await;
                }
                Err(error) => tracing::error!(%error, "a PDP submission attempt failed"),
            },
            () = inner.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    attempts.abort_all();
    if !sending.is_empty() {
        let abandoned = sending.len();
        if let Err(error) = inner.release(sending.iter().copied()).await {
            tracing::warn!(%error, "cannot release the PDP submissions in flight");
        }
        tracing::info!(
            abandoned,
            "stopped with PDP submissions in flight: due at the next start"
        );
    }
}

impl Inner {
    /// Claims at most `limit` due submissions: counts their attempt and leases them for
    /// the attempt's deadline plus [`LEASE_MARGIN`].
    async fn claim(&self, limit: usize) -> Result<Vec<Submission>, sqlx::Error> {
        let now = now_ms();
        let lease = now.saturating_add(millis(self.settings.timeout + LEASE_MARGIN));
        let query = sqlx::query_as::<_, Submission>(
            "UPDATE pdp_submissions SET attempts = attempts + 1, next_attempt_ms = ? \
             WHERE invoice_id IN (SELECT invoice_id FROM pdp_submissions \
               WHERE answered_at IS NULL AND next_attempt_ms <= ? \
               ORDER BY next_attempt_ms LIMIT ?) \
             RETURNING invoice_id, submission_key, seller_siret, number, issue_date, currency, \
               total_gross_cents, client_name, attempts",
        )
        .bind(lease)
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.db
            .timed("claim_pdp_submissions", query.fetch_all(self.db.pool()))
            .await
    }

    /// Submissions not answered yet, and when the oldest was queued (Unix seconds).
    async fn count_pending(&self) -> Result<(i64, Option<f64>), sqlx::Error> {
        let query = sqlx::query_as(
            "SELECT COUNT(*), (julianday(MIN(created_at)) - 2440587.5) * 86400.0 \
             FROM pdp_submissions WHERE answered_at IS NULL",
        );
        self.db
            .timed("count_pdp_submissions", query.fetch_one(self.db.pool()))
            .await
    }

    /// When the next pending submission is due (or its lease ends).
    async fn next_due(&self) -> Result<Option<i64>, sqlx::Error> {
        let query = sqlx::query_scalar(
            "SELECT MIN(next_attempt_ms) FROM pdp_submissions WHERE answered_at IS NULL",
        );
        self.db
            .timed("next_pdp_submission", query.fetch_one(self.db.pool()))
            .await
    }

    /// Makes these submissions due at once.
    async fn release(&self, invoices: impl Iterator<Item = i64>) -> Result<(), sqlx::Error> {
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "UPDATE pdp_submissions SET next_attempt_ms = ",
        );
        query.push_bind(now_ms());
        query.push(" WHERE answered_at IS NULL AND invoice_id IN (");
        let mut ids = query.separated(", ");
        for id in invoices {
            ids.push_bind(id);
        }
        query.push(")");
        self.db
            .timed(
                "release_pdp_submissions",
                query.build().execute(self.db.pool()),
            )
            .await
            .map(drop)
    }

    /// Keeps the outcome of an attempt: the answer on the invoice, or the next attempt.
    /// Then tells the request waiting for it, if any.
    async fn record(&self, submission: &Submission, attempt: Attempt) {
        let id = submission.invoice_id;
        match attempt {
            Attempt::Answered { code, answer } => match self.answer(id, &answer).await {
                Ok(true) => self.metrics.pdp_submission_answered(code),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(invoice = id, %error, "cannot store the PDP's answer; the submission will be sent again")
                }
            },
            Attempt::Failed { error, .. } => {
                let retry_in = self.retry_delay(submission);
                let next = now_ms().saturating_add(millis(retry_in));
                let query = sqlx::query(
                    "UPDATE pdp_submissions SET next_attempt_ms = ?, last_error = ? \
                     WHERE invoice_id = ? AND answered_at IS NULL",
                )
                .bind(next)
                .bind(&error)
                .bind(id);
                match self
                    .db
                    .timed("retry_pdp_submission", query.execute(self.db.pool()))
                    .await
                {
                    Ok(_) => {
                        self.metrics.pdp_submission_retried();
                        tracing::warn!(
                            invoice = id,
                            attempts = submission.attempts,
                            %error,
                            retry_in = ?retry_in,
                            "the PDP did not answer a submission; it will be sent again"
                        );
                    }
                    Err(db_error) => {
                        tracing::warn!(invoice = id, %db_error, "cannot schedule the next attempt of a PDP submission")
                    }
                }
            }
        }
        if let Some(waiter) = lock(&self.waiters).remove(&submission.submission_key) {
            let _ = waiter.send(());
        }
    }

    /// Marks the submission answered and keeps the answer on the invoice, in one
    /// transaction; `false` if it was answered already (by another replica).
    async fn answer(&self, id: i64, answer: &str) -> Result<bool, sqlx::Error> {
        self.db
            .timed("answer_pdp_submission", async {
                let mut tx = self.db.begin_write().await?;
                let marked = sqlx::query(
                    "UPDATE pdp_submissions \
                     SET answered_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                     WHERE invoice_id = ? AND answered_at IS NULL",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if marked == 1 {
                    sqlx::query("UPDATE invoices SET pdp_status = ? WHERE id = ?")
                        .bind(answer)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(marked == 1)
            })
            .await
    }

    /// The wait before the next attempt of `submission`: [`FIRST_RETRY`] doubled for each
    /// attempt made after the first, at most `PDP_RETRY_MAX`, less a random part of up to
    /// half.
    fn retry_delay(&self, submission: &Submission) -> Duration {
        let doublings =
            u32::try_from(submission.attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        let full = FIRST_RETRY
            .saturating_mul(1 << doublings)
            .min(self.settings.retry_max);
        let half = full / 2;
        let random = self
            .jitter
            .hash_one((&submission.submission_key, submission.attempts));
        let jitter =
            Duration::from_nanos(random % (u64::try_from(half.as_nanos()).unwrap_or(1).max(1)));
        full - jitter
    }
}
