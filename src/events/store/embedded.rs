//! Events, webhooks and deliveries in the embedded SQLite file.
//!
//! One transaction per appended batch holds the events and the deliveries
//! they fan out to, so a delivery exists exactly when its event is logged.
//! Deliveries are claimed with a lease (`lease_until`); the file belongs to
//! one process, so [`EmbeddedEvents::new`] clears leases a killed process
//! left behind and its deliveries are claimed again at once.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::{Attempt, Delivery, DeliveryQueue, EventLog, EventPage, EventQuery, Finished, Next, WebhookStore};
use crate::events::{Event, Webhook};
use crate::secret::Secret;
use crate::store::embedded::{insert_error, sql, EmbeddedStore};
use crate::store::StoreError;

pub struct EmbeddedEvents {
    store: Arc<EmbeddedStore>,
    /// How long a claimed delivery is reserved for its attempt.
    lease_ms: i64,
    attempts_kept: usize,
}

impl EmbeddedEvents {
    pub async fn new(store: Arc<EmbeddedStore>, lease_ms: i64, attempts_kept: usize) -> Result<Self, StoreError> {
        store.call(|conn| conn.execute("UPDATE deliveries SET lease_until = 0", []).map(|_| ()).map_err(sql)).await?;
        Ok(EmbeddedEvents { store, lease_ms, attempts_kept })
    }
}

const WEBHOOK_COLUMNS: &str = "id, workspace, url, events, description, secret, previous_secret, \
     previous_until_ms, created_at, disabled_at, disabled_reason, failures";

fn webhook_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Webhook, StoreError>> {
    let id: String = row.get(0)?;
    let events: String = row.get(3)?;
    let events = match serde_json::from_str::<Vec<String>>(&events) {
        Ok(events) => events,
        Err(e) => return Ok(Err(StoreError::Corrupt(format!("events of webhook {id}: {e}")))),
    };
    Ok(Ok(Webhook {
        id,
        workspace: row.get(1)?,
        url: row.get(2)?,
        events,
        description: row.get(4)?,
        secret: Secret::new(row.get(5)?),
        previous_secret: row.get::<_, Option<String>>(6)?.map(Secret::new),
        previous_until_ms: row.get(7)?,
        created_at: row.get(8)?,
        disabled_at: row.get(9)?,
        disabled_reason: row.get(10)?,
        failures: row.get::<_, i64>(11)?.max(0) as u64,
    }))
}

fn webhooks_where(conn: &Connection, filter: &str, param: &str) -> Result<Vec<Webhook>, StoreError> {
    let query = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE {filter} ORDER BY created_at, id");
    let mut stmt = conn.prepare_cached(&query).map_err(sql)?;
    let rows = stmt.query_map([param], webhook_from_row).map_err(sql)?;
    rows.map(|r| r.map_err(sql)?).collect()
}

/// Queues one delivery of `event` to `webhook`: referring to the event's
/// row in the log (`logged`), or with its JSON (an event not logged).
fn insert_delivery(conn: &Connection, webhook: &Webhook, event: &Event, body: Body<'_>) -> Result<(), StoreError> {
    let (body, event_seq) = match body {
        Body::Logged(seq) => ("", Some(seq)),
        Body::Json(json) => (json, None),
    };
    conn.prepare_cached(
        "INSERT INTO deliveries (webhook, workspace, event_id, event_type, body, attempts, due_at, queued_at, \
         event_seq) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6, ?7)",
    )
    .map_err(sql)?
    .execute(params![webhook.id, webhook.workspace, event.id, event.kind.as_str(), body, event.timestamp_ms, event_seq])
    .map_err(sql)?;
    Ok(())
}

/// Where a delivery's body is.
enum Body<'a> {
    /// The `events` row with this `seq`.
    Logged(i64),
    Json(&'a str),
}

/// Before deleting the log's events with `seq < before` (of `workspace`, if
/// given): the deliveries still waiting for one of them get its JSON.
fn detach_deliveries(conn: &Connection, before: i64, workspace: Option<&str>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE deliveries SET body = (SELECT json FROM events WHERE events.seq = deliveries.event_seq), \
         event_seq = NULL WHERE event_seq < ?1 AND (?2 IS NULL OR workspace = ?2)",
    )
    .map_err(sql)?
    .execute(params![before, workspace])
    .map_err(sql)?;
    Ok(())
}

#[async_trait]
impl EventLog for EmbeddedEvents {
    async fn append(&self, events: &[Event]) -> Result<usize, StoreError> {
        let events = events.to_vec();
        self.store
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                let mut queued = 0;
                let mut hooks: Option<(String, Vec<Webhook>)> = None;
                for event in &events {
                    let json = event.to_json();
                    tx.prepare_cached("INSERT INTO events (id, workspace, type, ts, json) VALUES (?1, ?2, ?3, ?4, ?5)")
                        .map_err(sql)?
                        .execute(params![event.id, &*event.workspace, event.kind.as_str(), event.timestamp_ms, json])
                        .map_err(sql)?;
                    let seq = tx.last_insert_rowid();
                    // Batches are mostly one workspace: read its webhooks once per run.
                    if hooks.as_ref().is_none_or(|(ws, _)| **ws != *event.workspace) {
                        let list = webhooks_where(&tx, "workspace = ?1", &event.workspace)?;
                        hooks = Some((event.workspace.to_string(), list));
                    }
                    let (_, list) = hooks.as_ref().expect("set above");
                    for hook in list.iter().filter(|h| h.wants(event.kind.as_str())) {
                        insert_delivery(&tx, hook, event, Body::Logged(seq))?;
                        queued += 1;
                    }
                }
                tx.commit().map_err(sql)?;
                Ok(queued)
            })
            .await
    }

    async fn list_events(&self, workspace: &str, q: &EventQuery) -> Result<EventPage, StoreError> {
        let (workspace, q) = (workspace.to_owned(), q.clone());
        self.store
            .call(move |conn| {
                let after: Option<i64> = match &q.after {
                    Some(c) => Some(c.parse().map_err(|_| StoreError::Conflict(format!("cursor {c:?}")))?),
                    None => None,
                };
                let (cmp, order) = if q.ascending { (">", "ASC") } else { ("<", "DESC") };
                let mut sql_text = String::from("SELECT seq, json FROM events WHERE workspace = ?");
                let mut args: Vec<rusqlite::types::Value> = vec![workspace.into()];
                if let Some(after) = after {
                    sql_text.push_str(&format!(" AND seq {cmp} ?"));
                    args.push(after.into());
                }
                if !q.types.is_empty() {
                    sql_text.push_str(&format!(" AND type IN ({})", vec!["?"; q.types.len()].join(",")));
                    args.extend(q.types.iter().map(|t| rusqlite::types::Value::from(t.clone())));
                }
                sql_text.push_str(&format!(" ORDER BY seq {order} LIMIT ?"));
                args.push(((q.limit + 1) as i64).into());
                let mut stmt = conn.prepare_cached(&sql_text).map_err(sql)?;
                let rows = stmt
                    .query_map(params_from_iter(args), |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                    .map_err(sql)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql)?;
                let more = rows.len() > q.limit;
                let mut page = EventPage::default();
                for (seq, json) in rows.into_iter().take(q.limit) {
                    let raw = serde_json::value::RawValue::from_string(json)
                        .map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?;
                    page.events.push(raw);
                    page.next_cursor = Some(seq.to_string());
                }
                if !more {
                    page.next_cursor = None;
                }
                Ok(page)
            })
            .await
    }

    async fn prune(&self, min_ms: i64, max_count: u64) -> Result<u64, StoreError> {
        self.store
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                // Events are appended in time order, so everything before the
                // first event young enough goes (a scan from the oldest that
                // stops there; no index on time to maintain per insert).
                let before: i64 = tx
                    .query_row(
                        "SELECT COALESCE((SELECT seq FROM events WHERE ts >= ?1 ORDER BY seq LIMIT 1), \
                         (SELECT MAX(seq) + 1 FROM events), 0)",
                        [min_ms],
                        |r| r.get(0),
                    )
                    .map_err(sql)?;
                detach_deliveries(&tx, before, None)?;
                let mut deleted = tx.execute("DELETE FROM events WHERE seq < ?1", [before]).map_err(sql)? as u64;
                // Per workspace, everything older than its `max_count`th newest
                // event: one index range per workspace, not a pass over the log.
                let workspaces: Vec<String> = tx
                    .prepare("SELECT id FROM workspaces")
                    .map_err(sql)?
                    .query_map([], |r| r.get(0))
                    .map_err(sql)?
                    .collect::<Result<_, _>>()
                    .map_err(sql)?;
                let keep = max_count.saturating_sub(1).min(i64::MAX as u64) as i64;
                for ws in workspaces {
                    let before: i64 = tx
                        .prepare_cached(
                            "SELECT COALESCE((SELECT seq FROM events WHERE workspace = ?1 ORDER BY seq DESC \
                             LIMIT 1 OFFSET ?2), 0)",
                        )
                        .map_err(sql)?
                        .query_row(params![ws, keep], |r| r.get(0))
                        .map_err(sql)?;
                    detach_deliveries(&tx, before, Some(&ws))?;
                    deleted += tx
                        .prepare_cached("DELETE FROM events WHERE workspace = ?1 AND seq < ?2")
                        .map_err(sql)?
                        .execute(params![ws, before])
                        .map_err(sql)? as u64;
                }
                tx.commit().map_err(sql)?;
                Ok(deleted)
            })
            .await
    }
}

#[async_trait]
impl WebhookStore for EmbeddedEvents {
    async fn insert_webhook(&self, w: &Webhook, max: usize) -> Result<(), StoreError> {
        let w = w.clone();
        self.store
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                let count: i64 = tx
                    .query_row("SELECT COUNT(*) FROM webhooks WHERE workspace = ?1", [&w.workspace], |r| r.get(0))
                    .map_err(sql)?;
                if count as usize >= max {
                    return Err(StoreError::Conflict(format!(
                        "webhook number {} of workspace {}",
                        max + 1,
                        w.workspace
                    )));
                }
                let events = serde_json::to_string(&w.events).expect("strings serialise");
                tx.execute(
                    &format!(
                        "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)"
                    ),
                    params![
                        w.id,
                        w.workspace,
                        w.url,
                        events,
                        w.description,
                        w.secret.expose(),
                        w.previous_secret.as_ref().map(|s| s.expose().clone()),
                        w.previous_until_ms,
                        w.created_at,
                        w.disabled_at,
                        w.disabled_reason,
                        w.failures as i64
                    ],
                )
                .map_err(insert_error(format!("webhook {}", w.id)))?;
                tx.commit().map_err(sql)
            })
            .await
    }

    async fn webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError> {
        let id = id.to_owned();
        self.store.call(move |conn| Ok(webhooks_where(conn, "id = ?1", &id)?.pop())).await
    }

    async fn list_webhooks(&self, workspace: &str) -> Result<Vec<Webhook>, StoreError> {
        let workspace = workspace.to_owned();
        self.store.call(move |conn| webhooks_where(conn, "workspace = ?1", &workspace)).await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.store
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                let n = tx.execute("DELETE FROM webhooks WHERE id = ?1", [&id]).map_err(sql)?;
                tx.execute("DELETE FROM deliveries WHERE webhook = ?1", [&id]).map_err(sql)?;
                tx.execute("DELETE FROM webhook_attempts WHERE webhook = ?1", [&id]).map_err(sql)?;
                tx.commit().map_err(sql)?;
                Ok(n > 0)
            })
            .await
    }

    async fn rotate_secret(&self, id: &str, secret: &str, previous_until_ms: i64) -> Result<bool, StoreError> {
        let (id, secret) = (id.to_owned(), secret.to_owned());
        self.store
            .call(move |conn| {
                let n = conn
                    .execute(
                        "UPDATE webhooks SET previous_secret = secret, previous_until_ms = ?3, secret = ?2 WHERE id = ?1",
                        params![id, secret, previous_until_ms],
                    )
                    .map_err(sql)?;
                Ok(n > 0)
            })
            .await
    }

    async fn count_attempt(&self, id: &str, success: bool) -> Result<u64, StoreError> {
        let id = id.to_owned();
        self.store
            .call(move |conn| {
                let update = if success { "failures = 0" } else { "failures = failures + 1" };
                conn.query_row(&format!("UPDATE webhooks SET {update} WHERE id = ?1 RETURNING failures"), [&id], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()
                .map(|n| n.unwrap_or(0) as u64)
                .map_err(sql)
            })
            .await
    }

    async fn disable_webhook(&self, id: &str, reason: &str, at: i64) -> Result<bool, StoreError> {
        let (id, reason) = (id.to_owned(), reason.to_owned());
        self.store
            .call(move |conn| {
                let n = conn
                    .execute(
                        "UPDATE webhooks SET disabled_at = ?2, disabled_reason = ?3 WHERE id = ?1 AND disabled_at IS NULL",
                        params![id, at, reason],
                    )
                    .map_err(sql)?;
                Ok(n > 0)
            })
            .await
    }
}

#[async_trait]
impl DeliveryQueue for EmbeddedEvents {
    async fn enqueue(&self, webhook: &Webhook, event: &Event) -> Result<(), StoreError> {
        let (webhook, event) = (webhook.clone(), event.clone());
        self.store.call(move |conn| insert_delivery(conn, &webhook, &event, Body::Json(&event.to_json()))).await
    }

    async fn claim(&self, max: usize, now_ms: i64) -> Result<Vec<Delivery>, StoreError> {
        let lease = now_ms + self.lease_ms;
        self.store
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                let mut claimed = tx
                    .prepare_cached(
                        "UPDATE deliveries SET lease_until = ?3 WHERE seq IN (SELECT seq FROM deliveries \
                         WHERE due_at <= ?1 AND lease_until <= ?1 ORDER BY due_at, seq LIMIT ?2) \
                         RETURNING seq, webhook, workspace, event_id, event_type, body, attempts, queued_at, event_seq",
                    )
                    .map_err(sql)?
                    .query_map(params![now_ms, max as i64, lease], |r| {
                        let delivery = Delivery {
                            handle: r.get::<_, i64>(0)?.to_string(),
                            webhook: r.get(1)?,
                            workspace: r.get(2)?,
                            event_id: r.get(3)?,
                            event_type: r.get(4)?,
                            body: r.get(5)?,
                            attempts: r.get(6)?,
                            queued_at_ms: r.get(7)?,
                        };
                        Ok((delivery, r.get::<_, Option<i64>>(8)?))
                    })
                    .map_err(sql)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql)?;
                // The bodies of logged events, from the log.
                let mut event = tx.prepare_cached("SELECT json FROM events WHERE seq = ?1").map_err(sql)?;
                for (delivery, event_seq) in &mut claimed {
                    if let Some(seq) = event_seq {
                        delivery.body = event.query_row([*seq], |r| r.get(0)).map_err(sql)?;
                    }
                }
                drop(event);
                let claimed: Vec<Delivery> = claimed.into_iter().map(|(d, _)| d).collect();
                tx.commit().map_err(sql)?;
                Ok(claimed)
            })
            .await
    }

    async fn finish(&self, batch: &[Finished]) -> Result<(), StoreError> {
        // What the store thread needs, owned: handle, next, the attempt as JSON.
        let mut rows = Vec::with_capacity(batch.len());
        for f in batch {
            let d = &f.delivery;
            let seq: i64 =
                d.handle.parse().map_err(|_| StoreError::Corrupt(format!("delivery handle {}", d.handle)))?;
            let attempt = f.attempt.as_ref().map(|a| serde_json::to_string(a).expect("an attempt serialises"));
            rows.push((seq, f.next, d.webhook.clone(), attempt));
        }
        let kept = self.attempts_kept as i64;
        self.store
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                let mut attempted = std::collections::BTreeSet::new();
                for (seq, next, webhook, attempt) in rows {
                    match next {
                        Next::Done => {
                            tx.prepare_cached("DELETE FROM deliveries WHERE seq = ?1").map_err(sql)?.execute([seq])
                        }
                        Next::Retry { at_ms, attempts } => tx
                            .prepare_cached(
                                "UPDATE deliveries SET due_at = ?2, attempts = ?3, lease_until = 0 WHERE seq = ?1",
                            )
                            .map_err(sql)?
                            .execute(params![seq, at_ms, attempts]),
                    }
                    .map_err(sql)?;
                    if let Some(json) = attempt {
                        tx.prepare_cached("INSERT INTO webhook_attempts (webhook, json) VALUES (?1, ?2)")
                            .map_err(sql)?
                            .execute(params![webhook, json])
                            .map_err(sql)?;
                        attempted.insert(webhook);
                    }
                }
                // Each webhook's attempts beyond its newest `kept`, once per batch.
                for webhook in attempted {
                    tx.prepare_cached(
                        "DELETE FROM webhook_attempts WHERE webhook = ?1 AND seq < COALESCE((SELECT seq FROM \
                         webhook_attempts WHERE webhook = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2), 0)",
                    )
                    .map_err(sql)?
                    .execute(params![webhook, kept - 1])
                    .map_err(sql)?;
                }
                tx.commit().map_err(sql)
            })
            .await
    }

    async fn attempts(&self, webhook: &Webhook, limit: usize) -> Result<Vec<Attempt>, StoreError> {
        let id = webhook.id.clone();
        self.store
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT json FROM webhook_attempts WHERE webhook = ?1 ORDER BY seq DESC LIMIT ?2")
                    .map_err(sql)?;
                let rows = stmt.query_map(params![id, limit as i64], |r| r.get::<_, String>(0)).map_err(sql)?;
                rows.map(|json| {
                    let json = json.map_err(sql)?;
                    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("attempt: {e}")))
                })
                .collect()
            })
            .await
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        self.store
            .call(|conn| conn.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get::<_, i64>(0)).map_err(sql))
            .await
            .map(|n| n as u64)
    }
}
