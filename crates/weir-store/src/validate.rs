//! The rules on application fields and listings, checked before any write.
//!
//! Lengths count characters (Unicode scalar values), not bytes.

use std::collections::HashSet;

use crate::error::StoreError;
use crate::model::Tag;

pub const NAME_MAX_CHARS: usize = 64;
pub const DESCRIPTION_MAX_CHARS: usize = 300;
pub const MAX_TAGS: usize = 20;
pub const TAG_KEY_MAX_CHARS: usize = 64;
pub const TAG_VALUE_MAX_CHARS: usize = 256;
pub const MAX_PAGE_SIZE: u32 = 100;
/// The last page a listing may ask for (keeps offsets small).
pub const MAX_PAGE: u32 = 1_000_000;

/// 1–64 ASCII letters, digits, `-` and `_`. Names need not be unique.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::invalid("name", "must not be empty"));
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(StoreError::invalid(
            "name",
            format!("must be at most {NAME_MAX_CHARS} characters"),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(StoreError::invalid(
            "name",
            "may contain only letters, digits, '-' and '_'",
        ));
    }
    Ok(())
}

/// At most 300 characters; no control characters other than tab and newlines.
pub fn validate_description(description: &str) -> Result<(), StoreError> {
    if description.chars().count() > DESCRIPTION_MAX_CHARS {
        return Err(StoreError::invalid(
            "description",
            format!("must be at most {DESCRIPTION_MAX_CHARS} characters"),
        ));
    }
    if has_control(description, &['\t', '\n', '\r']) {
        return Err(StoreError::invalid(
            "description",
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// At most 20 tags with distinct keys; a key is 1–64 characters, a value at
/// most 256; neither holds control characters.
pub fn validate_tags(tags: &[Tag]) -> Result<(), StoreError> {
    if tags.len() > MAX_TAGS {
        return Err(StoreError::invalid(
            "tags",
            format!("at most {MAX_TAGS} tags are allowed"),
        ));
    }
    let mut keys = HashSet::new();
    for tag in tags {
        let key_len = tag.key.chars().count();
        if key_len == 0 || key_len > TAG_KEY_MAX_CHARS {
            return Err(StoreError::invalid(
                "tags",
                format!("a tag key must be 1 to {TAG_KEY_MAX_CHARS} characters"),
            ));
        }
        if tag.value.chars().count() > TAG_VALUE_MAX_CHARS {
            return Err(StoreError::invalid(
                "tags",
                format!("a tag value must be at most {TAG_VALUE_MAX_CHARS} characters"),
            ));
        }
        if has_control(&tag.key, &[]) || has_control(&tag.value, &[]) {
            return Err(StoreError::invalid(
                "tags",
                "tags must not contain control characters",
            ));
        }
        if !keys.insert(tag.key.as_str()) {
            return Err(StoreError::invalid(
                "tags",
                format!("duplicate tag key {:?}", tag.key),
            ));
        }
    }
    Ok(())
}

/// Pages are 1-based; a page holds 1–100 items.
pub fn validate_page(page: u32, page_size: u32) -> Result<(), StoreError> {
    if page == 0 {
        return Err(StoreError::invalid("page", "pages start at 1"));
    }
    if page > MAX_PAGE {
        return Err(StoreError::invalid(
            "page",
            format!("must be at most {MAX_PAGE}"),
        ));
    }
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(StoreError::invalid(
            "page_size",
            format!("must be 1 to {MAX_PAGE_SIZE}"),
        ));
    }
    Ok(())
}

fn has_control(text: &str, allowed: &[char]) -> bool {
    text.chars()
        .any(|c| c.is_control() && !allowed.contains(&c))
}

/// Longest callback URL (the seeds' limit).
pub const MAX_CALLBACK_URL_LEN: usize = 2083;
/// Callback key length bounds (letters and digits).
pub const CALLBACK_KEY_LEN: std::ops::RangeInclusive<usize> = 32..=64;

/// An `http://` or `https://` URL with a host, at most 2083 characters, no
/// whitespace or control characters.
pub fn validate_callback_url(url: &str) -> Result<(), StoreError> {
    let invalid = |reason: String| {
        Err(StoreError::Invalid {
            field: "url",
            reason,
        })
    };
    if url.chars().count() > MAX_CALLBACK_URL_LEN {
        return invalid(format!("must be at most {MAX_CALLBACK_URL_LEN} characters"));
    }
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else {
        return invalid("must start with http:// or https://".into());
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return invalid("must name a host".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid("must not contain spaces or control characters".into());
    }
    Ok(())
}

/// 32–64 ASCII letters and digits.
pub fn validate_callback_key(key: &str) -> Result<(), StoreError> {
    if !CALLBACK_KEY_LEN.contains(&key.len()) || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(StoreError::Invalid {
            field: "key",
            reason: "must be 32 to 64 letters and digits".into(),
        });
    }
    Ok(())
}
