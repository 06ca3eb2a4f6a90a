//! Weir's recording core: RTP packets of one publisher stream (one audio and
//! one video track) in, recording files out (fragmented/finalized MP4, HLS),
//! with no IO and no clock of its own.
//!
//! Entry point: [`Recorder`]. It takes `now` with every input and returns
//! [`Command`]s (write/append/patch a file, a file started/completed, request
//! a keyframe); the caller (the server's recording task) carries them out.
//! `README.md` beside this crate explains the design and which rule of
//! `recording.md` each module implements.

pub mod assembler;
pub mod config;
pub mod depacketize;
pub mod fragment;
pub mod hls;
pub mod lane;
pub mod mp4;
pub mod naming;
pub mod recorder;
pub mod recover;
pub mod reorder;
pub mod rtp;
pub mod sample_entry;
pub mod series;
pub mod sync;

pub use config::{
    Command, Content, FileCompleted, FileStarted, Format, GapMerge, MediaKind, OutputConfig,
    RecorderConfig,
};
pub use depacketize::Codec;
pub use naming::{NamingContext, NamingError};
pub use recorder::{Recorder, RecorderStats};
pub use rtp::{RtpPacket, RtpTime, SeqNo};
pub use sync::SenderReport;
