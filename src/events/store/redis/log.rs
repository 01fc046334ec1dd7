//! The event log on Redis: one stream per workspace, appended to with each
//! event's webhook deliveries fanned out, read back a page at a time.
//! Separate from the webhook records, which it reads to fan out, and from
//! the delivery queue, which it fills; see the parent module for the names.

use ::redis::Value;
use async_trait::async_trait;

use super::{entries, RedisEvents};
use crate::events::store::{EventLog, EventPage, EventQuery};
use crate::events::Event;
use crate::store::StoreError;

/// The most entries `GET /v1/events` reads to fill one filtered page.
const SCAN_CAP: usize = 10_000;

#[async_trait]
impl EventLog for RedisEvents {
    async fn append(&self, events: &[Event]) -> Result<usize, StoreError> {
        let mut by_workspace: Vec<(&str, Vec<&Event>)> = Vec::new();
        for e in events {
            match by_workspace.iter_mut().find(|(ws, _)| *ws == &*e.workspace) {
                Some((_, list)) => list.push(e),
                None => by_workspace.push((&e.workspace, vec![e])),
            }
        }
        let mut queued = 0;
        for (ws, list) in by_workspace {
            let hooks = self.webhooks_of(ws).await?;
            // Stream ids are Redis's own clock (milliseconds), so the cut-off
            // is wall-clock time, not the events' (possibly injected) clock.
            let now_ms =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            let min_id = (now_ms - self.max_age_ms).max(0);
            // One script call each for the log and the deliveries: a round
            // trip per batch, not per event (see `append.lua`, `enqueue.lua`).
            let mut log = self.scripts.append.prepare_invoke();
            log.key(self.log_name(ws)).arg(self.max_events).arg(min_id);
            let mut deliveries = self.deliveries();
            let mut fanned_out = 0;
            for event in list {
                let json = event.to_json();
                for hook in hooks.iter().filter(|h| h.wants(event.kind.as_str())) {
                    Self::add_delivery(&mut deliveries, hook, event, &json);
                    fanned_out += 1;
                }
                log.arg(event.id.as_str()).arg(event.kind.as_str()).arg(json);
            }
            // Deliveries first: a failure between the two writes may lose a log
            // line, never a delivery (the batch is retried whole on error).
            if fanned_out > 0 {
                self.store.invoke::<i64>(&deliveries).await?;
            }
            self.store.invoke::<i64>(&log).await?;
            queued += fanned_out;
        }
        Ok(queued)
    }

    async fn list_events(&self, ws: &str, q: &EventQuery) -> Result<EventPage, StoreError> {
        let name = self.log_name(ws);
        let mut page = EventPage::default();
        let mut cursor = q.after.clone();
        let mut scanned = 0;
        let batch = (q.limit + 1).max(100);
        loop {
            let (cmd, start, end) = if q.ascending { ("XRANGE", "-", "+") } else { ("XREVRANGE", "+", "-") };
            let start = cursor.as_ref().map_or(start.to_owned(), |c| format!("({c}"));
            let reply: Value = self
                .store
                .query(::redis::cmd(cmd).arg(&name).arg(start).arg(end).arg("COUNT").arg(batch).to_owned())
                .await
                .map_err(|e| match e {
                    StoreError::Unavailable(m) if m.contains("Invalid stream ID") => StoreError::Conflict(m),
                    e => e,
                })?;
            let got = entries(&reply);
            let exhausted = got.len() < batch;
            for (id, mut fields) in got {
                scanned += 1;
                let wanted = q.types.is_empty() || fields.get("type").is_some_and(|t| q.types.contains(t));
                if wanted {
                    if page.events.len() == q.limit {
                        // One more match exists: the page ends at the last one taken.
                        return Ok(page);
                    }
                    let json = fields.remove("json").unwrap_or_default();
                    let raw = serde_json::value::RawValue::from_string(json)
                        .map_err(|e| StoreError::Corrupt(format!("event {id}: {e}")))?;
                    page.events.push(raw);
                    page.next_cursor = Some(id.clone());
                }
                cursor = Some(id);
                if scanned >= SCAN_CAP {
                    // Stop reading; the client resumes from here.
                    page.next_cursor = cursor;
                    return Ok(page);
                }
            }
            if exhausted {
                page.next_cursor = None;
                return Ok(page);
            }
        }
    }

    async fn prune(&self, _min_ms: i64, _max_count: u64) -> Result<u64, StoreError> {
        // Trimmed on every append (MAXLEN, MINID).
        Ok(0)
    }
}
