//! SRTP-like sealing for the ceiling: AES-256-GCM over the payload with
//! the RTP header as associated data and an RFC 7714 style IV (salt XOR
//! SSRC and packet index), the same work per packet as real SRTP-GCM.

use anyhow::anyhow;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

/// RTP header (12 bytes) plus a one-byte-extension block of 8 bytes.
pub const HEADER_LEN: usize = 20;
pub const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const SALT_LEN: usize = 12;

/// The key and salt of one direction.
pub struct Key {
    cipher: LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").finish_non_exhaustive()
    }
}

impl Key {
    /// A key derived from `seed` (each direction its own).
    pub fn new(seed: u8) -> anyhow::Result<Key> {
        let bytes: [u8; KEY_LEN] =
            std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8));
        let cipher = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| anyhow!("AES key"))?;
        Ok(Key {
            cipher: LessSafeKey::new(cipher),
            salt: std::array::from_fn(|i| seed ^ (i as u8)),
        })
    }

    fn nonce(&self, ssrc: u32, index: u64) -> Nonce {
        let mut iv = [0u8; SALT_LEN];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
        for (byte, salt) in iv.iter_mut().zip(self.salt) {
            *byte ^= salt;
        }
        Nonce::assume_unique_for_key(iv)
    }

    /// Seals the packet at `packet[start..]` in place (its first
    /// [`HEADER_LEN`] bytes as associated data) and appends the tag.
    pub fn seal(
        &self,
        packet: &mut Vec<u8>,
        start: usize,
        ssrc: u32,
        index: u64,
    ) -> anyhow::Result<()> {
        let rest = packet
            .get_mut(start..)
            .filter(|rest| rest.len() >= HEADER_LEN)
            .ok_or_else(|| anyhow!("a packet shorter than its header"))?;
        let (header, payload) = rest.split_at_mut(HEADER_LEN);
        let tag = self
            .cipher
            .seal_in_place_separate_tag(self.nonce(ssrc, index), Aad::from(&*header), payload)
            .map_err(|_| anyhow!("seal"))?;
        packet.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens a packet sealed by [`Key::seal`] (with its sequence number as
    /// the index) in place: the payload's length, or `None` when it is
    /// too short or does not authenticate.
    pub fn open(&self, packet: &mut [u8]) -> Option<usize> {
        if packet.len() < HEADER_LEN + TAG_LEN {
            return None;
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let (header, rest) = packet.split_at_mut(HEADER_LEN);
        let nonce = self.nonce(ssrc, u64::from(seq));
        self.cipher
            .open_in_place(nonce, Aad::from(&*header), rest)
            .ok()
            .map(|plain| plain.len())
    }
}

/// Appends an RTP header with an 8-byte one-byte-extension block (a mid
/// and a two-byte value, as forwarded packets carry).
pub fn write_header(out: &mut Vec<u8>, seq: u16, timestamp: u32, ssrc: u32, payload_type: u8) {
    out.extend_from_slice(&[0x90, payload_type]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x10, b'0', 0x21, 0x00]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(key: &Key, seq: u16) -> Vec<u8> {
        let mut packet = Vec::new();
        write_header(&mut packet, seq, 90_000, 0x1234_5678, 96);
        packet.extend_from_slice(&[7u8; 300]);
        key.seal(&mut packet, 0, 0x1234_5678, u64::from(seq))
            .expect("seals");
        packet
    }

    #[test]
    fn a_sealed_packet_opens_with_its_key_only() {
        let key = Key::new(3).expect("key");
        let mut packet = sealed(&key, 41);
        assert_eq!(packet.len(), HEADER_LEN + 300 + TAG_LEN);
        assert_ne!(&packet[HEADER_LEN..HEADER_LEN + 300], &[7u8; 300][..]);
        let mut other = packet.clone();
        assert_eq!(key.open(&mut packet), Some(300));
        assert_eq!(&packet[HEADER_LEN..HEADER_LEN + 300], &[7u8; 300][..]);
        assert_eq!(Key::new(4).expect("key").open(&mut other), None);
    }

    #[test]
    fn a_changed_header_or_a_short_packet_does_not_open() {
        let key = Key::new(1).expect("key");
        let mut packet = sealed(&key, 7);
        packet[4] ^= 1;
        assert_eq!(key.open(&mut packet), None);
        assert_eq!(key.open(&mut [0u8; HEADER_LEN + TAG_LEN - 1]), None);
        let mut short = vec![0u8; 5];
        assert!(key.seal(&mut short, 0, 1, 1).is_err());
    }
}
