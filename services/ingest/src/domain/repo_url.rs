//! Repository URLs as ingest accepts them: the rules shared with the scanner
//! ([`scanstream_platform::repo::RepoRules`]: schemes, no credentials, scp-style rewritten as
//! `ssh://`, no part git would read as an option, `file://` only under the configured roots once
//! symbolic links are resolved), a local repository that exists, and no hosts that resolve to
//! loopback, private, link-local or metadata addresses (a scan service that fetches arbitrary
//! URLs is otherwise an SSRF vector).
//!
//! The host check ([`scanstream_platform::net::HostPolicy`]) here is the first line; scanners
//! check again before each fetch, which also covers DNS answers that changed in between. They
//! run the same [`RepoRules`] on every command, so they accept exactly what ingest writes.

use std::fmt;

use scanstream_contracts::RepoKey;
use scanstream_platform::net::{HostPolicy, HostPolicyError};
use scanstream_platform::repo::{RepoRefused, RepoRules, RepoRulesError};

use super::Invalid;

/// A repository URL that passed every rule, normalized: lowercase scheme and host, no default
/// port, no trailing slash, scp-style `user@host:path` rewritten as `ssh://`, the resolved path
/// of a local repository.
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
    #[error(transparent)]
    FileRoot(#[from] RepoRulesError),
}

/// The deployment's rules for repository URLs.
pub struct RepoPolicy {
    rules: RepoRules,
    hosts: HostPolicy,
}

impl RepoPolicy {
    pub fn new(file_roots: &[String], allowed_hosts: &[String]) -> Result<Self, RepoUrlError> {
        Ok(Self {
            rules: RepoRules::new(file_roots)?,
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

    /// The rules that need no network: the shared rules, and a local repository must exist.
    fn parse_syntax(&self, text: &str) -> Result<(RepoUrl, Option<(String, u16)>), Invalid> {
        let checked = self.rules.check(text).map_err(invalid)?;
        if checked.local.as_ref().is_some_and(|local| !local.exists) {
            return Err(Invalid::new(
                "file-not-found",
                "repo names a local path under ingest.file_roots that does not exist; create the repository first",
            ));
        }
        Ok((
            RepoUrl {
                normalized: checked.normalized,
            },
            checked.host,
        ))
    }

    async fn check_host(&self, host: &str, port: u16) -> Result<(), Invalid> {
        self.hosts
            .check(host, port)
            .await
            .map_err(|refused| Invalid::new("private-address", refused.to_string()))
    }
}

fn invalid(refused: RepoRefused) -> Invalid {
    Invalid::new(refused.rule, refused.message)
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
    }

    #[test]
    fn the_scp_form_and_its_ssh_form_are_one_repository_with_one_key() {
        let p = policy();
        let key = |text: &str| {
            p.parse_syntax(text)
                .map(|(u, _)| u.key())
                .unwrap_or_else(|e| panic!("{text}: {e:?}"))
        };
        let scp = key("git@github.com:acme/payments.git");
        assert_eq!(scp.as_str(), "ssh://git@github.com/acme/payments.git");
        for same in [
            "ssh://git@github.com/acme/payments.git",
            "ssh://git@GitHub.com:22/acme/payments.git/",
            "git@github.com:/acme/payments.git",
        ] {
            assert_eq!(key(same), scp, "{same}");
        }
    }

    #[test]
    fn parts_git_would_read_as_options_are_refused() {
        for text in [
            "ssh://-oProxyCommand=calc/r.git",
            "ssh://-user@git.example.com/r.git",
            "ssh://%2duser@git.example.com/r.git",
            "git@git.example.com:-oProxyCommand=calc",
            "-oProxyCommand=calc@git.example.com:r.git",
            "git@-oProxyCommand=calc:r.git",
            "ssh://git@git.example.com/-r.git",
        ] {
            assert_eq!(syntax(text), Err("option-injection"), "{text}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn local_repositories_are_resolved_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let root = base.join("repos");
        std::fs::create_dir_all(root.join("team/repo")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::os::unix::fs::symlink(base.join("outside"), root.join("escape")).unwrap();
        let p = RepoPolicy::new(&[root.display().to_string()], &[]).unwrap();
        let syntax = |path: std::path::PathBuf| {
            p.parse_syntax(&format!("file://{}/", path.display()))
                .map(|(u, _)| u.normalized)
                .map_err(|e| e.rule)
        };
        assert_eq!(
            syntax(root.join("team/repo")),
            Ok(format!("file://{}", root.join("team/repo").display()))
        );
        // Under the root as text, outside it once the link is followed.
        assert_eq!(syntax(root.join("escape")), Err("file-root"));
        assert_eq!(syntax(root.join("escape/repo")), Err("file-root"));
        // Not there (yet): refused clearly rather than queued to fail.
        assert_eq!(syntax(root.join("team/other")), Err("file-not-found"));
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
