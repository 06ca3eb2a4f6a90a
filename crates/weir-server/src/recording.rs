//! Recording (issue 4), the server's half: the recording rule of each
//! application ([`rule`]: the REST contract, its defaults and validation,
//! the mapping onto `weir_recorder`'s configuration) and the storage
//! targets finished files are uploaded to ([`storage`]: a local directory
//! or an S3-compatible bucket).
//!
//! The media work (RTP to files) is the sans-IO `weir_recorder` crate; the
//! REST handlers are in `serve/api/recording.rs`; the durable jobs and
//! files are `weir_store`'s.

pub mod rule;
pub mod storage;

pub use rule::{RecordingRule, RuleError, StorageTarget};
pub use storage::{RecordingStorage, StorageError, StorageOptions};
