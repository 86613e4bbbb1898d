//! A shard's QUIC deadlines: an indexed min-heap with at most one entry per
//! connection, keyed by its slot.
//!
//! A connection's next deadline moves with almost every packet: loss
//! detection after a send, back to the idle timeout after the ACK, its own
//! hello or close deadline. A plain heap would have to keep the superseded
//! entries until they popped. Here each slot's position in the heap is kept,
//! so a deadline moves in place with one sift either way, and the heap is as
//! long as the connections that have a deadline (docs/benchmarks.md §30).
//!
//! Invariants: `position[heap[i].1] == i` for every entry; a slot not in the
//! heap has `position == ABSENT`; each entry is no later than its children.

use std::time::Instant;

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

const ABSENT: u32 = u32::MAX;

#[derive(Debug, Default)]
pub struct Timers {
    /// (deadline, slot), a binary min-heap on the deadline.
    heap: Vec<(Instant, u32)>,
    /// By slot: its index in `heap`, or [`ABSENT`].
    position: Vec<u32>,
}

impl Timers {
    /// Sets connection `slot`'s deadline to `at`, or removes it (`None`).
    pub fn set(&mut self, slot: u32, at: Option<Instant>) {
        let slot_index = slot as usize;
        if self.position.len() <= slot_index {
            self.position.resize(slot_index + 1, ABSENT);
        }
        let at_index = self.position[slot_index];
        match (at_index, at) {
            (ABSENT, None) => {}
            (ABSENT, Some(at)) => {
                self.heap.push((at, slot));
                self.position[slot_index] = (self.heap.len() - 1) as u32;
                self.sift_up(self.heap.len() - 1);
            }
            (index, None) => {
                self.remove_at(index as usize);
            }
            (index, Some(at)) => {
                let index = index as usize;
                let before = std::mem::replace(&mut self.heap[index].0, at);
                if at < before {
                    self.sift_up(index);
                } else if at > before {
                    self.sift_down(index);
                }
            }
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.heap.first().map(|(at, _)| *at)
    }

    /// Removes and returns a connection whose deadline is due by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<u32> {
        match self.heap.first() {
            Some(&(at, slot)) if at <= now => {
                self.remove_at(0);
                Some(slot)
            }
            _ => None,
        }
    }

    fn remove_at(&mut self, index: usize) {
        let (_, slot) = self.heap.swap_remove(index);
        self.position[slot as usize] = ABSENT;
        if index < self.heap.len() {
            self.position[self.heap[index].1 as usize] = index as u32;
            // The entry moved here from the end may belong above or below.
            let index = self.sift_up(index);
            self.sift_down(index);
        }
    }

    /// Moves the entry at `index` up while it is earlier than its parent; returns where it ends.
    fn sift_up(&mut self, mut index: usize) -> usize {
        while index > 0 {
            let parent = (index - 1) / 2;
            if self.heap[index].0 >= self.heap[parent].0 {
                break;
            }
            self.swap(index, parent);
            index = parent;
        }
        index
    }

    fn sift_down(&mut self, mut index: usize) {
        loop {
            let (left, right) = (2 * index + 1, 2 * index + 2);
            let mut earliest = index;
            if left < self.heap.len() && self.heap[left].0 < self.heap[earliest].0 {
                earliest = left;
            }
            if right < self.heap.len() && self.heap[right].0 < self.heap[earliest].0 {
                earliest = right;
            }
            if earliest == index {
                return;
            }
            self.swap(index, earliest);
            index = earliest;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.position[self.heap[a].1 as usize] = a as u32;
        self.position[self.heap[b].1 as usize] = b as u32;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[test]
    fn a_moved_deadline_replaces_the_old_one_either_way() {
        let start = Instant::now();
        let at = |ms| Some(start + Duration::from_millis(ms));
        let mut timers = Timers::default();
        timers.set(0, at(60_000)); // idle
        timers.set(0, at(30)); // loss detection after a send: earlier
        timers.set(0, at(60_030)); // the ACK came: idle again, later
        timers.set(1, at(50));
        assert_eq!(timers.len(), 2, "one entry per connection, whatever moved");
        assert_eq!(timers.next(), at(50));
        assert_eq!(timers.pop_due(start + Duration::from_millis(100)), Some(1));
        assert_eq!(timers.pop_due(start + Duration::from_millis(100)), None, "connection 0 is not due");
        timers.set(0, None);
        assert_eq!((timers.len(), timers.next()), (0, None));
    }

    proptest! {
        /// Against a map from slot to deadline: whatever the sets and pops,
        /// the earliest deadline, what pops and how many are kept agree.
        #[test]
        fn behaves_as_one_deadline_per_slot(
            ops in proptest::collection::vec((0u32..24, proptest::option::of(0u64..1000), any::<bool>()), 1..400),
        ) {
            let start = Instant::now();
            let mut timers = Timers::default();
            let mut model: BTreeMap<u32, Instant> = BTreeMap::new();
            for (slot, ms, pop) in ops {
                if pop {
                    let now = start + Duration::from_millis(ms.unwrap_or(0));
                    let earliest = model.iter().map(|(slot, at)| (*at, *slot)).min();
                    match timers.pop_due(now) {
                        Some(popped) => {
                            let at = model.remove(&popped).expect("popped a slot with a deadline");
                            prop_assert!(at <= now);
                            prop_assert_eq!(Some(at), earliest.map(|(at, _)| at), "the earliest pops first");
                        }
                        None => prop_assert!(earliest.is_none_or(|(at, _)| at > now)),
                    }
                } else {
                    let at = ms.map(|ms| start + Duration::from_millis(ms));
                    timers.set(slot, at);
                    match at {
                        Some(at) => model.insert(slot, at),
                        None => model.remove(&slot),
                    };
                }
                prop_assert_eq!(timers.len(), model.len());
                prop_assert_eq!(timers.next(), model.values().min().copied());
                for (index, (_, slot)) in timers.heap.iter().enumerate() {
                    prop_assert_eq!(timers.position[*slot as usize] as usize, index);
                }
            }
        }
    }
}
