//! A room's pinned message (contract §9, `"sticky": true`): the last sticky
//! broadcast, encoded once as a `sticky` message in every framing, sent to
//! each member that joins after it (right after its `welcome`) until its
//! ttl passes or it is unpinned.
//!
//! Kept in memory beside the resume window; the registry writes it with
//! the room (on drain and on every room write), so a drain and restart does
//! not unpin.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::fanout::Frames;
use crate::protocol::Framing;
use crate::registry::store::StoredSticky;
use crate::room::now_ms;

#[derive(Debug)]
struct Pinned {
    stored: StoredSticky,
    frames: Frames,
    expires_at: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Sticky {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    pinned: Option<Pinned>,
    /// Pins of seqs up to here were unpinned (in a cluster an unpin may reach
    /// a node before the pin it undoes): they are not taken again.
    unpinned_through: u64,
}

impl Sticky {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("sticky lock")
    }

    /// Pins broadcast `stored` of `room`, replacing what was pinned. One
    /// encoding per sticky broadcast.
    pub fn pin(&self, room: &str, stored: StoredSticky) {
        let remaining = stored.expires_at_ms.map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
        let frames = Frames::encode_as("sticky", room, stored.seq, stored.ts, Default::default(), &stored.data);
        let expires_at = remaining.map(|left| Instant::now() + left);
        let mut state = self.state();
        if stored.seq > state.unpinned_through {
            state.pinned = Some(Pinned { stored, frames, expires_at });
        }
    }

    /// Unpins; returns the seq that was pinned, None when nothing was (or it had expired).
    pub fn unpin(&self, now: Instant) -> Option<u64> {
        let seq = self.live(now, |pinned| pinned.stored.seq)?;
        self.unpin_through(seq);
        Some(seq)
    }

    /// Unpins a pin of `seq` or earlier, and refuses such pins from now on.
    pub fn unpin_through(&self, seq: u64) {
        let mut state = self.state();
        state.unpinned_through = state.unpinned_through.max(seq);
        if state.pinned.as_ref().is_some_and(|p| p.stored.seq <= seq) {
            state.pinned = None;
        }
    }

    /// The pinned message for a joining member in `framing`, unless it expired.
    pub fn frame(&self, framing: Framing, now: Instant) -> Option<Bytes> {
        self.live(now, |pinned| pinned.frames.get(framing).clone())
    }

    /// The pinned broadcast's seq, unless it expired.
    pub fn seq(&self, now: Instant) -> Option<u64> {
        self.live(now, |pinned| pinned.stored.seq)
    }

    /// What the registry writes.
    pub fn stored(&self, now: Instant) -> Option<StoredSticky> {
        self.live(now, |pinned| pinned.stored.clone())
    }

    fn live<T>(&self, now: Instant, f: impl FnOnce(&Pinned) -> T) -> Option<T> {
        let mut state = self.state();
        if state.pinned.as_ref().is_some_and(|p| p.expires_at.is_some_and(|at| now >= at)) {
            state.pinned = None;
        }
        state.pinned.as_ref().map(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: u64, expires_at_ms: Option<u64>) -> StoredSticky {
        StoredSticky { seq, ts: 5, data: r#"{"top":"Ana"}"#.into(), expires_at_ms }
    }

    #[test]
    fn the_last_pin_wins_until_unpinned_or_expired() {
        let sticky = Sticky::default();
        let now = Instant::now();
        assert_eq!(sticky.seq(now), None);
        sticky.pin("gifts", stored(3, None));
        sticky.pin("gifts", stored(4, None));
        let frame = sticky.frame(Framing::WebSocket, now).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&frame[2..]).unwrap();
        assert_eq!(json, serde_json::json!({"type":"sticky","room":"gifts","seq":4,"ts":5,"data":{"top":"Ana"}}));
        assert_eq!(sticky.unpin(now), Some(4));
        assert_eq!(sticky.unpin(now), None, "nothing left to unpin");
        sticky.pin("gifts", stored(5, Some(now_ms() + 60_000)));
        assert_eq!(sticky.seq(now + Duration::from_secs(59)), Some(5));
        assert_eq!(sticky.seq(now + Duration::from_secs(61)), None, "its ttl passed");
        assert_eq!(sticky.unpin(now + Duration::from_secs(61)), None, "an expired pin is gone");
    }

    #[test]
    fn an_unpin_that_arrives_before_its_pin_still_wins() {
        let sticky = Sticky::default();
        let now = Instant::now();
        sticky.unpin_through(7);
        sticky.pin("gifts", stored(7, None));
        assert_eq!(sticky.seq(now), None, "the pin of 7 was undone already");
        sticky.pin("gifts", stored(8, None));
        assert_eq!(sticky.seq(now), Some(8), "a later pin is taken");
        sticky.unpin_through(7);
        assert_eq!(sticky.seq(now), Some(8), "an older unpin does not undo a newer pin");
    }
}
