//! Close codes and `closing` reasons: the one table the transports consult.

/// Why the server closes a subscriber's connection (contract §3 `closing.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The admin deleted a room this subscriber was in.
    RoomDestroyed,
    /// The server is shutting down; reconnect after the given delay.
    ServerDraining { reconnect_after_ms: u64 },
    /// The subscriber stayed behind for longer than the slow-consumer limit.
    SlowConsumer { reconnect_after_ms: u64 },
}

impl CloseReason {
    /// The `reason` string of the `closing` message.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::RoomDestroyed => "room_destroyed",
            CloseReason::ServerDraining { .. } => "server_draining",
            CloseReason::SlowConsumer { .. } => "slow_consumer",
        }
    }

    /// `reconnect_after_ms`, only where reconnecting makes sense: a destroyed
    /// room does not come back by reconnecting.
    pub fn reconnect_after_ms(self) -> Option<u64> {
        match self {
            CloseReason::RoomDestroyed => None,
            CloseReason::ServerDraining { reconnect_after_ms } | CloseReason::SlowConsumer { reconnect_after_ms } => {
                Some(reconnect_after_ms)
            }
        }
    }

    /// The WebSocket close code that follows the `closing` message (contract §4).
    pub fn ws_close_code(self) -> u16 {
        match self {
            CloseReason::RoomDestroyed => ws_code::ROOM_DESTROYED,
            CloseReason::ServerDraining { .. } => ws_code::GOING_AWAY,
            CloseReason::SlowConsumer { .. } => ws_code::SLOW_CONSUMER,
        }
    }
}

impl CloseReason {
    /// The QUIC application close code: the same numbers as on WebSocket.
    pub fn quic_close_code(self) -> u32 {
        self.ws_close_code() as u32
    }
}

/// WebSocket close codes used by the server (RFC 6455 §7.4 and contract §4).
pub mod ws_code {
    /// Normal closure: the answer to a client's close.
    pub const NORMAL: u16 = 1000;
    /// Server draining.
    pub const GOING_AWAY: u16 = 1001;
    /// Malformed frame from the client.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A client frame or message over 4 KiB.
    pub const TOO_BIG: u16 = 1009;
    /// The room was deleted by its admin.
    pub const ROOM_DESTROYED: u16 = 4001;
    /// The subscriber could not keep up.
    pub const SLOW_CONSUMER: u16 = 4008;

    /// The reason text sent in a close frame with `code`.
    pub fn reason(code: u16) -> &'static str {
        match code {
            TOO_BIG => "frame too big",
            PROTOCOL_ERROR => "protocol error",
            INVALID_PAYLOAD => "invalid utf-8",
            GOING_AWAY => "server_draining",
            ROOM_DESTROYED => "room_destroyed",
            SLOW_CONSUMER => "slow_consumer",
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the contract's table: clients switch on these numbers.
    #[test]
    fn close_codes_match_the_contract() {
        assert_eq!(CloseReason::RoomDestroyed.ws_close_code(), 4001);
        assert_eq!(CloseReason::ServerDraining { reconnect_after_ms: 1 }.ws_close_code(), 1001);
        assert_eq!(CloseReason::SlowConsumer { reconnect_after_ms: 1 }.ws_close_code(), 4008);
        assert_eq!(ws_code::TOO_BIG, 1009);
        assert_eq!(CloseReason::RoomDestroyed.reconnect_after_ms(), None);
        assert_eq!(CloseReason::ServerDraining { reconnect_after_ms: 7 }.as_str(), "server_draining");
    }
}
