//! The grid participants' str0m timers are served on.

use std::time::{Duration, Instant};

use str0m::{Input, Reason};

use super::super::timers::tolerates_lateness;
use super::super::{Room, LAZY_TIMER_GRID, TIMER_GRID};
use super::harness::publisher_and_two_subscribers;
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
    assert_eq!(room.on_timer_grid(epoch, TIMER_GRID), epoch);
    let one_ms = Duration::from_millis(1);
    assert_eq!(
        room.on_timer_grid(epoch + one_ms, TIMER_GRID),
        epoch + TIMER_GRID
    );
    assert_eq!(
        room.on_timer_grid(epoch + TIMER_GRID, TIMER_GRID),
        epoch + TIMER_GRID
    );
    assert_eq!(
        room.on_timer_grid(epoch + TIMER_GRID + one_ms, TIMER_GRID),
        epoch + 2 * TIMER_GRID
    );
    // Before the epoch (a timer str0m set in the past): the epoch.
    if let Some(before) = epoch.checked_sub(one_ms) {
        assert_eq!(room.on_timer_grid(before, TIMER_GRID), epoch);
    }
    // Far ahead still lands on the grid, at or after the timer.
    let far = epoch + Duration::from_secs(86_400 * 30) + Duration::from_nanos(7);
    let served = room.on_timer_grid(far, TIMER_GRID);
    assert!(served >= far && served - far < TIMER_GRID);
}

#[test]
fn timers_within_one_grid_step_share_a_wake_up() {
    let epoch = Instant::now();
    let room = room(epoch);
    let times: Vec<Instant> = (1..10)
        .map(|ms| epoch + Duration::from_millis(ms))
        .collect();
    let served: Vec<Instant> = times
        .iter()
        .map(|t| room.on_timer_grid(*t, TIMER_GRID))
        .collect();
    assert!(served.iter().all(|s| *s == epoch + TIMER_GRID));
}

#[test]
fn only_periodic_timers_may_be_late() {
    for lazy in [
        Reason::Feedback,
        Reason::Stats,
        Reason::PauseCheck,
        Reason::Ice,
    ] {
        assert!(tolerates_lateness(lazy), "{lazy:?}");
    }
    for prompt in [
        Reason::Nack,
        Reason::DTLS,
        Reason::Sctp,
        Reason::Twcc,
        Reason::ReceiveReorder,
        Reason::BweDelayControl,
        Reason::SendStream,
    ] {
        assert!(!tolerates_lateness(prompt), "{prompt:?}");
    }
}

#[test]
fn report_timers_wait_for_the_coarse_grid_and_others_do_not() {
    let (mut net, _mid) = publisher_and_two_subscribers();
    let room = &mut net.room;
    let epoch = room.timer_epoch;
    let due = epoch + Duration::from_secs(60) + Duration::from_millis(15);
    for participant in room.participants.values_mut() {
        participant.next_timeout = Some(due);
        participant.timer_is_lazy = true;
    }
    let coarse = room.on_timer_grid(due, LAZY_TIMER_GRID);
    assert_eq!(coarse, epoch + Duration::from_secs(60) + LAZY_TIMER_GRID);
    assert_eq!(room.poll_timeout(), Some(coarse));
    // One prompt timer among them brings the wake-up back to the fine grid.
    if let Some(participant) = room.participants.values_mut().next() {
        participant.timer_is_lazy = false;
    }
    assert_eq!(
        room.poll_timeout(),
        Some(epoch + Duration::from_secs(60) + 2 * TIMER_GRID)
    );
}

#[test]
fn a_pass_started_by_a_datagram_serves_the_timers_already_due() {
    let (mut net, mid) = publisher_and_two_subscribers();
    // The first packets go through str0m (the m-line's first, one a
    // second for sender reports), which runs the subscribers' `Rtc`s; once
    // those went, the rest are sealed by Weir and only flushed.
    for seq in 1..=5 {
        net.send_vp8(0, mid, seq, seq == 1, true);
        net.advance(Duration::from_millis(5));
    }
    let now = net.now;
    let subscribers = [net.peers[1].key, net.peers[2].key];
    let overdue = now - Duration::from_millis(1);
    for key in subscribers {
        if let Some(participant) = net.room.participants.get_mut(&key) {
            participant.next_timeout = Some(overdue);
        }
    }
    // The publisher sends another; nothing calls the room's
    // `handle_timeout`: the pass that forwards it serves the due timers.
    net.send_vp8(0, mid, 6, false, true);
    let _ = net.peers[0].rtc.handle_input(Input::Timeout(now));
    // Only the publisher's datagrams reach the room, and the room's
    // outputs go nowhere (a subscriber answering would run its `Rtc`).
    net.poll_peer(0);
    while net.room.poll_output().is_some() {}
    for key in subscribers {
        let next = net.room.participants[&key].next_timeout;
        assert!(
            next.is_some_and(|at| at > overdue),
            "{key:?}: its timer was not served ({next:?})"
        );
    }
}
