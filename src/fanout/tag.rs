//! What the queue knows about each entry beside its bytes, packed into one
//! `u64` so the per-subscriber tag deque costs 8 bytes an entry.
//!
//! Priorities and conflation (contract §3) are rules over the queue's order;
//! they need, per queued entry, its kind, its room slot, its priority and its
//! conflate key. Keys are compared by a 44-bit hash within one room slot:
//! two distinct keys of the same room collide with odds of about 2⁻⁴⁴ per pair
//! of queued messages, which is far below any other loss a network has.

use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};

use serde::Deserialize;

use crate::protocol::messages::LagReason;

/// Delivery priority (contract §2): under backpressure `low` goes first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::Low, Priority::Normal, Priority::High];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

/// A conflate key, hashed once per broadcast; 0 means none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConflateKey(u64);

const HASH_BITS: u32 = 44;

impl ConflateKey {
    pub const NONE: ConflateKey = ConflateKey(0);

    /// The key's hash: fixed (not per process), never 0.
    pub fn of(key: &str) -> ConflateKey {
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        ConflateKey((hash >> (64 - HASH_BITS)).max(1))
    }

    pub fn is_some(self) -> bool {
        self.0 != 0
    }

    /// The key's bit in a 64-bit filter of keys.
    pub fn bit(self) -> u64 {
        1 << (self.0 & 63)
    }
}

/// How one broadcast is to be delivered: the same for every subscriber.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    pub priority: Priority,
    pub conflate: ConflateKey,
}

impl Delivery {
    /// Dropped last, never conflated: for what the server itself must say in order.
    pub const URGENT: Delivery = Delivery { priority: Priority::High, conflate: ConflateKey::NONE };
}

/// One queue entry's tag. Layout: bits 0–1 kind (control, broadcast, gap, occupancy), 2–3 priority or `lagged` reason,
/// 4–19 room slot, 20–63 conflate hash (broadcast) or missed count (gap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag(u64);

const KIND_CONTROL: u64 = 0;
const KIND_BROADCAST: u64 = 1;
const KIND_GAP: u64 = 2;
const KIND_OCCUPANCY: u64 = 3;

/// The most room slots a subscriber may have.
pub const MAX_SLOTS: usize = 1 << 16;

impl Tag {
    pub const CONTROL: Tag = Tag(KIND_CONTROL);

    pub fn broadcast(slot: usize, delivery: Delivery) -> Tag {
        debug_assert!(slot < MAX_SLOTS);
        Tag(KIND_BROADCAST | (delivery.priority as u64) << 2 | (slot as u64) << 4 | delivery.conflate.0 << 20)
    }

    pub fn gap(slot: usize, reason: LagReason, missed: u64) -> Tag {
        debug_assert!(slot < MAX_SLOTS && missed < 1 << HASH_BITS);
        Tag(KIND_GAP | (reason as u64) << 2 | (slot as u64) << 4 | missed << 20)
    }

    /// A room's online count (contract §9): at most one per slot waits in a queue.
    pub fn occupancy(slot: usize) -> Tag {
        debug_assert!(slot < MAX_SLOTS);
        Tag(KIND_OCCUPANCY | (slot as u64) << 4)
    }

    pub fn is_broadcast(self) -> bool {
        self.0 & 3 == KIND_BROADCAST
    }

    pub fn is_gap(self) -> bool {
        self.0 & 3 == KIND_GAP
    }

    pub fn slot(self) -> usize {
        (self.0 >> 4 & 0xffff) as usize
    }

    /// A broadcast's priority.
    pub fn priority(self) -> Priority {
        Priority::ALL[(self.0 >> 2 & 3) as usize]
    }

    /// A broadcast's conflate key.
    pub fn conflate(self) -> ConflateKey {
        ConflateKey(self.0 >> 20)
    }

    /// A gap's reason.
    pub fn gap_reason(self) -> LagReason {
        LagReason::ALL[(self.0 >> 2 & 3) as usize]
    }

    /// A gap's count of missed messages.
    pub fn missed(self) -> u64 {
        self.0 >> 20
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_hash_stably_and_never_to_none() {
        assert_eq!(ConflateKey::of("score"), ConflateKey::of("score"));
        assert_ne!(ConflateKey::of("score"), ConflateKey::of("scorf"));
        assert!(ConflateKey::of("").is_some());
    }

    proptest! {
        #[test]
        fn fields_round_trip(slot in 0usize..MAX_SLOTS, p in 0usize..3, key in ".{0,20}", missed in 0u64..(1 << 44)) {
            let delivery = Delivery { priority: Priority::ALL[p], conflate: ConflateKey::of(&key) };
            let b = Tag::broadcast(slot, delivery);
            prop_assert!(b.is_broadcast() && !b.is_gap());
            prop_assert_eq!((b.slot(), b.priority(), b.conflate()), (slot, delivery.priority, delivery.conflate));
            for reason in LagReason::ALL {
                let g = Tag::gap(slot, reason, missed);
                prop_assert!(g.is_gap() && !g.is_broadcast());
                prop_assert_eq!((g.slot(), g.gap_reason(), g.missed()), (slot, reason, missed));
            }
            let o = Tag::occupancy(slot);
            prop_assert!(!o.is_gap() && !o.is_broadcast() && o != Tag::CONTROL);
            prop_assert_eq!(o.slot(), slot);
            prop_assert!(!Tag::CONTROL.is_broadcast() && !Tag::CONTROL.is_gap());
        }
    }
}
