//! Identifier rules shared by apps and rooms (contract §1: `^[A-Za-z0-9_-]{1,64}$`).
//!
//! Room ids are written into broadcast JSON without escaping, so this check is
//! also what keeps the once-per-broadcast encoder simple and safe.

/// The longest app or room id the contract allows.
pub const MAX_ID_LEN: usize = 64;

/// True when `id` is a valid app or room id.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A subscriber's request for one room: `gifts`, or `gifts@41` to resume after seq 41.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRequest {
    pub room: String,
    pub resume_after: Option<u64>,
}

impl RoomRequest {
    /// Parses `room` or `room@seq`; `None` when either part is malformed.
    pub fn parse(text: &str) -> Option<RoomRequest> {
        let (room, resume_after) = match text.split_once('@') {
            Some((room, seq)) => {
                if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (room, Some(seq.parse().ok()?))
            }
            None => (text, None),
        };
        is_valid_id(room).then(|| RoomRequest { room: room.to_owned(), resume_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_contract_alphabet() {
        assert!(is_valid_id("gifts"));
        assert!(is_valid_id("A-z_09"));
        assert!(is_valid_id(&"a".repeat(64)));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", "a b", "gifts/x", "é", "a.b", "a@b", &"a".repeat(65)] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn parses_resume_requests() {
        assert_eq!(RoomRequest::parse("gifts@41"), Some(RoomRequest { room: "gifts".into(), resume_after: Some(41) }));
        assert_eq!(RoomRequest::parse("gifts").unwrap().resume_after, None);
        for bad in ["gifts@", "@4", "gifts@x", "gifts@-1", "g f@1", "gifts@99999999999999999999999"] {
            assert_eq!(RoomRequest::parse(bad), None, "{bad:?}");
        }
    }
}
