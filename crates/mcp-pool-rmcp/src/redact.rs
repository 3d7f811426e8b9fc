//! Keeping credentials out of everything this crate shows: URLs with their
//! user info and query values replaced, and hashes keyed per process.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// What replaces a redacted part.
const HIDDEN: &str = "…";

/// `url` with its user info replaced (`…@host`) and each query value
/// replaced (`?api_key=…`; a parameter without `=` is replaced whole). The
/// scheme, host, port, path, query names and fragment are kept.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(HIDDEN);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let (before_fragment, fragment) = match rest.find('#') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) => format!("{name}={HIDDEN}"),
                    None if param.is_empty() => String::new(),
                    None => HIDDEN.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(before_fragment),
    }
    out.push_str(fragment);
    out
}

/// Whether `c` may end a URL's scheme (RFC 3986: letters, digits, `+-.`).
fn is_scheme_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')
}

/// Whether `c` ends a URL inside free text.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '(' | ')' | '[' | ']' | '`')
}

/// `text` with every URL in it (`scheme://…`, up to whitespace, a quote or
/// a bracket) passed through [`redact_url`]. Error messages of HTTP
/// clients name the request URL, which may carry a token.
pub(crate) fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let scheme_start = rest[..i]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_scheme_char(*c))
            .last()
            .map_or(i, |(j, _)| j);
        let end = rest[i + 3..]
            .find(ends_url)
            .map_or(rest.len(), |j| i + 3 + j);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&redact_url(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A key drawn once per process from the standard library's randomly seeded
/// hasher (seeded from the operating system's random source).
fn process_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let state = std::collections::hash_map::RandomState::new();
        let mut key = [0u8; 32];
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&state.hash_one(i as u64).to_le_bytes());
        }
        key
    })
}

/// The 8 hex digits shown for `value` in logs and `Debug` output: a prefix
/// of SHA-256 over a key drawn once per process, `domain` and `value`.
/// Equal values show equal hashes within one process; a log cannot be
/// matched offline against guessed values (tenant ids, emails, tokens).
pub(crate) fn shown_hash(domain: &str, value: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(process_key());
    hasher.update((domain.len() as u64).to_be_bytes());
    hasher.update(domain.as_bytes());
    hasher.update(value);
    hasher.finalize()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_and_query_values_are_replaced() {
        assert_eq!(
            redact_url("http://user:pass@127.0.0.1:8/mcp?api_key=SECRET&x#frag"),
            "http://…@127.0.0.1:8/mcp?api_key=…&…#frag"
        );
        assert_eq!(redact_url("https://h/mcp"), "https://h/mcp");
        assert_eq!(redact_url("https://h?t=1"), "https://h?t=…");
    }

    #[test]
    fn every_url_in_a_text_is_redacted() {
        let text = "error sending request for url (http://u:pw@h:1/mcp?token=SECRET): \
                    then https://h/x?k=SECRET2 and no://";
        let shown = redact_urls(text);
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(!shown.contains("pw"), "{shown}");
        assert!(shown.starts_with("error sending request for url (http://…@h:1/mcp?token=…): "));
        assert!(shown.contains("https://h/x?k=…"), "{shown}");
        assert_eq!(redact_urls("plain words"), "plain words");
    }

    #[test]
    fn shown_hashes_are_stable_in_a_process_and_not_the_plain_digest() {
        let a = shown_hash("identity", b"tenant-1");
        assert_eq!(a, shown_hash("identity", b"tenant-1"));
        assert_ne!(a, shown_hash("identity", b"tenant-2"));
        assert_ne!(a, shown_hash("affinity", b"tenant-1"));
        let plain: String = Sha256::digest(b"tenant-1")[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(a, plain);
        assert_eq!(a.len(), 8);
    }
}
