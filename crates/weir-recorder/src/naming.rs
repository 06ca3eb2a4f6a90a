//! File naming: expansion of the recording rule's template (issue 4).
//!
//! Variables: `{app_id}`, `{record_format}` (`hls`/`mp4`), `{stream}`
//! (default `{room_id}_{user_id}`), `{room_id}`, `{user_id}`,
//! `{file_start_time}` (UTC `YYYY-MM-DD-HH-MM-SS`). An unknown variable or
//! an unsafe result (absolute, `..`, `.`, empty segments, control characters,
//! backslashes, or `#`, `?`, `%`, `"`, which URLs and playlists give a
//! meaning) is an error, so the API can answer 400.

use std::time::SystemTime;

/// The default template.
pub const DEFAULT_TEMPLATE: &str =
    "{app_id}/{record_format}/{stream}_{file_start_time}/{stream}_{file_start_time}";

/// What the variables expand to for one publisher stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamingContext {
    /// Application id.
    pub app_id: String,
    /// Room id.
    pub room_id: String,
    /// User id of the publisher.
    pub user_id: String,
    /// Stream name; `None` = `{room_id}_{user_id}`.
    pub stream: Option<String>,
}

impl NamingContext {
    /// The context of one publisher's stream, named `{room_id}_{user_id}`.
    pub fn new(
        app_id: impl Into<String>,
        room_id: impl Into<String>,
        user_id: impl Into<String>,
    ) -> NamingContext {
        NamingContext {
            app_id: app_id.into(),
            room_id: room_id.into(),
            user_id: user_id.into(),
            stream: None,
        }
    }

    /// The stream name (`{room_id}_{user_id}` unless set).
    pub fn stream_name(&self) -> String {
        self.stream
            .clone()
            .unwrap_or_else(|| format!("{}_{}", self.room_id, self.user_id))
    }
}

/// A template that does not expand to a safe relative path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    /// `{name}` is not a known variable.
    #[error("unknown variable {{{0}}}")]
    UnknownVariable(String),
    /// A `{` without `}`, or a `}` alone.
    #[error("unbalanced braces in naming template")]
    Unbalanced,
    /// The expanded path is absolute, has `.`/`..` or empty segments,
    /// control characters, or `#`, `?`, `%`, `"`.
    #[error("unsafe path {0:?}")]
    UnsafePath(String),
}

/// `YYYY-MM-DD-HH-MM-SS` in UTC.
pub fn file_start_time(at: SystemTime) -> String {
    let at: chrono::DateTime<chrono::Utc> = at.into();
    at.format("%Y-%m-%d-%H-%M-%S").to_string()
}

/// Checks a template without expanding it for real (API validation).
pub fn validate(template: &str) -> Result<(), NamingError> {
    let ctx = NamingContext::new("a", "r", "u");
    expand(template, &ctx, "mp4", SystemTime::UNIX_EPOCH).map(|_| ())
}

/// Expands `template` to a relative path (without extension).
pub fn expand(
    template: &str,
    ctx: &NamingContext,
    record_format: &str,
    start: SystemTime,
) -> Result<String, NamingError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(NamingError::Unbalanced);
        }
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(NamingError::Unbalanced)?;
        let name = &after[..close];
        let value = match name {
            "app_id" => ctx.app_id.clone(),
            "record_format" => record_format.to_owned(),
            "stream" => ctx.stream_name(),
            "room_id" => ctx.room_id.clone(),
            "user_id" => ctx.user_id.clone(),
            "file_start_time" => file_start_time(start),
            other => return Err(NamingError::UnknownVariable(other.to_owned())),
        };
        out.push_str(&value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    check_safe(&out)?;
    Ok(out)
}

fn check_safe(path: &str) -> Result<(), NamingError> {
    let unsafe_path = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        // HLS playlists list files by relative URL: a line starting with
        // `#` is a comment, `#` and `?` end a URL's path, `%` escapes, and
        // `"` ends EXT-X-MAP's quoted URI.
        || path.contains(['#', '?', '%', '"'])
        || path.chars().any(char::is_control)
        || path
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if unsafe_path {
        return Err(NamingError::UnsafePath(path.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ctx() -> NamingContext {
        NamingContext::new("app1", "room", "alice")
    }

    #[test]
    fn default_template_expands() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let p = expand(DEFAULT_TEMPLATE, &ctx(), "hls", t).expect("valid test input");
        assert_eq!(
            p,
            "app1/hls/room_alice_2023-11-14-22-13-20/room_alice_2023-11-14-22-13-20"
        );
    }

    #[test]
    fn unknown_variables_and_unsafe_paths_are_errors() {
        let t = SystemTime::UNIX_EPOCH;
        assert_eq!(
            expand("{nope}", &ctx(), "mp4", t),
            Err(NamingError::UnknownVariable("nope".into()))
        );
        assert_eq!(
            expand("{app_id", &ctx(), "mp4", t),
            Err(NamingError::Unbalanced)
        );
        for bad in ["/abs/{stream}", "a/../b", "a//b", "a/./b", "a/", ""] {
            assert!(
                matches!(
                    expand(bad, &ctx(), "mp4", t),
                    Err(NamingError::UnsafePath(_))
                ),
                "{bad}"
            );
        }
        let mut evil = ctx();
        evil.user_id = "../../etc".into();
        assert!(expand("{user_id}/x", &evil, "mp4", t).is_err());
        evil.user_id = "a\nb".into();
        assert!(expand("{user_id}", &evil, "mp4", t).is_err());
        assert!(validate(DEFAULT_TEMPLATE).is_ok());
    }

    #[test]
    fn characters_with_a_meaning_in_playlists_are_refused() {
        // Found by fuzz/ (segmenter): `{app_id}/#{stream}` was accepted and
        // made HLS playlists whose entries are comments.
        for bad in [
            "{app_id}/#{stream}",
            "{stream}#1",
            "{stream}?v=1",
            "50%/{stream}",
            "a\"b/{stream}",
        ] {
            assert!(
                matches!(validate(bad), Err(NamingError::UnsafePath(_))),
                "{bad}"
            );
        }
        assert!(validate("{app_id}/rec @{room_id}/{user_id}+{file_start_time}").is_ok());
    }
}
