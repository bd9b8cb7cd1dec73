//! Redis key layout: `{prefix}:{namespace}:{id}`.
//!
//! The namespace segment escapes `%` and `:` (as `%25`, `%3A`), so the first `:` after
//! the prefix always ends the namespace: namespace `x` with id `y:1` and namespace
//! `x:y` with id `1` get different keys, and a scan of `x` never sees `x:y`. The
//! namespaces nano-graphrag uses contain neither character, so their keys read as
//! plain `nano_graphrag:text_chunks:<id>`. No hash tags: a namespace spreads over all
//! cluster slots.

/// The keys of one namespace.
#[derive(Clone, Debug)]
pub struct KeySpace {
    /// `{prefix}:{escaped namespace}:`
    head: Vec<u8>,
}

impl KeySpace {
    pub fn new(prefix: &str, namespace: &str) -> KeySpace {
        let mut head = Vec::with_capacity(prefix.len() + namespace.len() + 2);
        head.extend_from_slice(prefix.as_bytes());
        head.push(b':');
        for b in namespace.bytes() {
            match b {
                b'%' => head.extend_from_slice(b"%25"),
                b':' => head.extend_from_slice(b"%3A"),
                _ => head.push(b),
            }
        }
        head.push(b':');
        KeySpace { head }
    }

    /// The key of record `id`.
    pub fn key(&self, id: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.head.len() + id.len());
        key.extend_from_slice(&self.head);
        key.extend_from_slice(id);
        key
    }

    /// The id of a key of this namespace (the key came from a scan of [`Self::pattern`]).
    pub fn id<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        key.strip_prefix(self.head.as_slice())
    }

    /// A `SCAN MATCH` pattern for exactly this namespace's keys: the head with glob
    /// characters escaped, then `*`.
    pub fn pattern(&self) -> Vec<u8> {
        let mut pattern = Vec::with_capacity(self.head.len() + 8);
        for &b in &self.head {
            if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                pattern.push(b'\\');
            }
            pattern.push(b);
        }
        pattern.push(b'*');
        pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_namespaces_keep_the_usual_layout() {
        let ks = KeySpace::new("nano_graphrag", "text_chunks");
        assert_eq!(ks.key(b"chunk-1"), b"nano_graphrag:text_chunks:chunk-1");
        assert_eq!(ks.id(b"nano_graphrag:text_chunks:a:b"), Some(&b"a:b"[..]));
        assert_eq!(ks.pattern(), b"nano_graphrag:text_chunks:*");
    }

    #[test]
    fn namespace_separator_is_unambiguous() {
        let x = KeySpace::new("p", "x");
        let xy = KeySpace::new("p", "x:y");
        assert_eq!(xy.key(b"1"), b"p:x%3Ay:1");
        assert_ne!(x.key(b"y:1"), xy.key(b"1"));
        assert_eq!(KeySpace::new("p", "100%").key(b"i"), b"p:100%25:i");
    }

    #[test]
    fn glob_characters_are_escaped() {
        let ks = KeySpace::new("p[1]", "a*?\\");
        assert_eq!(ks.pattern(), b"p\\[1\\]:a\\*\\?\\\\:*");
    }
}
