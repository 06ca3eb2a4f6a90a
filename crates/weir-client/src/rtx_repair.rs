//! Turns RTX retransmissions (RFC 4588) back into packets of their primary
//! stream *before* the NACK generator sees them.
//!
//! webrtc-rs 0.21 de-encapsulates RTX only after the interceptor chain, so
//! its NACK generator never learns that a retransmission arrived: it keeps
//! NACKing the recovered sequence numbers every 100 ms, and an RTX-capable
//! sender (the Weir server) keeps resending them, forever. Placed wire-ward
//! of the generator, this interceptor rewrites the packet (SSRC, payload
//! type, sequence number from the OSN, payload without the OSN), so the
//! generator, the receiver reports and the application all see the original
//! packet. The later de-encapsulation step then finds nothing to do.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtp;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Where the interceptor sits: after SRTP and the FEC decoder (6 000),
/// before the NACK generator (7 000).
pub(crate) const RTX_REPAIR_SLOT: usize = 6_500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Primary {
    ssrc: u32,
    payload_type: u8,
    rtx_payload_type: u8,
}

#[derive(Default)]
pub(crate) struct RtxRepair {
    /// RTX SSRC -> the stream it repairs.
    repairs: HashMap<u32, Primary>,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

/// What to do with an inbound RTP packet.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Not a retransmission: pass it on untouched.
    Pass,
    /// A retransmission, rewritten in place.
    Repaired,
    /// An RTX packet without an original sequence number (padding/probe).
    Drop,
}

impl RtxRepair {
    fn repair(&self, packet: &mut rtp::Packet) -> Verdict {
        let Some(primary) = self.repairs.get(&packet.header.ssrc) else {
            return Verdict::Pass;
        };
        if packet.header.payload_type != primary.rtx_payload_type {
            return Verdict::Pass;
        }
        if packet.payload.len() < 2 {
            return Verdict::Drop;
        }
        let original_sequence_number = u16::from_be_bytes([packet.payload[0], packet.payload[1]]);
        packet.header.ssrc = primary.ssrc;
        packet.header.payload_type = primary.payload_type;
        packet.header.sequence_number = original_sequence_number;
        packet.header.padding = false;
        packet.payload = packet.payload.slice(2..);
        Verdict::Repaired
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtxRepair {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &mut msg.message.packet {
            if self.repair(packet) == Verdict::Drop {
                return Ok(());
            }
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }
}

impl Interceptor for RtxRepair {
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        if let (Some(rtx_ssrc), Some(rtx_payload_type)) = (info.ssrc_rtx, info.payload_type_rtx) {
            self.repairs.insert(
                rtx_ssrc,
                Primary {
                    ssrc: info.ssrc,
                    payload_type: info.payload_type,
                    rtx_payload_type,
                },
            );
        }
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx_ssrc) = info.ssrc_rtx {
            self.repairs.remove(&rtx_ssrc);
        }
        self.repairs.retain(|_, p| p.ssrc != info.ssrc);
    }

    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn repair_for(ssrc: u32, rtx: u32) -> RtxRepair {
        let mut r = RtxRepair::default();
        r.bind_remote_stream(&StreamInfo {
            ssrc,
            ssrc_rtx: Some(rtx),
            payload_type: 96,
            payload_type_rtx: Some(97),
            ..Default::default()
        });
        r
    }

    fn packet(ssrc: u32, pt: u8, seq: u16, payload: &'static [u8]) -> rtp::Packet {
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                ssrc,
                payload_type: pt,
                sequence_number: seq,
                timestamp: 1234,
                marker: true,
                ..Default::default()
            },
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn rewrites_a_retransmission_into_the_original() {
        let r = repair_for(1000, 2000);
        let mut p = packet(2000, 97, 7, &[0x12, 0x34, 0xaa, 0xbb]);
        assert_eq!(r.repair(&mut p), Verdict::Repaired);
        assert_eq!(p.header.ssrc, 1000);
        assert_eq!(p.header.payload_type, 96);
        assert_eq!(p.header.sequence_number, 0x1234);
        assert_eq!(p.header.timestamp, 1234);
        assert!(p.header.marker);
        assert_eq!(&p.payload[..], &[0xaa, 0xbb]);
    }

    #[test]
    fn leaves_other_packets_alone_and_drops_padding() {
        let mut r = repair_for(1000, 2000);
        let mut primary = packet(1000, 96, 5, &[1, 2, 3]);
        assert_eq!(r.repair(&mut primary), Verdict::Pass);
        assert_eq!(primary.header.sequence_number, 5);
        let mut other_pt = packet(2000, 96, 5, &[1, 2, 3]);
        assert_eq!(r.repair(&mut other_pt), Verdict::Pass);
        let mut padding = packet(2000, 97, 9, &[]);
        assert_eq!(r.repair(&mut padding), Verdict::Drop);
        r.unbind_remote_stream(&StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            ..Default::default()
        });
        let mut after = packet(2000, 97, 7, &[0, 1, 2]);
        assert_eq!(r.repair(&mut after), Verdict::Pass);
    }
}
