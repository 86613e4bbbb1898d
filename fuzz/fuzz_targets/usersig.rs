//! UserSig verification: any query string's `usersig` is either refused with
//! one of Tencent's codes or verified; only a document signed with the app's
//! key passes, and nothing panics or inflates past the bound.
#![no_main]

use bullhorn::tencent::usersig::{self, UserSigError};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    match usersig::verify(text, 1_400_000_000, "administrator", KEY, 1_800_000_000) {
        Ok(()) => {
            // Only a UserSig made with KEY can get here: the same text must fail under another key.
            assert_eq!(
                usersig::verify(text, 1_400_000_000, "administrator", b"another key", 1_800_000_000),
                Err(UserSigError::BadSignature)
            );
        }
        Err(error) => assert!((70_001..=70_014).contains(&error.code())),
    }
});
