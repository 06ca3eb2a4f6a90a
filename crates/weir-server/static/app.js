// Weir join page: one RTCPeerConnection per session carries both what we
// publish and what we receive. Protocol: docs/protocol.md.
//
// Automation: ?room=R&token=T (or &user=U with a --dev server) &autojoin=1
// &codec=VP8|H264|VP9|AV1. `window.weir` exposes state for tests.
"use strict";

const PROTOCOL_VERSION = 1;
const $ = (id) => document.getElementById(id);

const state = {
  ws: null,
  pc: null,
  status: "idle",
  participantId: null,
  localStream: null,
  participants: new Map(), // participant_id -> {info, tile, stream}
  tracks: new Map(), // track_id -> TrackInfo
  midToTrack: new Map(), // mid -> track_id (subscriptions)
  pendingTracksByMid: new Map(), // mid -> MediaStreamTrack waiting for `subscribed`
  offerOutstanding: false,
  inbox: Promise.resolve(), // serialises handling of server messages
  ownTracks: new Map(), // "audio" | "video" -> {mid, trackId, track}
  pingTimer: null,
  events: [],
  joinedAt: 0, // Date.now() when Join was pressed
  firstFrames: new Map(), // track_id -> {userId, ms since joinedAt, at}
  framePoller: null,
  devTokens: false,
};

function setStatus(kind, text) {
  state.status = kind;
  const el = $("status");
  el.className = `status ${kind}`;
  el.textContent = text;
}

function showError(message, kind = "error") {
  const el = $("error");
  el.className = kind;
  el.textContent = message;
  el.hidden = !message;
}

function record(event) {
  state.events.push({ at: Date.now(), ...event });
  if (state.events.length > 500) state.events.shift();
}

// ------------------------------------------------------------ signalling

function send(message) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(message));
  }
}

/** The pasted token or, on a `--dev` server, a dev token for the name. */
async function getToken(room) {
  const token = $("token").value.trim();
  if (token && !$("token-field").hidden) return token;
  if (!state.devTokens) throw new Error("Paste a token: weir token create --room ROOM --user NAME");
  const user = $("user").value.trim();
  if (!user) throw new Error("Enter your name.");
  const response = await fetch(`/dev/token?room=${encodeURIComponent(room)}&user=${encodeURIComponent(user)}`);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : `dev token: HTTP ${response.status}`);
  return body.token;
}

async function join() {
  showError("");
  const room = $("room").value.trim();
  if (!room) return showError("Enter a room name.");
  let token;
  try {
    token = await getToken(room);
  } catch (e) {
    return showError(e.message);
  }
  setFormLocked(true);
  setStatus("connecting", "Connecting…");
  state.joinedAt = Date.now();
  state.firstFrames.clear();

  if ($("publish").checked) {
    try {
      state.localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    } catch (e) {
      showError(`Camera/microphone unavailable (${e.message}); joining to watch only.`);
      state.localStream = null;
    }
  }

  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/rtc/v1?token=${encodeURIComponent(token)}&room=${encodeURIComponent(room)}`);
  state.ws = ws;
  ws.onopen = () => send({ type: "join", version: PROTOCOL_VERSION });
  ws.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    // One message at a time: a server offer must not be applied while the
    // previous answer (or our own offer) is still being negotiated.
    state.inbox = state.inbox.then(() => handleMessage(message)).catch((e) => {
      console.error(e);
      showError(e.message);
    });
  };
  ws.onclose = (event) => {
    if (state.ws === ws) {
      cleanup();
      if (state.status !== "failed") setStatus("idle", event.reason ? `Disconnected (${event.reason})` : "Disconnected");
    }
  };
}

async function handleMessage(message) {
  record({ type: message.type, message });
  switch (message.type) {
    case "joined":
      return onJoined(message);
    case "answer":
      state.offerOutstanding = false;
      await state.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      return;
    case "offer":
      if (state.offerOutstanding) {
        // Glare: the server is the polite peer. It rolls this offer back,
        // answers ours, then offers again (docs/protocol.md, "Glare").
        record({ type: "ignored_offer" });
        return;
      }
      return answerServerOffer(message.sdp);
    case "subscribed":
      // A re-offer (after glare) may move a track to another mid.
      for (const [mid, trackId] of state.midToTrack) {
        if (trackId === message.track_id) state.midToTrack.delete(mid);
      }
      state.midToTrack.set(message.mid, message.track_id);
      attachPending(message.mid);
      return;
    case "unsubscribed":
      for (const [mid, trackId] of state.midToTrack) {
        if (trackId === message.track_id) state.midToTrack.delete(mid);
      }
      return;
    case "participant_joined":
      upsertParticipant(message.participant);
      return;
    case "participant_left":
      removeParticipant(message.participant_id);
      return;
    case "track_published":
      state.tracks.set(message.track.track_id, message.track);
      if (message.mid) {
        for (const own of state.ownTracks.values()) {
          if (own.mid === message.mid) own.trackId = message.track.track_id;
        }
        updateToggles();
      }
      if (message.track.participant_id !== state.participantId) upsertParticipantTrack(message.track);
      return;
    case "track_unpublished":
      state.tracks.delete(message.track_id);
      return;
    case "track_muted": {
      const track = state.tracks.get(message.track_id);
      if (track) track.muted = message.muted;
      refreshLabel(message.participant_id);
      return;
    }
    case "permissions_changed": {
      const grants = message.grants.length ? message.grants.join(", ") : "none";
      showError(`An administrator changed your permissions: ${grants}.`, "info");
      if (!message.grants.includes("publish")) {
        for (const own of state.ownTracks.values()) own.trackId = null; // unpublished by the server
        updateToggles();
      }
      return;
    }
    case "pong":
      return;
    case "error":
      showError(`${message.code}: ${message.message}`);
      if (!state.participantId) setStatus("failed", "Refused");
      return;
    case "leave":
      setStatus("idle", `Left (${message.reason})`);
      return leave(false);
    default:
      return;
  }
}

async function onJoined(message) {
  state.participantId = message.participant_id;
  setStatus("connecting", `Joined ${message.room}; connecting media…`);
  for (const p of message.participants) upsertParticipant(p);
  state.pingTimer = setInterval(() => send({ type: "ping", ts: Date.now() }), message.ping_interval_ms || 10000);
  state.framePoller = setInterval(() => pollFirstFrames().catch(() => {}), 100);

  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" });
  state.pc = pc;
  pc.onconnectionstatechange = () => {
    record({ type: "pc", state: pc.connectionState });
    if (pc.connectionState === "connected") setStatus("connected", `In ${message.room}`);
    if (pc.connectionState === "disconnected") setStatus("connecting", "Media interrupted; reconnecting…");
    if (pc.connectionState === "failed") setStatus("failed", "Media connection failed");
  };
  pc.ontrack = (event) => {
    const mid = event.transceiver.mid;
    state.pendingTracksByMid.set(mid, event.track);
    attachPending(mid);
  };

  if (state.localStream) {
    addLocalTile(message.user_id);
    const publications = [];
    for (const track of state.localStream.getTracks()) {
      const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [state.localStream] });
      if (track.kind === "video") preferCodec(transceiver, $("codec").value);
      publications.push({ transceiver, track });
    }
    await sendOffer(publications);
    for (const { transceiver, track } of publications) {
      state.ownTracks.set(track.kind, { mid: transceiver.mid, trackId: null, track });
    }
    updateToggles();
  }
}

function preferCodec(transceiver, codec) {
  if (!codec || !RTCRtpSender.getCapabilities) return;
  const codecs = RTCRtpSender.getCapabilities("video").codecs;
  const wanted = `video/${codec}`.toLowerCase();
  let preferred = codecs.filter((c) => c.mimeType.toLowerCase() === wanted);
  if (codec === "H264") {
    // packetization-mode=1 first (what SFUs forward best).
    preferred.sort((a, b) => Number(/packetization-mode=1/.test(b.sdpFmtpLine || "")) - Number(/packetization-mode=1/.test(a.sdpFmtpLine || "")));
  }
  const rest = codecs.filter((c) => c.mimeType.toLowerCase() !== wanted);
  if (preferred.length) transceiver.setCodecPreferences([...preferred, ...rest]);
}

async function sendOffer(publications) {
  const pc = state.pc;
  state.offerOutstanding = true;
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc);
  for (const { transceiver, track } of publications) {
    send({
      type: "publish",
      mid: transceiver.mid,
      kind: track.kind,
      source: track.kind === "video" ? "camera" : "microphone",
      codecs: track.kind === "video" && $("codec").value ? [$("codec").value] : [],
    });
  }
  send({ type: "offer", sdp: pc.localDescription.sdp });
}

async function answerServerOffer(sdp) {
  const pc = state.pc;
  if (!pc) return;
  await pc.setRemoteDescription({ type: "offer", sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  await gatheringComplete(pc);
  send({ type: "answer", sdp: pc.localDescription.sdp });
}

function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, 3000);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// ------------------------------------------------------------ tiles

function upsertParticipant(info) {
  let entry = state.participants.get(info.participant_id);
  if (!entry) {
    entry = { info, stream: new MediaStream(), tile: null };
    state.participants.set(info.participant_id, entry);
    entry.tile = makeTile(info.user_id, false);
    entry.tile.video.srcObject = entry.stream;
    entry.tile.root.dataset.participant = info.participant_id;
    $("tiles").appendChild(entry.tile.root);
  }
  entry.info = info;
  for (const track of info.tracks || []) state.tracks.set(track.track_id, track);
  refreshLabel(info.participant_id);
  $("empty").hidden = state.participants.size > 0;
  return entry;
}

function upsertParticipantTrack(track) {
  const entry = state.participants.get(track.participant_id);
  if (!entry) upsertParticipant({ participant_id: track.participant_id, user_id: track.user_id, tracks: [track], joined_at_ms: 0 });
  else refreshLabel(track.participant_id);
}

function removeParticipant(participantId) {
  const entry = state.participants.get(participantId);
  if (!entry) return;
  entry.tile.root.remove();
  state.participants.delete(participantId);
  $("empty").hidden = state.participants.size > 0;
}

function attachPending(mid) {
  const track = state.pendingTracksByMid.get(mid);
  const trackId = state.midToTrack.get(mid);
  if (!track || !trackId) return;
  const info = state.tracks.get(trackId);
  if (!info) return;
  state.pendingTracksByMid.delete(mid);
  const entry = state.participants.get(info.participant_id) ||
    upsertParticipant({ participant_id: info.participant_id, user_id: info.user_id, tracks: [info], joined_at_ms: 0 });
  for (const old of entry.stream.getTracks().filter((t) => t.kind === track.kind)) entry.stream.removeTrack(old);
  entry.stream.addTrack(track);
  play(entry.tile);
}

/** Starts playback; if the browser blocks autoplay (no click yet), the tile
 *  asks for one. */
function play(tile) {
  tile.video.play().then(
    () => tile.root.classList.remove("blocked"),
    () => {
      tile.root.classList.add("blocked");
      tile.root.addEventListener("click", () => play(tile), { once: true });
    },
  );
}

/** Records when each received video track decodes its first frame (from
 *  getStats, so it measures decoding, not painting). */
async function pollFirstFrames() {
  const pc = state.pc;
  const waiting = [...state.midToTrack.entries()].filter(([, id]) => {
    const info = state.tracks.get(id);
    return info && info.kind === "video" && !state.firstFrames.has(id);
  });
  if (!pc || waiting.length === 0) return;
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type !== "inbound-rtp" || s.kind !== "video" || !s.framesDecoded) return;
    const trackId = state.midToTrack.get(s.mid);
    const info = trackId && state.tracks.get(trackId);
    if (!info || state.firstFrames.has(trackId)) return;
    const at = Date.now();
    state.firstFrames.set(trackId, { userId: info.user_id, ms: at - state.joinedAt, at });
    record({ type: "first_frame", track_id: trackId, user_id: info.user_id, ms: at - state.joinedAt });
  });
}

function makeTile(name, local) {
  const root = document.createElement("div");
  root.className = local ? "tile local" : "tile";
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.muted = local;
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = local ? `${name} (you)` : name;
  root.append(video, label);
  return { root, video, label };
}

function addLocalTile(userId) {
  const tile = makeTile(userId, true);
  tile.root.id = "local-tile";
  tile.video.srcObject = state.localStream;
  $("tiles").prepend(tile.root);
}

function refreshLabel(participantId) {
  const entry = state.participants.get(participantId);
  if (!entry) return;
  const muted = [...state.tracks.values()].filter((t) => t.participant_id === participantId && t.muted);
  entry.tile.label.textContent = entry.info.user_id;
  for (const track of muted) {
    const badge = document.createElement("span");
    badge.className = "muted";
    badge.textContent = track.kind === "audio" ? "mic off" : "camera off";
    entry.tile.label.append(badge);
  }
}

// ------------------------------------------------------------ mute

function updateToggles() {
  for (const [kind, id, on, off] of [
    ["audio", "toggle-mic", "Mute mic", "Unmute mic"],
    ["video", "toggle-cam", "Stop camera", "Start camera"],
  ]) {
    const own = state.ownTracks.get(kind);
    const button = $(id);
    button.disabled = !own || !own.trackId;
    const muted = own ? !own.track.enabled : false;
    button.textContent = muted ? off : on;
    button.setAttribute("aria-pressed", String(muted));
  }
}

/** Mutes or unmutes our own audio or video: the track sends silence/black
 *  and the others are told with a `mute` message. */
function toggleMute(kind) {
  const own = state.ownTracks.get(kind);
  if (!own || !own.trackId) return;
  own.track.enabled = !own.track.enabled;
  send({ type: "mute", track_id: own.trackId, muted: !own.track.enabled });
  updateToggles();
}

// ------------------------------------------------------------ leave

function cleanup() {
  clearInterval(state.pingTimer);
  state.pingTimer = null;
  clearInterval(state.framePoller);
  state.framePoller = null;
  if (state.pc) state.pc.close();
  state.pc = null;
  if (state.localStream) state.localStream.getTracks().forEach((t) => t.stop());
  state.localStream = null;
  for (const id of [...state.participants.keys()]) removeParticipant(id);
  const local = $("local-tile");
  if (local) local.remove();
  state.tracks.clear();
  state.midToTrack.clear();
  state.pendingTracksByMid.clear();
  state.participantId = null;
  state.ownTracks.clear();
  updateToggles();
  state.offerOutstanding = false;
  setFormLocked(false);
}

/** While in a session the form only offers Leave. */
function setFormLocked(locked) {
  for (const id of ["room", "user", "token", "codec", "publish", "join"]) $(id).disabled = locked;
  $("leave").disabled = !locked;
}

function leave(tellServer = true) {
  const ws = state.ws;
  if (tellServer) send({ type: "leave" });
  state.ws = null;
  cleanup();
  if (ws) ws.close();
  if (tellServer) setStatus("idle", "Left");
}

// ------------------------------------------------------------ automation API

async function stats() {
  const result = [];
  if (!state.pc) return result;
  const report = await state.pc.getStats();
  report.forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    const trackId = state.midToTrack.get(s.mid);
    const info = trackId ? state.tracks.get(trackId) : undefined;
    const codec = s.codecId ? report.get(s.codecId) : undefined;
    result.push({
      kind: s.kind,
      mid: s.mid,
      trackId: trackId || null,
      participantId: info ? info.participant_id : null,
      userId: info ? info.user_id : null,
      packetsReceived: s.packetsReceived || 0,
      framesDecoded: s.framesDecoded || 0,
      codec: codec ? codec.mimeType : null,
    });
  });
  return result;
}

window.weir = {
  get state() { return state.status; },
  get participantId() { return state.participantId; },
  remoteParticipants: () => [...state.participants.values()].map((p) => ({ participantId: p.info.participant_id, userId: p.info.user_id })),
  get events() { return state.events; },
  /** Date.now() when Join was pressed. */
  get joinedAt() { return state.joinedAt; },
  /** Milliseconds from Join to the first decoded remote video frame. */
  get firstFrameMs() {
    const all = [...state.firstFrames.values()].map((f) => f.ms);
    return all.length ? Math.min(...all) : null;
  },
  /** Per received video track: {trackId, userId, ms (since Join), at (Date.now())}. */
  firstFrames: () => [...state.firstFrames.entries()].map(([trackId, f]) => ({ trackId, ...f })),
  stats,
  join,
  mute: (kind) => toggleMute(kind),
  leave: () => leave(true),
};

// ------------------------------------------------------------ start

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  join();
});
$("leave").addEventListener("click", () => leave(true));
$("toggle-mic").addEventListener("click", () => toggleMute("audio"));
$("toggle-cam").addEventListener("click", () => toggleMute("video"));
$("use-token").addEventListener("click", () => {
  $("dev-fields").hidden = true;
  $("token-field").hidden = false;
  $("token").focus();
});

(async function init() {
  const params = new URLSearchParams(location.search);
  if (params.get("room")) $("room").value = params.get("room");
  if (params.get("token")) $("token").value = params.get("token");
  if (params.get("user")) $("user").value = params.get("user");
  if (params.get("codec")) $("codec").value = params.get("codec");
  if (params.get("publish") === "0") $("publish").checked = false;
  try {
    const probe = await fetch("/dev/status");
    state.devTokens = probe.ok && (await probe.json()).enabled === true;
  } catch {
    state.devTokens = false;
  }
  // On a --dev server the page mints tokens: a name replaces the token field
  // (unless a token came in the URL).
  if (state.devTokens && !params.get("token")) {
    $("dev-fields").hidden = false;
    $("token-field").hidden = true;
    if (!$("room").value) $("room").value = "demo";
    if (!$("user").value) $("user").value = `guest-${Math.floor(1000 + Math.random() * 9000)}`;
  }
  if (params.get("autojoin") === "1") join();
})();
