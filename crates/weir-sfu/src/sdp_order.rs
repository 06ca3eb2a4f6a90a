//! Codec order in SDP answers.
//!
//! A sender uses the first codec of the answer's m-line. str0m lists codecs
//! in its own configuration order, which would override what the publisher
//! asked for (`setCodecPreferences`, or the `codecs` of a `publish`
//! request). This module reorders the payload types of each answered m-line:
//! first the codecs the publisher named, then the offer's own order. Only
//! the order changes; the set of codecs (and str0m's state) stays the same.

use std::collections::HashMap;

/// Per mid: the payload types of the m-line in order, and PT -> codec name.
#[derive(Debug, Default)]
struct MediaSection {
    pts: Vec<String>,
    codec_by_pt: HashMap<String, String>,
}

fn sections(sdp: &str) -> HashMap<String, MediaSection> {
    let mut out = HashMap::new();
    let mut current: Option<MediaSection> = None;
    let mut current_mid: Option<String> = None;
    let flush = |section: Option<MediaSection>,
                 mid: Option<String>,
                 out: &mut HashMap<String, MediaSection>| {
        if let (Some(section), Some(mid)) = (section, mid) {
            out.insert(mid, section);
        }
    };
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("m=") {
            flush(current.take(), current_mid.take(), &mut out);
            let pts = rest.split(' ').skip(3).map(str::to_string).collect();
            current = Some(MediaSection {
                pts,
                codec_by_pt: HashMap::new(),
            });
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            current_mid = Some(mid.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            if let (Some(section), Some((pt, encoding))) = (current.as_mut(), rest.split_once(' '))
            {
                let name = encoding
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                section.codec_by_pt.insert(pt.to_string(), name);
            }
        }
    }
    flush(current, current_mid, &mut out);
    out
}

/// The mids of an SDP's m-lines of one media type (`audio`, `video`).
pub fn mids_of_kind(sdp: &str, kind: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current_kind: Option<&str> = None;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("m=") {
            current_kind = rest.split(' ').next();
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            if current_kind == Some(kind) {
                out.push(mid.trim().to_string());
            }
        }
    }
    out
}

/// Reorders the payload types of each m-line of `answer`: codecs named in
/// `preferences[mid]` first (in that order), then by position in `offer`.
/// Also used on server offers, with the client's last offer as reference,
/// so a re-offer keeps each publication's codec order.
pub fn order_answer_codecs(
    answer: &str,
    offer: &str,
    preferences: &HashMap<String, Vec<String>>,
) -> String {
    let offered = sections(offer);
    let answered = sections(answer);
    let mut out = String::with_capacity(answer.len());
    let lines: Vec<&str> = answer.split("\r\n").collect();
    // Map line index of each m= line to its mid (the a=mid after it).
    let mut mid_of_m_line: HashMap<usize, String> = HashMap::new();
    let mut last_m: Option<usize> = None;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("m=") {
            last_m = Some(i);
        } else if let (Some(m), Some(mid)) = (last_m, line.strip_prefix("a=mid:")) {
            mid_of_m_line.insert(m, mid.trim().to_string());
        }
    }
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let reordered = mid_of_m_line.get(&i).and_then(|mid| {
            let ours = answered.get(mid)?;
            let theirs = offered.get(mid);
            let wanted: Vec<String> = preferences
                .get(mid)
                .map(|p| p.iter().map(|c| c.to_ascii_uppercase()).collect())
                .unwrap_or_default();
            let mut pts = ours.pts.clone();
            pts.sort_by_key(|pt| {
                let codec = ours.codec_by_pt.get(pt).map(String::as_str).unwrap_or("");
                let preferred = wanted
                    .iter()
                    .position(|w| w == codec)
                    .unwrap_or(wanted.len());
                let offered_at = theirs
                    .and_then(|t| t.pts.iter().position(|p| p == pt))
                    .unwrap_or(usize::MAX);
                (preferred, offered_at)
            });
            let head: Vec<&str> = line.splitn(4, ' ').take(3).collect();
            if head.len() < 3 || pts.is_empty() {
                return None;
            }
            Some(format!("{} {}", head.join(" "), pts.join(" ")))
        });
        match reordered {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102 103 96 97\r\na=mid:0\r\na=rtpmap:102 H264/90000\r\na=rtpmap:103 rtx/90000\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n";
    const ANSWER: &str = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=rtpmap:102 H264/90000\r\na=rtpmap:103 rtx/90000\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn follows_the_offer_order() {
        let out = order_answer_codecs(ANSWER, OFFER, &HashMap::new());
        assert!(
            out.contains("m=video 9 UDP/TLS/RTP/SAVPF 102 103 96 97\r\n"),
            "{out}"
        );
        assert!(out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"));
        assert_eq!(out.len(), ANSWER.len());
    }

    #[test]
    fn explicit_preferences_come_first() {
        let prefs = HashMap::from([("0".to_string(), vec!["vp8".to_string()])]);
        let out = order_answer_codecs(ANSWER, OFFER, &prefs);
        assert!(
            out.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 102 103 97\r\n"),
            "{out}"
        );
    }

    #[test]
    fn finds_the_mids_of_a_kind() {
        assert_eq!(mids_of_kind(OFFER, "video"), vec!["0".to_string()]);
        assert_eq!(mids_of_kind(OFFER, "audio"), vec!["1".to_string()]);
        assert!(mids_of_kind(OFFER, "application").is_empty());
    }

    #[test]
    fn garbage_is_left_alone() {
        for text in ["", "m=", "m=video\r\na=mid:0", "a=mid:0\r\nm=video 9 X"] {
            let _ = order_answer_codecs(text, text, &HashMap::new());
        }
    }
}
