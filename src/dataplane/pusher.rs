//! What a Pusher Channels client's connection adds to a WebSocket one on
//! its shard (docs/architecture.md, "Pusher Channels compatibility"): its
//! subscriptions, made and ended from the shard thread as the client asks,
//! and its last words (`pusher:error` and the protocol's close codes).
//!
//! Invariants: a subscription is one membership of the connection and one
//! slot of its subscriber (at most the app's room cap); a slot's room is set
//! before the room is joined and emptied, with what is still queued of it,
//! after it is left, so no slot ever mixes two rooms' messages;
//! `subscription_succeeded` is queued before the join, so it precedes every
//! broadcast of the room; whatever the client sends, the connection only
//! answers or closes, and no subscribe is answered twice differently.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;

use super::close_stage::CloseStage;
use super::ws::ShardContext;
use crate::fanout::Subscriber;
use crate::fanout::outbox::Outbox;
use crate::presence::Member;
use crate::protocol::close::CloseReason;
use crate::protocol::pusher::{self, ChannelKind, ClientMessage};
use crate::protocol::ws;
use crate::registry::App;
use crate::transport::session::Membership;

/// `pusher:pong` as one text frame, shared by every connection.
static PONG_FRAME: std::sync::LazyLock<Bytes> = std::sync::LazyLock::new(|| ws::text_frame(pusher::PONG));

/// One text message from a Pusher client of `app`: answered, or refused
/// with `pusher:error`; never a reason to close. Its subscriptions are the
/// connection's `memberships`, which grow and shrink with them (a
/// connection holding one channel holds one, as a native member does).
pub fn on_text(
    app: &App,
    shard: &ShardContext,
    text: &str,
    subscriber: &Arc<Subscriber>,
    memberships: &mut Vec<Membership>,
) {
    match pusher::parse_client(text) {
        Ok(ClientMessage::Subscribe { channel }) => subscribe(app, shard, &channel, subscriber, memberships),
        Ok(ClientMessage::Unsubscribe { channel }) => unsubscribe(&channel, subscriber, memberships),
        Ok(ClientMessage::Ping) => {
            subscriber.push_reply(PONG_FRAME.clone());
        }
        Ok(ClientMessage::ClientEvent { .. }) => {
            let refusal = pusher::error(Some(4301), "client events are not offered: only the server publishes");
            subscriber.push_reply(ws::text_frame(&refusal));
        }
        Ok(ClientMessage::Pong | ClientMessage::Other) => {}
        Err(error) => {
            subscriber.push_reply(ws::text_frame(&pusher::error(None, &error.to_string())));
        }
    }
}

fn subscribe(
    app: &App,
    shard: &ShardContext,
    channel: &str,
    subscriber: &Arc<Subscriber>,
    memberships: &mut Vec<Membership>,
) {
    // Answers are replies: past a backlog of them (a client that sends and
    // never reads) they are dropped, and so is the subscribe, so what a
    // client sends can never grow the server's memory.
    let refuse = |kind: &str, error: &str, status: u16| {
        shard.pusher_refused.increment(1);
        subscriber.push_reply(ws::text_frame(&pusher::subscription_error(channel, kind, error, status)));
    };
    match pusher::channel_kind(channel) {
        ChannelKind::Public => {}
        ChannelKind::Unsupported => {
            return refuse("AuthError", "only public channels are offered: private and presence ones are not", 403);
        }
        ChannelKind::Invalid => return refuse("InvalidChannel", "not a valid channel name", 400),
    }
    if memberships.iter().any(|m| &**m.room.id() == channel) {
        // Subscribed already: as Pusher does, the answer is the same.
        subscriber.push_reply(ws::text_frame(&pusher::subscription_succeeded(channel)));
        return;
    }
    let Some(room) = app.room(channel) else {
        return refuse("UnknownChannel", "no room of this app has that name", 404);
    };
    let cap = app.max_rooms().min(crate::fanout::tag::MAX_SLOTS);
    if memberships.len() >= cap {
        return refuse("LimitReached", &format!("at most {cap} channels per connection"), 400);
    }
    if !subscriber.push_reply(ws::text_frame(&pusher::subscription_succeeded(channel))) {
        return;
    }
    let slot = subscriber.assign_slot(room.id().clone());
    let member = Member { subscriber: Arc::clone(subscriber), slot };
    match room.join(subscriber.id(), member, None) {
        Ok((key, _)) => {
            // Exact: a Vec's first growth would hold four (192 B) where most connections keep one.
            memberships.reserve_exact(1);
            memberships.push(Membership { room, resume_after: None, key: Some(key) });
        }
        Err(_) => {
            subscriber.release_slot(channel);
            subscriber.close(CloseReason::RoomDestroyed);
        }
    }
    // Joined as the drain went on: the room's close may have passed already.
    if shard.draining.load(Ordering::Acquire) {
        subscriber.close(drain_close(shard));
    }
}

/// Leaves `channel`'s room, if subscribed, and frees its slot.
fn unsubscribe(channel: &str, subscriber: &Subscriber, memberships: &mut Vec<Membership>) {
    let Some(index) = memberships.iter().position(|m| &**m.room.id() == channel) else { return };
    let membership = memberships.swap_remove(index);
    if let Some(key) = membership.key {
        membership.room.leave(key);
    }
    subscriber.release_slot(channel);
}

/// A drain close with its reconnect delay drawn from the window, as rooms give their members.
fn drain_close(shard: &ShardContext) -> CloseReason {
    CloseReason::ServerDraining { reconnect_after_ms: crate::shutdown::draw_within(shard.drain_window) }
}

/// A Pusher connection's drain close, paced (called at every wake): asked
/// of its subscriber by a room's lane, or, for a connection in no room
/// (which no lane reaches), by the connection itself once the node drains
/// (the shard wakes its Pusher connections then), it waits until
/// `reconnect_after_ms` scaled to the part of the drain a node waits for its
/// connections, writing everything meanwhile (the client has no resume:
/// what it is not sent is lost), so the node's Pusher clients, who reconnect
/// the moment they are told, come back spread out as native ones do; at its
/// turn the queue is closed, after what it holds.
pub fn pace_drain_close(
    subscriber: &Subscriber,
    in_no_room: bool,
    closing: &mut CloseStage,
    shard: &ShardContext,
    now: Instant,
) {
    if let Some(reason) = closing.take_due() {
        return subscriber.close_now(reason);
    }
    if closing.is_waiting() || !closing.is_open() {
        return;
    }
    if in_no_room && shard.draining.load(Ordering::Acquire) {
        subscriber.close(drain_close(shard));
    }
    if let Some(reason @ CloseReason::ServerDraining { reconnect_after_ms }) = subscriber.take_drain_asked() {
        let share = reconnect_after_ms as f64 / shard.drain_window.as_millis().max(1) as f64;
        closing.wait(reason, now + shard.pusher_close_spread.mul_f64(share.min(1.0)));
    }
}

/// A Pusher connection's last frames for `reason`: `pusher:error`, then the
/// close frame with the protocol's code.
pub fn last_words(reason: CloseReason, out: &mut Outbox) {
    close_frames(pusher::close::for_reason(reason), reason.as_str(), out);
}

/// Queues `pusher:error` with `code`, then the close frame.
pub fn close_frames(code: u16, message: &str, out: &mut Outbox) {
    out.push_frame(ws::text_frame(&pusher::error(Some(code), message)));
    out.push_frame(ws::close_frame(code, message));
}
