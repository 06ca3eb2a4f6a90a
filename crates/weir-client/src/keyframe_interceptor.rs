//! An interceptor that hands inbound keyframe requests (PLI, FIR) to the
//! application. webrtc-rs stops inbound RTCP at the end of the interceptor
//! chain unless an interceptor marks it; a publisher needs PLI/FIR to answer
//! a new subscriber with a keyframe. Everything else stays with the
//! interceptors (NACK responder, reports). Tests may pick other RTCP to
//! deliver as well ([`KeyframeRequestForwarder::delivering`]).

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Picks the inbound RTCP packets the application gets.
pub(crate) type RtcpSelector = fn(&dyn rtc::rtcp::Packet) -> bool;

pub(crate) struct KeyframeRequestForwarder {
    deliver: RtcpSelector,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl KeyframeRequestForwarder {
    /// Delivers the RTCP packets `deliver` picks (instead of keyframe
    /// requests only).
    pub(crate) fn delivering(deliver: RtcpSelector) -> Self {
        Self {
            deliver,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }
}

/// Whether an RTCP packet asks for a keyframe.
pub(crate) fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            if packets.is_empty() {
                // An attribute carrier: pass it on untouched.
                self.reads.push_back(msg);
                return Ok(());
            }
            packets.retain(|p| (self.deliver)(p.as_ref()));
            if packets.is_empty() {
                return Ok(());
            }
            msg.message.add(Attribute::DeliverToApplication);
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

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
