//! A room's record of its recent broadcasts' reach, for
//! `GET …/broadcasts/{seq}` (contract §9).
//!
//! Appended under the room's sequencer, so seqs increase. Held for at least
//! the last [`HELD_AT_LEAST`] broadcasts or the last [`HELD_FOR_MS`],
//! whichever is more. A record points at its broadcast's live counters until
//! nothing can change them any more (no queue, lane or resume window holds
//! the broadcast: the counters' only owner is this log); then it keeps only
//! the totals, so a long record costs tens of bytes a broadcast, never the
//! payload or the per-shard blocks.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::fanout::reach::{Reach, ReachTotals};

/// The fewest broadcasts held.
pub const HELD_AT_LEAST: usize = 1000;
/// How long a broadcast is held, whatever their number.
pub const HELD_FOR_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Default)]
pub struct ReachLog {
    records: VecDeque<Record>,
}

#[derive(Debug)]
struct Record {
    seq: u64,
    ts_ms: u64,
    counted: Counted,
}

#[derive(Debug)]
enum Counted {
    Live(Arc<Reach>),
    Final(ReachTotals),
}

/// One broadcast's reach as this node counted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub ts_ms: u64,
    pub totals: ReachTotals,
}

impl ReachLog {
    /// Records broadcast `seq` (newer than every seq recorded) accepted at `ts_ms`.
    pub fn push(&mut self, seq: u64, ts_ms: u64, reach: Arc<Reach>) {
        self.records.push_back(Record { seq, ts_ms, counted: Counted::Live(reach) });
        self.prune(ts_ms);
    }

    /// Lets go of what is past both bounds, and keeps only the totals of
    /// broadcasts whose counting is over.
    pub fn settle(&mut self, now_ms: u64) {
        self.prune(now_ms);
        for record in self.records.iter_mut() {
            if let Counted::Live(reach) = &record.counted
                && Arc::strong_count(reach) == 1
            {
                record.counted = Counted::Final(reach.totals());
            }
        }
    }

    fn prune(&mut self, now_ms: u64) {
        while self.records.len() > HELD_AT_LEAST
            && self.records.front().is_some_and(|r| r.ts_ms.saturating_add(HELD_FOR_MS) < now_ms)
        {
            self.records.pop_front();
        }
    }

    /// The counts of broadcast `seq`, if it is held.
    pub fn get(&self, seq: u64) -> Option<Counts> {
        let index = self.records.binary_search_by_key(&seq, |r| r.seq).ok()?;
        let record = &self.records[index];
        let totals = match &record.counted {
            Counted::Live(reach) => reach.totals(),
            Counted::Final(totals) => *totals,
        };
        Some(Counts { ts_ms: record.ts_ms, totals })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_more_of_a_count_and_an_age_and_settles_what_is_over() {
        let mut log = ReachLog::default();
        let kept = Arc::new(Reach::new(1));
        log.push(1, 0, kept.clone());
        for seq in 2..=(HELD_AT_LEAST as u64 + 10) {
            log.push(seq, 1, Arc::new(Reach::new(1)));
        }
        assert!(log.get(1).is_some(), "younger than 10 minutes: held beyond the count");
        kept.add_targets(0, 2, 1);
        log.settle(2);
        assert!(matches!(log.records[0].counted, Counted::Live(_)), "still counted by a holder");
        drop(kept);
        log.settle(2);
        assert_eq!(log.get(1).map(|c| c.totals.targets), Some(2));
        assert!(matches!(log.records[0].counted, Counted::Final(_)));
        log.settle(HELD_FOR_MS + 2);
        assert_eq!(log.get(1), None, "older than 10 minutes and past the last 1000");
        assert!(log.get(HELD_AT_LEAST as u64 + 10).is_some());
        assert_eq!(log.records.len(), HELD_AT_LEAST);
    }
}
