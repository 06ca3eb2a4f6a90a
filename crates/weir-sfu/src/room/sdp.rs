//! SDP helpers of the room: what an offer sends, and parsing with the
//! leniency real peers need.

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

pub(crate) fn parse_offer(sdp: &str) -> Result<SdpOffer, String> {
    SdpOffer::from_sdp_string(&with_bundle_group(sdp)).map_err(|e| e.to_string())
}

/// RFC 8843 leaves out an empty BUNDLE group (every m-line rejected), but
/// str0m requires `a=group`: add an explicit empty one so such an SDP is
/// accepted.
pub(crate) fn with_bundle_group(sdp: &str) -> std::borrow::Cow<'_, str> {
    if sdp.contains("\na=group:") || !sdp.contains("\nm=") {
        return std::borrow::Cow::Borrowed(sdp);
    }
    match sdp.find("\nm=") {
        Some(at) => {
            let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
            let mut fixed = String::with_capacity(sdp.len() + 20);
            fixed.push_str(&sdp[..at + 1]);
            fixed.push_str("a=group:BUNDLE");
            fixed.push_str(eol);
            fixed.push_str(&sdp[at + 1..]);
            std::borrow::Cow::Owned(fixed)
        }
        None => std::borrow::Cow::Borrowed(sdp),
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
