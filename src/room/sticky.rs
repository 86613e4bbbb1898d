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
    pinned: Mutex<Option<Pinned>>,
}

impl Sticky {
    fn pinned(&self) -> std::sync::MutexGuard<'_, Option<Pinned>> {
        self.pinned.lock().expect("sticky lock")
    }

    /// Pins broadcast `stored` of `room`, replacing what was pinned. One
    /// encoding per sticky broadcast.
    pub fn pin(&self, room: &str, stored: StoredSticky) {
        let remaining = stored.expires_at_ms.map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
        let frames = Frames::encode_as("sticky", room, stored.seq, stored.ts, &stored.data);
        let expires_at = remaining.map(|left| Instant::now() + left);
        *self.pinned() = Some(Pinned { stored, frames, expires_at });
    }

    /// Unpins; false when nothing was pinned (or it had expired).
    pub fn unpin(&self, now: Instant) -> bool {
        let mut pinned = self.pinned();
        let was = pinned.take();
        was.is_some_and(|p| p.expires_at.is_none_or(|at| now < at))
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
        let mut pinned = self.pinned();
        if pinned.as_ref().is_some_and(|p| p.expires_at.is_some_and(|at| now >= at)) {
            *pinned = None;
        }
        pinned.as_ref().map(f)
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
        assert!(sticky.unpin(now));
        assert!(!sticky.unpin(now), "nothing left to unpin");
        sticky.pin("gifts", stored(5, Some(now_ms() + 60_000)));
        assert_eq!(sticky.seq(now + Duration::from_secs(59)), Some(5));
        assert_eq!(sticky.seq(now + Duration::from_secs(61)), None, "its ttl passed");
        assert!(!sticky.unpin(now), "an expired pin is gone");
    }
}
