//! The recorder's VP9 (RFC 9628) depacketizer.
//! Input format and invariants: `weir_fuzz::depacketize` (fuzz/src).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_recorder::Codec;

fuzz_target!(|data: &[u8]| weir_fuzz::depacketize::run(Codec::Vp9, data));
