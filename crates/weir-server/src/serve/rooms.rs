//! The registry of live rooms, ICE ufrags and WHIP/WHEP sessions.
//!
//! Locked only on control-plane paths (join, first packet from a new
//! address, session end), never per media packet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use weir_sfu::{ParticipantKey, RoomConfig};

use super::metrics::ServerMetrics;
use super::room_task::{
    AdminAction, AdminOutcome, RoomCommand, RoomHandle, RoomSettings, RoomTask,
};

/// A room is named within its application: two applications may both
/// have a room called `demo`, and they are different rooms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomKey {
    pub app_id: String,
    pub room: String,
}

impl RoomKey {
    pub fn new(app_id: impl Into<String>, room: impl Into<String>) -> Self {
        RoomKey {
            app_id: app_id.into(),
            room: room.into(),
        }
    }
}

impl std::fmt::Display for RoomKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.app_id, self.room)
    }
}

/// A WHIP or WHEP session, addressed by its Location URL.
#[derive(Debug, Clone)]
pub struct HttpSession {
    pub room: RoomKey,
    pub key: ParticipantKey,
    pub user_id: String,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<RoomKey, RoomHandle>,
    ufrags: HashMap<String, RoomKey>,
    http_sessions: HashMap<String, HttpSession>,
    next_room_id: u64,
    /// Set by [`RoomRegistry::close_all`]: no room opens and no join is
    /// queued after it (a join queued behind a room's close would keep the
    /// closing room open, its participant never told).
    closed: bool,
}

/// Why a room could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenRefused {
    /// A room with this key is open.
    Exists,
    /// The server is shutting down.
    Closed,
}

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct RoomRegistry {
    inner: Arc<Mutex<Inner>>,
}

/// Everything needed to start a room task.
#[derive(Clone)]
pub struct RoomFactory {
    pub config: RoomConfig,
    pub socket: Arc<super::media_socket::MediaSocket>,
    /// Sender threads that take halves of large send batches.
    pub senders: super::media_socket::SenderPool,
    /// Sent datagram buffers, shared by every room for their next passes.
    pub spare_buffers: weir_sfu::SpareBuffers,
    /// Received datagrams' buffers, given back to the reader's pool.
    pub receive_buffers: super::receive_buffers::ReceiveBuffers,
    pub metrics: Arc<ServerMetrics>,
    pub events: crate::callbacks::Dispatcher,
    /// The control plane's database (recording rules and jobs).
    pub store: weir_store::Store,
    /// The streams being recorded.
    pub recorders: super::recorder::Recorders,
    /// `recording.prefer_h264`.
    pub prefer_h264_while_recording: bool,
    /// The settings of rooms opened by a join.
    pub default_settings: RoomSettings,
}

impl RoomRegistry {
    pub fn new() -> Self {
        RoomRegistry {
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock would be a bug in these few lines;
        // recover the data rather than poisoning every later join.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `command` to `room`, creating the room if needed. The command is
    /// queued under the registry lock, so a room can never close between
    /// being found and receiving it.
    /// False, dropping the command, once the registry is closed.
    #[must_use]
    pub fn send_creating(
        &self,
        room: &RoomKey,
        factory: &RoomFactory,
        command: RoomCommand,
    ) -> bool {
        let mut inner = self.lock();
        if inner.closed {
            return false;
        }
        let handle = match inner.rooms.get(room) {
            Some(handle) => handle.clone(),
            None => self.open(&mut inner, room, factory, factory.default_settings.clone()),
        };
        let _ = handle.control.send(command);
        true
    }

    /// Opens `room` with `settings` (a pre-created room), changing nothing
    /// if it is already open or the registry is closed.
    pub fn create(
        &self,
        room: &RoomKey,
        factory: &RoomFactory,
        settings: RoomSettings,
    ) -> Result<(), OpenRefused> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(OpenRefused::Closed);
        }
        if inner.rooms.contains_key(room) {
            return Err(OpenRefused::Exists);
        }
        self.open(&mut inner, room, factory, settings);
        Ok(())
    }

    /// Starts the task of a room that is not open, under the registry lock.
    fn open(
        &self,
        inner: &mut Inner,
        room: &RoomKey,
        factory: &RoomFactory,
        settings: RoomSettings,
    ) -> RoomHandle {
        inner.next_room_id += 1;
        let handle = RoomTask::spawn(
            room.clone(),
            inner.next_room_id,
            factory,
            self.clone(),
            settings,
        );
        inner.rooms.insert(room.clone(), handle.clone());
        handle
    }

    /// Sends `command` to an existing room. False if there is no such room.
    pub fn send(&self, room: &RoomKey, command: RoomCommand) -> bool {
        let inner = self.lock();
        match inner.rooms.get(room) {
            Some(handle) => handle.control.send(command).is_ok(),
            None => false,
        }
    }

    /// Called by a room task that has been empty long enough: removes it
    /// unless a command is already waiting for it.
    pub fn remove_if_idle(
        &self,
        room: &RoomKey,
        id: u64,
        control: &mpsc::UnboundedReceiver<RoomCommand>,
    ) -> bool {
        let mut inner = self.lock();
        if !control.is_empty() {
            return false;
        }
        if inner.rooms.get(room).is_some_and(|h| h.id == id) {
            inner.rooms.remove(room);
        }
        true
    }

    pub fn register_ufrag(&self, ufrag: &str, room: &RoomKey) {
        self.lock().ufrags.insert(ufrag.to_string(), room.clone());
    }

    pub fn forget_ufrag(&self, ufrag: &str) {
        self.lock().ufrags.remove(ufrag);
    }

    /// The media queue of the room owning `ufrag`.
    pub fn media_route_for_ufrag(
        &self,
        ufrag: &str,
    ) -> Option<(String, mpsc::Sender<super::room_task::Datagram>)> {
        let inner = self.lock();
        let room = inner.ufrags.get(ufrag)?;
        let handle = inner.rooms.get(room)?;
        Some((ufrag.to_string(), handle.media.clone()))
    }

    pub fn ufrag_is_live(&self, ufrag: &str) -> bool {
        self.lock().ufrags.contains_key(ufrag)
    }

    pub fn insert_http_session(&self, id: String, session: HttpSession) {
        self.lock().http_sessions.insert(id, session);
    }

    pub fn http_session(&self, id: &str) -> Option<HttpSession> {
        self.lock().http_sessions.get(id).cloned()
    }

    pub fn forget_http_session(&self, id: &str) {
        self.lock().http_sessions.remove(id);
    }

    /// The live rooms of one application.
    pub fn rooms_of_app(&self, app_id: &str) -> Vec<RoomKey> {
        let mut keys: Vec<RoomKey> = self
            .lock()
            .rooms
            .keys()
            .filter(|k| k.app_id == app_id)
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// Runs an administrator's action in a room; `None` if the room does not
    /// exist (or closed meanwhile).
    pub async fn admin(
        &self,
        room: &RoomKey,
        action: AdminAction,
    ) -> Option<Result<AdminOutcome, weir_sfu::AdminError>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !self.send(room, RoomCommand::Admin { action, reply }) {
            return None;
        }
        answer.await.ok()
    }

    pub fn room_count(&self) -> usize {
        self.lock().rooms.len()
    }

    /// True once [`Self::close_all`] ran.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Asks every room to close and opens no room afterwards (shutdown).
    pub fn close_all(&self, reason: weir_protocol::LeaveReason) -> usize {
        let mut inner = self.lock();
        inner.closed = true;
        for handle in inner.rooms.values() {
            let _ = handle.control.send(RoomCommand::Close { reason });
        }
        inner.rooms.len()
    }
}

impl Default for RoomRegistry {
    fn default() -> Self {
        Self::new()
    }
}
