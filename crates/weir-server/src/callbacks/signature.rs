//! `X-Weir-Signature` = hex HMAC-SHA256(key, timestamp + "." + raw body).
//!
//! Signing the timestamp with the body lets receivers refuse replays: a
//! receiver checks the signature and that the timestamp is recent.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "X-Weir-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Weir-Signature";

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC is defined for keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The lowercase hex signature of `body` sent at `timestamp` (the decimal
/// milliseconds put in `X-Weir-Timestamp`).
pub fn sign(key: &str, timestamp: &str, body: &[u8]) -> String {
    hex::encode(mac(key, timestamp, body).finalize().into_bytes())
}

/// Checks a signature in constant time.
pub fn verify(key: &str, timestamp: &str, body: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    mac(key, timestamp, body).verify_slice(&signature).is_ok()
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn the_primitive_matches_rfc_4231_test_case_2() {
        let key = "Jefe";
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("any key");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac.finalize().into_bytes()), expected);
    }

    #[test]
    fn a_different_implementation_agrees() {
        // Python's hmac module is not ours: it must compute the same value.
        let key = "k3yK3yk3yK3yk3yK3yk3yK3yk3yK3y42";
        let timestamp = "1763880000123";
        let body = br#"{"event_id":"ev_1","event_type":"ROOM_CREATED","room_id":"r"}"#;
        let ours = sign(key, timestamp, body);
        let script = "import hmac,hashlib,sys\nkey,ts,body=sys.argv[1],sys.argv[2],sys.argv[3]\nprint(hmac.new(key.encode(),(ts+'.'+body).encode(),hashlib.sha256).hexdigest())";
        let output = Command::new("python3")
            .args(["-c", script, key, timestamp])
            .arg(std::str::from_utf8(body).expect("utf-8"))
            .output()
            .expect("python3 runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), ours);
    }

    #[test]
    fn verify_accepts_only_the_right_signature() {
        let signature = sign("key", "1", b"body");
        assert!(verify("key", "1", b"body", &signature));
        assert!(verify("key", "1", b"body", &signature.to_uppercase()));
        assert!(!verify("key", "2", b"body", &signature));
        assert!(!verify("key", "1", b"body!", &signature));
        assert!(!verify("other", "1", b"body", &signature));
        assert!(!verify("key", "1", b"body", "not hex"));
        assert!(!verify("key", "1", b"body", ""));
    }
}
