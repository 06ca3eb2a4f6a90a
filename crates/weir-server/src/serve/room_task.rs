//! One task per room: the only owner of a `weir_sfu::Room`.
//!
//! Control commands (joins, signalling, leaves) arrive on an unbounded
//! channel; datagrams on a bounded one that the UDP reader never waits on.
//! The task reads the clock, feeds the room, and carries out its outputs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, info_span, Instrument};
use weir_protocol::{ClientMessage, ErrorCode, Grant, LeaveReason, ParticipantInfo, ServerMessage};
use weir_sfu::{AdminError, JoinError, JoinRequest, Joined, ParticipantKey, Room, RoomOutput};

use super::media_socket::{MediaSocket, OFFLOAD_MIN_DATAGRAMS};
use super::metrics::ServerMetrics;
use super::receive_buffers::ReceiveBuffers;
use super::recorder::room::{ActiveJob, RoomRecording};
use super::rooms::{RoomFactory, RoomKey, RoomRegistry};
use super::send_batch::SendBatch;
use crate::callbacks::{Dispatcher, EventTrack, EventType, NewEvent};
use crate::recording::rule::RecordingRule;
use weir_store::{NewRecordingJob, RecordingJobOrigin, RecordingJobPatch, RecordingJobStatus};

/// Capacity of a room's datagram queue; beyond it datagrams are dropped
/// (and counted) rather than slowing the UDP reader.
pub const DATAGRAM_QUEUE: usize = 4096;

/// Datagrams sent at a time while a pass is still producing them (a frame
/// to ~20 subscribers).
const SEND_CHUNK_DATAGRAMS: usize = 128;

/// Send-batch space a room keeps between passes (a frame to a few dozen
/// subscribers); a bigger burst's buffer is given back after it is sent.
const RETAINED_SEND_BUFFER: usize = 256 * 1024;

/// Datagrams the room takes in at most before its output is sent. Each
/// publisher packet is sealed for every subscriber as it comes in, and a
/// pass sends nothing before its last input is in, so this bounds what a
/// pass holds: a keyframe's burst goes out in passes of this many packets
/// instead of being held whole once per subscriber (at 1.5 Mbit/s 1 -> 50,
/// 8 instead of 65 took the server's anonymous memory per subscribed video
/// track from ~150 to ~125 KiB at the same CPU; docs/performance.md). A
/// frame's packets to one subscriber still leave together, up to this many
/// (one GSO send).
const PASS_DATAGRAMS: usize = 8;

#[derive(Debug)]
pub struct Datagram {
    pub source: SocketAddr,
    pub contents: Vec<u8>,
    /// When the reader's `recvmmsg` returned it (for the forwarding
    /// latency).
    pub received_at: Instant,
}

/// A participant's signalling messages, boxed: the channel's blocks hold
/// 32 messages each, and a block of boxes is 256 bytes where one of
/// messages (144 bytes each) was 4.6 KiB for every session.
pub type SignalSender = mpsc::UnboundedSender<Box<ServerMessage>>;

pub enum RoomCommand {
    Join {
        request: JoinRequest,
        /// Where signalling messages for this participant go (None for WHIP/WHEP).
        signals: Option<SignalSender>,
        reply: oneshot::Sender<Result<Joined, JoinError>>,
    },
    Message {
        key: ParticipantKey,
        message: ClientMessage,
    },
    Reject {
        key: ParticipantKey,
        code: ErrorCode,
        message: String,
    },
    Leave {
        key: ParticipantKey,
        reason: LeaveReason,
    },
    /// The round trip of a participant's signalling connection.
    SignallingRoundTrip {
        key: ParticipantKey,
        rtt: Duration,
    },
    Close {
        reason: LeaveReason,
    },
    /// An administrator's action (REST API).
    Admin {
        action: AdminAction,
        reply: oneshot::Sender<Result<AdminOutcome, AdminError>>,
    },
}

/// What an administrator can ask a room.
#[derive(Debug, Clone)]
pub enum AdminAction {
    Describe,
    Kick {
        user_id: String,
    },
    UpdateGrants {
        user_id: String,
        grants: Vec<Grant>,
    },
    MuteTrack {
        track_id: String,
        muted: bool,
    },
    Close,
    /// Start recording (refused while another job records the room).
    StartRecording(ActiveJob),
    /// Stop the job (refused if it is not this room's job).
    StopRecording {
        job_id: String,
    },
    /// Record these publishers from now on.
    SetRecordedUsers {
        job_id: String,
        user_ids: std::collections::HashSet<String>,
    },
}

#[derive(Debug, Clone)]
pub enum AdminOutcome {
    Done,
    Description(RoomDescription),
    /// The room could not do it (the reason, for a 409).
    Refused(String),
}

/// A room as the REST API shows it.
#[derive(Debug, Clone)]
pub struct RoomDescription {
    pub room: String,
    pub created_at_ms: u64,
    pub participants: Vec<ParticipantInfo>,
    pub settings: RoomSettings,
    /// The recording job in progress and the users it records.
    pub recording: Option<(String, Vec<String>)>,
}

/// What may differ between rooms (set when a room is pre-created through
/// the API; server defaults otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSettings {
    pub max_participants: u32,
    /// How long the room stays open while nobody is in it.
    pub empty_timeout: Duration,
    /// Free-form data the application attached at creation.
    pub metadata: Option<serde_json::Value>,
}

/// The sending ends of a room's two queues.
#[derive(Clone)]
pub struct RoomHandle {
    pub id: u64,
    pub control: mpsc::UnboundedSender<RoomCommand>,
    pub media: mpsc::Sender<Datagram>,
}

/// What the task keeps per participant.
struct Session {
    signals: Option<SignalSender>,
    ice_ufrag: String,
}

pub struct RoomTask {
    pub key: RoomKey,
    /// Milliseconds since the Unix epoch when the room opened.
    pub created_at_ms: u64,
    pub room: Room,
    pub id: u64,
    pub control: mpsc::UnboundedReceiver<RoomCommand>,
    pub media: mpsc::Receiver<Datagram>,
    pub socket: Arc<MediaSocket>,
    /// What the next flush sends.
    pub outgoing: SendBatch,
    /// The spare datagram buffers the room shares with the others.
    pub spare_buffers: weir_sfu::SpareBuffers,
    /// The pool the media reader copies datagrams into; each datagram's
    /// buffer goes back once the room has taken it in.
    pub receive_buffers: ReceiveBuffers,
    /// A sender thread's queue for halves of large batches (none on one
    /// core).
    pub offload: Option<std::sync::mpsc::SyncSender<SendBatch>>,
    /// When the oldest datagram of the current pass was read.
    pub oldest_input: Option<Instant>,
    pub registry: RoomRegistry,
    pub metrics: Arc<ServerMetrics>,
    pub events: Dispatcher,
    pub settings: RoomSettings,
    pub store: weir_store::Store,
    pub recording: RoomRecording,
}

impl RoomTask {
    pub fn spawn(
        key: RoomKey,
        id: u64,
        factory: &RoomFactory,
        registry: RoomRegistry,
        settings: RoomSettings,
    ) -> RoomHandle {
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (media_tx, media_rx) = mpsc::channel(DATAGRAM_QUEUE);
        let mut config = factory.config.clone();
        config.max_participants = settings.max_participants;
        let mut room = Room::new(key.room.clone(), config, Instant::now());
        room.share_spare_buffers(factory.spare_buffers.clone());
        let task = RoomTask {
            room,
            spare_buffers: factory.spare_buffers.clone(),
            receive_buffers: factory.receive_buffers.clone(),
            key: key.clone(),
            created_at_ms: super::ws::unix_now_ms(),
            id,
            control: control_rx,
            media: media_rx,
            socket: factory.socket.clone(),
            outgoing: SendBatch::new(),
            offload: factory.senders.queue_for(id),
            oldest_input: None,
            registry,
            metrics: factory.metrics.clone(),
            events: factory.events.clone(),
            settings,
            store: factory.store.clone(),
            recording: RoomRecording::new(
                &key.app_id,
                &key.room,
                factory.recorders.clone(),
                factory.metrics.clone(),
                factory.prefer_h264_while_recording,
            ),
        };
        let span = info_span!("room", room = %key);
        tokio::spawn(task.run().instrument(span));
        RoomHandle {
            id,
            control: control_tx,
            media: media_tx,
        }
    }

    /// Starts recording when the application's rule says `auto_record`.
    /// Decided once, when the room opens: rooms that were open before
    /// auto-recording was switched on are not recorded (seed rule).
    async fn start_auto_recording(&mut self) {
        let stored = match self.store.recording_rule(&self.key.app_id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "reading the recording rule failed");
                return;
            }
        };
        let rule: RecordingRule = match serde_json::from_str(&stored.rule) {
            Ok(rule) => rule,
            Err(e) => {
                tracing::error!(error = %e, "the stored recording rule does not parse");
                return;
            }
        };
        if !rule.auto_record {
            return;
        }
        let created = self
            .store
            .create_recording_job(NewRecordingJob {
                app_id: self.key.app_id.clone(),
                room_id: self.key.room.clone(),
                user_ids: Vec::new(),
                formats: rule.formats.iter().map(|f| f.store_format()).collect(),
                origin: RecordingJobOrigin::Auto,
                rule: stored.rule,
                created_at_ms: super::ws::unix_now_ms_i64(),
            })
            .await;
        match created {
            Ok(job) => {
                info!(job = %job.job_id, "auto-recording the room");
                let job = ActiveJob {
                    job_id: job.job_id,
                    user_ids: None,
                    rule: Arc::new(rule),
                };
                self.recording.start(&mut self.room, Instant::now(), job);
            }
            Err(e) => tracing::error!(error = %e, "creating the auto-recording job failed"),
        }
    }

    /// The room is dissolving: its recording job is over (streams in a
    /// gap-merge window still finish their files).
    fn end_recording_job(&mut self) {
        let Some(job_id) = self.recording.job().map(|job| job.job_id.clone()) else {
            return;
        };
        self.recording.stop(&mut self.room, Instant::now());
        let store = self.store.clone();
        let app_id = self.key.app_id.clone();
        tokio::spawn(async move {
            let patch = RecordingJobPatch {
                status: Some(RecordingJobStatus::Stopped),
                detail: Some("the room closed".to_string()),
                stopped_at_ms: Some(super::ws::unix_now_ms_i64()),
                ..RecordingJobPatch::default()
            };
            if let Err(e) = store.update_recording_job(&app_id, &job_id, patch).await {
                tracing::error!(error = %e, "marking a recording job stopped failed");
            }
        });
    }

    /// Emits an event of this room for the application's callbacks.
    fn emit(&self, event_type: EventType, user_id: Option<&str>, track: Option<EventTrack>) {
        let mut event = NewEvent::room(event_type, &self.key.app_id, &self.key.room);
        event.user_id = user_id.map(str::to_string);
        event.track = track;
        self.events.emit(event);
    }

    async fn run(mut self) {
        self.metrics.rooms.inc();
        info!("room opened");
        self.emit(EventType::RoomCreated, None, None);
        self.start_auto_recording().await;
        let mut sessions: HashMap<ParticipantKey, Session> = HashMap::new();
        let mut empty_since: Option<Instant> = Some(Instant::now());
        // Set by a close (admin or shutdown): end as soon as everyone left.
        let mut closing = false;
        // One timer for the room's life, moved when its deadline does (a
        // new one per pass registered and removed a timer every wake-up).
        let timer = tokio::time::sleep_until(Instant::now().into());
        tokio::pin!(timer);
        loop {
            let wake = self
                .room
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            let empty_deadline = empty_since.map(|since| since + self.settings.empty_timeout);
            let deadline = match empty_deadline {
                Some(d) => wake.min(d),
                None => wake,
            };
            let deadline = tokio::time::Instant::from_std(deadline);
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                command = self.control.recv() => {
                    let Some(command) = command else { break };
                    let now = Instant::now();
                    closing |= self.handle_command(now, command, &mut sessions);
                }
                datagram = self.media.recv() => {
                    let Some(datagram) = datagram else { break };
                    let now = Instant::now();
                    self.oldest_input = Some(datagram.received_at);
                    self.take_in(now, datagram);
                    // Take in what else is queued, up to a pass, before flushing.
                    for _ in 1..PASS_DATAGRAMS {
                        match self.media.try_recv() {
                            Ok(d) => self.take_in(now, d),
                            Err(_) => break,
                        }
                    }
                }
                () = &mut timer => {
                    let now = Instant::now();
                    self.room.handle_timeout(now);
                }
            }
            self.flush(&mut sessions).await;
            let now = Instant::now();
            if self.room.is_empty() {
                let since = *empty_since.get_or_insert(now);
                let expired = now.saturating_duration_since(since) >= self.settings.empty_timeout;
                if (closing || expired)
                    && self
                        .registry
                        .remove_if_idle(&self.key, self.id, &self.control)
                {
                    break;
                }
            } else {
                empty_since = None;
            }
        }
        self.end_recording_job();
        self.emit(EventType::RoomDissolved, None, None);
        self.metrics.rooms.dec();
        if self.registry.room_count() == 0 {
            // No room is left to take the shared spare buffers or to
            // receive datagrams: the buffers go back to the allocator (and
            // the server's memory near its start).
            self.spare_buffers.clear();
            self.receive_buffers.clear();
        }
        info!("room closed");
    }

    /// Hands one datagram to the room, then its buffer back to the
    /// reader's pool.
    fn take_in(&mut self, now: Instant, datagram: Datagram) {
        self.room
            .handle_datagram(now, datagram.source, &datagram.contents);
        self.receive_buffers.give_back(datagram.contents);
    }

    /// Carries out one command; true if it closed the room.
    fn handle_command(
        &mut self,
        now: Instant,
        command: RoomCommand,
        sessions: &mut HashMap<ParticipantKey, Session>,
    ) -> bool {
        match command {
            RoomCommand::Join {
                request,
                signals,
                reply,
            } => {
                let user_id = request.user_id.clone();
                let result = self.room.join(now, request);
                match &result {
                    Ok(joined) => {
                        self.registry.register_ufrag(&joined.ice_ufrag, &self.key);
                        self.metrics.participants.inc();
                        self.emit(EventType::ParticipantJoined, Some(&user_id), None);
                        sessions.insert(
                            joined.key,
                            Session {
                                signals,
                                ice_ufrag: joined.ice_ufrag.clone(),
                            },
                        );
                    }
                    Err(e) => {
                        debug!(error = %e, "join refused");
                        self.metrics.joins_refused.inc();
                    }
                }
                let _ = reply.send(result);
            }
            RoomCommand::Message { key, message } => self.room.handle_message(now, key, message),
            RoomCommand::Reject { key, code, message } => {
                self.metrics.signalling_errors.inc();
                self.room.reject_message(key, code, message);
            }
            RoomCommand::Leave { key, reason } => self.room.leave(now, key, reason),
            RoomCommand::SignallingRoundTrip { key, rtt } => {
                self.room.set_signalling_round_trip(now, key, rtt);
            }
            RoomCommand::Close { reason } => {
                self.room.close(now, reason);
                return true;
            }
            RoomCommand::Admin { action, reply } => {
                let closes = matches!(action, AdminAction::Close);
                let outcome = match action {
                    AdminAction::Describe => Ok(AdminOutcome::Description(RoomDescription {
                        room: self.key.room.clone(),
                        created_at_ms: self.created_at_ms,
                        participants: self.room.participant_infos(),
                        settings: self.settings.clone(),
                        recording: self.recording.job().map(|job| {
                            (job.job_id.clone(), self.recording.recorded_users().to_vec())
                        }),
                    })),
                    AdminAction::StartRecording(job) => {
                        if let Some(active) = self.recording.job() {
                            Ok(AdminOutcome::Refused(format!(
                                "job {} already records this room",
                                active.job_id
                            )))
                        } else {
                            self.recording.start(&mut self.room, now, job);
                            Ok(AdminOutcome::Done)
                        }
                    }
                    AdminAction::StopRecording { job_id } => {
                        if self.recording.job().is_some_and(|job| job.job_id == job_id) {
                            self.recording.stop(&mut self.room, now);
                            Ok(AdminOutcome::Done)
                        } else {
                            Ok(AdminOutcome::Refused(format!(
                                "job {job_id} does not record this room"
                            )))
                        }
                    }
                    AdminAction::SetRecordedUsers { job_id, user_ids } => {
                        if self.recording.job().is_some_and(|job| job.job_id == job_id) {
                            self.recording.set_users(&mut self.room, now, user_ids);
                            Ok(AdminOutcome::Done)
                        } else {
                            Ok(AdminOutcome::Refused(format!(
                                "job {job_id} does not record this room"
                            )))
                        }
                    }
                    AdminAction::Kick { user_id } => {
                        self.room.kick(now, &user_id).map(|_| AdminOutcome::Done)
                    }
                    AdminAction::UpdateGrants { user_id, grants } => self
                        .room
                        .update_grants(now, &user_id, &grants)
                        .map(|()| AdminOutcome::Done),
                    AdminAction::MuteTrack { track_id, muted } => self
                        .room
                        .mute_track(now, &track_id, muted)
                        .map(|()| AdminOutcome::Done),
                    AdminAction::Close => {
                        self.room.close(now, LeaveReason::RoomClosed);
                        Ok(AdminOutcome::Done)
                    }
                };
                let _ = reply.send(outcome);
                return closes;
            }
        }
        false
    }

    /// Sends what the room produced: one batch per flush, grouped for GSO;
    /// half of a large batch goes to a sender thread (by destination, so
    /// each subscriber's datagrams stay on one path).
    async fn send_outgoing(&mut self) {
        if self.outgoing.is_empty() {
            return;
        }
        let max_segments = self.socket.max_gso_segments();
        if self.outgoing.len() >= OFFLOAD_MIN_DATAGRAMS {
            if let Some(queue) = &self.offload {
                let mut half = SendBatch::new();
                half.oldest_input = self.outgoing.oldest_input;
                self.outgoing.split_off(sent_by_helper, &mut half);
                half.arrange(max_segments);
                if let Err(e) = queue.try_send(half) {
                    // The thread is behind (or gone): send it here.
                    let half = match e {
                        std::sync::mpsc::TrySendError::Full(b)
                        | std::sync::mpsc::TrySendError::Disconnected(b) => b,
                    };
                    self.send_here(&half).await;
                }
            }
        }
        self.outgoing.arrange(max_segments);
        self.send_here(&self.outgoing).await;
        // The subscribers' sent buffers go back to the room for their next
        // pass (no allocation per subscriber per pass).
        let room = &mut self.room;
        self.outgoing
            .clear_giving_back(|buffer| room.give_back_buffer(buffer));
        // To the spares shared with the other rooms, in one lock.
        self.room.settle_spare_buffers();
        self.outgoing.shrink_to(RETAINED_SEND_BUFFER);
    }

    /// Sends an arranged batch from this task (a sender thread sends and
    /// counts the halves it takes).
    async fn send_here(&self, batch: &SendBatch) {
        self.socket.send(batch).await.record(&self.metrics, batch);
    }

    /// Takes the room's outputs and sends its datagrams in chunks as they
    /// come (the room makes them a few subscribers at a time), recording
    /// each forwarded datagram's latency.
    async fn flush(&mut self, sessions: &mut HashMap<ParticipantKey, Session>) {
        loop {
            let more = self.drain_outputs(sessions, SEND_CHUNK_DATAGRAMS);
            self.outgoing.oldest_input = self.oldest_input;
            self.send_outgoing().await;
            if !more {
                break;
            }
        }
        self.oldest_input = None;
    }

    /// Carries out the room's outputs until `send_at` datagrams are
    /// waiting to be sent (true: more may follow) or none is left.
    fn drain_outputs(
        &mut self,
        sessions: &mut HashMap<ParticipantKey, Session>,
        send_at: usize,
    ) -> bool {
        while self.outgoing.len() < send_at {
            let Some(output) = self.room.poll_output() else {
                return false;
            };
            match output {
                RoomOutput::Transmit {
                    destination,
                    datagrams,
                } => self.outgoing.push_datagrams(destination, datagrams),
                RoomOutput::Signal { to, message } => {
                    if let Some(signals) = sessions.get(&to).and_then(|s| s.signals.as_ref()) {
                        let _ = signals.send(Box::new(message));
                    }
                }
                RoomOutput::TrackPublished { track, .. } => {
                    self.recording
                        .track_published(&mut self.room, Instant::now(), &track);
                    self.emit(
                        EventType::TrackPublished,
                        Some(&track.user_id),
                        Some(event_track(&track)),
                    );
                }
                RoomOutput::Tapped(packet) => {
                    self.recording
                        .tapped(&mut self.room, Instant::now(), packet);
                }
                RoomOutput::TrackUnpublished { track, .. } => {
                    self.recording.track_unpublished(&track);
                    self.emit(
                        EventType::TrackUnpublished,
                        Some(&track.user_id),
                        Some(event_track(&track)),
                    );
                }
                RoomOutput::Left {
                    key,
                    reason,
                    participant_id,
                    user_id,
                } => {
                    debug!(participant = %participant_id, ?reason, "session closed");
                    self.recording.participant_left(&user_id);
                    let mut event = NewEvent::room(
                        EventType::ParticipantLeft,
                        &self.key.app_id,
                        &self.key.room,
                    );
                    event.user_id = Some(user_id);
                    event
                        .extra
                        .insert("reason".to_string(), serde_json::json!(reason));
                    self.events.emit(event);
                    self.metrics.participants.dec();
                    // Dropping the sender ends the WebSocket session.
                    if let Some(session) = sessions.remove(&key) {
                        self.registry.forget_ufrag(&session.ice_ufrag);
                    }
                    self.registry.forget_http_session(participant_id.as_str());
                }
            }
        }
        true
    }
}

/// Which destinations a sender thread serves when a batch is split: a
/// fixed half of the address space, so a destination never changes path
/// while its batches stay large.
fn sent_by_helper(destination: SocketAddr) -> bool {
    let ip = match destination.ip() {
        std::net::IpAddr::V4(v4) => u64::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => u128::from(v6) as u64,
    };
    let mixed = (ip << 16 | u64::from(destination.port())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    mixed >> 63 == 1
}

fn event_track(track: &weir_protocol::TrackInfo) -> EventTrack {
    EventTrack {
        track_id: track.track_id.to_string(),
        kind: track.kind,
        source: track.source,
    }
}
