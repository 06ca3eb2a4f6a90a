//! A UDP relay for tests that drops a fraction of the server's RTP toward a
//! client.
//!
//! ```text
//! client ──► proxy.addr() ──► (one upstream socket per client) ──► server
//! client ◄── proxy.addr() ◄── drop a seeded fraction of RTP ◄──── server
//! ```
//!
//! Client-to-server datagrams are forwarded unchanged. Server-to-client
//! datagrams are classified by their first bytes (RFC 7983): STUN, DTLS and
//! RTCP always pass; RTP is dropped with the configured probability, drawn
//! from a seeded RNG so a run is reproducible. The client uses the proxy by
//! rewriting the server's ICE candidates in the SDP it receives
//! ([`crate::JoinOptions::rewrite_server_candidate`]); the ICE-lite server
//! learns the proxy's upstream address as the client's (peer-reflexive)
//! address, so nothing changes on the server.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What a datagram on a WebRTC 5-tuple is (RFC 7983 demultiplexing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
    Other,
}

/// Classifies a datagram by its first two bytes. SRTP and SRTCP keep their
/// headers in clear, so this works on encrypted media.
pub fn classify(datagram: &[u8]) -> DatagramKind {
    let Some(&first) = datagram.first() else {
        return DatagramKind::Other;
    };
    match first {
        0..=3 => DatagramKind::Stun,
        20..=63 => DatagramKind::Dtls,
        128..=191 => match datagram.get(1) {
            // RTCP packet types 192..=223 appear as 64..=95 once the
            // marker-bit position is masked off.
            Some(second) if (64..=95).contains(&(second & 0x7f)) => DatagramKind::Rtcp,
            Some(_) => DatagramKind::Rtp,
            None => DatagramKind::Other,
        },
        _ => DatagramKind::Other,
    }
}

/// Loss settings.
#[derive(Debug, Clone)]
pub struct LossConfig {
    /// Probability (0.0..=1.0) that a server-to-client RTP datagram is dropped.
    pub server_to_client_rtp_loss: f64,
    /// Seed of the drop decisions.
    pub seed: u64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            server_to_client_rtp_loss: 0.05,
            seed: 0x5745_4952,
        }
    }
}

/// Counters of a running proxy.
#[derive(Debug, Default)]
struct Counters {
    client_to_server: AtomicU64,
    server_to_client: AtomicU64,
    rtp_forwarded: AtomicU64,
    rtp_dropped: AtomicU64,
}

/// A snapshot of the proxy's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Datagrams forwarded from clients to the server.
    pub client_to_server: u64,
    /// Datagrams forwarded from the server to clients (all kinds).
    pub server_to_client: u64,
    /// Server-to-client RTP datagrams forwarded.
    pub rtp_forwarded: u64,
    /// Server-to-client RTP datagrams dropped.
    pub rtp_dropped: u64,
}

struct Shared {
    counters: Counters,
    /// Loss probability in parts per million.
    loss_ppm: AtomicU32,
}

/// The running relay. Dropping it stops it.
pub struct LossyUdpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl LossyUdpProxy {
    /// Binds `127.0.0.1:0` and relays to `server`.
    pub async fn start(server: SocketAddr, config: LossConfig) -> io::Result<Self> {
        let socket = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?);
        let addr = socket.local_addr()?;
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            loss_ppm: AtomicU32::new(probability_to_ppm(config.server_to_client_rtp_loss)),
        });
        let task = tokio::spawn(run_downstream(
            socket,
            server,
            Arc::clone(&shared),
            config.seed,
        ));
        Ok(Self { addr, shared, task })
    }

    /// The address clients send to (put it in place of the server's candidate).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the loss probability of server-to-client RTP.
    pub fn set_loss(&self, probability: f64) {
        self.shared
            .loss_ppm
            .store(probability_to_ppm(probability), Ordering::Relaxed);
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            client_to_server: c.client_to_server.load(Ordering::Relaxed),
            server_to_client: c.server_to_client.load(Ordering::Relaxed),
            rtp_forwarded: c.rtp_forwarded.load(Ordering::Relaxed),
            rtp_dropped: c.rtp_dropped.load(Ordering::Relaxed),
        }
    }
}

impl Drop for LossyUdpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn probability_to_ppm(probability: f64) -> u32 {
    (probability.clamp(0.0, 1.0) * 1_000_000.0).round() as u32
}

/// Aborts the upstream tasks when the downstream task ends (or is aborted).
struct UpstreamTasks(Vec<JoinHandle<()>>);

impl Drop for UpstreamTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Reads from clients; forwards each client's datagrams from its own
/// upstream socket.
async fn run_downstream(
    socket: Arc<UdpSocket>,
    server: SocketAddr,
    shared: Arc<Shared>,
    seed: u64,
) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut tasks = UpstreamTasks(Vec::new());
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, client) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) if is_transient(&e) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "lossy proxy: downstream socket failed");
                return;
            }
        };
        let upstream = match upstreams.get(&client) {
            Some(upstream) => Arc::clone(upstream),
            None => {
                let upstream = match UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "lossy proxy: cannot bind an upstream socket");
                        continue;
                    }
                };
                let rng = StdRng::seed_from_u64(seed ^ (upstreams.len() as u64));
                tasks.0.push(tokio::spawn(run_upstream(
                    Arc::clone(&upstream),
                    Arc::clone(&socket),
                    client,
                    Arc::clone(&shared),
                    rng,
                )));
                upstreams.insert(client, Arc::clone(&upstream));
                upstream
            }
        };
        if upstream.send_to(&buf[..len], server).await.is_ok() {
            shared
                .counters
                .client_to_server
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads the server's datagrams for one client and relays them, dropping a
/// fraction of the RTP.
async fn run_upstream(
    upstream: Arc<UdpSocket>,
    downstream: Arc<UdpSocket>,
    client: SocketAddr,
    shared: Arc<Shared>,
    mut rng: StdRng,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let len = match upstream.recv_from(&mut buf).await {
            Ok((len, _)) => len,
            Err(e) if is_transient(&e) => continue,
            Err(_) => return,
        };
        let datagram = &buf[..len];
        let counters = &shared.counters;
        if classify(datagram) == DatagramKind::Rtp {
            let loss_ppm = shared.loss_ppm.load(Ordering::Relaxed);
            if loss_ppm > 0 && rng.gen_range(0..1_000_000) < loss_ppm {
                counters.rtp_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            counters.rtp_forwarded.fetch_add(1, Ordering::Relaxed);
        }
        if downstream.send_to(datagram, client).await.is_ok() {
            counters.server_to_client.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// ICMP port-unreachable from an earlier send surfaces as ConnectionRefused
/// on the next receive; it is not fatal for a relay.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn classifies_by_first_bytes() {
        assert_eq!(classify(&[0x00, 0x01, 0, 0]), DatagramKind::Stun);
        assert_eq!(classify(&[0x01, 0x01]), DatagramKind::Stun);
        assert_eq!(classify(&[22, 0xfe, 0xfd]), DatagramKind::Dtls);
        assert_eq!(classify(&[23, 0xfe, 0xfd]), DatagramKind::Dtls);
        // RTP: version 2, payload types 96 (VP8), 111 (Opus), marker set or not.
        assert_eq!(classify(&[0x80, 96]), DatagramKind::Rtp);
        assert_eq!(classify(&[0x80, 0x80 | 96]), DatagramKind::Rtp);
        assert_eq!(classify(&[0x90, 111]), DatagramKind::Rtp);
        assert_eq!(classify(&[0xbf, 0]), DatagramKind::Rtp);
        assert_eq!(classify(&[0x80, 0x80 | 63]), DatagramKind::Rtp);
        assert_eq!(classify(&[0x80, 96 + 0x80 - 0x80]), DatagramKind::Rtp);
        // RTCP: SR 200, RR 201, RTPFB 205, PSFB 206.
        assert_eq!(classify(&[0x80, 200]), DatagramKind::Rtcp);
        assert_eq!(classify(&[0x81, 201]), DatagramKind::Rtcp);
        assert_eq!(classify(&[0x81, 205]), DatagramKind::Rtcp);
        assert_eq!(classify(&[0x81, 206]), DatagramKind::Rtcp);
        assert_eq!(classify(&[0x80, 192]), DatagramKind::Rtcp);
        assert_eq!(classify(&[0x80, 223]), DatagramKind::Rtcp);
        assert_eq!(classify(&[0x80, 224]), DatagramKind::Rtp);
        // Others.
        assert_eq!(classify(&[]), DatagramKind::Other);
        assert_eq!(classify(&[0x80]), DatagramKind::Other);
        assert_eq!(classify(&[64, 0]), DatagramKind::Other);
        assert_eq!(classify(&[0xc0, 96]), DatagramKind::Other);
    }

    fn rtp(seq: u16) -> [u8; 12] {
        let s = seq.to_be_bytes();
        [0x80, 96, s[0], s[1], 0, 0, 0, 0, 0, 0, 0, 1]
    }

    async fn recv_all(socket: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(Ok((len, _))) = tokio::time::timeout(quiet, socket.recv_from(&mut buf)).await {
            out.push(buf[..len].to_vec());
        }
        out
    }

    #[tokio::test]
    async fn relays_both_ways_and_drops_only_server_rtp() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let proxy = LossyUdpProxy::start(
            server.local_addr().expect("addr"),
            LossConfig {
                server_to_client_rtp_loss: 0.25,
                seed: 7,
            },
        )
        .await
        .expect("proxy");

        // Client -> server: unchanged, from one upstream address.
        client
            .send_to(b"\x00\x01hello", proxy.addr())
            .await
            .expect("send");
        for seq in 0..200u16 {
            client.send_to(&rtp(seq), proxy.addr()).await.expect("send");
            if seq % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let upstream_msgs = {
            let mut buf = [0u8; 2048];
            let mut froms = Vec::new();
            let mut msgs = Vec::new();
            for _ in 0..201 {
                let (len, from) =
                    tokio::time::timeout(Duration::from_secs(2), server.recv_from(&mut buf))
                        .await
                        .expect("in time")
                        .expect("recv");
                froms.push(from);
                msgs.push(buf[..len].to_vec());
            }
            froms.dedup();
            assert_eq!(froms.len(), 1, "one upstream address per client");
            assert_ne!(froms[0], client.local_addr().expect("addr"));
            (froms[0], msgs)
        };
        assert_eq!(upstream_msgs.1[0], b"\x00\x01hello");
        assert_eq!(
            upstream_msgs.1.len(),
            201,
            "nothing client->server is dropped"
        );

        // Server -> client: STUN, DTLS, RTCP all pass; RTP loses ~25%.
        let upstream = upstream_msgs.0;
        let client = Arc::new(client);
        let receiver = {
            let client = Arc::clone(&client);
            tokio::spawn(async move { recv_all(&client, Duration::from_millis(500)).await })
        };
        server
            .send_to(&[0x01, 0x01, 0, 0], upstream)
            .await
            .expect("send");
        server
            .send_to(&[22, 0xfe, 0xfd], upstream)
            .await
            .expect("send");
        for _ in 0..50 {
            server
                .send_to(&[0x80, 200, 0, 6], upstream)
                .await
                .expect("send");
        }
        for seq in 0..1000u16 {
            server.send_to(&rtp(seq), upstream).await.expect("send");
            if seq % 20 == 0 {
                // Stay well inside the sockets' receive buffers.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let got = receiver.await.expect("receiver");
        let rtcp = got
            .iter()
            .filter(|d| classify(d) == DatagramKind::Rtcp)
            .count();
        let rtp_count = got
            .iter()
            .filter(|d| classify(d) == DatagramKind::Rtp)
            .count();
        assert!(got.iter().any(|d| classify(d) == DatagramKind::Stun));
        assert!(got.iter().any(|d| classify(d) == DatagramKind::Dtls));
        assert_eq!(rtcp, 50);
        let stats = proxy.stats();
        assert_eq!(stats.rtp_forwarded + stats.rtp_dropped, 1000);
        assert_eq!(stats.rtp_forwarded as usize, rtp_count);
        assert!(
            (150..350).contains(&stats.rtp_dropped),
            "dropped {} of 1000 at 25%",
            stats.rtp_dropped
        );
        assert_eq!(stats.client_to_server, 201);
    }

    #[tokio::test]
    async fn the_same_seed_drops_the_same_packets() {
        let mut runs = Vec::new();
        for _ in 0..2 {
            let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let proxy = LossyUdpProxy::start(
                server.local_addr().expect("addr"),
                LossConfig {
                    server_to_client_rtp_loss: 0.1,
                    seed: 99,
                },
            )
            .await
            .expect("proxy");
            client.send_to(&[0, 1], proxy.addr()).await.expect("send");
            let mut buf = [0u8; 64];
            let (_, upstream) = server.recv_from(&mut buf).await.expect("recv");
            let client = Arc::new(client);
            let receiver = {
                let client = Arc::clone(&client);
                tokio::spawn(async move { recv_all(&client, Duration::from_millis(500)).await })
            };
            for seq in 0..300u16 {
                server.send_to(&rtp(seq), upstream).await.expect("send");
                // Keep order and avoid socket buffer overflow.
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let got = receiver.await.expect("receiver");
            let seqs: Vec<u16> = got
                .iter()
                .map(|d| u16::from_be_bytes([d[2], d[3]]))
                .collect();
            runs.push(seqs);
        }
        assert_eq!(runs[0], runs[1]);
        assert!(runs[0].len() < 300 && runs[0].len() > 240);
    }
}
