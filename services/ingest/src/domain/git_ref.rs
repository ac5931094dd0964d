use super::Invalid;

/// A git ref or commit id following `git check-ref-format` rules (branch, tag, full ref name
/// or commit id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef(String);

impl GitRef {
    pub const MAX_LEN: usize = 255;

    pub fn parse(text: &str) -> Result<GitRef, Invalid> {
        let fail = |why: &str| Err(Invalid::new("git-ref", format!("ref {why}")));
        if text.is_empty() {
            return fail("must not be empty");
        }
        if text.len() > Self::MAX_LEN {
            return fail("is longer than 255 characters");
        }
        if text == "@" {
            return fail("must not be '@'");
        }
        if text
            .bytes()
            .any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b))
        {
            return fail("must not contain spaces, control characters or any of ~ ^ : ? * [ \\");
        }
        if text.contains("..") || text.contains("@{") || text.contains("//") {
            return fail("must not contain '..', '@{' or '//'");
        }
        if text.starts_with('/') || text.ends_with('/') || text.ends_with('.') {
            return fail("must not start or end with '/' or end with '.'");
        }
        if text.starts_with('-') {
            return fail("must not start with '-'");
        }
        for component in text.split('/') {
            if component.starts_with('.') || component.ends_with(".lock") {
                return fail("components must not start with '.' or end with '.lock'");
            }
        }
        Ok(GitRef(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_branches_tags_refs_and_commits() {
        for ok in [
            "main",
            "release/1.2",
            "v1.2.3",
            "refs/heads/main",
            "0123456789abcdef0123456789abcdef01234567",
        ] {
            assert!(GitRef::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_what_git_rejects() {
        for bad in [
            "", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "/a", "a/", "a.",
            "a//b", "a@{1}", "@", ".hidden", "a/.b", "x.lock", "-rf", "a\u{7f}",
        ] {
            assert!(GitRef::parse(bad).is_err(), "{bad:?}");
        }
    }
}
