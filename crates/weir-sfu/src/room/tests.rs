//! Scenario tests: str0m peers and a [`Room`](super::Room) connected over a
//! simulated network in memory, driven faster than real time.

mod admin;
mod harness;
mod media;
mod nack;
mod session;
mod timer_grid;
