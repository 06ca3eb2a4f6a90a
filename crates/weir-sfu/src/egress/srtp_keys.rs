//! SRTP keys for the AEAD profiles (RFC 7714): the master key and salt one
//! direction of a DTLS-SRTP session uses, and the session keys derived from
//! them (RFC 3711 section 4.3, key derivation rate 0).
//!
//! DTLS exports `2 * (key + salt)` bytes (RFC 5764 section 4.2): the
//! client's write key, the server's write key, the client's write salt, the
//! server's write salt. The DTLS client sends with the first key and salt.

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::iv::FixedLength;
use zeroize::{Zeroize, Zeroizing};

/// The SRTP protection profiles Weir seals itself: AES-GCM, which every
/// browser offers and str0m's DTLS prefers. (AES-CM with HMAC-SHA1 stays
/// with str0m.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AeadProfile {
    /// SRTP_AEAD_AES_128_GCM: 16-byte key.
    Aes128Gcm,
    /// SRTP_AEAD_AES_256_GCM: 32-byte key.
    Aes256Gcm,
}

/// Both AEAD profiles use a 96-bit salt (RFC 7714 section 12).
pub const SALT_LEN: usize = 12;

/// The authentication tag appended to every sealed packet.
pub const TAG_LEN: usize = 16;

impl AeadProfile {
    /// The profile DTLS negotiated, when it is one Weir seals itself.
    pub fn from_dtls(profile: str0m::crypto::dtls::SrtpProfile) -> Option<AeadProfile> {
        use str0m::crypto::dtls::SrtpProfile;
        match profile {
            SrtpProfile::AEAD_AES_128_GCM => Some(AeadProfile::Aes128Gcm),
            SrtpProfile::AEAD_AES_256_GCM => Some(AeadProfile::Aes256Gcm),
            _ => None,
        }
    }

    pub const fn key_len(self) -> usize {
        match self {
            AeadProfile::Aes128Gcm => 16,
            AeadProfile::Aes256Gcm => 32,
        }
    }

    /// Length of the keying material DTLS exports for this profile.
    pub const fn keying_material_len(self) -> usize {
        2 * (self.key_len() + SALT_LEN)
    }
}

/// What a key derivation is for (RFC 3711 section 4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfLabel {
    RtpEncryption = 0x00,
    RtpSalt = 0x02,
    RtcpEncryption = 0x03,
    RtcpSalt = 0x05,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{profile:?} needs {expected} bytes of {what}, got {got}")]
    Length {
        profile: AeadProfile,
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("the crypto library refused the key")]
    Crypto,
}

/// A key of either kind with its salt. Zeroed when dropped; printing it
/// shows only the profile.
struct KeyAndSalt {
    profile: AeadProfile,
    /// The first `profile.key_len()` bytes are the key.
    key: Zeroizing<[u8; 32]>,
    salt: Zeroizing<[u8; SALT_LEN]>,
}

impl std::fmt::Debug for KeyAndSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAndSalt")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl KeyAndSalt {
    fn zeroed(profile: AeadProfile) -> KeyAndSalt {
        KeyAndSalt {
            profile,
            key: Zeroizing::new([0u8; 32]),
            salt: Zeroizing::new([0u8; SALT_LEN]),
        }
    }

    fn key(&self) -> &[u8] {
        &self.key[..self.profile.key_len()]
    }

    fn key_mut(&mut self) -> &mut [u8] {
        &mut self.key[..self.profile.key_len()]
    }
}

/// One direction's SRTP master key and salt.
#[derive(Debug)]
pub struct MasterKey(KeyAndSalt);

impl MasterKey {
    pub fn new(profile: AeadProfile, key: &[u8], salt: &[u8]) -> Result<MasterKey, KeyError> {
        let length = |what, expected, got| KeyError::Length {
            profile,
            what,
            expected,
            got,
        };
        if key.len() != profile.key_len() {
            return Err(length("master key", profile.key_len(), key.len()));
        }
        let salt: [u8; SALT_LEN] = salt
            .try_into()
            .map_err(|_| length("master salt", SALT_LEN, salt.len()))?;
        let mut master = KeyAndSalt::zeroed(profile);
        master.key_mut().copy_from_slice(key);
        *master.salt = salt;
        Ok(MasterKey(master))
    }

    /// The master key and salt one end of a DTLS-SRTP session *sends* with,
    /// from the exported keying material. `dtls_client`: that end was the
    /// DTLS client (active).
    pub fn outbound(
        profile: AeadProfile,
        keying_material: &[u8],
        dtls_client: bool,
    ) -> Result<MasterKey, KeyError> {
        Self::half(profile, keying_material, dtls_client)
    }

    /// The master key and salt that end *receives* with (the peer's
    /// outbound key).
    pub fn inbound(
        profile: AeadProfile,
        keying_material: &[u8],
        dtls_client: bool,
    ) -> Result<MasterKey, KeyError> {
        Self::half(profile, keying_material, !dtls_client)
    }

    fn half(
        profile: AeadProfile,
        keying_material: &[u8],
        client_half: bool,
    ) -> Result<MasterKey, KeyError> {
        let key_len = profile.key_len();
        if keying_material.len() != profile.keying_material_len() {
            return Err(KeyError::Length {
                profile,
                what: "keying material",
                expected: profile.keying_material_len(),
                got: keying_material.len(),
            });
        }
        let (key_at, salt_at) = if client_half {
            (0, 2 * key_len)
        } else {
            (key_len, 2 * key_len + SALT_LEN)
        };
        MasterKey::new(
            profile,
            &keying_material[key_at..key_at + key_len],
            &keying_material[salt_at..salt_at + SALT_LEN],
        )
    }

    pub fn profile(&self) -> AeadProfile {
        self.0.profile
    }

    /// Fills `out` with the key stream of RFC 3711's AES-CM PRF for `label`
    /// (key derivation rate 0, so the index part is zero). The 96-bit salt
    /// takes the high bytes of the 112-bit `x` (RFC 7714 section 11), the
    /// label is XORed in at byte 7.
    pub fn derive(&self, label: KdfLabel, out: &mut [u8]) -> Result<(), KeyError> {
        let mut x = [0u8; 14];
        x[..SALT_LEN].copy_from_slice(&self.0.salt[..]);
        x[7] ^= label as u8;
        aes_cm_prf(self.0.profile, self.0.key(), &x, out)
    }

    /// The key and salt that seal RTP packets.
    pub fn rtp_session_key(&self) -> Result<SessionKey, KeyError> {
        self.session_key(KdfLabel::RtpEncryption, KdfLabel::RtpSalt)
    }

    /// The key and salt that seal RTCP packets.
    pub fn rtcp_session_key(&self) -> Result<SessionKey, KeyError> {
        self.session_key(KdfLabel::RtcpEncryption, KdfLabel::RtcpSalt)
    }

    fn session_key(&self, key: KdfLabel, salt: KdfLabel) -> Result<SessionKey, KeyError> {
        let mut session = KeyAndSalt::zeroed(self.0.profile);
        self.derive(key, session.key_mut())?;
        self.derive(salt, &mut session.salt[..])?;
        Ok(SessionKey(session))
    }
}

/// RFC 3711's PRF: the AES counter-mode key stream from the block
/// `x || 0x0000` (the last two bytes count blocks), AES-128 or AES-256 as
/// the profile's key (RFC 6188 for 256).
fn aes_cm_prf(
    profile: AeadProfile,
    key: &[u8],
    x: &[u8; 14],
    out: &mut [u8],
) -> Result<(), KeyError> {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(x);
    let algorithm = match profile {
        AeadProfile::Aes128Gcm => &AES_128,
        AeadProfile::Aes256Gcm => &AES_256,
    };
    let key = UnboundCipherKey::new(algorithm, key).map_err(|_| KeyError::Crypto)?;
    let ctr = EncryptingKey::ctr(key).map_err(|_| KeyError::Crypto)?;
    out.zeroize();
    ctr.less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| KeyError::Crypto)?;
    Ok(())
}

/// A derived session key and salt (the input of the AEAD cipher).
#[derive(Debug)]
pub struct SessionKey(KeyAndSalt);

impl SessionKey {
    pub fn profile(&self) -> AeadProfile {
        self.0.profile
    }

    pub fn key(&self) -> &[u8] {
        self.0.key()
    }

    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.0.salt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 3711 appendix B.3 (AES-128, 112-bit salt, rate 0): the PRF
    /// itself, which the AEAD profiles use with a zero-padded 96-bit salt.
    #[test]
    fn prf_matches_rfc_3711_vectors() {
        let key = unhex("e1f97a0d3e018be0d64fa32c06de4139");
        let salt: [u8; 14] = unhex("0ec675ad498afeebb6960b3aabe6")
            .try_into()
            .expect("14 bytes");
        let mut cipher_key = [0u8; 16];
        aes_cm_prf(AeadProfile::Aes128Gcm, &key, &salt, &mut cipher_key).expect("prf");
        assert_eq!(
            cipher_key.to_vec(),
            unhex("c61e7a93744f39ee10734afe3ff7a087")
        );
        let mut x = salt;
        x[7] ^= KdfLabel::RtpSalt as u8;
        let mut cipher_salt = [0u8; 14];
        aes_cm_prf(AeadProfile::Aes128Gcm, &key, &x, &mut cipher_salt).expect("prf");
        assert_eq!(cipher_salt.to_vec(), unhex("30cbbc08863d8c85d49db34a9ae1"));
    }

    #[test]
    fn derive_puts_the_96_bit_salt_and_label_where_the_prf_expects() {
        let key = unhex("e1f97a0d3e018be0d64fa32c06de4139");
        let salt = unhex("0ec675ad498afeebb6960b3a");
        let master = MasterKey::new(AeadProfile::Aes128Gcm, &key, &salt).expect("lengths");
        let mut derived = [0u8; 12];
        master
            .derive(KdfLabel::RtcpSalt, &mut derived)
            .expect("derive");
        let mut x = [0u8; 14];
        x[..12].copy_from_slice(&salt);
        x[7] ^= 0x05;
        let mut expected = [0u8; 12];
        aes_cm_prf(AeadProfile::Aes128Gcm, &key, &x, &mut expected).expect("prf");
        assert_eq!(derived, expected);
    }

    #[test]
    fn keying_material_is_split_by_role() {
        let profile = AeadProfile::Aes128Gcm;
        let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
        let client_out = MasterKey::outbound(profile, &material, true).expect("split");
        let server_in = MasterKey::inbound(profile, &material, false).expect("split");
        let server_out = MasterKey::outbound(profile, &material, false).expect("split");
        assert_eq!(client_out.0.key(), &material[0..16]);
        assert_eq!(&client_out.0.salt[..], &material[32..44]);
        assert_eq!(server_in.0.key(), client_out.0.key());
        assert_eq!(server_out.0.key(), &material[16..32]);
        assert_eq!(&server_out.0.salt[..], &material[44..56]);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let short = [0u8; 10];
        assert!(matches!(
            MasterKey::outbound(AeadProfile::Aes256Gcm, &short, true),
            Err(KeyError::Length { got: 10, .. })
        ));
        assert!(MasterKey::new(AeadProfile::Aes256Gcm, &[0; 16], &[0; 12]).is_err());
        assert!(MasterKey::new(AeadProfile::Aes128Gcm, &[0; 16], &[0; 14]).is_err());
    }

    #[test]
    fn labels_give_different_keys_and_debug_hides_them() {
        let master = MasterKey::new(AeadProfile::Aes256Gcm, &[7; 32], &[9; 12]).expect("lengths");
        let rtp = master.rtp_session_key().expect("derive");
        let rtcp = master.rtcp_session_key().expect("derive");
        assert_eq!(rtp.key().len(), 32);
        assert_ne!(rtp.key(), rtcp.key());
        assert_ne!(rtp.salt(), rtcp.salt());
        assert_ne!(rtp.key(), &[7; 32]);
        let printed = format!("{master:?} {rtp:?}");
        assert!(!printed.contains("[7"), "{printed}");
    }
}
