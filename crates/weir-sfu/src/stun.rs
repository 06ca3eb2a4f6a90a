//! Just enough STUN parsing to route a first datagram from an unknown
//! address to the room that owns its ICE username fragment.

/// If `datagram` is a STUN Binding request, returns the local (server)
/// ufrag from its USERNAME attribute (`server_ufrag:client_ufrag`).
pub fn binding_request_server_ufrag(datagram: &[u8]) -> Option<&str> {
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
    const BINDING_REQUEST: u16 = 0x0001;
    const USERNAME: u16 = 0x0006;
    if datagram.len() < 20 || datagram[0] & 0xC0 != 0 || datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    if u16::from_be_bytes([datagram[0], datagram[1]]) != BINDING_REQUEST {
        return None;
    }
    let body_len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(20..20 + body_len)?;
    let mut offset = 0;
    while offset + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[offset], body[offset + 1]]);
        let len = usize::from(u16::from_be_bytes([body[offset + 2], body[offset + 3]]));
        let value = body.get(offset + 4..offset + 4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next().filter(|u| !u.is_empty());
        }
        // Attributes are padded to 4 bytes.
        offset += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// A minimal STUN Binding request carrying only a USERNAME attribute (no
/// integrity): enough to exercise the routing above in tests, fuzz corpora
/// and tools. A real ICE agent refuses it for lack of MESSAGE-INTEGRITY.
pub fn binding_request_with_username(username: &str) -> Vec<u8> {
    let mut attr = Vec::new();
    attr.extend_from_slice(&0x0006u16.to_be_bytes());
    attr.extend_from_slice(&(username.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    attr.extend_from_slice(username.as_bytes());
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    let mut msg = vec![0x00, 0x01];
    msg.extend_from_slice(&(attr.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    msg.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    msg.extend_from_slice(&[7; 12]);
    msg.extend_from_slice(&attr);
    msg
}

/// True for datagrams that look like RTP or RTCP (RFC 7983 demultiplexing:
/// first byte 128..=191).
pub fn looks_like_rtp_or_rtcp(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| (128..=191).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_server_ufrag() {
        assert_eq!(
            binding_request_server_ufrag(&binding_request_with_username("srvA:cli9")),
            Some("srvA")
        );
    }

    #[test]
    fn rejects_non_stun_and_truncated_input() {
        assert_eq!(binding_request_server_ufrag(&[]), None);
        assert_eq!(binding_request_server_ufrag(&[0x80; 40]), None);
        let mut msg = binding_request_with_username("abc:def");
        msg.truncate(msg.len() - 3);
        assert_eq!(binding_request_server_ufrag(&msg), None);
        for len in 0..msg.len() {
            let _ = binding_request_server_ufrag(&msg[..len]);
        }
    }
}
