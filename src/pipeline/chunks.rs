//! A streamed answer read back as chat chunks, for front doors that speak
//! another dialect.
//!
//! The relay hands out whole SSE events (it buffers only an event split across
//! upstream frames), so each frame splits into complete events here without
//! any buffering of its own. [`Translated`] is the client-facing body of such a
//! front door: every chunk goes through its [`Translator`] as it arrives, and
//! what the translator writes goes to the client at once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;

use crate::relay::RelayBody;
use crate::sse::{find_event_end, single_data_line};

/// One event of a relayed chat stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// A `chat.completion.chunk` (or the usage chunk): its JSON.
    Data(&'a [u8]),
    /// `data: [DONE]`: the upstream finished.
    Done,
    /// The gateway's error event (the upstream failed mid-stream): its JSON,
    /// `{"error": {"message", "type", "code", "param"}}`.
    Error(&'a [u8]),
}

/// The chunks of one relayed frame, in order. Comments, keep-alives and
/// events that are not a single `data:` line are skipped.
pub fn chunks(frame: &[u8]) -> impl Iterator<Item = Chunk<'_>> {
    let mut rest = frame;
    std::iter::from_fn(move || loop {
        let (end, next) = find_event_end(rest)?;
        let event = &rest[..end];
        rest = &rest[next..];
        let Some(data) = single_data_line(event) else { continue };
        let payload = &event[data];
        return Some(if payload == b"[DONE]" {
            Chunk::Done
        } else if payload.starts_with(b"{\"error\"") {
            Chunk::Error(payload)
        } else {
            Chunk::Data(payload)
        });
    })
}

/// Turns chat chunks into another dialect's stream events.
///
/// A translator appends bytes to `out`; everything the chunks of one relayed
/// frame made goes to the client as one frame, so a burst of events is one
/// write and one allocation, and nothing waits for a later chunk.
pub trait Translator: Send + Unpin + 'static {
    /// Called for every chunk as it arrives; appends what to send.
    fn chunk(&mut self, chunk: Chunk<'_>, out: &mut Vec<u8>);
    /// Called once when the relay ends, whether or not `[DONE]` or an error
    /// came (a stream cut without either is an error the relay reports first).
    /// May return work to finish first (storing the turn): its bytes are
    /// sent when it is done, after those appended to `out`.
    fn end(&mut self, out: &mut Vec<u8>) -> Option<Closing>;
}

/// What a translator does before its last bytes go out.
pub type Closing = Pin<Box<dyn std::future::Future<Output = Vec<u8>> + Send>>;

/// The client-facing body of a translating front door.
pub struct Translated<T: Translator> {
    relay: RelayBody,
    translator: T,
    ready: VecDeque<Bytes>,
    scratch: Vec<u8>,
    closing: Option<Closing>,
    ended: bool,
}

impl<T: Translator> Translated<T> {
    /// `first` is sent before any chunk (the dialect's opening events).
    pub fn new(relay: RelayBody, translator: T, first: Vec<u8>) -> Self {
        let mut ready = VecDeque::with_capacity(2);
        if !first.is_empty() {
            ready.push_back(Bytes::from(first));
        }
        Translated { relay, translator, ready, scratch: Vec::new(), closing: None, ended: false }
    }

    /// What the translator wrote, as one frame. Copied out, so the buffer
    /// keeps its capacity: one allocation per frame, none per event.
    fn ship(&mut self) {
        if !self.scratch.is_empty() {
            self.ready.push_back(Bytes::copy_from_slice(&self.scratch));
            self.scratch.clear();
        }
    }
}

impl<T: Translator> http_body::Body for Translated<T> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if let Some(closing) = this.closing.as_mut() {
                let last = std::task::ready!(closing.as_mut().poll(cx));
                this.closing = None;
                if !last.is_empty() {
                    this.ready.push_back(Bytes::from(last));
                }
                continue;
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.relay).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue };
                    for chunk in chunks(&data) {
                        this.translator.chunk(chunk, &mut this.scratch);
                    }
                    this.ship();
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    this.closing = this.translator.end(&mut this.scratch);
                    this.ship();
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.ready.is_empty() && self.closing.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_splits_into_its_chunks() {
        let frame = b": keep-alive\n\ndata: {\"id\":1}\n\ndata: {\"error\":{\"code\":\"x\"}}\r\n\r\ndata: [DONE]\n\n";
        let all: Vec<Chunk<'_>> = chunks(frame).collect();
        assert_eq!(all, vec![Chunk::Data(b"{\"id\":1}"), Chunk::Error(b"{\"error\":{\"code\":\"x\"}}"), Chunk::Done]);
        assert_eq!(chunks(b"data: {\"partial\"").count(), 0, "the relay never hands out half an event");
    }
}
