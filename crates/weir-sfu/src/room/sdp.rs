//! SDP helpers of the room: what an offer sends, and parsing with the
//! leniency real peers need.

use std::borrow::Cow;

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::Direction;

/// True when no m-line of the offer sends media.
pub(crate) fn offer_sends_nothing(offer: &SdpOffer) -> bool {
    !offer
        .media_lines
        .iter()
        .any(|m| !m.disabled && matches!(m.direction(), Direction::SendOnly | Direction::SendRecv))
}

pub(crate) fn sends_media(offer: &SdpOffer) -> bool {
    !offer_sends_nothing(offer)
}

pub(crate) fn parse_answer(sdp: &str) -> Result<SdpAnswer, String> {
    SdpAnswer::from_sdp_string(&with_bundle_group(sdp)).map_err(|e| e.to_string())
}

/// A client's offer, without TWCC on the m-lines only the server sends on
/// (see [`without_downlink_twcc`]).
pub(crate) fn parse_offer(sdp: &str) -> Result<SdpOffer, String> {
    let sdp = without_downlink_twcc(sdp, SdpAuthor::Client);
    SdpOffer::from_sdp_string(&with_bundle_group(&sdp)).map_err(|e| e.to_string())
}

/// The URI of the transport-wide congestion control header extension.
const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Who wrote an SDP: it decides which direction attribute means "only the
/// server sends on this m-line".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SdpAuthor {
    Server,
    Client,
}

/// Drops the transport-wide congestion control extension (TWCC) from the
/// m-lines on which only the server sends, in an offer the server makes or
/// an offer a client makes (before str0m answers it, so its answer and its
/// per-m-line state agree).
///
/// TWCC feedback is what a sender's bandwidth estimator runs on. Weir runs
/// none for its downlinks (subscribers choose their simulcast layer), so on
/// a server-to-subscriber m-line the extension only costs: str0m keeps a
/// 1000-packet TWCC send history per session (~88 KiB, a third of a
/// subscriber's memory), writes the extension into every packet, and
/// decrypts and parses the feedback each subscriber sends ~10 times a
/// second. Publishers' m-lines keep it: their browsers' own bandwidth
/// estimation runs on the server's feedback.
pub(crate) fn without_downlink_twcc(sdp: &str, author: SdpAuthor) -> Cow<'_, str> {
    if !sdp.contains(TRANSPORT_CC_URI) {
        return Cow::Borrowed(sdp);
    }
    let server_sends_only = match author {
        SdpAuthor::Server => "a=sendonly",
        SdpAuthor::Client => "a=recvonly",
    };
    let lines: Vec<&str> = sdp.split_inclusive('\n').collect();
    // Only a well-formed `a=extmap:<id>[/<direction>] <uri>` line is
    // removed. Anything else that mentions the URI (two attributes run
    // together by a stray CR, trailing junk) is left for the parser to
    // judge: removing it would accept an offer str0m refuses.
    let is_twcc = |line: &str| {
        let content = line.strip_suffix('\n').unwrap_or(line);
        let content = content.strip_suffix('\r').unwrap_or(content);
        content
            .strip_prefix("a=extmap:")
            .and_then(|rest| rest.split_once(' '))
            .is_some_and(|(id, uri)| {
                uri == TRANSPORT_CC_URI
                    && !id.is_empty()
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'/')
            })
    };
    let mut kept = String::with_capacity(sdp.len());
    let mut section_start = 0;
    while section_start < lines.len() {
        // A section runs to the next m= line (the first is the session's).
        let section_end = lines[section_start + 1..]
            .iter()
            .position(|l| l.starts_with("m="))
            .map_or(lines.len(), |at| section_start + 1 + at);
        let section = &lines[section_start..section_end];
        let downlink = section[0].starts_with("m=")
            && section.iter().any(|l| l.trim_end() == server_sends_only);
        for line in section {
            if !(downlink && is_twcc(line)) {
                kept.push_str(line);
            }
        }
        section_start = section_end;
    }
    Cow::Owned(kept)
}

/// RFC 8843 leaves out an empty BUNDLE group (every m-line rejected), but
/// str0m requires `a=group`: add an explicit empty one so such an SDP is
/// accepted.
pub(crate) fn with_bundle_group(sdp: &str) -> Cow<'_, str> {
    if sdp.contains("\na=group:") || !sdp.contains("\nm=") {
        return Cow::Borrowed(sdp);
    }
    match sdp.find("\nm=") {
        Some(at) => {
            let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
            let mut fixed = String::with_capacity(sdp.len() + 20);
            fixed.push_str(&sdp[..at + 1]);
            fixed.push_str("a=group:BUNDLE");
            fixed.push_str(eol);
            fixed.push_str(&sdp[at + 1..]);
            Cow::Owned(fixed)
        }
        None => Cow::Borrowed(sdp),
    }
}

/// Runs one SDP step of str0m (accepting an offer or an answer), turning a
/// panic into an error: str0m 0.25 asserts on some payload type mappings of
/// the remote (one PT for two codecs across bundled m-lines: "Pt locked
/// multiple times") instead of refusing them. After a panic the `Rtc` is
/// inconsistent: the caller drops it (ends the session).
pub(crate) fn without_panic<T>(step: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).map_err(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("the SDP cannot be applied ({reason})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_OFFER: &str = "v=0\r\n\
o=- 1 2 IN IP4 0.0.0.0\r\n\
s=-\r\n\
a=group:BUNDLE 0 1 2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=mid:0\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=recvonly\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=mid:1\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=sendonly\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=mid:2\r\n\
a=extmap:3/sendrecv http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=sendrecv\r\n";

    fn twcc_by_mid(sdp: &str) -> Vec<(String, bool)> {
        sdp.split("m=")
            .skip(1)
            .map(|section| {
                let mid = section
                    .lines()
                    .find_map(|l| l.strip_prefix("a=mid:"))
                    .unwrap_or_default()
                    .to_string();
                (mid, section.contains(TRANSPORT_CC_URI))
            })
            .collect()
    }

    #[test]
    fn a_server_offer_loses_twcc_only_where_the_server_only_sends() {
        let out = without_downlink_twcc(SERVER_OFFER, SdpAuthor::Server);
        assert_eq!(
            twcc_by_mid(&out),
            [("0".into(), true), ("1".into(), false), ("2".into(), true)]
        );
        // Everything else is kept, byte for byte.
        let removed = SERVER_OFFER.len() - out.len();
        let line = "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n";
        assert_eq!(removed, line.len());
        assert!(out.contains("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendonly"));
    }

    #[test]
    fn a_client_offer_loses_twcc_on_its_recvonly_lines() {
        let out = without_downlink_twcc(SERVER_OFFER, SdpAuthor::Client);
        assert_eq!(
            twcc_by_mid(&out),
            [("0".into(), false), ("1".into(), true), ("2".into(), true)]
        );
    }

    #[test]
    fn sdp_without_twcc_or_with_bare_newlines_is_handled() {
        let plain = "v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=mid:0\na=sendonly\n";
        assert!(matches!(
            without_downlink_twcc(plain, SdpAuthor::Server),
            Cow::Borrowed(_)
        ));
        let lf = SERVER_OFFER.replace("\r\n", "\n");
        let out = without_downlink_twcc(&lf, SdpAuthor::Server);
        assert_eq!(
            twcc_by_mid(&out),
            [("0".into(), true), ("1".into(), false), ("2".into(), true)]
        );
        // Garbage is passed through, not refused here (the parser does that).
        let junk = "m=\na=sendonly\na=extmap:1 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
        assert_eq!(
            without_downlink_twcc(junk, SdpAuthor::Server),
            "m=\na=sendonly\n"
        );
        // Two attributes run together by a stray CR (found by the whip_whep
        // fuzz target): removing the "line" would hide the malformed
        // attribute from the parser, which refuses the raw offer.
        let joined = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\rAa=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\na=recvonly\r\n";
        assert_eq!(without_downlink_twcc(joined, SdpAuthor::Client), joined);
        let trailing = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\ru\na=recvonly\r\n";
        assert_eq!(without_downlink_twcc(trailing, SdpAuthor::Client), trailing);
    }
}
