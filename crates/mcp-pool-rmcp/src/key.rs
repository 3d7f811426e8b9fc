//! Pool keys: who may share an upstream session.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use crate::redact::{redact_url, shown_hash};

/// The identity headers used when none are configured: `authorization`,
/// `x-tenant-id`, `x-user-id`, `x-api-key` and `cookie`.
pub const DEFAULT_IDENTITY_HEADERS: [&str; 5] = [
    "authorization",
    "x-tenant-id",
    "x-user-id",
    "x-api-key",
    "cookie",
];

/// Headers never forwarded upstream, whatever the caller passes: they belong
/// to the downstream connection or protocol session (the downstream
/// `mcp-session-id` above all), or are set by the transport itself.
const NEVER_FORWARDED: [&str; 14] = [
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "accept",
    "content-type",
    "content-length",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// The transport a session runs over. Part of the key: sessions of different
/// transports are never shared.
#[non_exhaustive]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// MCP Streamable HTTP (`http://` or `https://`).
    StreamableHttp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::StreamableHttp => f.write_str("streamable-http"),
        }
    }
}

/// A SHA-256 digest standing for who the caller is: of its identity headers
/// (names and values, sorted) or of an identity the caller supplied.
///
/// Equal identities mean the same credentials. The digest itself is not
/// keyed (it must be equal across processes for equal credentials), so
/// anyone holding it can test guesses of low-entropy identities offline:
/// keep [`Identity::as_bytes`] out of logs. `Debug` and `Display` show
/// [`Identity::short`] instead, 8 hex digits of a hash keyed per process.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity([u8; 32]);

impl Identity {
    /// The identity of `headers`: SHA-256 over the pairs, each name
    /// lower-cased, sorted by name then value, each part length-prefixed so
    /// that no two different sets hash alike. No headers at all is the
    /// anonymous identity.
    pub fn of_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Identity {
        let mut pairs: Vec<(String, &[u8])> = headers
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect();
        pairs.sort();
        let mut hasher = Sha256::new();
        hasher.update(b"mcp-pool-rmcp/identity-headers\0");
        for (name, value) in pairs {
            hasher.update((name.len() as u64).to_be_bytes());
            hasher.update(name.as_bytes());
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value);
        }
        Identity(hasher.finalize().into())
    }

    /// An identity the caller vouches for (a user or tenant id from its own
    /// authentication), hashed so that it can never collide with an
    /// identity derived from headers.
    pub fn supplied(identity: &str) -> Identity {
        let mut hasher = Sha256::new();
        hasher.update(b"mcp-pool-rmcp/supplied-identity\0");
        hasher.update(identity.as_bytes());
        Identity(hasher.finalize().into())
    }

    /// The identity of a caller with no identity headers.
    pub fn anonymous() -> Identity {
        Identity::of_headers(std::iter::empty())
    }

    /// The full digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 8 hex digits standing for this identity in logs: a prefix of SHA-256
    /// over a key drawn once per process and the digest. Equal identities
    /// show equal hashes within one process, so log lines can be
    /// correlated; a log cannot be matched offline against guessed
    /// identities, and the same identity shows another hash in another
    /// process.
    pub fn short(&self) -> String {
        shown_hash("identity", &self.0)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.short())
    }
}

fn short_hash(text: &str) -> String {
    shown_hash("affinity", text.as_bytes())
}

/// Who may share an upstream session: the server URL, the transport, the
/// caller's [`Identity`] and an optional affinity id.
///
/// Two keys are equal (and share sessions) exactly when those four parts are
/// equal. The key also carries the headers to send upstream (the identity
/// headers and any extra ones); they take no part in equality, so two keys
/// that differ only in headers outside the identity share sessions, which
/// are sent the headers of the key they were created with.
///
/// `Debug` and `Display` show the URL with its query values replaced, the
/// transport, and short hashes (keyed per process) of the identity and
/// affinity, never a header value.
#[derive(Clone)]
pub struct SessionKey {
    url: Arc<str>,
    transport: Transport,
    identity: Identity,
    affinity: Option<Arc<str>>,
    headers: Arc<HashMap<HeaderName, HeaderValue>>,
}

impl SessionKey {
    /// Starts building a key for the MCP endpoint at `url`, with the
    /// [default identity headers](DEFAULT_IDENTITY_HEADERS).
    pub fn builder(url: impl Into<String>) -> KeyBuilder {
        KeyBuilder {
            url: url.into(),
            identity_headers: DEFAULT_IDENTITY_HEADERS
                .iter()
                .map(|name| HeaderName::from_static(name))
                .collect(),
            headers: HashMap::new(),
            supplied: None,
            affinity: None,
            error: None,
        }
    }

    /// A key for `url` with no credentials and no affinity.
    pub fn anonymous(url: impl Into<String>) -> Result<SessionKey, KeyError> {
        SessionKey::builder(url).build()
    }

    /// The normalized endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Who the caller is.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The affinity id (a downstream session id), if any.
    pub fn affinity(&self) -> Option<&str> {
        self.affinity.as_deref()
    }

    /// The headers sent upstream on every request of this key's sessions.
    pub fn headers(&self) -> &HashMap<HeaderName, HeaderValue> {
        &self.headers
    }

    fn parts(&self) -> (&str, Transport, &Identity, Option<&str>) {
        (
            &self.url,
            self.transport,
            &self.identity,
            self.affinity.as_deref(),
        )
    }

    /// The URL as logged: scheme, host, port, path and query names, each
    /// query value replaced by `…` (a query may hold a token).
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for SessionKey {}

impl Hash for SessionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialOrd for SessionKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SessionKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, identity {}",
            self.redacted_url(),
            self.transport,
            self.identity
        )?;
        if let Some(affinity) = &self.affinity {
            write!(f, ", affinity {}", short_hash(affinity))?;
        }
        f.write_str(")")
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({self})")
    }
}

/// Why a [`SessionKey`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The URL cannot name an MCP endpoint; `reason` says why.
    #[error("invalid MCP server URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given, its user info and query values replaced.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name or value cannot be sent over HTTP.
    #[error("invalid header `{name}`: {reason}")]
    InvalidHeader {
        /// The header's name.
        name: String,
        /// What is wrong (the value itself is never included).
        reason: String,
    },
}

/// Builds a [`SessionKey`]. Every method takes and returns the builder; the
/// first invalid input is reported by [`KeyBuilder::build`].
///
/// `Debug` shows the URL with its user info and query values replaced, the
/// names of the headers (never their values) and short hashes of the
/// supplied identity and affinity.
#[must_use = "a builder does nothing until `build` is called"]
pub struct KeyBuilder {
    url: String,
    identity_headers: Vec<HeaderName>,
    headers: HashMap<HeaderName, HeaderValue>,
    supplied: Option<Identity>,
    affinity: Option<Arc<str>>,
    error: Option<KeyError>,
}

impl fmt::Debug for KeyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut headers: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        headers.sort_unstable();
        f.debug_struct("KeyBuilder")
            .field("url", &redact_url(&self.url))
            .field("identity_headers", &self.identity_headers)
            .field("headers", &headers)
            .field("supplied", &self.supplied)
            .field("affinity", &self.affinity.as_deref().map(short_hash))
            .field("error", &self.error)
            .finish()
    }
}

impl KeyBuilder {
    /// Replaces the set of identity headers: those hashed into the key's
    /// [`Identity`] (and forwarded upstream) by [`KeyBuilder::headers`] and
    /// [`KeyBuilder::header`]. Names are compared case-insensitively.
    pub fn identity_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.identity_headers.clear();
        for name in names {
            match HeaderName::from_bytes(name.as_ref().to_ascii_lowercase().as_bytes()) {
                Ok(name) => self.identity_headers.push(name),
                Err(e) => self.fail(KeyError::InvalidHeader {
                    name: name.as_ref().to_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        self
    }

    /// Takes the identity headers out of a downstream request's headers and
    /// forwards them upstream; every other header of the request is ignored
    /// (in particular the downstream `mcp-session-id`: use
    /// [`KeyBuilder::affinity_from`] to give each downstream session its own
    /// upstream session). Several values of one header are joined (`; ` for
    /// `cookie`, `, ` otherwise).
    pub fn headers(mut self, downstream: &HeaderMap) -> Self {
        for name in self.identity_headers.clone() {
            let values: Vec<&HeaderValue> = downstream.get_all(&name).iter().collect();
            if values.is_empty() {
                continue;
            }
            let separator: &[u8] = if name == COOKIE { b"; " } else { b", " };
            let joined = values
                .iter()
                .map(|v| v.as_bytes())
                .collect::<Vec<_>>()
                .join(separator);
            match HeaderValue::from_bytes(&joined) {
                Ok(value) => self.insert(name, value),
                Err(e) => self.fail(KeyError::InvalidHeader {
                    name: name.to_string(),
                    reason: e.to_string(),
                }),
            }
        }
        self
    }

    /// Sends header `name: value` upstream. If `name` is an identity header
    /// it is part of the identity; otherwise it is only forwarded. Headers
    /// that belong to the transport or the downstream session
    /// (`mcp-session-id`, `host`, `content-type`, ...) are refused.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            Ok(name) => name,
            Err(e) => {
                self.fail(KeyError::InvalidHeader {
                    name: name.to_owned(),
                    reason: e.to_string(),
                });
                return self;
            }
        };
        if NEVER_FORWARDED.contains(&name.as_str()) {
            self.fail(KeyError::InvalidHeader {
                name: name.to_string(),
                reason: "this header belongs to the transport or the downstream session and is never forwarded".into(),
            });
            return self;
        }
        match HeaderValue::from_str(value) {
            Ok(value) => self.insert(name, value),
            Err(e) => self.fail(KeyError::InvalidHeader {
                name: name.to_string(),
                reason: e.to_string(),
            }),
        }
        self
    }

    /// Sends `authorization: Bearer <token>` upstream (an identity header
    /// with the default set).
    pub fn bearer(self, token: &str) -> Self {
        self.header(AUTHORIZATION.as_str(), &format!("Bearer {token}"))
    }

    /// Uses an identity the caller vouches for instead of hashing the
    /// identity headers (which are still forwarded). Only callers with the
    /// same supplied identity share sessions.
    pub fn identity(mut self, identity: &str) -> Self {
        self.supplied = Some(Identity::supplied(identity));
        self
    }

    /// Gives the key an affinity id, typically the downstream client's
    /// session id, so that each downstream session gets upstream sessions of
    /// its own (for stateful servers). The id is never sent upstream.
    pub fn affinity(mut self, affinity: impl Into<String>) -> Self {
        self.affinity = Some(Arc::from(affinity.into()));
        self
    }

    /// Uses the downstream request's `mcp-session-id` header, if present, as
    /// the affinity id (see [`KeyBuilder::affinity`]).
    pub fn affinity_from(self, downstream: &HeaderMap) -> Self {
        match downstream
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            Some(id) => self.affinity(id),
            None => self,
        }
    }

    fn insert(&mut self, name: HeaderName, mut value: HeaderValue) {
        value.set_sensitive(true);
        self.headers.insert(name, value);
    }

    fn fail(&mut self, error: KeyError) {
        self.error.get_or_insert(error);
    }

    /// Validates the URL (absolute `http` or `https`, with a host, without
    /// user info: credentials go in headers) and the headers, normalizes the
    /// URL (lower-case scheme and host, default port dropped, fragment
    /// dropped), and computes the identity.
    pub fn build(self) -> Result<SessionKey, KeyError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let url = normalize_url(&self.url)?;
        let identity = self.supplied.unwrap_or_else(|| {
            Identity::of_headers(
                self.headers
                    .iter()
                    .filter(|(name, _)| self.identity_headers.contains(name))
                    .map(|(name, value)| (name.as_str(), value.as_bytes())),
            )
        });
        Ok(SessionKey {
            url: Arc::from(url),
            transport: Transport::StreamableHttp,
            identity,
            affinity: self.affinity,
            headers: Arc::new(self.headers),
        })
    }
}

fn normalize_url(raw: &str) -> Result<String, KeyError> {
    let invalid = |reason: &str| KeyError::InvalidUrl {
        url: redact_url(raw),
        reason: reason.to_owned(),
    };
    let mut url = reqwest::Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "the URL carries user info: pass credentials as headers instead",
        ));
    }
    url.set_fragment(None);
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:8080/mcp";

    #[test]
    fn identity_ignores_order_and_name_case_but_not_values() {
        let a = Identity::of_headers([
            ("Authorization", &b"Bearer x"[..]),
            ("x-tenant-id", &b"t"[..]),
        ]);
        let b = Identity::of_headers([
            ("x-tenant-id", &b"t"[..]),
            ("authorization", &b"Bearer x"[..]),
        ]);
        let c = Identity::of_headers([
            ("authorization", &b"Bearer X"[..]),
            ("x-tenant-id", &b"t"[..]),
        ]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Length prefixes: moving bytes between name and value changes the hash.
        assert_ne!(
            Identity::of_headers([("ab", &b"c"[..])]),
            Identity::of_headers([("a", &b"bc"[..])])
        );
        assert_ne!(Identity::supplied(""), Identity::anonymous());
    }

    #[test]
    fn keys_with_different_credentials_differ_and_show_no_secret() {
        let alice = SessionKey::builder(URL)
            .bearer("alice-SECRET")
            .build()
            .unwrap();
        let bob = SessionKey::builder(URL)
            .bearer("bob-SECRET")
            .build()
            .unwrap();
        let alice2 = SessionKey::builder(URL)
            .bearer("alice-SECRET")
            .header("x-trace", "1")
            .build()
            .unwrap();
        assert_ne!(alice, bob);
        assert_eq!(alice, alice2, "a non-identity header does not split keys");
        let shown = format!("{alice} {alice:?} {bob:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("127.0.0.1:8080/mcp"), "{shown}");
        assert!(format!("{:?}", alice.headers()).contains("Sensitive"));
    }

    #[test]
    fn downstream_headers_keep_only_identity_headers_and_never_the_session_id() {
        let mut downstream = HeaderMap::new();
        downstream.insert("authorization", HeaderValue::from_static("Bearer t"));
        downstream.insert("mcp-session-id", HeaderValue::from_static("down-1"));
        downstream.insert("x-other", HeaderValue::from_static("o"));
        downstream.append("cookie", HeaderValue::from_static("a=1"));
        downstream.append("cookie", HeaderValue::from_static("b=2"));
        let key = SessionKey::builder(URL)
            .headers(&downstream)
            .affinity_from(&downstream)
            .build()
            .unwrap();
        let names: Vec<&str> = {
            let mut names: Vec<&str> = key.headers().keys().map(|n| n.as_str()).collect();
            names.sort();
            names
        };
        assert_eq!(names, ["authorization", "cookie"]);
        assert_eq!(key.headers()[&COOKIE], "a=1; b=2");
        assert_eq!(key.affinity(), Some("down-1"));
        assert!(!format!("{key}").contains("down-1"));
        let err = SessionKey::builder(URL)
            .header("Mcp-Session-Id", "x")
            .build()
            .unwrap_err();
        assert!(matches!(err, KeyError::InvalidHeader { .. }), "{err}");
    }

    #[test]
    fn affinity_and_supplied_identity_split_keys() {
        let base = SessionKey::anonymous(URL).unwrap();
        let a = SessionKey::builder(URL).affinity("d1").build().unwrap();
        let b = SessionKey::builder(URL).affinity("d2").build().unwrap();
        assert_ne!(a, b);
        assert_ne!(a, base);
        let u1 = SessionKey::builder(URL).identity("user-1").build().unwrap();
        let u2 = SessionKey::builder(URL).identity("user-2").build().unwrap();
        assert_ne!(u1, u2);
        assert_ne!(u1, base);
    }

    #[test]
    fn urls_are_validated_and_normalized() {
        let key = SessionKey::anonymous("HTTP://LocalHost:80/mcp#frag").unwrap();
        assert_eq!(key.url(), "http://localhost/mcp");
        for bad in [
            "not a url",
            "ftp://host/mcp",
            "http://user:pw@host/mcp",
            "unix:/tmp/sock",
        ] {
            let err = SessionKey::anonymous(bad).unwrap_err();
            assert!(matches!(err, KeyError::InvalidUrl { .. }), "{bad}: {err}");
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
        let with_query = SessionKey::anonymous("https://h/mcp?token=SECRET").unwrap();
        assert!(!with_query.to_string().contains("SECRET"));
    }
}
