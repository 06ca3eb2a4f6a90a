//! The recorder's H.264 (RFC 6184: single NAL unit, STAP-A, FU-A) depacketizer.
//! Input format and invariants: `weir_fuzz::depacketize` (fuzz/src).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_recorder::Codec;

fuzz_target!(|data: &[u8]| weir_fuzz::depacketize::run(Codec::H264, data));
