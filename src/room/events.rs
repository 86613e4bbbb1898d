//! When a room is `room.occupied` and when it is `room.vacated` (contract
//! §9): occupied when its online count goes from 0 to at least 1 (a member
//! that joined and left between two looks counts: a join was seen),
//! vacated once it has stayed 0 for the app's `vacated_after_ms`. Events
//! alternate by construction: each state only leads to the other.
//!
//! The server looks at every room each [`super::occupancy::TICK`] with its
//! count (cluster-wide in a cluster) and whether a member joined since the
//! last look. The state is kept in the registry, so a restart with members
//! coming back sends nothing, and one whose members do not return sends the
//! `room.vacated` owed.

use std::time::{Duration, Instant};

/// A room's change of state, to be told to the app's backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Occupied,
    Vacated,
}

impl Transition {
    pub fn event(self) -> &'static str {
        match self {
            Transition::Occupied => "room.occupied",
            Transition::Vacated => "room.vacated",
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transitions {
    occupied: bool,
    /// Since when an occupied room has had nobody.
    empty_since: Option<Instant>,
}

impl Transitions {
    /// Starting from what was last told (kept in the registry).
    pub fn new(occupied: bool) -> Transitions {
        Transitions { occupied, empty_since: None }
    }

    /// The last event told: occupied (true) or vacated / never (false).
    pub fn occupied(&self) -> bool {
        self.occupied
    }

    /// One look at the room: its count, and whether anyone joined since the last look.
    pub fn look(&mut self, now: Instant, online: usize, joined: bool, vacated_after: Duration) -> Option<Transition> {
        if !self.occupied {
            if online == 0 && !joined {
                return None;
            }
            self.occupied = true;
            self.empty_since = (online == 0).then_some(now);
            return Some(Transition::Occupied);
        }
        if online > 0 {
            self.empty_since = None;
            return None;
        }
        // Empty now; someone who came and went since the last look restarts the wait.
        let since = if joined { now } else { *self.empty_since.get_or_insert(now) };
        self.empty_since = Some(since);
        if now.duration_since(since) < vacated_after {
            return None;
        }
        *self = Transitions::new(false);
        Some(Transition::Vacated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const AFTER: Duration = Duration::from_millis(5_000);

    #[test]
    fn occupied_at_the_first_member_vacated_after_the_debounce() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut room = Transitions::default();
        assert_eq!(room.look(at(0), 0, false, AFTER), None);
        assert_eq!(room.look(at(100), 3, true, AFTER), Some(Transition::Occupied));
        assert_eq!(room.look(at(200), 0, false, AFTER), None);
        assert_eq!(room.look(at(5_100), 0, false, AFTER), None, "empty for 4.9 s");
        assert_eq!(room.look(at(5_150), 0, true, AFTER), None, "someone came and went: the wait starts again");
        assert_eq!(room.look(at(10_100), 0, false, AFTER), None);
        assert_eq!(room.look(at(10_150), 0, false, AFTER), Some(Transition::Vacated));
        assert_eq!(room.look(at(10_250), 0, true, AFTER), Some(Transition::Occupied), "a join and leave between looks");
        assert_eq!(Transitions::new(true).look(at(0), 2, false, AFTER), None, "restarted while occupied: nothing new");
    }

    proptest! {
        /// Whatever the looks: events alternate starting with occupied, a
        /// vacated follows only a stretch of at least the debounce with nobody
        /// seen, and an occupied room with members stays occupied.
        #[test]
        fn events_alternate_and_respect_the_debounce(
            looks in proptest::collection::vec((0u64..3_000, 0usize..3, any::<bool>()), 1..200),
        ) {
            let t0 = Instant::now();
            let mut room = Transitions::default();
            let (mut now, mut last, mut last_seen) = (t0, None, t0);
            for (step, online, joined) in looks {
                now += Duration::from_millis(step);
                if online > 0 || joined {
                    last_seen = now;
                }
                match room.look(now, online, joined, AFTER) {
                    Some(event) => {
                        let expected = if last == Some(Transition::Occupied) { Transition::Vacated } else { Transition::Occupied };
                        prop_assert_eq!(event, expected, "events alternate");
                        if event == Transition::Vacated {
                            prop_assert!(now.duration_since(last_seen) >= AFTER, "vacated only after the debounce");
                            prop_assert_eq!(online, 0);
                        }
                        last = Some(event);
                    }
                    None => prop_assert!(online == 0 && !joined || room.occupied(), "a member makes the room occupied"),
                }
            }
        }
    }
}
