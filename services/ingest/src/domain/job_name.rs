use std::fmt;

use super::Invalid;

/// A job name, shaped like a Kubernetes name (RFC 1123 label): lowercase alphanumerics and
/// '-', starting and ending alphanumeric, at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobName(String);

impl JobName {
    pub const MAX_LEN: usize = 63;

    pub fn parse(text: &str) -> Result<JobName, Invalid> {
        if text.is_empty() {
            return Err(Invalid::new("required", "name must not be empty"));
        }
        if text.len() > Self::MAX_LEN {
            return Err(Invalid::new(
                "kubernetes-name",
                format!("name is longer than {} characters", Self::MAX_LEN),
            ));
        }
        let allowed = text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let edges = text.bytes().next().is_some_and(|b| b != b'-') && !text.ends_with('-');
        if !allowed || !edges {
            return Err(Invalid::new(
                "kubernetes-name",
                "name may hold only lowercase letters, digits and '-', and must start and end with a letter or digit",
            ));
        }
        Ok(JobName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kubernetes_names() {
        for ok in ["test10", "a", "nightly-scan-2", &"a".repeat(63)] {
            assert!(JobName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "Test10",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(JobName::parse(bad).is_err(), "{bad}");
        }
    }
}
