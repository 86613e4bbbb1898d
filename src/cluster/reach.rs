//! A broadcast's reach summed over the cluster (contract §9): every node
//! counts the copies it queued for its own members (`fanout::reach`), and
//! the node asked scatters the question to the others on
//! `bullhorn.reach.<app>.<room>` and adds up their answers. A node that does
//! not answer in time leaves the sum open: `complete` stays false.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;

use super::{Cluster, names};
use crate::fanout::reach::ReachTotals;
use crate::registry::Registry;
use crate::room::Room;
use crate::room::reach_log::Counts;

/// How long the node asked waits for the other nodes' counts.
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// One node's answer about a broadcast.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
enum Answer {
    /// Its counts (accepted at the ms given).
    Held(u64, ReachTotals),
    /// Its feed has not delivered that seq yet: its copies are still to be counted.
    NotYet,
    /// Not held (never there, or too old).
    Unknown,
}

impl Cluster {
    /// Broadcast `seq` of `room` as every live node counted it; None when no node holds it.
    pub async fn reach(&self, room: &Room, seq: u64) -> Option<Counts> {
        let mut sum = room.reach(seq).map(|counts| (counts.ts_ms, counts.totals));
        // This node's feed has not delivered it yet: what the others hold is not the whole sum.
        let here_not_yet = sum.is_none() && seq > room.seq();
        let others = self.presence.live_others();
        if others > 0 && self.is_connected() {
            let (answered, gathered, not_yet) = self.gather(room, seq, others).await;
            for (ts_ms, totals) in gathered {
                let (ts, sum_totals) = sum.get_or_insert((ts_ms, ReachTotals::default()));
                *ts = (*ts).min(ts_ms);
                sum_totals.add(&totals);
            }
            // A node that did not answer, or has not delivered it yet: the sum cannot be complete.
            let uncounted = (others - answered) + not_yet + usize::from(here_not_yet);
            if let Some((_, totals)) = sum.as_mut() {
                totals.undrained_lanes += uncounted as u64;
            }
        }
        sum.map(|(ts_ms, totals)| Counts { ts_ms, totals })
    }

    /// Asks the other nodes; returns how many answered, the counts of those
    /// that hold it, and how many have not delivered it yet.
    async fn gather(&self, room: &Room, seq: u64, others: usize) -> (usize, Vec<(u64, ReachTotals)>, usize) {
        let inbox = self.client.new_inbox();
        let Ok(mut answers) = self.client.subscribe(inbox.clone()).await else {
            return (0, Vec::new(), 0);
        };
        let subject = names::room_subject(names::REACH_PREFIX, room.app(), room.id());
        // Named, so this node does not answer its own question.
        let request = Bytes::from(format!("{} {seq}", self.node));
        if self.client.publish_with_reply(subject, inbox, request).await.is_err() {
            return (0, Vec::new(), 0);
        }
        let (mut answered, mut gathered, mut not_yet) = (0, Vec::new(), 0);
        let deadline = tokio::time::Instant::now() + GATHER_TIMEOUT;
        while answered < others {
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, answers.next()).await else { break };
            answered += 1;
            match serde_json::from_slice::<Answer>(&message.payload) {
                Ok(Answer::Held(ts_ms, totals)) => gathered.push((ts_ms, totals)),
                Ok(Answer::NotYet) => not_yet += 1,
                Ok(Answer::Unknown) => {}
                Err(error) => tracing::warn!(%error, "unreadable reach answer"),
            }
        }
        (answered, gathered, not_yet)
    }
}

/// Answers the other nodes' questions about this node's counts, for its lifetime.
pub(super) async fn answer(cluster: Arc<Cluster>, registry: Arc<Registry>) {
    let wildcard = format!("{}>", names::REACH_PREFIX);
    super::each_message(cluster.client.clone(), wildcard, "reach", |question| {
        let reply = question.reply.clone()?;
        let (asker, seq) = std::str::from_utf8(&question.payload).ok()?.split_once(' ')?;
        if asker == cluster.node {
            return None;
        }
        let room = names::room_of(names::REACH_PREFIX, &question.subject)
            .and_then(|(app, room)| registry.app(app)?.room(room));
        let answer = match (room, seq.parse::<u64>().ok()) {
            (Some(room), Some(seq)) => match room.reach(seq) {
                Some(counts) => Answer::Held(counts.ts_ms, counts.totals),
                None if seq > room.seq() => Answer::NotYet,
                None => Answer::Unknown,
            },
            _ => Answer::Unknown,
        };
        Some((reply, Bytes::from(serde_json::to_vec(&answer).expect("serializable"))))
    })
    .await
}
