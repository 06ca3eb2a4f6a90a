//! The fan-out waiting for the rest of a video frame
//! (`RoomConfig::frame_hold`).

use std::net::SocketAddr;
use std::time::Duration;

use str0m::media::Mid;
use str0m::Input;

use super::super::*;
use super::harness::*;

/// The publisher (peer 0) sends `seqs` (1000-byte VP8 packets, the marker
/// on the last when `ends_frame`) as one read of the room's socket; the
/// room's outputs are drained and delivered. Returns, per subscriber
/// address, how many RTP datagrams each of its outputs carried.
fn send_piece(
    net: &mut Net,
    mid: Mid,
    seqs: std::ops::RangeInclusive<u64>,
    ends_frame: bool,
) -> Vec<(SocketAddr, usize)> {
    let last = *seqs.end();
    for seq in seqs {
        net.write_vp8(0, mid, None, seq, false, ends_frame && seq == last, 1000);
    }
    let now = net.now;
    net.peers[0]
        .rtc
        .handle_input(Input::Timeout(now))
        .expect("timeout");
    net.poll_peer(0);
    drain(net)
}

/// Drains the room's outputs, delivering them; the RTP datagram count of
/// each output to a subscriber (peers 1 and 2).
fn drain(net: &mut Net) -> Vec<(SocketAddr, usize)> {
    let subscribers: Vec<SocketAddr> = [1, 2].iter().map(|&i| net.peers[i].addr).collect();
    let mut outputs = Vec::new();
    while let Some(output) = net.room.poll_output() {
        if let RoomOutput::Transmit {
            destination,
            datagrams,
        } = output
        {
            let rtp = datagrams.iter().filter(|d| is_rtp(d)).count();
            if subscribers.contains(&destination) && rtp > 0 {
                outputs.push((destination, rtp));
            }
            for datagram in datagrams.iter() {
                net.deliver(destination, datagram);
            }
        }
    }
    net.pump();
    outputs
}

/// A room streaming (30 frames) to two subscribers with `frame_hold`.
fn streaming_room(frame_hold: Duration) -> (Net, Mid) {
    let mut config = RoomConfig::new(server_addr());
    config.frame_hold = frame_hold;
    let (mut net, mid) = publisher_and_two_subscribers_with(config);
    net.stream_vp8_frames(0, mid, 30, Duration::from_millis(33));
    (net, mid)
}

fn rtp_to(outputs: &[(SocketAddr, usize)], subscriber: SocketAddr) -> Vec<usize> {
    outputs
        .iter()
        .filter(|(to, _)| *to == subscriber)
        .map(|(_, rtp)| *rtp)
        .collect()
}

#[test]
fn a_frame_read_in_pieces_reaches_each_subscriber_in_one_send() {
    let (mut net, mid) = streaming_room(Duration::from_millis(1));
    let subscribers: Vec<SocketAddr> = [1, 2].iter().map(|&i| net.peers[i].addr).collect();
    for frame in 0..3u64 {
        let first = 31 + frame * 6;
        let held = send_piece(&mut net, mid, first..=first + 1, false);
        assert!(
            held.is_empty(),
            "frame {frame}: the first piece waits: {held:?}"
        );
        net.now += Duration::from_micros(200);
        let held = send_piece(&mut net, mid, first + 2..=first + 3, false);
        assert!(
            held.is_empty(),
            "frame {frame}: the second piece waits: {held:?}"
        );
        net.now += Duration::from_micros(200);
        let sent = send_piece(&mut net, mid, first + 4..=first + 5, true);
        for subscriber in &subscribers {
            let mine = rtp_to(&sent, *subscriber);
            assert!(
                mine == [6] || mine == [1, 5],
                "frame {frame}: one send, or str0m's packet then the rest: {mine:?}"
            );
        }
        net.advance(Duration::from_millis(33));
    }
    net.run_for(Duration::from_millis(200));
    for subscriber in [1, 2] {
        assert_eq!(
            embedded_seqs(&net.peers[subscriber].received),
            (1..=48).collect::<Vec<_>>(),
            "subscriber {subscriber}"
        );
    }
}

#[test]
fn a_frame_whose_end_is_late_goes_when_the_wait_runs_out() {
    let hold = Duration::from_millis(1);
    let (mut net, mid) = streaming_room(hold);
    let subscriber = net.peers[1].addr;
    let started = net.now;
    let held = send_piece(&mut net, mid, 31..=33, false);
    assert!(held.is_empty(), "{held:?}");
    assert_eq!(net.room.poll_timeout(), Some(started + hold));
    // Just before the deadline the room still waits.
    net.now = started + hold - Duration::from_micros(1);
    net.room.handle_timeout(net.now);
    assert!(drain(&mut net).is_empty());
    net.now = started + hold;
    net.room.handle_timeout(net.now);
    let sent = drain(&mut net);
    assert_eq!(
        rtp_to(&sent, subscriber).iter().sum::<usize>(),
        3,
        "{sent:?}"
    );
    // The frame's last packets go as they come.
    let sent = send_piece(&mut net, mid, 34..=36, true);
    assert_eq!(
        rtp_to(&sent, subscriber).iter().sum::<usize>(),
        3,
        "{sent:?}"
    );
    net.run_for(Duration::from_millis(200));
    assert_eq!(
        embedded_seqs(&net.peers[1].received),
        (1..=36).collect::<Vec<_>>()
    );
}

#[test]
fn without_a_frame_hold_each_read_is_forwarded_at_once() {
    let (mut net, mid) = streaming_room(Duration::ZERO);
    let subscriber = net.peers[1].addr;
    let sent = send_piece(&mut net, mid, 31..=32, false);
    assert_eq!(
        rtp_to(&sent, subscriber).iter().sum::<usize>(),
        2,
        "{sent:?}"
    );
    let sent = send_piece(&mut net, mid, 33..=34, true);
    assert_eq!(
        rtp_to(&sent, subscriber).iter().sum::<usize>(),
        2,
        "{sent:?}"
    );
}
