//! Driving participants' `Rtc`s after inputs: each one that was written
//! to, or whose timer is due (see `room/timers.rs`), gets its timeout
//! input (str0m sends written RTP only then) and is polled until idle.
//!
//! A drive goes in rounds (events of one round, such as a publisher's
//! RTP, mark more participants for the next) and each round in steps of
//! at most [`STEP_PARTICIPANTS`], so that [`Room::poll_output`] hands out
//! the first subscribers' datagrams before the last ones are made: a
//! burst to a large room is neither held back nor materialised whole.
//! On one thread, each participant of a step is looked up and driven, and
//! what it emitted taken at once (its events may mark participants later
//! in the step, which then carry them in the same step). Within a step the
//! `Rtc`s are independent, so a step with many `Rtc`s to run on a process
//! that may use two cores runs on two threads: this one and one of
//! rayon's, each taking half (participants that only flush Weir's sealed
//! datagrams do not count: handing them over costs more than it saves).
//! Only the `Rtc`s run in parallel; what they emit (datagrams, events) is
//! taken afterwards, in participant order, by the room alone.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use str0m::{Event, Input, Output};
use tracing::warn;
use weir_protocol::LeaveReason;

use super::{Room, RoomOutput};
use crate::participant::{Participant, ParticipantKey};
use crate::Datagrams;

/// Participants driven per step (a step's datagrams are what the owner
/// can send before the next step) on one thread: small, so that a
/// keyframe's datagrams to a big room are never all held at once.
const STEP_PARTICIPANTS: usize = 8;
/// Participants per step when two threads share it: enough to be worth
/// the hand-off.
const PARALLEL_STEP_PARTICIPANTS: usize = 32;
/// Below this many `Rtc`s to run in a step, one thread does it (handing
/// half to another thread costs a wake-up, a few µs, and the wait).
const PARALLEL_MIN_PARTICIPANTS: usize = 16;
/// Rounds per drive at most (events that keep marking participants).
const MAX_ROUNDS: u32 = 64;

/// Where a drive in progress is.
#[derive(Debug, Default)]
pub(super) struct DriveProgress {
    /// Participants of the current round not driven yet.
    queue: VecDeque<ParticipantKey>,
    rounds: u32,
    /// What the `Rtc` being driven emitted, kept between runs so that a
    /// run (one per publisher packet) allocates nothing for its events.
    events: Vec<Event>,
}

/// Whether this process may use more than one core (its CPU affinity
/// counts: a server pinned to one core drives everything on one thread,
/// where a second would only add context switches).
fn several_cores() -> bool {
    static SEVERAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SEVERAL.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// What one participant's `Rtc` emitted until it was idle, when it ran
/// on one of two threads.
struct RtcRun {
    key: ParticipantKey,
    transmits: Vec<RoomOutput>,
    events: Vec<Event>,
}

impl Room {
    /// Drives every participant that needs it until all are idle, then
    /// removes the ones whose connection ended (all at once, for the
    /// control paths that look at the room right after).
    pub(super) fn drive(&mut self, now: Instant) {
        self.last_now = now;
        self.drive_pending = true;
        while self.drive_step() {}
    }

    /// Drives one participant now (the sender of a datagram, so that what
    /// it sent is forwarded before the others are driven).
    pub(super) fn drive_participant(&mut self, now: Instant, key: ParticipantKey) {
        self.negotiate_if_needed(key);
        self.run_and_take(now, key);
    }

    /// Runs one participant's `Rtc` on this thread: its datagrams go
    /// straight to the outputs, then its events to the room.
    fn run_and_take(&mut self, now: Instant, key: ParticipantKey) {
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        let mut events = std::mem::take(&mut self.drive.events);
        run_rtc(participant, now, &mut self.outputs, &mut events);
        for event in events.drain(..) {
            self.handle_event(now, key, event);
        }
        self.drive.events = events;
    }

    /// What a participant driven on one of two threads emitted: its
    /// datagrams to the outputs, its events to the room.
    fn take_run(&mut self, now: Instant, run: RtcRun) {
        self.outputs.extend(run.transmits);
        for event in run.events {
            self.handle_event(now, run.key, event);
        }
    }

    /// One step of the pending drive; false when there is none (left).
    pub(super) fn drive_step(&mut self) -> bool {
        if !self.drive_pending {
            return false;
        }
        let now = self.last_now;
        // Publishers' packets routed since the last step reach their
        // subscribers' queues (and str0m) before anyone is driven.
        self.fan_out();
        if self.drive.queue.is_empty() && !self.start_round() {
            self.finish_drive(now);
            // Removals may have produced outputs; the next call ends.
            return true;
        }
        let parallel = several_cores() && self.enough_str0m_work_for_two_threads();
        let step_size = if parallel {
            PARALLEL_STEP_PARTICIPANTS
        } else {
            STEP_PARTICIPANTS
        };
        let take = self.drive.queue.len().min(step_size);
        if !parallel {
            // One thread: each participant is looked up, driven, and what
            // it emitted taken, in queue order.
            for _ in 0..take {
                let Some(key) = self.drive.queue.pop_front() else {
                    break;
                };
                let Some(participant) = self.participants.get_mut(&key) else {
                    continue;
                };
                if needs_rtc_run(participant) {
                    self.run_and_take(now, key);
                } else if let Some(output) = take_own_egress(participant) {
                    // Only Weir's sealed datagrams: straight to the outputs.
                    self.outputs.push_back(output);
                }
            }
            return true;
        }
        let step: HashSet<ParticipantKey> = self.drive.queue.drain(..take).collect();
        let mut work: Vec<&mut Participant> = self
            .participants
            .values_mut()
            .map(|p| &mut **p)
            .filter(|p| step.contains(&p.key) && needs_drive(p))
            .collect();
        for run in run_on_two_threads(&mut work, now) {
            self.take_run(now, run);
        }
        true
    }

    /// Whether the next parallel step holds at least
    /// [`PARALLEL_MIN_PARTICIPANTS`] `Rtc`s to run. A participant that
    /// only has sealed datagrams queued (most of a fan-out, with Weir's own
    /// egress) is a buffer handed over, far cheaper than the wake-up of
    /// another thread and the wait for it: such steps stay on this thread
    /// (on two cores, splitting them made `forwarding/room_to_50_subscribers`
    /// 2.6 times slower).
    fn enough_str0m_work_for_two_threads(&self) -> bool {
        self.drive.queue.len() >= PARALLEL_MIN_PARTICIPANTS
            && self
                .drive
                .queue
                .iter()
                .take(PARALLEL_STEP_PARTICIPANTS)
                .filter(|key| self.participants.get(key).is_some_and(|p| needs_rtc_run(p)))
                .count()
                >= PARALLEL_MIN_PARTICIPANTS
    }

    /// Queues the participants that need driving; false when none do (or
    /// the round limit is reached).
    fn start_round(&mut self) -> bool {
        if self.drive.rounds >= MAX_ROUNDS {
            return false;
        }
        if self.drive.rounds == 0 {
            // Whatever started this pass also serves the timers due by now.
            self.mark_due_timers(self.last_now);
        }
        // Straight into the (empty) queue, which keeps its capacity.
        self.drive.queue.extend(
            self.participants
                .values()
                .filter(|p| needs_drive(p))
                .map(|p| p.key),
        );
        if self.drive.queue.is_empty() {
            return false;
        }
        for index in 0..self.drive.queue.len() {
            let key = self.drive.queue[index];
            self.negotiate_if_needed(key);
        }
        self.drive.rounds += 1;
        true
    }

    fn finish_drive(&mut self, now: Instant) {
        self.drive_pending = false;
        self.drive.rounds = 0;
        self.drive.queue.clear();
        let dead: Vec<ParticipantKey> = self
            .participants
            .values()
            // Not `rtc.is_alive()`: a byte deep in each `Rtc`, a cache miss
            // per participant per pass; a run that finds its `Rtc` dead
            // marks it leaving.
            .filter(|p| p.leaving)
            .map(|p| p.key)
            .collect();
        for key in dead {
            self.remove_participant(now, key, LeaveReason::Disconnected);
        }
    }
}

/// Whether a participant has anything for a drive step to do.
fn needs_drive(participant: &Participant) -> bool {
    needs_rtc_run(participant) || participant.own_egress.has_queued()
}

/// Whether a participant's `Rtc` has a timeout or output to take (else a
/// drive only flushes its egress queue).
fn needs_rtc_run(participant: &Participant) -> bool {
    participant.needs_poll || participant.needs_timeout
}

/// Runs every participant of `work`, half of them on one of rayon's
/// threads.
fn run_on_two_threads(work: &mut [&mut Participant], now: Instant) -> Vec<RtcRun> {
    let (here, there) = work.split_at_mut(work.len() / 2);
    let mut theirs = Vec::new();
    let mut ours = Vec::new();
    rayon::in_place_scope(|scope| {
        scope.spawn(|_| theirs = there.iter_mut().map(|p| drive_rtc(p, now)).collect());
        ours = here.iter_mut().map(|p| drive_rtc(p, now)).collect();
    });
    ours.extend(theirs);
    ours
}

/// A participant in a drive step: only its egress queue flushed when str0m
/// has nothing to do for it, else [`run_rtc`].
fn drive_rtc(participant: &mut Participant, now: Instant) -> RtcRun {
    let mut run = RtcRun {
        key: participant.key,
        transmits: Vec::new(),
        events: Vec::new(),
    };
    if needs_rtc_run(participant) {
        run_rtc(participant, now, &mut run.transmits, &mut run.events);
    } else {
        run.transmits.extend(take_own_egress(participant));
    }
    run
}

/// Gives a participant's `Rtc` its pending timeout and polls it until it
/// asks for the next one: its datagrams (str0m's, then Weir's sealed ones)
/// onto `transmits`, its events onto `events`.
fn run_rtc(
    participant: &mut Participant,
    now: Instant,
    transmits: &mut impl Extend<RoomOutput>,
    events: &mut Vec<Event>,
) {
    if participant.needs_timeout {
        participant.needs_timeout = false;
        if let Err(e) = participant.rtc.handle_input(Input::Timeout(now)) {
            warn!(participant = %participant.id, error = %e, "timeout handling failed");
            participant.rtc.disconnect();
        }
    }
    participant.needs_poll = false;
    loop {
        if !participant.rtc.is_alive() {
            // The end of the pass removes it (an `Rtc` only dies in a run).
            participant.leaving = true;
            participant.next_timeout = None;
            participant.own_egress.queue.clear();
            return;
        }
        match participant.rtc.poll_output() {
            Ok(Output::Timeout(at)) => {
                participant.next_timeout = Some(at);
                participant.timer_is_lazy =
                    super::timers::tolerates_lateness(participant.rtc.last_timeout_reason());
                // After what str0m sent in the same pass (a packet written
                // through str0m for its sender reports is always the first
                // of its pass).
                transmits.extend(take_own_egress(participant));
                return;
            }
            Ok(Output::Transmit(transmit)) => {
                // str0m sends SRTP and SRTCP only on the selected ICE pair
                // (STUN answers go to every pair that checks).
                if crate::stun::looks_like_rtp_or_rtcp(&transmit.contents) {
                    participant.own_egress.destination = Some(transmit.destination);
                }
                transmits.extend(Some(RoomOutput::Transmit {
                    destination: transmit.destination,
                    datagrams: Datagrams::one(transmit.contents.into()),
                }));
            }
            Ok(Output::Event(event)) => events.push(event),
            Err(e) => {
                warn!(participant = %participant.id, error = %e, "poll_output failed; disconnecting");
                participant.rtc.disconnect();
                participant.leaving = true;
                return;
            }
        }
    }
}

/// The output sending the datagrams Weir's egress sealed for this
/// participant, if any (without a destination they are dropped).
fn take_own_egress(participant: &mut Participant) -> Option<RoomOutput> {
    let queue = &mut participant.own_egress.queue;
    if queue.is_empty() {
        return None;
    }
    match participant.own_egress.destination {
        Some(destination) => Some(RoomOutput::Transmit {
            destination,
            datagrams: queue.take(),
        }),
        None => {
            queue.clear();
            None
        }
    }
}
