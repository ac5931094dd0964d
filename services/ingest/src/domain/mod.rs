//! Parse-don't-validate request types: a value of these types is valid by construction, so
//! nothing past the HTTP edge re-checks input.

mod engines;
mod git_ref;
mod job_name;
mod repo_url;

pub use engines::EngineSet;
pub use git_ref::GitRef;
pub use job_name::JobName;
pub use repo_url::{RepoPolicy, RepoUrl, RepoUrlError};

/// A rejected field: which rule it broke, with a message safe to show (never echoing secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub rule: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }
}
