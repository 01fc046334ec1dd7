//! The frames of a stream that are ready together, sent as one.
//!
//! hyper's HTTP/1 client hands a streamed body over a channel that holds one
//! chunk, so an upstream burst that arrived in one read still reaches the relay
//! a chunk per task switch. Relaying each chunk as it comes makes hyper flush
//! (one `writev`, one TCP segment, one wake-up of the client) per SSE event.
//! [`Batch`] gathers what is ready into one frame instead; the relay gives the
//! upstream connection [`HANDOVER_TURNS`] scheduler turns to hand over the
//! rest of what it has already read, and sends the batch as soon as they
//! bring nothing — no timer, so a lone token is never held back for a next
//! one, only for two passes of its worker's run queue. The first frame of a
//! stream goes out alone, at once: time to first token is what a user
//! watches, and it should be the upstream's, not the whole burst's.

use bytes::{Bytes, BytesMut};

/// A batch bigger than this goes out without asking for more: it is already
/// several TCP segments, and a client reading slowly should see progress.
pub const MAX_BATCH: usize = 64 * 1024;

/// Scheduler turns the relay yields, without new data, before it sends what
/// it has. Measured (hyper 1.x, one runtime per worker): the next chunk of an
/// upstream body already read arrives after exactly two turns — one for the
/// connection task woken by the freed channel slot, one for its send to wake
/// the relay — so fewer never coalesces and more only delays a lone token.
pub const HANDOVER_TURNS: u8 = 2;

#[derive(Default)]
pub struct Batch {
    pieces: Vec<Bytes>,
    len: usize,
}

impl Batch {
    pub fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.pieces.push(piece);
        }
    }

    pub fn extend(&mut self, pieces: impl IntoIterator<Item = Bytes>) {
        for piece in pieces {
            self.push(piece);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// True when the batch should go out without waiting for another piece.
    pub fn is_full(&self) -> bool {
        self.len >= MAX_BATCH
    }

    /// The batch as one frame: a lone piece as it is, several copied into one
    /// buffer (a few hundred bytes each — far cheaper than a write each).
    pub fn take(&mut self) -> Option<Bytes> {
        let frame = match self.pieces.len() {
            0 => return None,
            1 => self.pieces.pop(),
            _ => {
                let mut joined = BytesMut::with_capacity(self.len);
                for piece in self.pieces.drain(..) {
                    joined.extend_from_slice(&piece);
                }
                Some(joined.freeze())
            }
        };
        self.len = 0;
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_pieces_in_order_and_passes_a_lone_one_through() {
        let mut batch = Batch::default();
        assert!(batch.take().is_none());
        let lone = Bytes::from_static(b"data: a\n\n");
        batch.push(lone.clone());
        let out = batch.take().unwrap();
        assert_eq!(out.as_ptr(), lone.as_ptr(), "a lone piece is not copied");
        batch.extend([Bytes::from_static(b"data: a\n\n"), Bytes::new(), Bytes::from_static(b"data: b\n\n")]);
        assert_eq!(&batch.take().unwrap()[..], b"data: a\n\ndata: b\n\n");
        assert!(batch.is_empty());
    }

    #[test]
    fn is_full_at_the_bound() {
        let mut batch = Batch::default();
        batch.push(Bytes::from(vec![b'x'; MAX_BATCH - 1]));
        assert!(!batch.is_full());
        batch.push(Bytes::from_static(b"y"));
        assert!(batch.is_full());
        assert_eq!(batch.take().unwrap().len(), MAX_BATCH);
    }
}
