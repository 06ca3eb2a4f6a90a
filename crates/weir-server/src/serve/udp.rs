//! The shared media socket's reader: routes each datagram to its room.
//!
//! Known source addresses map straight to a room's media queue. A datagram
//! from a new address is routed only if it is a STUN Binding request for a
//! live ICE ufrag (that is how ICE starts); anything else is counted and
//! dropped. The reader never waits on a room: a full queue drops.
//!
//! Reads are batched (`recvmmsg`, up to [`quinn_udp::BATCH_SIZE`] buffers
//! per syscall); with UDP GRO one buffer may hold several datagrams of one
//! source, which are split by their stride.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn_udp::RecvMeta;
use tokio::sync::{mpsc, watch};
use tracing::debug;
use weir_sfu::stun::binding_request_server_ufrag;

use super::media_socket::MediaSocket;
use super::metrics::ServerMetrics;
use super::receive_buffers::ReceiveBuffers;
use super::room_task::Datagram;
use super::rooms::RoomRegistry;

/// One receive buffer: room for a GRO batch (the kernel coalesces at most
/// 64 KiB); a single datagram that large is refused by str0m later.
const RECEIVE_BUFFER: usize = 64 * 1024;
/// How often routes of departed participants are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(5);

struct Route {
    ufrag: String,
    queue: mpsc::Sender<Datagram>,
}

pub async fn run_reader(
    socket: Arc<MediaSocket>,
    registry: RoomRegistry,
    buffers: ReceiveBuffers,
    metrics: Arc<ServerMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut routes: HashMap<SocketAddr, Route> = HashMap::new();
    let mut storage = vec![0u8; RECEIVE_BUFFER * quinn_udp::BATCH_SIZE];
    let mut meta = vec![RecvMeta::default(); quinn_udp::BATCH_SIZE];
    let mut last_prune = Instant::now();
    let stop = shutdown.changed();
    tokio::pin!(stop);
    let mut bufs: Vec<IoSliceMut<'_>> = storage
        .chunks_mut(RECEIVE_BUFFER)
        .map(IoSliceMut::new)
        .collect();
    loop {
        let count = tokio::select! {
            received = socket.recv(&mut bufs, &mut meta) => match received {
                Ok(count) => count,
                Err(e) => {
                    // ICMP errors (port unreachable) surface here on Linux; keep going.
                    debug!(error = %e, "udp receive error");
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        metrics.udp_receive_syscalls.inc();
        let received_at = Instant::now();
        for (buf, meta) in bufs.iter().zip(&meta).take(count) {
            let stride = meta.stride.max(1);
            for contents in buf[..meta.len.min(buf.len())].chunks(stride) {
                route_datagram(
                    &mut routes,
                    &registry,
                    &buffers,
                    &metrics,
                    meta.addr,
                    contents,
                    received_at,
                );
            }
        }
        if last_prune.elapsed() >= PRUNE_INTERVAL {
            last_prune = Instant::now();
            let before = routes.len();
            routes.retain(|_, r| !r.queue.is_closed() && registry.ufrag_is_live(&r.ufrag));
            if routes.len() != before {
                debug!(removed = before - routes.len(), "pruned media routes");
            }
        }
    }
    // Routes of departed peers are pruned lazily, so some may remain.
    debug!(routes = routes.len(), "media reader stopped");
}

/// Hands one datagram to its room's queue (learning the route from a STUN
/// request for a live ufrag); copied (into a pooled buffer) only once it
/// has a room.
fn route_datagram(
    routes: &mut HashMap<SocketAddr, Route>,
    registry: &RoomRegistry,
    buffers: &ReceiveBuffers,
    metrics: &ServerMetrics,
    source: SocketAddr,
    contents: &[u8],
    received_at: Instant,
) {
    metrics.udp_datagrams_received.inc();
    let route = match routes.entry(source) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => {
            let Some(ufrag) = binding_request_server_ufrag(contents) else {
                metrics.udp_datagrams_unroutable.inc();
                return;
            };
            let Some((ufrag, queue)) = registry.media_route_for_ufrag(ufrag) else {
                metrics.udp_datagrams_unroutable.inc();
                return;
            };
            entry.insert(Route { ufrag, queue })
        }
    };
    let datagram = Datagram {
        source,
        contents: buffers.copy_of(contents),
        received_at,
    };
    match route.queue.try_send(datagram) {
        Ok(()) => metrics.udp_datagrams_routed.inc(),
        Err(mpsc::error::TrySendError::Full(dropped)) => {
            metrics.udp_datagrams_dropped.inc();
            buffers.give_back(dropped.contents);
        }
        Err(mpsc::error::TrySendError::Closed(unroutable)) => {
            metrics.udp_datagrams_unroutable.inc();
            buffers.give_back(unroutable.contents);
            routes.remove(&source);
        }
    }
}
