//! A streamed answer to a conversation message: the relayed chat chunks
//! through the door's [`Wire`], the turn stored when the relay ends — before
//! the wire's last bytes, so a client that continues at once finds it.

use crate::app::App;
use crate::conversations::{Conversations, Held};
use crate::pipeline::answer::{chunk_events, AnswerEvent, ChatUsage};
use crate::pipeline::chunks::{Chunk, Closing, Translator};

use super::{commit, let_go, Finished, Pending, ReplyInfo, Wire};

/// A streamed answer: the relayed chunks through the door's [`Wire`], the
/// turn stored at the end before the wire's last bytes.
pub struct Streamed<W: Wire> {
    /// Taken by [`Translator::end`]: its last bytes are written after the store.
    wire: Option<W>,
    info: ReplyInfo,
    state: Option<(Pending, Held, Conversations)>,
    text: String,
    finish_reason: Option<String>,
    usage: Option<ChatUsage>,
    failed: Option<String>,
    /// The failure's error event went out already (forwarded as relayed).
    failure_sent: bool,
}

impl<W: Wire> Streamed<W> {
    /// The translator and the opening bytes.
    pub fn new(app: &App, reply_held: Held, pending: Pending, info: ReplyInfo, mut wire: W) -> (Self, Vec<u8>) {
        let mut first = Vec::new();
        wire.start(&info, &mut first);
        let state = Some((pending, reply_held, app.conversations.clone()));
        let me = Streamed {
            wire: Some(wire),
            info,
            state,
            text: String::new(),
            finish_reason: None,
            usage: None,
            failed: None,
            failure_sent: false,
        };
        (me, first)
    }
}

impl<W: Wire> Translator for Streamed<W> {
    fn chunk(&mut self, chunk: Chunk<'_>, out: &mut Vec<u8>) {
        match chunk {
            Chunk::Data(json) => {
                let Some(wire) = self.wire.as_mut() else { return };
                if W::FORWARDS_CHUNKS {
                    wire.chunk(json, out);
                }
                match chunk_events(json) {
                    Ok(events) => {
                        for event in events {
                            match event {
                                AnswerEvent::Text(t) => {
                                    self.text.push_str(&t);
                                    if !W::FORWARDS_CHUNKS {
                                        wire.text(&t, out);
                                    }
                                }
                                AnswerEvent::Finish(r) => self.finish_reason = Some(r.into_owned()),
                                AnswerEvent::Usage(u) => self.usage = Some(u),
                                AnswerEvent::Refusal(_) | AnswerEvent::ToolCall(_) => {}
                            }
                        }
                    }
                    Err(e) => self.failed = Some(e.to_string()),
                }
            }
            Chunk::Error(json) => {
                if let (true, Some(wire)) = (W::FORWARDS_CHUNKS, self.wire.as_mut()) {
                    wire.chunk(json, out);
                    self.failure_sent = true;
                }
                let message = serde_json::from_slice::<serde_json::Value>(json)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_owned));
                self.failed = Some(message.unwrap_or_else(|| "The upstream failed mid-answer.".into()));
            }
            Chunk::Done => {}
        }
    }

    fn end(&mut self, _out: &mut Vec<u8>) -> Option<Closing> {
        let (mut pending, held, convos) = self.state.take()?;
        drop(pending.renewal.take());
        let (mut wire, info) = (self.wire.take()?, self.info.clone());
        let (failed, failure_sent) = (self.failed.take(), self.failure_sent);
        let mut done = Finished {
            text: std::mem::take(&mut self.text),
            finish_reason: self.finish_reason.take(),
            usage: self.usage.take(),
            turn: String::new(),
        };
        Some(Box::pin(async move {
            let mut last = Vec::new();
            if let Some(message) = failed {
                let_go(&convos, &held, "a failed answer").await;
                if !failure_sent {
                    wire.failed(&info, &message, &mut last);
                }
                return last;
            }
            let Pending { new, summary, agent, answer_id, .. } = pending;
            match commit(&convos, &held, new, summary, agent, answer_id, &mut done).await {
                Ok(()) => wire.finished(&info, &done, &mut last),
                Err(e) => {
                    tracing::warn!(thread = %held.name, error = %e, "a streamed answer could not be stored");
                    let_go(&convos, &held, "an unstored answer").await;
                    wire.failed(&info, &e.to_string(), &mut last);
                }
            }
            last
        }))
    }
}

impl<W: Wire> Drop for Streamed<W> {
    /// A client that went away mid-answer: nothing is stored, and the
    /// thread is let go at once rather than when its lease runs out.
    fn drop(&mut self) {
        if let Some((_, held, convos)) = self.state.take() {
            let tasks = convos.tasks.clone();
            tasks.spawn(async move { let_go(&convos, &held, "an abandoned answer").await });
        }
    }
}
