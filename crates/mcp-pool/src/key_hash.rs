//! What the pool logs instead of a key.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::OnceLock;

/// A 64-bit digest of a key, the only form in which the pool's logs, spans
/// and metrics name a key, so a key that holds credentials never reaches them.
///
/// It is computed from the key's [`Hash`] implementation (never its `Debug`
/// text) with SipHash keyed by a random seed drawn once per process: equal
/// keys have equal hashes for the whole process, so log lines of one key can
/// be correlated, but the hash of a given key differs from process to
/// process, so a log cannot be matched offline against guessed credentials.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyHash(u64);

impl KeyHash {
    /// The hash of `key` for this process.
    pub fn of<K: Hash + ?Sized>(key: &K) -> KeyHash {
        static SEED: OnceLock<RandomState> = OnceLock::new();
        KeyHash(SEED.get_or_init(RandomState::new).hash_one(key))
    }

    /// The raw value.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_equal_hashes_and_no_raw_text() {
        let key = ("https://mcp.example/", "token-SECRET");
        assert_eq!(KeyHash::of(&key), KeyHash::of(&key.clone()));
        assert_ne!(
            KeyHash::of(&key),
            KeyHash::of(&("https://mcp.example/", "other"))
        );
        let shown = format!("{} {:?}", KeyHash::of(&key), KeyHash::of(&key));
        assert!(!shown.contains("SECRET"));
        assert_eq!(KeyHash::of(&key).to_string().len(), 16);
    }
}
