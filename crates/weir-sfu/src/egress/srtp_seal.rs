//! Sealing RTP packets as SRTP with AEAD AES-GCM (RFC 7714 sections 7-9),
//! written straight into a send buffer: one copy of the packet, the
//! payload encrypted in place, the 16-byte tag appended.
//!
//! The IV is `0x0000 || SSRC || ROC || SEQ` XORed with the session salt;
//! the associated data is the RTP header with its CSRCs and header
//! extension. Each SSRC keeps its own rollover counter, estimated from the
//! highest index sent as RFC 3711 appendix A does, so a packet sent again
//! (a retransmission) gets the index it had.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};

use super::srtp_keys::{AeadProfile, KeyError, SessionKey, SALT_LEN, TAG_LEN};

/// An SRTP packet index (RFC 3711 section 3.3.1): the 32-bit rollover
/// counter above the 16-bit sequence number; 48 bits in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketIndex(u64);

impl PacketIndex {
    pub fn new(roc: u32, seq: u16) -> PacketIndex {
        PacketIndex((u64::from(roc) << 16) | u64::from(seq))
    }

    pub fn roc(self) -> u32 {
        (self.0 >> 16) as u32
    }

    pub fn seq(self) -> u16 {
        self.0 as u16
    }

    /// The index of an extended sequence number (the rollover counter in
    /// the bits above the low 16, as str0m and RFC 3711 count it); `None`
    /// beyond 48 bits.
    pub fn from_extended(extended_seq: u64) -> Option<PacketIndex> {
        (extended_seq < 1 << 48).then_some(PacketIndex(extended_seq))
    }

    /// The index of a packet with sequence number `seq`, given the highest
    /// index of its stream so far: the one of `roc - 1`, `roc`, `roc + 1`
    /// whose index is nearest (RFC 3711 section 3.3.1 and appendix A).
    /// `None` before the first rollover counter or past the last.
    pub fn estimate(highest: PacketIndex, seq: u16) -> Option<PacketIndex> {
        let roc = u32::try_from(Self::estimate_roc(highest, seq)).ok()?;
        Some(PacketIndex::new(roc, seq))
    }

    fn estimate_roc(highest: PacketIndex, seq: u16) -> i64 {
        let roc = i64::from(highest.roc());
        let last = i64::from(highest.seq());
        let seq_wide = i64::from(seq);
        let half = 1 << 15;
        if last < half {
            if seq_wide - last > half {
                roc - 1
            } else {
                roc
            }
        } else if last - half > seq_wide {
            roc + 1
        } else {
            roc
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not an RTP packet: {0}")]
    Malformed(&'static str),
    #[error("sequence number {seq} of SSRC {ssrc:#010x} is before the stream's first")]
    BeforeFirstIndex { ssrc: u32, seq: u16 },
    #[error("SSRC {ssrc:#010x} has used up its key (2^48 packets)")]
    KeyExhausted { ssrc: u32 },
    #[error("more than {MAX_STREAMS} SSRCs on one SRTP session")]
    TooManyStreams,
    #[error("the given index {index:?} is not the packet's sequence number {seq}")]
    IndexMismatch { index: PacketIndex, seq: u16 },
    #[error("the cipher failed")]
    Crypto,
}

/// Most SSRCs one session seals (a subscriber's audio, video and RTX
/// streams, with room to spare); a bound on the per-session table.
pub const MAX_STREAMS: usize = 64;

/// The length of the RTP header at the start of `packet` (fixed header,
/// CSRCs, header extension), checked against the packet's length.
pub fn rtp_header_len(packet: &[u8]) -> Result<usize, SealError> {
    const FIXED: usize = 12;
    let first = *packet
        .first()
        .ok_or(SealError::Malformed("empty datagram"))?;
    if first >> 6 != 2 {
        return Err(SealError::Malformed("RTP version is not 2"));
    }
    let csrc_count = usize::from(first & 0x0f);
    let mut len = FIXED + 4 * csrc_count;
    if packet.len() < len {
        return Err(SealError::Malformed(
            "shorter than its fixed header and CSRCs",
        ));
    }
    if first & 0x10 != 0 {
        let words = packet
            .get(len + 2..len + 4)
            .ok_or(SealError::Malformed("header extension cut off"))?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
        if packet.len() < len {
            return Err(SealError::Malformed(
                "header extension longer than the packet",
            ));
        }
    }
    Ok(len)
}

#[derive(Debug, Clone, Copy)]
struct StreamIndex {
    ssrc: u32,
    highest: PacketIndex,
}

/// Seals the RTP packets one end of an SRTP session sends.
pub struct RtpSealer {
    cipher: LessSafeKey,
    salt: [u8; SALT_LEN],
    streams: Vec<StreamIndex>,
}

impl std::fmt::Debug for RtpSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtpSealer")
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl RtpSealer {
    /// Reads the salt and the stream indexes (see
    /// [`crate::room::own_egress::ParticipantEgress::warm`]).
    pub fn warm(&self) -> usize {
        usize::from(self.salt[0]) ^ self.streams.first().map_or(0, |s| s.ssrc as usize)
    }

    /// A sealer for the RTP session key of one direction
    /// ([`super::srtp_keys::MasterKey::rtp_session_key`]).
    pub fn new(session: &SessionKey) -> Result<RtpSealer, KeyError> {
        let algorithm = match session.profile() {
            AeadProfile::Aes128Gcm => &AES_128_GCM,
            AeadProfile::Aes256Gcm => &AES_256_GCM,
        };
        let key = UnboundKey::new(algorithm, session.key()).map_err(|_| KeyError::Crypto)?;
        Ok(RtpSealer {
            cipher: LessSafeKey::new(key),
            salt: *session.salt(),
            streams: Vec::new(),
        })
    }

    /// Appends `rtp` sealed as SRTP to `out` (its length plus
    /// [`TAG_LEN`]) and returns the packet index it was sealed with. On an
    /// error `out` is left as it was.
    pub fn seal_into(&mut self, rtp: &[u8], out: &mut Vec<u8>) -> Result<PacketIndex, SealError> {
        let start = out.len();
        out.reserve(rtp.len() + TAG_LEN);
        out.extend_from_slice(rtp);
        self.seal_in_place(out, start)
    }

    /// Seals the RTP packet that `out[start..]` holds where it is (for a
    /// packet written straight into its datagram) and appends the tag;
    /// returns the packet index it was sealed with. On an error the packet
    /// is removed (`out` is truncated to `start`).
    pub fn seal_in_place(
        &mut self,
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<PacketIndex, SealError> {
        self.seal_or_remove(out, start, None)
    }

    /// As [`RtpSealer::seal_in_place`], with the packet index given
    /// instead of estimated: for a stream whose sender counts extended
    /// sequence numbers (the room's rewriter, as str0m does), so that the
    /// rollover counter is the one the receiver learned from every packet
    /// of the stream, including ones another sealer sent. `index` must end
    /// in the packet's sequence number.
    pub fn seal_in_place_at(
        &mut self,
        out: &mut Vec<u8>,
        start: usize,
        index: PacketIndex,
    ) -> Result<PacketIndex, SealError> {
        self.seal_or_remove(out, start, Some(index))
    }

    /// Seals `out[start..]` with the given or estimated index; on an error
    /// the packet is removed.
    fn seal_or_remove(
        &mut self,
        out: &mut Vec<u8>,
        start: usize,
        given: Option<PacketIndex>,
    ) -> Result<PacketIndex, SealError> {
        let sealed = self.seal_tail(out, start, given);
        if sealed.is_err() {
            out.truncate(start);
        }
        sealed
    }

    fn seal_tail(
        &mut self,
        out: &mut Vec<u8>,
        start: usize,
        given: Option<PacketIndex>,
    ) -> Result<PacketIndex, SealError> {
        let rtp = out
            .get(start..)
            .ok_or(SealError::Malformed("starts past the buffer"))?;
        let header_len = rtp_header_len(rtp)?;
        let seq = u16::from_be_bytes([rtp[2], rtp[3]]);
        let ssrc = u32::from_be_bytes([rtp[8], rtp[9], rtp[10], rtp[11]]);
        let index = match given {
            Some(index) if index.seq() != seq => {
                return Err(SealError::IndexMismatch { index, seq });
            }
            Some(index) => index,
            None => self.next_index(ssrc, seq)?,
        };

        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&index.roc().to_be_bytes());
        iv[10..12].copy_from_slice(&seq.to_be_bytes());
        for (byte, salt) in iv.iter_mut().zip(self.salt) {
            *byte ^= salt;
        }

        let (header, payload) = out[start..].split_at_mut(header_len);
        let tag = self
            .cipher
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&*header),
                payload,
            )
            .map_err(|_| SealError::Crypto)?;
        out.extend_from_slice(tag.as_ref());
        Ok(index)
    }

    /// The index of this packet; the stream's highest index moves forward
    /// when it is newer.
    fn next_index(&mut self, ssrc: u32, seq: u16) -> Result<PacketIndex, SealError> {
        let Some(stream) = self.streams.iter_mut().find(|s| s.ssrc == ssrc) else {
            if self.streams.len() >= MAX_STREAMS {
                return Err(SealError::TooManyStreams);
            }
            let first = PacketIndex::new(0, seq);
            self.streams.push(StreamIndex {
                ssrc,
                highest: first,
            });
            return Ok(first);
        };
        let roc = PacketIndex::estimate_roc(stream.highest, seq);
        if roc < 0 {
            return Err(SealError::BeforeFirstIndex { ssrc, seq });
        }
        let roc = u32::try_from(roc).map_err(|_| SealError::KeyExhausted { ssrc })?;
        let index = PacketIndex::new(roc, seq);
        if index > stream.highest {
            stream.highest = index;
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ssrc: u32, extension_words: u16, payload: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x80, 96];
        if extension_words > 0 {
            packet[0] |= 0x10;
        }
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&1234u32.to_be_bytes());
        packet.extend_from_slice(&ssrc.to_be_bytes());
        if extension_words > 0 {
            packet.extend_from_slice(&[0xbe, 0xde]);
            packet.extend_from_slice(&extension_words.to_be_bytes());
            packet.extend(std::iter::repeat_n(0x11, 4 * usize::from(extension_words)));
        }
        packet.extend_from_slice(payload);
        packet
    }

    #[test]
    fn estimate_follows_rfc_3711() {
        let at = |roc, seq| PacketIndex::new(roc, seq);
        assert_eq!(PacketIndex::estimate(at(0, 10), 11), Some(at(0, 11)));
        // Forward across the wrap.
        assert_eq!(PacketIndex::estimate(at(0, 65_530), 3), Some(at(1, 3)));
        // A late packet from before the wrap.
        assert_eq!(PacketIndex::estimate(at(1, 3), 65_530), Some(at(0, 65_530)));
        // Before the first rollover counter.
        assert_eq!(PacketIndex::estimate(at(0, 3), 65_530), None);
        assert_eq!(
            PacketIndex::estimate(at(7, 40_000), 39_000),
            Some(at(7, 39_000))
        );
    }

    #[test]
    fn header_lengths_and_malformed_packets() {
        assert_eq!(rtp_header_len(&rtp(1, 2, 0, b"x")), Ok(12));
        assert_eq!(rtp_header_len(&rtp(1, 2, 2, b"x")), Ok(24));
        let mut with_csrc = rtp(1, 2, 0, &[0; 8]);
        with_csrc[0] |= 2;
        assert_eq!(rtp_header_len(&with_csrc), Ok(20));
        for bad in [
            vec![],
            vec![0x40; 20],
            vec![0x80; 11],
            rtp(1, 2, 2, b"")[..16].to_vec(),
            rtp(1, 2, 2, b"")[..14].to_vec(),
        ] {
            assert!(
                matches!(rtp_header_len(&bad), Err(SealError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    fn sealer() -> RtpSealer {
        let master =
            super::super::srtp_keys::MasterKey::new(AeadProfile::Aes128Gcm, &[1; 16], &[2; 12])
                .expect("lengths");
        RtpSealer::new(&master.rtp_session_key().expect("derive")).expect("key")
    }

    #[test]
    fn sealed_packet_keeps_the_header_and_grows_by_the_tag() {
        let mut sealer = sealer();
        let plain = rtp(500, 0xabcd, 1, b"payload bytes");
        let mut out = vec![0xee];
        let index = sealer.seal_into(&plain, &mut out).expect("seal");
        assert_eq!(index, PacketIndex::new(0, 500));
        assert_eq!(out.len(), 1 + plain.len() + TAG_LEN);
        assert_eq!(&out[1..17], &plain[..16], "header in the clear");
        assert_ne!(&out[17..17 + 13], b"payload bytes");
        // Malformed input leaves the buffer alone.
        assert!(sealer.seal_into(&[0x80, 1, 2], &mut out).is_err());
        assert_eq!(out.len(), 1 + plain.len() + TAG_LEN);
    }

    #[test]
    fn a_stream_past_the_last_rollover_counter_is_refused() {
        let mut sealer = sealer();
        sealer.streams.push(StreamIndex {
            ssrc: 5,
            highest: PacketIndex::new(u32::MAX, 65_000),
        });
        let mut out = Vec::new();
        assert_eq!(
            sealer.seal_into(&rtp(65_001, 5, 0, b"a"), &mut out),
            Ok(PacketIndex::new(u32::MAX, 65_001))
        );
        assert_eq!(
            sealer.seal_into(&rtp(10, 5, 0, b"a"), &mut out),
            Err(SealError::KeyExhausted { ssrc: 5 })
        );
        assert_eq!(
            sealer.seal_into(&rtp(65_534, 6, 0, b"a"), &mut out),
            Ok(PacketIndex::new(0, 65_534))
        );
        assert_eq!(
            sealer.seal_into(&rtp(65_535, 6, 0, b"a"), &mut out),
            Ok(PacketIndex::new(0, 65_535))
        );
        assert_eq!(
            sealer.seal_into(&rtp(1, 6, 0, b"a"), &mut out),
            Ok(PacketIndex::new(1, 1))
        );
    }

    #[test]
    fn sealing_in_place_gives_the_bytes_of_sealing_a_copy() {
        let plain = rtp(42, 0x77, 1, b"in place");
        let mut copied = vec![9, 9];
        sealer().seal_into(&plain, &mut copied).expect("seal");
        let mut in_place = vec![9, 9];
        in_place.extend_from_slice(&plain);
        sealer().seal_in_place(&mut in_place, 2).expect("seal");
        assert_eq!(in_place, copied);
        // A refused packet is removed, what was before it stays.
        in_place.extend_from_slice(&[0x80, 1, 2]);
        let before = in_place.len() - 3;
        assert!(sealer().seal_in_place(&mut in_place, before).is_err());
        assert_eq!(in_place.len(), before);
        assert!(sealer().seal_in_place(&mut in_place, before + 5).is_err());
        assert_eq!(in_place.len(), before);
    }

    #[test]
    fn streams_keep_their_own_rollover_counters_and_are_bounded() {
        let mut sealer = sealer();
        let mut out = Vec::new();
        for seq in [65_534u16, 65_535, 0, 1] {
            sealer
                .seal_into(&rtp(seq, 1, 0, b"a"), &mut out)
                .expect("seal");
        }
        let again = sealer.seal_into(&rtp(65_535, 1, 0, b"a"), &mut out);
        assert_eq!(
            again,
            Ok(PacketIndex::new(0, 65_535)),
            "a retransmission keeps its index"
        );
        assert_eq!(
            sealer.seal_into(&rtp(2, 1, 0, b"a"), &mut out),
            Ok(PacketIndex::new(1, 2))
        );
        assert_eq!(
            sealer.seal_into(&rtp(2, 9, 0, b"a"), &mut out),
            Ok(PacketIndex::new(0, 2)),
            "another SSRC starts at its own counter"
        );
        for ssrc in 100..100 + MAX_STREAMS as u32 - 2 {
            sealer
                .seal_into(&rtp(1, ssrc, 0, b"a"), &mut out)
                .expect("seal");
        }
        assert_eq!(
            sealer.seal_into(&rtp(1, 5_000, 0, b"a"), &mut out),
            Err(SealError::TooManyStreams)
        );
    }
}
