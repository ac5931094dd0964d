//! Repository URLs: allowed schemes, no credentials, local paths only under configured roots,
//! and no hosts that resolve to loopback, private, link-local or metadata addresses (a scan
//! service that fetches arbitrary URLs is otherwise an SSRF vector).
//!
//! The host check ([`scanstream_platform::net::HostPolicy`]) here is the first line; scanners
//! check again before each fetch, which also covers DNS answers that changed in between.

use std::fmt;
use std::path::{Component, PathBuf};

use scanstream_contracts::RepoKey;
use scanstream_platform::net::{HostPolicy, HostPolicyError};
use url::Url;

use super::Invalid;

/// A repository URL that passed every rule, normalized: lowercase scheme and host, no default
/// port, no trailing slash, scp-style `user@host:path` rewritten as `ssh://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    normalized: String,
}

impl RepoUrl {
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    /// The record key of this repository's commands on `scans.commands`.
    pub fn key(&self) -> RepoKey {
        RepoKey::from_normalized(&self.normalized)
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RepoUrlError {
    #[error(transparent)]
    AllowedHost(#[from] HostPolicyError),
    #[error("ingest.file_roots entry {0:?} must be an absolute path without '..'")]
    FileRoot(String),
}

const MAX_URL_LEN: usize = 2048;

/// The deployment's rules for repository URLs.
pub struct RepoPolicy {
    file_roots: Vec<PathBuf>,
    hosts: HostPolicy,
}

impl RepoPolicy {
    pub fn new(file_roots: &[String], allowed_hosts: &[String]) -> Result<Self, RepoUrlError> {
        let mut roots = Vec::new();
        for root in file_roots {
            let path = PathBuf::from(root);
            if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
                return Err(RepoUrlError::FileRoot(root.clone()));
            }
            roots.push(path);
        }
        Ok(Self {
            file_roots: roots,
            hosts: HostPolicy::new(allowed_hosts)?,
        })
    }

    /// Every rule, the address check included.
    pub async fn parse(&self, text: &str) -> Result<RepoUrl, Invalid> {
        let (url, host) = self.parse_syntax(text)?;
        if let Some((host, port)) = host {
            self.check_host(&host, port).await?;
        }
        Ok(url)
    }

    /// The rules that need no network: scheme, form, credentials, local roots.
    fn parse_syntax(&self, text: &str) -> Result<(RepoUrl, Option<(String, u16)>), Invalid> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Invalid::new("required", "repo must not be empty"));
        }
        if text.len() > MAX_URL_LEN {
            return Err(Invalid::new(
                "url-form",
                format!("repo is longer than {MAX_URL_LEN} characters"),
            ));
        }
        // Checked on the raw text: URL parsing would silently resolve `..` away.
        let lowered = text.to_ascii_lowercase();
        if text.split(['/', '\\']).any(|s| s == ".." || s == ".")
            || lowered.contains("%2e")
            || lowered.contains("%2f")
            || lowered.contains("%5c")
        {
            return Err(Invalid::new(
                "path-traversal",
                "repo path must not contain '.', '..' or encoded separators",
            ));
        }
        let rewritten = scp_to_ssh(text);
        let url = Url::parse(rewritten.as_deref().unwrap_or(text))
            .map_err(|e| Invalid::new("url-form", format!("repo is not a URL: {e}")))?;
        let scheme = url.scheme().to_ascii_lowercase();
        if !matches!(scheme.as_str(), "https" | "ssh" | "git" | "file") {
            return Err(Invalid::new(
                "scheme",
                format!("repo scheme {scheme:?} is not allowed; use https, ssh, git or file"),
            ));
        }
        if url.password().is_some() || (scheme != "ssh" && !url.username().is_empty()) {
            return Err(Invalid::new(
                "no-credentials",
                "repo must not carry credentials; scanners take them from their configuration",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Invalid::new(
                "url-form",
                "repo must not have a query or fragment",
            ));
        }
        let path = url.path();
        if scheme == "file" {
            return self.file_url(&url).map(|u| (u, None));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err(Invalid::new("url-form", "repo must name a host")),
        };
        let trimmed = path.trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(Invalid::new("url-form", "repo must name a repository path"));
        }
        let default_port = match scheme.as_str() {
            "https" => 443,
            "ssh" => 22,
            _ => 9418,
        };
        let port = url.port().unwrap_or(default_port);
        let user = if url.username().is_empty() {
            String::new()
        } else {
            format!("{}@", url.username())
        };
        let port_part = if port == default_port {
            String::new()
        } else {
            format!(":{port}")
        };
        let normalized = format!("{scheme}://{user}{host}{port_part}{trimmed}");
        Ok((RepoUrl { normalized }, Some((host, port))))
    }

    fn file_url(&self, url: &Url) -> Result<RepoUrl, Invalid> {
        if url
            .host_str()
            .is_some_and(|h| !h.is_empty() && h != "localhost")
        {
            return Err(Invalid::new("url-form", "file URLs must not name a host"));
        }
        let path = url
            .to_file_path()
            .map_err(|()| Invalid::new("url-form", "file URL does not name a local path"))?;
        if path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(Invalid::new(
                "path-traversal",
                "repo path must not contain '..'",
            ));
        }
        if !self.file_roots.iter().any(|root| path.starts_with(root)) {
            return Err(Invalid::new(
                "file-root",
                "file:// repositories are allowed only under the configured ingest.file_roots",
            ));
        }
        let shown = path.to_string_lossy();
        let trimmed = shown.trim_end_matches('/');
        Ok(RepoUrl {
            normalized: format!("file://{trimmed}"),
        })
    }

    async fn check_host(&self, host: &str, port: u16) -> Result<(), Invalid> {
        self.hosts
            .check(host, port)
            .await
            .map_err(|refused| Invalid::new("private-address", refused.to_string()))
    }
}

/// `git@host:path` (scp syntax) as `ssh://git@host/path`.
fn scp_to_ssh(text: &str) -> Option<String> {
    if text.contains("://") {
        return None;
    }
    let (user_host, path) = text.split_once(':')?;
    let (user, host) = user_host.split_once('@')?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if !plain(user) || !plain(host) || path.is_empty() || path.starts_with('/') {
        return None;
    }
    Some(format!("ssh://{user}@{host}/{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RepoPolicy {
        RepoPolicy::new(
            &["/srv/git".into()],
            &["git.internal.example".into(), "10.9.0.0/16".into()],
        )
        .unwrap()
    }

    fn syntax(text: &str) -> Result<String, &'static str> {
        policy()
            .parse_syntax(text)
            .map(|(u, _)| u.normalized)
            .map_err(|e| e.rule)
    }

    #[test]
    fn normalizes_equivalent_spellings_to_one_key() {
        assert_eq!(
            syntax("HTTPS://GitHub.com:443/Org/Repo.git/"),
            Ok("https://github.com/Org/Repo.git".into())
        );
        assert_eq!(
            syntax("git@github.com:org/repo.git"),
            Ok("ssh://git@github.com/org/repo.git".into())
        );
        assert_eq!(
            syntax("ssh://git@GitHub.com:22/org/repo.git"),
            Ok("ssh://git@github.com/org/repo.git".into())
        );
        assert_eq!(
            syntax("git://host.example:9419/r"),
            Ok("git://host.example:9419/r".into())
        );
        assert_eq!(
            syntax("file:///srv/git/team/repo/"),
            Ok("file:///srv/git/team/repo".into())
        );
    }

    #[test]
    fn refuses_what_is_not_allowed() {
        let cases = [
            ("http://github.com/org/repo", "scheme"),
            ("ftp://host/repo", "scheme"),
            ("javascript:alert(1)", "scheme"),
            ("https://user:pass@github.com/org/repo", "no-credentials"),
            ("https://ghp_token@github.com/org/repo", "no-credentials"),
            ("ssh://git:secret@github.com/org/repo", "no-credentials"),
            ("https://github.com/org/repo?x=1", "url-form"),
            ("https://github.com/org/repo#main", "url-form"),
            ("https://github.com/", "url-form"),
            ("https://github.com/org/../../etc", "path-traversal"),
            ("https://github.com/org/%2e%2e/x", "path-traversal"),
            ("file:///etc/passwd", "file-root"),
            ("file:///srv/git/../../etc/passwd", "path-traversal"),
            ("file:///srv/gitx/repo", "file-root"),
            ("file://otherhost/srv/git/r", "url-form"),
            ("not a url", "url-form"),
            ("", "required"),
        ];
        for (text, rule) in cases {
            assert_eq!(syntax(text), Err(rule), "{text}");
        }
    }

    #[test]
    fn credentials_never_appear_in_the_message() {
        let err = policy()
            .parse_syntax("https://alice:hunter2@github.com/org/repo")
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert!(!err.message.contains("hunter2") && !err.message.contains("alice"));
    }

    #[tokio::test]
    async fn private_and_metadata_addresses_are_refused_unless_allowed() {
        let p = policy();
        for bad in [
            "https://127.0.0.1/r",
            "https://localhost/r",
            "https://169.254.169.254/latest",
            "https://10.0.0.5/r",
            "https://192.168.1.1/r",
            "https://[::1]/r",
            "https://[fd00:ec2::254]/r",
            "https://[::ffff:127.0.0.1]/r",
            "https://metadata.google.internal/x",
            "https://100.64.0.1/r",
        ] {
            assert_eq!(
                p.parse(bad).await.map_err(|e| e.rule),
                Err("private-address"),
                "{bad}"
            );
        }
        for ok in [
            "https://10.9.3.4/r",
            "https://git.internal.example/r",
            "https://93.184.216.34/r",
        ] {
            assert!(p.parse(ok).await.is_ok(), "{ok}");
        }
    }

    #[test]
    fn bad_policy_entries_are_config_errors() {
        assert!(RepoPolicy::new(&["relative/root".into()], &[]).is_err());
        assert!(RepoPolicy::new(&[], &["bad host!".into()]).is_err());
    }
}
