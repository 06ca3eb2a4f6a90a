//! When the room serves its participants' str0m timers.
//!
//! Timers are served on a grid, so the ones due within a step share one
//! wake-up of the room instead of one each; none is served early. Timers
//! that tolerate lateness (reports, stats, pause checks, ICE-lite's
//! housekeeping) use a coarser grid than the ones that do not (NACKs,
//! DTLS and SCTP retransmits, pacing, bandwidth estimation). And every pass
//! of the room, whatever started it, serves the timers already due, so in
//! a room with media flowing they ride on its wake-ups and seldom need
//! their own. An idle 1 -> 50 room wakes ~40 times a second for timers on
//! the fine grid alone; most of them are reports and stats.

use std::time::{Duration, Instant};

use str0m::Reason;

use super::Room;

/// The grid for timers that must not wait: at most this late.
pub const TIMER_GRID: Duration = Duration::from_millis(10);
/// The grid for timers that tolerate lateness (`tolerates_lateness`):
/// RTCP report intervals are randomised over a second or more anyway.
pub const LAZY_TIMER_GRID: Duration = Duration::from_millis(100);

/// Whether a str0m timer of this reason may be served up to
/// [`LAZY_TIMER_GRID`] late.
pub(super) fn tolerates_lateness(reason: Reason) -> bool {
    match reason {
        // Sender and receiver reports, stats gathering, a stream's pause
        // detection and ICE-lite's consent and clean-up checks: periodic,
        // seconds apart.
        Reason::Feedback | Reason::Stats | Reason::PauseCheck | Reason::Ice => true,
        // Loss recovery, handshake retransmits, pacing, bandwidth
        // estimation and the rest: served on the fine grid.
        _ => false,
    }
}

impl Room {
    /// The first point of `grid` (a step from the room's epoch) at or
    /// after `at`.
    pub(super) fn on_timer_grid(&self, at: Instant, grid: Duration) -> Instant {
        let step = grid.as_nanos().max(1);
        let since = at.saturating_duration_since(self.timer_epoch).as_nanos();
        let steps = since.div_ceil(step);
        let offset = u64::try_from(steps.saturating_mul(step)).unwrap_or(u64::MAX);
        self.timer_epoch
            .checked_add(Duration::from_nanos(offset))
            .unwrap_or(at)
    }

    /// When the participants' timers next need a wake-up of the room.
    ///
    /// A grid point is monotonic in the time it rounds, so the earliest
    /// timer of each kind is found first and only those two are put on
    /// their grids (the room's owner asks before every wait).
    pub(super) fn next_timer_wake(&self) -> Option<Instant> {
        let mut earliest = None::<Instant>;
        let mut earliest_lazy = None::<Instant>;
        for participant in self.participants.values() {
            let Some(at) = participant.next_timeout else {
                continue;
            };
            let slot = if participant.timer_is_lazy {
                &mut earliest_lazy
            } else {
                &mut earliest
            };
            if slot.is_none_or(|current| at < current) {
                *slot = Some(at);
            }
        }
        let fine = earliest.map(|at| self.on_timer_grid(at, TIMER_GRID));
        let lazy = earliest_lazy.map(|at| self.on_timer_grid(at, LAZY_TIMER_GRID));
        fine.into_iter().chain(lazy).min()
    }

    /// Marks every participant whose timer is due at `now` for a timeout
    /// input in the coming drive.
    pub(super) fn mark_due_timers(&mut self, now: Instant) {
        for participant in self.participants.values_mut() {
            if participant.next_timeout.is_some_and(|at| at <= now) {
                participant.needs_timeout = true;
            }
        }
    }
}
