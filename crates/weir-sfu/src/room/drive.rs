//! Driving participants' `Rtc`s after inputs: each one that was written
//! to gets its timeout input (str0m sends written RTP only then) and is
//! polled until idle. The `Rtc`s are independent, so when many need it
//! (a publisher's packet reaching a large room) they are driven on two
//! threads: this one and one of rayon's, each taking half. Only the
//! `Rtc`s run in parallel; what they emit (datagrams, events) is taken
//! afterwards, in participant order, by the room alone.

use std::time::Instant;

use str0m::{Event, Input, Output};
use tracing::warn;
use weir_protocol::LeaveReason;

use super::{Room, RoomOutput};
use crate::participant::{Participant, ParticipantKey};

/// Below this many participants to drive, one thread does it (handing
/// half to another thread costs a wake-up, a few µs).
const PARALLEL_MIN_PARTICIPANTS: usize = 16;

/// Whether this process may use more than one core (its CPU affinity
/// counts: a server pinned to one core drives everything on one thread,
/// where a second would only add context switches).
fn several_cores() -> bool {
    static SEVERAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SEVERAL.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// What one participant's `Rtc` emitted until it was idle.
struct RtcRun {
    key: ParticipantKey,
    transmits: Vec<RoomOutput>,
    events: Vec<Event>,
}

impl Room {
    /// Drives every participant that needs it until all are idle, then
    /// removes the ones whose connection ended.
    pub(super) fn drive(&mut self, now: Instant) {
        self.last_now = now;
        self.drive_pending = false;
        // Events (forwarded RTP, negotiation) mark more participants; loop
        // until quiet.
        for _ in 0..64 {
            let due: Vec<ParticipantKey> = self
                .participants
                .values()
                .filter(|p| p.needs_poll || p.needs_timeout)
                .map(|p| p.key)
                .collect();
            if due.is_empty() {
                break;
            }
            for key in &due {
                self.negotiate_if_needed(*key);
            }
            let mut work: Vec<&mut Participant> = self
                .participants
                .values_mut()
                .filter(|p| p.needs_poll || p.needs_timeout)
                .collect();
            let runs = run_all(&mut work, now);
            for run in runs {
                self.outputs.extend(run.transmits);
                for event in run.events {
                    self.handle_event(now, run.key, event);
                }
            }
        }
        let dead: Vec<ParticipantKey> = self
            .participants
            .values()
            .filter(|p| !p.rtc.is_alive() || p.leaving)
            .map(|p| p.key)
            .collect();
        for key in dead {
            self.remove_participant(now, key, LeaveReason::Disconnected);
        }
    }
}

/// Runs every participant of `work`, on two threads when there are many.
fn run_all(work: &mut [&mut Participant], now: Instant) -> Vec<RtcRun> {
    if work.len() < PARALLEL_MIN_PARTICIPANTS || !several_cores() {
        return work.iter_mut().map(|p| run_rtc(p, now)).collect();
    }
    let (here, there) = work.split_at_mut(work.len() / 2);
    let mut theirs = Vec::new();
    let mut ours = Vec::new();
    rayon::in_place_scope(|scope| {
        scope.spawn(|_| theirs = there.iter_mut().map(|p| run_rtc(p, now)).collect());
        ours = here.iter_mut().map(|p| run_rtc(p, now)).collect();
    });
    ours.extend(theirs);
    ours
}

/// Gives a participant's `Rtc` its pending timeout and polls it until it
/// asks for the next one, keeping what it emitted.
fn run_rtc(participant: &mut Participant, now: Instant) -> RtcRun {
    let mut run = RtcRun {
        key: participant.key,
        transmits: Vec::new(),
        events: Vec::new(),
    };
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
            participant.next_timeout = None;
            return run;
        }
        match participant.rtc.poll_output() {
            Ok(Output::Timeout(at)) => {
                participant.next_timeout = Some(at);
                return run;
            }
            Ok(Output::Transmit(transmit)) => run.transmits.push(RoomOutput::Transmit {
                destination: transmit.destination,
                contents: transmit.contents.into(),
            }),
            Ok(Output::Event(event)) => run.events.push(event),
            Err(e) => {
                warn!(participant = %participant.id, error = %e, "poll_output failed; disconnecting");
                participant.rtc.disconnect();
                participant.leaving = true;
                return run;
            }
        }
    }
}
