//! The SCRAM-SHA-256 server conversation: the input is split at NUL bytes into the
//! client's messages (client-first, client-final, the empty last message). Whatever they
//! hold, the conversation must never authenticate a client that does not know the
//! password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::auth::scram::{Conversation, Credentials, parse_client_first};

fuzz_target!(|data: &[u8]| {
    let mut messages = data.split(|b| *b == 0);
    let Some(first) = messages.next() else { return };
    let Ok(client_first) = parse_client_first(first) else {
        return;
    };
    // The minimum iteration count keeps each run cheap; the password is one the fuzzer
    // cannot know, so no proof it sends can be right.
    let credentials = Credentials::derive_with_salt(
        "an unguessable password 6c1f0e",
        b"fixed salt for fuzzing".to_vec(),
        4096,
    )
    .expect("credentials");
    let Ok((mut conversation, _server_first)) =
        Conversation::start(client_first, credentials, Some("serverNonce"))
    else {
        return;
    };
    for (i, message) in messages.take(4).enumerate() {
        match conversation.step(message, i % 2 == 0) {
            Ok(step) => {
                assert!(
                    !conversation.is_authenticated(),
                    "a proof without the password was accepted"
                );
                if step.done {
                    break;
                }
            }
            Err(_) => break,
        }
    }
});
