//! The event-callback outbox: events waiting to be delivered to an
//! application's callback URL, and the record of each delivery.
//!
//! Delivery is in order per room: [`Store::due_events`] offers only the
//! oldest pending event of each `(app_id, room_id)`, so a later event of a
//! room is never sent before an earlier one is delivered or given up on.
//! Order is the `seq` column, assigned by an [`OutboxSequencer`].
//!
//! A sender takes an event for one attempt with [`Store::claim_event`]: the
//! claim moves `next_attempt_at_ms` to the end of the attempt's lease, so
//! the event is not offered again while the attempt runs, and is offered
//! again (a duplicate delivery, which at-least-once allows) if the sender
//! dies before recording the outcome.
//!
//! Every function takes `now_ms` from the caller instead of reading the
//! clock, so the schedule can be tested without waiting.

use std::fmt;
use std::str::FromStr;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::model::Page;
use crate::validate::validate_page;
use crate::{Store, StoreError};

/// Where an outbox event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up on (retries exhausted, or nowhere to send it).
    Failed,
}

impl OutboxStatus {
    pub const ALL: [OutboxStatus; 3] = [
        OutboxStatus::Pending,
        OutboxStatus::Delivered,
        OutboxStatus::Failed,
    ];

    /// The API and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutboxStatus {
    type Err = StoreError;

    /// Parses the API spelling; anything else is `Invalid { field: "status" }`.
    fn from_str(s: &str) -> Result<OutboxStatus, StoreError> {
        OutboxStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                StoreError::invalid("status", "must be one of pending, delivered, failed")
            })
    }
}

/// An event to put into the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEvent {
    pub event_id: String,
    pub app_id: String,
    pub room_id: String,
    pub event_type: String,
    /// The JSON body, sent byte for byte on every attempt.
    pub body: String,
    pub created_at_ms: i64,
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub event_id: String,
    pub app_id: String,
    pub room_id: String,
    /// The delivery order within the room.
    pub seq: i64,
    pub event_type: String,
    pub body: String,
    pub status: OutboxStatus,
    /// Finished attempts since the event was enqueued or last retried.
    pub attempts: u32,
    pub first_attempt_at_ms: Option<i64>,
    /// Pending events only: when the next attempt may start.
    pub next_attempt_at_ms: Option<i64>,
    pub last_error: Option<String>,
    /// The receiver's HTTP status of the last attempt, if it answered.
    pub last_status_code: Option<u16>,
    pub delivered_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// Why an attempt did not deliver an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFailure {
    /// Human-readable: `HTTP 503`, `timed out after 5 s`, `connection refused`.
    pub error: String,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
}

/// What [`Store::retry_failed_event`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The event is pending again, due at once.
    Retried(Box<OutboxEvent>),
    /// The application has no event with this id.
    NotFound,
    /// The event is not failed (only failed events are retried).
    NotFailed(OutboxStatus),
}

/// Assigns the outbox's ordering key, `seq`.
///
/// SQLite and PostgreSQL share no autoincrement syntax, so the application
/// assigns `seq`: a hybrid logical clock, `max(previous + 1, now_ms * 1000)`.
/// It is strictly increasing for everything one process enqueues (one
/// sequencer per process, used by its one writer), continues above every
/// stored value after a restart ([`Store::outbox_sequencer`] starts from
/// `MAX(seq)`), and follows the wall clock at up to 1000 events per
/// millisecond, so events of servers sharing a database interleave by time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxSequencer {
    last: i64,
}

impl OutboxSequencer {
    /// A sequencer whose first value is above `last`.
    pub fn starting_after(last: i64) -> OutboxSequencer {
        OutboxSequencer { last }
    }

    /// The next key for an event created at `now_ms`.
    pub fn next(&mut self, now_ms: i64) -> i64 {
        self.last = self.last.saturating_add(1).max(now_ms.saturating_mul(1000));
        self.last
    }
}

const COLUMNS: &str = "event_id, app_id, room_id, seq, event_type, body, status, attempts, \
     first_attempt_at_ms, next_attempt_at_ms, last_error, last_status_code, delivered_at_ms, \
     created_at_ms";

/// The oldest pending event of its room (`o` is the outer row). Ties in
/// `seq` (only possible between servers sharing a database) go by event id.
const HEAD_OF_ROOM: &str = "o.status = 'pending' AND NOT EXISTS (\
     SELECT 1 FROM event_outbox e WHERE e.app_id = o.app_id AND e.room_id = o.room_id \
     AND e.status = 'pending' \
     AND (e.seq < o.seq OR (e.seq = o.seq AND e.event_id < o.event_id)))";

impl Store {
    /// A sequencer that continues above every stored `seq`.
    pub async fn outbox_sequencer(&self) -> Result<OutboxSequencer, StoreError> {
        let row = sqlx::query("SELECT MAX(seq) AS last FROM event_outbox")
            .fetch_one(&self.pool)
            .await?;
        let last: Option<i64> = row.try_get("last")?;
        Ok(OutboxSequencer::starting_after(last.unwrap_or(0)))
    }

    /// Adds `events` as pending, due at once, in one transaction, in the
    /// order given (each gets the next `seq`). An event id already in the
    /// outbox is skipped, so a batch whose commit was lost can be retried.
    pub async fn enqueue_events(
        &self,
        sequencer: &mut OutboxSequencer,
        events: &[NewOutboxEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for event in events {
            sqlx::query(
                "INSERT INTO event_outbox (event_id, app_id, room_id, seq, event_type, body, \
                 status, attempts, next_attempt_at_ms, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7) \
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(&event.event_id)
            .bind(&event.app_id)
            .bind(&event.room_id)
            .bind(sequencer.next(event.created_at_ms))
            .bind(&event.event_type)
            .bind(&event.body)
            .bind(event.created_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` events to attempt now: of each room, only its oldest
    /// pending event, and only when that is due (`next_attempt_at_ms <=
    /// now_ms`). Soonest due first.
    pub async fn due_events(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM event_outbox o WHERE {HEAD_OF_ROOM} \
             AND o.next_attempt_at_ms <= $1 ORDER BY o.next_attempt_at_ms, o.seq LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// When the soonest event that [`Store::due_events`] would offer is due
    /// (possibly in the past); `None` when nothing is pending.
    pub async fn next_due_at_ms(&self) -> Result<Option<i64>, StoreError> {
        let sql = format!(
            "SELECT MIN(o.next_attempt_at_ms) AS due FROM event_outbox o WHERE {HEAD_OF_ROOM}"
        );
        let row = sqlx::query(&sql).fetch_one(&self.pool).await?;
        Ok(row.try_get("due")?)
    }

    /// Takes `event` (as [`Store::due_events`] returned it) for one attempt
    /// lasting until `lease_until_ms` at most; records `now_ms` as the first
    /// attempt's time if there was none. `false` when someone else took it
    /// or it changed since it was read: then do not attempt it.
    pub async fn claim_event(
        &self,
        event: &OutboxEvent,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE event_outbox SET next_attempt_at_ms = $3, \
             first_attempt_at_ms = COALESCE(first_attempt_at_ms, $4) \
             WHERE event_id = $1 AND status = 'pending' AND next_attempt_at_ms = $2",
        )
        .bind(&event.event_id)
        .bind(event.next_attempt_at_ms)
        .bind(lease_until_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Records a successful attempt (the receiver answered `status_code`).
    /// Only a pending event changes.
    pub async fn mark_delivered(
        &self,
        event_id: &str,
        now_ms: i64,
        status_code: u16,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE event_outbox SET status = 'delivered', attempts = attempts + 1, \
             delivered_at_ms = $2, last_status_code = $3, last_error = NULL, \
             next_attempt_at_ms = NULL \
             WHERE event_id = $1 AND status = 'pending'",
        )
        .bind(event_id)
        .bind(now_ms)
        .bind(i64::from(status_code))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed attempt; the next one is due at `next_attempt_at_ms`.
    /// Only a pending event changes.
    pub async fn record_failed_attempt(
        &self,
        event_id: &str,
        failure: &AttemptFailure,
        next_attempt_at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE event_outbox SET attempts = attempts + 1, last_error = $2, \
             last_status_code = $3, next_attempt_at_ms = $4 \
             WHERE event_id = $1 AND status = 'pending'",
        )
        .bind(event_id)
        .bind(&failure.error)
        .bind(failure.status_code.map(i64::from))
        .bind(next_attempt_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a last failed attempt and gives up on the event: it is
    /// `failed` and the room's next event becomes due. Only a pending event
    /// changes.
    pub async fn mark_failed(
        &self,
        event_id: &str,
        failure: &AttemptFailure,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE event_outbox SET status = 'failed', attempts = attempts + 1, \
             last_error = $2, last_status_code = $3, next_attempt_at_ms = NULL \
             WHERE event_id = $1 AND status = 'pending'",
        )
        .bind(event_id)
        .bind(&failure.error)
        .bind(failure.status_code.map(i64::from))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One event of the outbox, by id.
    pub async fn outbox_event(&self, event_id: &str) -> Result<Option<OutboxEvent>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM event_outbox WHERE event_id = $1");
        let row = sqlx::query(&sql)
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// The application's events, newest first, optionally only those with
    /// `status`; `page` is 1-based, `page_size` 1–100. `NotFound` for an
    /// unknown application.
    pub async fn list_outbox_events(
        &self,
        app_id: &str,
        status: Option<OutboxStatus>,
        page: u32,
        page_size: u32,
    ) -> Result<Page<OutboxEvent>, StoreError> {
        validate_page(page, page_size)?;
        self.get_app(app_id).await?;
        // `$2 IS NULL` would need a typed NULL on PostgreSQL: bind a status
        // that matches everything instead.
        let (filter, status_text) = match status {
            Some(status) => ("status = $2", status.as_str()),
            None => ("status <> $2", ""),
        };
        let total: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM event_outbox WHERE app_id = $1 AND {filter}"
        ))
        .bind(app_id)
        .bind(status_text)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM event_outbox WHERE app_id = $1 AND {filter} \
             ORDER BY seq DESC, event_id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(app_id)
        .bind(status_text)
        .bind(i64::from(page_size))
        .bind(i64::from(page - 1) * i64::from(page_size))
        .fetch_all(&self.pool)
        .await?;
        Ok(Page {
            items: rows.iter().map(event_from_row).collect::<Result<_, _>>()?,
            total: u64::try_from(total).unwrap_or(0),
            page,
            page_size,
        })
    }

    /// Makes a failed event of the application pending again, due at
    /// `now_ms`, with a fresh retry schedule (attempts and the first
    /// attempt's time are reset; the last error stays until the next
    /// attempt). It is again the oldest pending event of its room, so the
    /// room's later pending events wait for it. `NotFound` for an unknown
    /// application.
    pub async fn retry_failed_event(
        &self,
        app_id: &str,
        event_id: &str,
        now_ms: i64,
    ) -> Result<RetryOutcome, StoreError> {
        self.get_app(app_id).await?;
        let result = sqlx::query(
            "UPDATE event_outbox SET status = 'pending', attempts = 0, \
             first_attempt_at_ms = NULL, next_attempt_at_ms = $3 \
             WHERE app_id = $1 AND event_id = $2 AND status = 'failed'",
        )
        .bind(app_id)
        .bind(event_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        let event = self
            .outbox_event(event_id)
            .await?
            .filter(|event| event.app_id == app_id);
        Ok(match event {
            None => RetryOutcome::NotFound,
            Some(event) if result.rows_affected() == 1 => RetryOutcome::Retried(Box::new(event)),
            Some(event) => RetryOutcome::NotFailed(event.status),
        })
    }

    /// Housekeeping: deletes the events delivered before
    /// `delivered_before_ms`; returns how many.
    pub async fn delete_delivered_events(
        &self,
        delivered_before_ms: i64,
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "DELETE FROM event_outbox WHERE status = 'delivered' AND delivered_at_ms < $1",
        )
        .bind(delivered_before_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }
}

fn event_from_row(row: &AnyRow) -> Result<OutboxEvent, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        what: "outbox event",
        reason,
    };
    let status: String = row.try_get("status")?;
    let attempts: i64 = row.try_get("attempts")?;
    let last_status_code: Option<i64> = row.try_get("last_status_code")?;
    Ok(OutboxEvent {
        event_id: row.try_get("event_id")?,
        app_id: row.try_get("app_id")?,
        room_id: row.try_get("room_id")?,
        seq: row.try_get("seq")?,
        event_type: row.try_get("event_type")?,
        body: row.try_get("body")?,
        status: status
            .parse()
            .map_err(|_| corrupt(format!("unknown status {status:?}")))?,
        attempts: u32::try_from(attempts)
            .map_err(|_| corrupt(format!("attempts out of range: {attempts}")))?,
        first_attempt_at_ms: row.try_get("first_attempt_at_ms")?,
        next_attempt_at_ms: row.try_get("next_attempt_at_ms")?,
        last_error: row.try_get("last_error")?,
        last_status_code: last_status_code
            .map(|code| {
                u16::try_from(code)
                    .map_err(|_| corrupt(format!("status code out of range: {code}")))
            })
            .transpose()?,
        delivered_at_ms: row.try_get("delivered_at_ms")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}
