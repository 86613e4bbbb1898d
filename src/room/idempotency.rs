//! The `Idempotency-Key`s a room has answered in the last 5 minutes.
//!
//! Checked and filled under the room's sequencer, the lock that hands out
//! seqs, so any number of concurrent retries of one key get one seq and one
//! delivery with no in-flight state. Keys expire in the order they came; the
//! map is also capped, oldest out first, so a flood of keys costs bounded
//! memory (each early eviction is counted).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Published;

/// How long a key is remembered (contract §2).
pub const KEY_TTL: Duration = Duration::from_secs(300);

/// Keys remembered per room at most.
pub const MAX_KEYS_PER_ROOM: usize = 100_000;

#[derive(Debug, Default)]
pub struct IdempotencyKeys {
    answers: HashMap<Arc<str>, Published>,
    arrivals: VecDeque<(Instant, Arc<str>)>,
}

impl IdempotencyKeys {
    /// The first answer given to `key`, if it is still remembered.
    pub fn get(&mut self, key: &str, now: Instant) -> Option<Published> {
        self.expire(now);
        self.answers.get(key).copied()
    }

    /// Remembers the answer to a new key; returns how many keys were let go
    /// before their time to stay under the cap.
    pub fn insert(&mut self, key: &str, answer: Published, now: Instant) -> usize {
        let mut evicted = 0;
        while self.arrivals.len() >= MAX_KEYS_PER_ROOM {
            self.pop_oldest();
            evicted += 1;
        }
        let key: Arc<str> = Arc::from(key);
        self.answers.insert(key.clone(), answer);
        self.arrivals.push_back((now, key));
        evicted
    }

    /// Forgets keys older than the TTL.
    pub fn expire(&mut self, now: Instant) {
        while self.arrivals.front().is_some_and(|(at, _)| now.duration_since(*at) >= KEY_TTL) {
            self.pop_oldest();
        }
        if self.arrivals.is_empty() && self.answers.capacity() > 0 {
            // A burst of keys should not pin its memory for the room's lifetime.
            *self = IdempotencyKeys::default();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, key)) = self.arrivals.pop_front() {
            self.answers.remove(&key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.arrivals.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(seq: u64) -> Published {
        Published { seq, online: 3, duplicate: false }
    }

    #[test]
    fn a_key_answers_the_same_until_it_expires() {
        let t0 = Instant::now();
        let mut keys = IdempotencyKeys::default();
        assert_eq!(keys.get("k", t0), None);
        keys.insert("k", answer(7), t0);
        assert_eq!(keys.get("k", t0 + Duration::from_secs(299)), Some(answer(7)));
        assert_eq!(keys.get("k", t0 + KEY_TTL), None);
        assert_eq!(keys.len(), 0);
    }

    #[test]
    fn the_cap_lets_go_of_the_oldest_first() {
        let t0 = Instant::now();
        let mut keys = IdempotencyKeys::default();
        for i in 0..MAX_KEYS_PER_ROOM {
            assert_eq!(keys.insert(&i.to_string(), answer(i as u64), t0), 0);
        }
        assert_eq!(keys.insert("new", answer(0), t0), 1);
        assert_eq!(keys.len(), MAX_KEYS_PER_ROOM);
        assert_eq!(keys.get("0", t0), None);
        assert_eq!(keys.get("1", t0), Some(answer(1)));
    }
}
