//! A broadcast's reach summed over the cluster (contract §9): every node
//! counts the copies it queued for its own members (`fanout::reach`), and
//! the node asked scatters the question to the others on
//! `bullhorn.reach.<app>.<room>` and adds up their answers. A node that does
//! not answer in time leaves the sum open: `complete` stays false.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;

use super::{Cluster, RETRY_AFTER, names};
use crate::fanout::reach::ReachTotals;
use crate::registry::Registry;
use crate::room::Room;
use crate::room::reach_log::Counts;

/// How long the node asked waits for the other nodes' counts.
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// One node's answer: its counts of the broadcast, if it holds them.
type Answer = Option<(u64, ReachTotals)>;

impl Cluster {
    /// Broadcast `seq` of `room` as every live node counted it; None when no node holds it.
    pub async fn reach(&self, room: &Room, seq: u64) -> Option<Counts> {
        let mut sum = room.reach(seq).map(|counts| (counts.ts_ms, counts.totals));
        let others = self.presence.live_others();
        if others > 0 && self.is_connected() {
            let (answered, gathered) = self.gather(room, seq, others).await;
            for (ts_ms, totals) in gathered {
                let (ts, sum_totals) = sum.get_or_insert((ts_ms, ReachTotals::default()));
                *ts = (*ts).min(ts_ms);
                sum_totals.add(&totals);
            }
            if answered < others
                && let Some((_, totals)) = sum.as_mut()
            {
                // A node's copies are unknown: the sum cannot be complete.
                totals.undrained_lanes += 1;
            }
        }
        sum.map(|(ts_ms, totals)| Counts { ts_ms, totals })
    }

    /// Asks the other nodes; returns how many answered and the counts of those that hold it.
    async fn gather(&self, room: &Room, seq: u64, others: usize) -> (usize, Vec<(u64, ReachTotals)>) {
        let inbox = self.client.new_inbox();
        let Ok(mut answers) = self.client.subscribe(inbox.clone()).await else {
            return (0, Vec::new());
        };
        let subject = names::reach_subject(room.app(), room.id());
        // Named, so this node does not answer its own question.
        let request = Bytes::from(format!("{} {seq}", self.node));
        if self.client.publish_with_reply(subject, inbox, request).await.is_err() {
            return (0, Vec::new());
        }
        let (mut answered, mut gathered) = (0, Vec::new());
        let deadline = tokio::time::Instant::now() + GATHER_TIMEOUT;
        while answered < others {
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, answers.next()).await else { break };
            answered += 1;
            match serde_json::from_slice::<Answer>(&message.payload) {
                Ok(Some(counts)) => gathered.push(counts),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "unreadable reach answer"),
            }
        }
        (answered, gathered)
    }
}

/// Answers the other nodes' questions about this node's counts, for its lifetime.
pub(super) async fn answer(cluster: Arc<Cluster>, registry: Arc<Registry>) {
    let wildcard = format!("{}>", names::REACH_PREFIX);
    loop {
        match cluster.client.subscribe(wildcard.clone()).await {
            Ok(mut questions) => {
                while let Some(question) = questions.next().await {
                    let Some(reply) = question.reply.clone() else { continue };
                    let Some((asker, seq)) =
                        std::str::from_utf8(&question.payload).ok().and_then(|q| q.split_once(' '))
                    else {
                        continue;
                    };
                    if asker == cluster.node {
                        continue;
                    }
                    let answer: Answer = names::reach_room(&question.subject)
                        .and_then(|(app, room)| registry.app(app)?.room(room))
                        .zip(seq.parse().ok())
                        .and_then(|(room, seq)| room.reach(seq))
                        .map(|counts| (counts.ts_ms, counts.totals));
                    let payload = Bytes::from(serde_json::to_vec(&answer).expect("serializable"));
                    if let Err(error) = cluster.client.publish(reply, payload).await {
                        tracing::debug!(%error, "reach answer not sent");
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "reach subscription failed"),
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}
