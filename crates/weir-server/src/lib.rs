//! The Weir server: the `weir` binary's library half.
//!
//! This crate owns the server process: its typed configuration
//! ([`config`]), the application store that holds the signing secrets
//! ([`apps`]), join tokens ([`token`]), the command line ([`cli`]) and the
//! running server itself ([`serve`]: the tokio shell around `weir-sfu`, with
//! the HTTP edge and the media UDP socket).
//!
//! `src/main.rs` only parses the command line and hands it to [`cli::run`].

pub mod app_keys;
pub mod apps;
pub mod callbacks;
pub mod cli;
pub mod config;
pub mod database;
pub mod recording;
pub mod serve;
pub mod token;
