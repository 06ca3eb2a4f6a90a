//! The recorder's VP8 (RFC 7741) depacketizer.
//! Input format and invariants: `weir_fuzz::depacketize` (fuzz/src).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_recorder::Codec;

fuzz_target!(|data: &[u8]| weir_fuzz::depacketize::run(Codec::Vp8, data));
