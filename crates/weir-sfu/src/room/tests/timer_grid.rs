//! The grid participants' str0m timers are served on.

use std::time::{Duration, Instant};

use super::super::{Room, TIMER_GRID};
use crate::RoomConfig;

fn room(epoch: Instant) -> Room {
    Room::new(
        "grid",
        RoomConfig::new(([127, 0, 0, 1], 7882).into()),
        epoch,
    )
}

#[test]
fn a_timer_is_served_at_the_next_grid_point_never_before() {
    let epoch = Instant::now();
    let room = room(epoch);
    assert_eq!(room.on_timer_grid(epoch), epoch);
    let one_ms = Duration::from_millis(1);
    assert_eq!(room.on_timer_grid(epoch + one_ms), epoch + TIMER_GRID);
    assert_eq!(room.on_timer_grid(epoch + TIMER_GRID), epoch + TIMER_GRID);
    assert_eq!(
        room.on_timer_grid(epoch + TIMER_GRID + one_ms),
        epoch + 2 * TIMER_GRID
    );
    // Before the epoch (a timer str0m set in the past): the epoch.
    if let Some(before) = epoch.checked_sub(one_ms) {
        assert_eq!(room.on_timer_grid(before), epoch);
    }
    // Far ahead still lands on the grid, at or after the timer.
    let far = epoch + Duration::from_secs(86_400 * 30) + Duration::from_nanos(7);
    let served = room.on_timer_grid(far);
    assert!(served >= far && served - far < TIMER_GRID);
}

#[test]
fn timers_within_one_grid_step_share_a_wake_up() {
    let epoch = Instant::now();
    let room = room(epoch);
    let times: Vec<Instant> = (1..10)
        .map(|ms| epoch + Duration::from_millis(ms))
        .collect();
    let served: Vec<Instant> = times.iter().map(|t| room.on_timer_grid(*t)).collect();
    assert!(served.iter().all(|s| *s == epoch + TIMER_GRID));
}
