//! Redis key layout: `{prefix}:{namespace}:{id}`, or with a workspace
//! `{prefix}:{workspace}%:{namespace}:{id}`.
//!
//! The namespace segment escapes `%` and `:` (as `%25`, `%3A`), so the first `:` after
//! it always ends the namespace: namespace `x` with id `y:1` and namespace `x:y` with
//! id `1` get different keys, and a scan of `x` never sees `x:y`. The namespaces
//! nano-graphrag uses contain neither character, so their keys read as plain
//! `nano_graphrag:text_chunks:<id>`.
//!
//! With `redis_atomic_rebuild`, a namespace's records live in generations:
//! `{prefix}:[{workspace}%:]{namespace}%g{N}:{id}`, and the live generation's number is
//! the value of `{prefix}:[{workspace}%:]{namespace}%g:live`. An escaped namespace never
//! holds `%g` (every `%` in it starts `%25` or `%3A`), so these keys are no namespace's
//! records.
//!
//! A workspace is `[A-Za-z0-9_.-]+` followed by `%`. An escaped namespace never ends
//! with `%` (every `%` in it starts `%25` or `%3A`), and the prefix holds no `:`, so the
//! segment after the prefix is a workspace exactly when it ends with `%`: no key of one
//! workspace can be a key of another workspace, or of no workspace. No hash tags: a
//! namespace spreads over all cluster slots.

/// The keys of one namespace (of one workspace).
#[derive(Clone, Debug)]
pub struct KeySpace {
    /// `{prefix}:[{workspace}%:]{escaped namespace}:`
    head: Vec<u8>,
}

/// Whether `workspace` may name a workspace: 1 to 64 of `A-Z a-z 0-9 _ . -`.
pub fn valid_workspace(workspace: &str) -> bool {
    (1..=64).contains(&workspace.len())
        && workspace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl KeySpace {
    pub fn new(prefix: &str, workspace: Option<&str>, namespace: &str) -> KeySpace {
        let mut head = Vec::with_capacity(prefix.len() + namespace.len() + 4);
        head.extend_from_slice(prefix.as_bytes());
        head.push(b':');
        if let Some(workspace) = workspace {
            debug_assert!(valid_workspace(workspace), "validated by the settings");
            head.extend_from_slice(workspace.as_bytes());
            head.extend_from_slice(b"%:");
        }
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

    /// The keys of generation `generation` of this namespace (see the module's docs).
    pub fn generation(&self, generation: u64) -> KeySpace {
        let mut head = self.head[..self.head.len() - 1].to_vec();
        head.extend_from_slice(format!("%g{generation}:").as_bytes());
        KeySpace { head }
    }

    /// The key holding the number of the live generation.
    pub fn live_generation_key(&self) -> Vec<u8> {
        [&self.head[..self.head.len() - 1], b"%g:live"].concat()
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
        let ks = KeySpace::new("nano_graphrag", None, "text_chunks");
        assert_eq!(ks.key(b"chunk-1"), b"nano_graphrag:text_chunks:chunk-1");
        assert_eq!(ks.id(b"nano_graphrag:text_chunks:a:b"), Some(&b"a:b"[..]));
        assert_eq!(ks.pattern(), b"nano_graphrag:text_chunks:*");
    }

    #[test]
    fn namespace_separator_is_unambiguous() {
        let x = KeySpace::new("p", None, "x");
        let xy = KeySpace::new("p", None, "x:y");
        assert_eq!(xy.key(b"1"), b"p:x%3Ay:1");
        assert_ne!(x.key(b"y:1"), xy.key(b"1"));
        assert_eq!(KeySpace::new("p", None, "100%").key(b"i"), b"p:100%25:i");
    }

    #[test]
    fn workspaces_never_collide_with_each_other_or_with_no_workspace() {
        let a = KeySpace::new("p", Some("a"), "docs");
        assert_eq!(a.key(b"1"), b"p:a%:docs:1");
        // The namespace "a%" with no workspace, id "docs:1": escaped, it ends in "%25".
        assert_ne!(KeySpace::new("p", None, "a%").key(b"docs:1"), a.key(b"1"));
        assert_ne!(KeySpace::new("p", None, "a%:docs").key(b"1"), a.key(b"1"));
        assert_ne!(
            KeySpace::new("p", Some("a.b"), "docs").key(b"1"),
            a.key(b"1")
        );
        // A scan of a workspace's namespace sees neither a neighbour nor no workspace.
        assert_eq!(a.pattern(), b"p:a%:docs:*");
        assert!(valid_workspace("project-7.v2_x"));
        for bad in ["", "a:b", "a%", "a b", "a*", "{a}", "é", &"x".repeat(65)] {
            assert!(!valid_workspace(bad), "{bad:?}");
        }
    }

    #[test]
    fn generations_are_no_namespaces_records() {
        let reports = KeySpace::new("p", Some("w"), "community_reports");
        assert_eq!(
            reports.generation(7).key(b"0"),
            b"p:w%:community_reports%g7:0"
        );
        assert_eq!(
            reports.live_generation_key(),
            b"p:w%:community_reports%g:live"
        );
        // Not the namespace "community_reports%g7" (escaped: "%25g7"), and not matched
        // by the plain namespace's scan.
        assert_ne!(
            KeySpace::new("p", Some("w"), "community_reports%g7").key(b"0"),
            reports.generation(7).key(b"0")
        );
        assert_eq!(reports.pattern(), b"p:w%:community_reports:*");
    }

    #[test]
    fn glob_characters_are_escaped() {
        let ks = KeySpace::new("p[1]", None, "a*?\\");
        assert_eq!(ks.pattern(), b"p\\[1\\]:a\\*\\?\\\\:*");
    }
}
