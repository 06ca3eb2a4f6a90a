//! REST API request bodies and query strings (`/api/v1`): parsed by the
//! extractors the handlers use and checked by the functions they call
//! before the store or a room (`weir_server::serve::fuzz_support`).
//!
//! Input: a byte choosing the endpoint, then the body (or query string).
//!
//! Invariants: no panic; a token request the handler accepts mints a token
//! that verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_server::serve::fuzz_support::{check, Endpoint};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let endpoint = Endpoint::ALL[usize::from(selector) % Endpoint::ALL.len()];
    if let Err(reason) = check(endpoint, body) {
        assert!(
            !reason.starts_with("a minted token does not verify"),
            "{endpoint:?}: {reason}"
        );
    }
});
