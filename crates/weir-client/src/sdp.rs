//! Small SDP text helpers. The client never needs a full SDP model: it only
//! points the server's ICE candidates somewhere else (a test proxy) and
//! reads a few attributes.

use std::net::SocketAddr;

/// Rewrites the address of every UDP `a=candidate` line in `sdp` to `to`,
/// leaving everything else byte-for-byte unchanged. Used to route a client's
/// media through [`crate::lossy_proxy::LossyUdpProxy`] without touching the
/// server.
pub fn rewrite_candidates(sdp: &str, to: SocketAddr) -> String {
    let mut out = String::with_capacity(sdp.len() + 32);
    for line in sdp.split_inclusive('\n') {
        let (body, ending) = split_line_ending(line);
        match rewrite_candidate_line(body, to) {
            Some(rewritten) => {
                out.push_str(&rewritten);
                out.push_str(ending);
            }
            None => out.push_str(line),
        }
    }
    out
}

fn split_line_ending(line: &str) -> (&str, &str) {
    if let Some(body) = line.strip_suffix("\r\n") {
        (body, "\r\n")
    } else if let Some(body) = line.strip_suffix('\n') {
        (body, "\n")
    } else {
        (line, "")
    }
}

/// `a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...`
fn rewrite_candidate_line(line: &str, to: SocketAddr) -> Option<String> {
    let rest = line.strip_prefix("a=candidate:")?;
    let mut fields: Vec<&str> = rest.split(' ').collect();
    if fields.len() < 6 || !fields[2].eq_ignore_ascii_case("udp") {
        return None;
    }
    let ip = to.ip().to_string();
    let port = to.port().to_string();
    fields[4] = &ip;
    fields[5] = &port;
    Some(format!("a=candidate:{}", fields.join(" ")))
}

/// The UDP candidate addresses in `sdp` (host, srflx, ... alike).
pub fn candidate_addrs(sdp: &str) -> Vec<SocketAddr> {
    sdp.lines()
        .filter_map(|line| line.trim_end().strip_prefix("a=candidate:"))
        .filter_map(|rest| {
            let fields: Vec<&str> = rest.split(' ').collect();
            if fields.len() < 6 || !fields[2].eq_ignore_ascii_case("udp") {
                return None;
            }
            let ip = fields[4].parse().ok()?;
            let port = fields[5].parse().ok()?;
            Some(SocketAddr::new(ip, port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
o=- 1 2 IN IP4 0.0.0.0\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:0\r\n\
a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n\
a=candidate:2 1 tcp 1518280447 127.0.0.1 40001 typ host tcptype passive\r\n\
a=end-of-candidates\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=mid:1\r\n\
a=candidate:1 1 UDP 2130706431 127.0.0.1 40000 typ host\r\n";

    #[test]
    fn rewrites_only_udp_candidates_and_keeps_the_rest() {
        let to: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
        let out = rewrite_candidates(OFFER, to);
        assert_eq!(
            out.lines()
                .filter(|l| l.contains(" 127.0.0.1 5555 "))
                .count(),
            2
        );
        assert!(out.contains(
            "a=candidate:2 1 tcp 1518280447 127.0.0.1 40001 typ host tcptype passive\r\n"
        ));
        assert!(out.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 5555 typ host\r\n"));
        assert_eq!(out.len(), OFFER.len() - 2);
        let restored = rewrite_candidates(&out, "127.0.0.1:40000".parse().expect("addr"));
        assert_eq!(restored, OFFER);
        assert_eq!(candidate_addrs(&out), vec![to, to]);
    }

    #[test]
    fn tolerates_lf_only_and_garbage() {
        let sdp = "a=candidate:x\na=candidate:1 1 udp 1 ::1 9 typ host\nm=video 9\n";
        let to: SocketAddr = "10.0.0.1:7".parse().expect("addr");
        let out = rewrite_candidates(sdp, to);
        assert_eq!(
            out,
            "a=candidate:x\na=candidate:1 1 udp 1 10.0.0.1 7 typ host\nm=video 9\n"
        );
        assert_eq!(rewrite_candidates("", to), "");
    }
}
