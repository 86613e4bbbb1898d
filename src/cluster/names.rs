//! Where a cluster keeps things in NATS: one name per concept, so every node
//! agrees on them. App and room ids are `[A-Za-z0-9_-]{1,64}`, valid in NATS
//! subjects, stream names and KV keys as they are.

/// The KV bucket holding each app's room list under the app's id.
pub const ROOMS_BUCKET: &str = "bullhorn_rooms";

/// The KV bucket holding what every node must share, such as the QUIC reset secret.
pub const SECRETS_BUCKET: &str = "bullhorn_secrets";
/// The QUIC reset secret's key in [`SECRETS_BUCKET`].
pub const QUIC_RESET_KEY: &str = "quic-reset";

/// The KV bucket holding each room's pinned message, under [`room_key`].
pub const PINS_BUCKET: &str = "bullhorn_pins";

/// The KV bucket holding each room's last room event (`room.occupied` or `room.vacated`).
pub const ROOM_EVENTS_BUCKET: &str = "bullhorn_room_events";

/// A room's key in the per-room KV buckets (KV keys may hold `.`; ids hold none).
pub fn room_key(app: &str, room: &str) -> String {
    format!("{app}.{room}")
}

/// Where every node publishes its per-room counts; the node id is the last token.
pub const PRESENCE_PREFIX: &str = "bullhorn.presence.";

/// The subject a room's broadcasts are published on.
pub fn broadcast_subject(app: &str, room: &str) -> String {
    format!("bullhorn.bc.{app}.{room}")
}

/// A room's stream. Ids may hold `_` and `-`, so the app id's length keeps
/// `("a_b", "c")` and `("a", "b_c")` apart.
pub fn stream(app: &str, room: &str) -> String {
    format!("bullhorn_{}_{app}_{room}", app.len())
}

/// Where a node asks the others for a broadcast's reach: `<prefix><app>.<room>`.
pub const REACH_PREFIX: &str = "bullhorn.reach.";

/// Where an unpin goes to every node: `<prefix><app>.<room>`.
pub const UNPIN_PREFIX: &str = "bullhorn.unpin.";

/// A room's subject under `prefix` (one of the above).
pub fn room_subject(prefix: &str, app: &str, room: &str) -> String {
    format!("{prefix}{}", room_key(app, room))
}

/// The (app, room) of a subject made by [`room_subject`] with `prefix`.
pub fn room_of<'a>(prefix: &str, subject: &'a str) -> Option<(&'a str, &'a str)> {
    subject.strip_prefix(prefix)?.split_once('.')
}

/// A node's presence subject.
pub fn presence_subject(node: &str) -> String {
    format!("{PRESENCE_PREFIX}{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_never_collide_across_the_app_room_split() {
        assert_ne!(stream("a_b", "c"), stream("a", "b_c"));
        assert_eq!(stream("demo", "gifts"), "bullhorn_4_demo_gifts");
    }

    #[test]
    fn names_hold_no_nats_separators_or_wildcards() {
        let stream = stream("app-1", "room_2");
        assert!(!stream.contains(['.', '*', '>', ' ']), "{stream}");
        assert_eq!(broadcast_subject("demo", "gifts").split('.').count(), 4);
        let subject = room_subject(REACH_PREFIX, "app-1", "room_2");
        assert_eq!(room_of(REACH_PREFIX, &subject), Some(("app-1", "room_2")));
        assert_eq!(room_of(UNPIN_PREFIX, &subject), None);
    }
}
