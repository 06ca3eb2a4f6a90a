//! The shared media socket's reader: routes each datagram to its room.
//!
//! Known source addresses map straight to a room's media queue. A datagram
//! from a new address is routed only if it is a STUN Binding request for a
//! live ICE ufrag (that is how ICE starts); anything else is counted and
//! dropped. The reader never waits on a room: a full queue drops.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::debug;
use weir_sfu::stun::binding_request_server_ufrag;

use super::metrics::ServerMetrics;
use super::room_task::Datagram;
use super::rooms::RoomRegistry;

/// Largest datagram we read; anything larger is truncated and refused by str0m.
const MAX_DATAGRAM: usize = 2048;
/// How often routes of departed participants are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(5);

struct Route {
    ufrag: String,
    queue: mpsc::Sender<Datagram>,
}

pub async fn run_reader(
    socket: Arc<UdpSocket>,
    registry: RoomRegistry,
    metrics: Arc<ServerMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut routes: HashMap<SocketAddr, Route> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut last_prune = Instant::now();
    loop {
        let (len, source) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors (port unreachable) surface here on Linux; keep going.
                    debug!(error = %e, "udp receive error");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        metrics.udp_datagrams_received.inc();
        let contents = &buf[..len];
        let route = match routes.entry(source) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let Some(ufrag) = binding_request_server_ufrag(contents) else {
                    metrics.udp_datagrams_unroutable.inc();
                    continue;
                };
                let Some((ufrag, queue)) = registry.media_route_for_ufrag(ufrag) else {
                    metrics.udp_datagrams_unroutable.inc();
                    continue;
                };
                entry.insert(Route { ufrag, queue })
            }
        };
        let datagram = Datagram {
            source,
            contents: contents.to_vec(),
        };
        match route.queue.try_send(datagram) {
            Ok(()) => metrics.udp_datagrams_routed.inc(),
            Err(mpsc::error::TrySendError::Full(_)) => metrics.udp_datagrams_dropped.inc(),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics.udp_datagrams_unroutable.inc();
                routes.remove(&source);
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
