//! Set-ups shared by Weir's criterion benchmarks (`benches/benches/*.rs`):
//! a [`weir_sfu::Room`] with str0m peers on a simulated in-memory network
//! ([`sim`]), and video clips made by ffmpeg, packetized into RTP
//! ([`media`]).
//!
//! Run them with `cargo bench -p weir-benches`; `docs/performance.md`
//! ("Micro-benchmarks (criterion)") has what each one measures and the
//! numbers of this project's machine.

pub mod media;
pub mod sim;
