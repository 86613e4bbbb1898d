//! What a browser sends a shard before its session exists: any bytes, in
//! any split, on the CONNECT stream and on a unidirectional stream. The
//! request reader either refuses or reads a URL, the same for any split of
//! bytes within its limit (and refuses more than the limit given at once); a stream prefix is found
//! at the same offset however the bytes arrive, and never past 16 bytes.
#![no_main]

use bullhorn::protocol::webtransport::{MAX_REQUEST_BYTES, RequestReader, UniPrefix};
use libfuzzer_sys::fuzz_target;

fn read_request(pieces: &[&[u8]]) -> Result<Option<String>, String> {
    let mut reader = RequestReader::default();
    for piece in pieces {
        match reader.push(piece) {
            Ok(Some(url)) => return Ok(Some(url.to_string())),
            Ok(None) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(None)
}

fn read_prefix(pieces: &[&[u8]]) -> Option<(bullhorn::protocol::webtransport::UniKind, usize)> {
    let mut prefix = UniPrefix::default();
    let mut offset = 0;
    for piece in pieces {
        if let Some((kind, used)) = prefix.push(piece) {
            return Some((kind, offset + used));
        }
        offset += piece.len();
    }
    None
}

fuzz_target!(|input: (u8, &[u8])| {
    let (split, bytes) = input;
    let split = usize::from(split).min(bytes.len());
    let (head, tail) = bytes.split_at(split);
    let whole = read_request(&[bytes]);
    let split_read = read_request(&[head, tail]);
    if bytes.len() <= MAX_REQUEST_BYTES {
        match (&whole, &split_read) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "a split changes nothing"),
            (Err(a), Err(b)) => assert_eq!(a, b, "the same refusal"),
            _ => panic!("whole {whole:?} against split {split_read:?}"),
        }
    } else {
        // Past the limit the whole is refused at once; the split may read a
        // request that ends in its first piece, or skip frames before it.
        assert!(whole.is_err(), "over the limit: {whole:?}");
    }
    let prefix = read_prefix(&[bytes]);
    assert_eq!(prefix, read_prefix(&[head, tail]), "a prefix is found at one offset");
    if let Some((_, offset)) = prefix {
        assert!(offset <= 16 && offset <= bytes.len());
    }
});
