//! Which repository URLs may be fetched: the one check ingest applies to every request and the
//! scanner applies again to every command it reads, so both accept exactly the same URLs.
//!
//! [`RepoRules::check`] needs no network (ingest and the scanner add the address check of
//! [`crate::net::HostPolicy`]):
//! - schemes `https`, `ssh`, `git` and `file`; git's scp-like `user@host:path` is rewritten as
//!   `ssh://user@host/path` here and nowhere else ([`scp_to_ssh`]), so both spellings are one
//!   repository with one key;
//! - no credentials (an `ssh://` user name is not one), no query or fragment, no `.`/`..`
//!   segments or encoded separators;
//! - no user name, host or first path segment that starts with `-` ([`refuse_options`]): git
//!   hands them to `ssh` (or to the remote `git-upload-pack`) as arguments, where
//!   `ssh://-oProxyCommand=…` would be an option that runs a command;
//! - `file://` only under the configured roots, compared after both the path and the roots are
//!   resolved (symbolic links followed, [`std::fs::canonicalize`]): a link under a root that
//!   leads outside it does not pass, and neither does a link that leads nowhere.
//!
//! The normalized URL (lowercase scheme and host, no default port, no trailing slash, the
//! resolved path of a local repository) is what ingest writes and what keys `scans.commands`.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use url::Url;

/// The longest repository URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// A refused repository URL: the rule it broke (a stable identifier clients may match on) and a
/// message safe to show: it never repeats the URL or any part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RepoRefused {
    pub rule: &'static str,
    pub message: String,
}

impl RepoRefused {
    fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }
}

/// A configured root that cannot be one.
#[derive(Debug, thiserror::Error)]
pub enum RepoRulesError {
    #[error("ingest.file_roots entry {0:?} must be an absolute path without '.' or '..'")]
    FileRoot(String),
}

/// A repository URL that passed [`RepoRules::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRepo {
    /// The normalized URL: what ingest writes, and the repository's key on `scans.commands`.
    pub normalized: String,
    /// Host (lowercase, IPv6 in brackets) and port to check against the address policy; `None`
    /// for `file://`.
    pub host: Option<(String, u16)>,
    /// Where a `file://` repository really is.
    pub local: Option<LocalRepo>,
}

/// The resolved path of a `file://` repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRepo {
    /// The path with every symbolic link followed; a part that does not exist yet is appended
    /// as written (it cannot be a link while it does not exist).
    pub path: PathBuf,
    /// Whether the whole path exists now. Ingest refuses a repository that does not (yet); the
    /// scanner lets its fetch fail, so a repository deleted after it was accepted fails its
    /// run instead of being dead-lettered.
    pub exists: bool,
}

/// The deployment's rules for repository URLs: today, the folders `file://` repositories may
/// be in (`ingest.file_roots`). The default has none, so it refuses every `file://` URL.
#[derive(Debug, Clone, Default)]
pub struct RepoRules {
    file_roots: Vec<PathBuf>,
}

impl RepoRules {
    /// `file_roots`: absolute folders without `.` or `..`. They need not exist yet; they are
    /// resolved at each check, so a root that is itself reached through a link works.
    pub fn new<P: AsRef<Path>>(file_roots: &[P]) -> Result<Self, RepoRulesError> {
        let mut roots = Vec::new();
        for root in file_roots {
            let path = root.as_ref();
            if !path.is_absolute()
                || path
                    .components()
                    .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
            {
                return Err(RepoRulesError::FileRoot(path.display().to_string()));
            }
            roots.push(path.to_path_buf());
        }
        Ok(Self { file_roots: roots })
    }

    /// Every rule that needs no network (see the module documentation). Touches the file
    /// system only for `file://` URLs.
    pub fn check(&self, text: &str) -> Result<CheckedRepo, RepoRefused> {
        let text = text.trim();
        if text.is_empty() {
            return Err(RepoRefused::new("required", "repo must not be empty"));
        }
        if text.len() > MAX_URL_LEN {
            return Err(RepoRefused::new(
                "url-form",
                format!("repo is longer than {MAX_URL_LEN} characters"),
            ));
        }
        // Checked on the raw text: URL parsing would silently resolve `..` away.
        refuse_traversal(text)?;
        let rewritten = scp_to_ssh(text)?;
        let target = match &rewritten {
            Some(ssh) => {
                refuse_traversal(ssh)?;
                ssh.as_str()
            }
            None => text,
        };
        let url = Url::parse(target)
            .map_err(|e| RepoRefused::new("url-form", format!("repo is not a URL: {e}")))?;
        let scheme = url.scheme().to_ascii_lowercase();
        if !matches!(scheme.as_str(), "https" | "ssh" | "git" | "file") {
            return Err(RepoRefused::new(
                "scheme",
                format!("repo scheme {scheme:?} is not allowed; use https, ssh, git or file"),
            ));
        }
        if url.password().is_some() || (scheme != "ssh" && !url.username().is_empty()) {
            return Err(RepoRefused::new(
                "no-credentials",
                "repo must not carry credentials; scanners take them from their configuration",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(RepoRefused::new(
                "url-form",
                "repo must not have a query or fragment",
            ));
        }
        if scheme == "file" {
            return self.file_url(&url);
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err(RepoRefused::new("url-form", "repo must name a host")),
        };
        if host.is_empty() {
            return Err(RepoRefused::new("url-form", "repo must name a host"));
        }
        refuse_option_parts(&url)?;
        let trimmed = url.path().trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(RepoRefused::new(
                "url-form",
                "repo must name a repository path",
            ));
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
        Ok(CheckedRepo {
            normalized: format!("{scheme}://{user}{host}{port_part}{trimmed}"),
            host: Some((host, port)),
            local: None,
        })
    }

    fn file_url(&self, url: &Url) -> Result<CheckedRepo, RepoRefused> {
        if url
            .host_str()
            .is_some_and(|h| !h.is_empty() && h != "localhost")
        {
            return Err(RepoRefused::new(
                "url-form",
                "file URLs must not name a host",
            ));
        }
        let path = url
            .to_file_path()
            .map_err(|()| RepoRefused::new("url-form", "file URL does not name a local path"))?;
        if path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(RepoRefused::new(
                "path-traversal",
                "repo path must not contain '.' or '..'",
            ));
        }
        let local = self.resolve_local(&path)?;
        let shown = local.path.to_str().ok_or_else(|| {
            RepoRefused::new("url-form", "a local repository path must be valid UTF-8")
        })?;
        // These would read differently once the normalized URL is parsed again.
        if shown.contains(['%', '#', '?', '\\']) {
            return Err(RepoRefused::new(
                "url-form",
                "a local repository path must not contain '%', '#', '?' or '\\'",
            ));
        }
        let trimmed = shown.trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(RepoRefused::new(
                "url-form",
                "repo must name a repository path",
            ));
        }
        Ok(CheckedRepo {
            normalized: format!("file://{trimmed}"),
            host: None,
            local: Some(local),
        })
    }

    /// Where the absolute `path` really leads, refused unless that is under one of the roots
    /// (resolved the same way).
    pub fn resolve_local(&self, path: &Path) -> Result<LocalRepo, RepoRefused> {
        let (real, exists) = match resolve(path) {
            Ok(resolved) => resolved,
            Err(Unresolvable::DanglingLink) => {
                return Err(RepoRefused::new(
                    "file-root",
                    "repo path goes through a symbolic link that leads nowhere, so it cannot be shown to lie under ingest.file_roots",
                ));
            }
            Err(Unresolvable::Io(e)) => {
                return Err(RepoRefused::new(
                    "file-root",
                    format!(
                        "repo path cannot be resolved ({}), so it cannot be shown to lie under ingest.file_roots",
                        e.kind()
                    ),
                ));
            }
        };
        let inside = self
            .file_roots
            .iter()
            .filter_map(|root| resolve(root).ok())
            .any(|(root, _)| real.starts_with(&root));
        if !inside {
            return Err(RepoRefused::new(
                "file-root",
                "file:// repositories are allowed only under the configured ingest.file_roots (symbolic links are followed before the check)",
            ));
        }
        Ok(LocalRepo { path: real, exists })
    }
}

/// git's scp-like syntax `user@host:path` as `ssh://user@host/path`; `Ok(None)` when `text` is
/// not in that syntax (it has a scheme, names no user, or its host or user are not plain).
/// Refuses, like the URL form, a user, host or path that starts with `-`.
///
/// The path is taken as it is written; like every git hosting service, the rewritten form reads
/// it from the root (`git@host:org/repo` becomes `ssh://git@host/org/repo`). A server that
/// resolves scp paths from the user's home folder is reached with `ssh://user@host/~/path`.
pub fn scp_to_ssh(text: &str) -> Result<Option<String>, RepoRefused> {
    if text.contains("://") {
        return Ok(None);
    }
    let Some((user_host, path)) = text.split_once(':') else {
        return Ok(None);
    };
    // As for git: with a '/' before the first ':' it is a local path, not scp syntax.
    if user_host.contains('/') {
        return Ok(None);
    }
    let Some((user, host)) = user_host.rsplit_once('@') else {
        return Ok(None);
    };
    refuse_option_like("user name", user)?;
    refuse_option_like("host", host)?;
    refuse_option_like("path", path)?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    if !plain(user) || !plain(host) || path.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!("ssh://{user}@{host}/{path}")))
}

/// The option guard alone ([`RepoRules::check`] applies it too), for a URL about to be handed to
/// git: no user name, host or first path segment that starts with `-` (or its encoding `%2d`).
pub fn refuse_options(text: &str) -> Result<(), RepoRefused> {
    let text = text.trim();
    let rewritten = scp_to_ssh(text)?;
    let url = Url::parse(rewritten.as_deref().unwrap_or(text))
        .map_err(|e| RepoRefused::new("url-form", format!("repo is not a URL: {e}")))?;
    refuse_option_parts(&url)
}

fn refuse_option_parts(url: &Url) -> Result<(), RepoRefused> {
    refuse_option_like("user name", url.username())?;
    refuse_option_like("host", url.host_str().unwrap_or_default())?;
    let first = url
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    refuse_option_like("path", first)
}

fn refuse_option_like(what: &str, part: &str) -> Result<(), RepoRefused> {
    let lowered = part.to_ascii_lowercase();
    if lowered.starts_with('-') || lowered.starts_with("%2d") {
        return Err(RepoRefused::new(
            "option-injection",
            format!("repo {what} must not start with '-': git would hand it to ssh as an option"),
        ));
    }
    Ok(())
}

fn refuse_traversal(text: &str) -> Result<(), RepoRefused> {
    let lowered = text.to_ascii_lowercase();
    if text.split(['/', '\\']).any(|s| s == ".." || s == ".")
        || lowered.contains("%2e")
        || lowered.contains("%2f")
        || lowered.contains("%5c")
    {
        return Err(RepoRefused::new(
            "path-traversal",
            "repo path must not contain '.', '..' or encoded separators",
        ));
    }
    Ok(())
}

enum Unresolvable {
    /// A symbolic link whose target does not exist.
    DanglingLink,
    Io(io::Error),
}

/// `path` (absolute, without `.`/`..`) with every symbolic link followed, and whether all of it
/// exists. The missing tail of a path that does not exist (yet) is appended to the resolved
/// folder that holds it.
fn resolve(path: &Path) -> Result<(PathBuf, bool), Unresolvable> {
    let mut current = path.to_path_buf();
    let mut missing: Vec<OsString> = Vec::new();
    loop {
        match std::fs::canonicalize(&current) {
            Ok(mut real) => {
                let exists = missing.is_empty();
                for name in missing.iter().rev() {
                    real.push(name);
                }
                return Ok((real, exists));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Present, yet not found when followed: a link to nowhere (which might be
                // created later, anywhere).
                if std::fs::symlink_metadata(&current).is_ok() {
                    return Err(Unresolvable::DanglingLink);
                }
                let Some(name) = current.file_name() else {
                    return Err(Unresolvable::Io(e));
                };
                missing.push(name.to_owned());
                if !current.pop() {
                    return Err(Unresolvable::Io(e));
                }
            }
            Err(e) => return Err(Unresolvable::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RepoRules {
        RepoRules::new(&["/srv/git"]).unwrap()
    }

    fn normalized(text: &str) -> Result<String, &'static str> {
        rules()
            .check(text)
            .map(|c| c.normalized)
            .map_err(|e| e.rule)
    }

    #[test]
    fn equivalent_spellings_normalize_to_one_url() {
        assert_eq!(
            normalized("HTTPS://GitHub.com:443/Org/Repo.git/"),
            Ok("https://github.com/Org/Repo.git".into())
        );
        for scp_or_ssh in [
            "git@github.com:org/repo.git",
            "git@github.com:/org/repo.git",
            "ssh://git@GitHub.com:22/org/repo.git",
            "ssh://git@github.com/org/repo.git/",
        ] {
            assert_eq!(
                normalized(scp_or_ssh),
                Ok("ssh://git@github.com/org/repo.git".into()),
                "{scp_or_ssh}"
            );
        }
        assert_eq!(
            normalized("git://host.example:9419/r"),
            Ok("git://host.example:9419/r".into())
        );
    }

    #[test]
    fn option_like_parts_are_refused_in_every_spelling() {
        for text in [
            "ssh://-oProxyCommand=touch/r.git",
            "ssh://%2DoProxyCommand=touch/r.git",
            "ssh://-user@git.example.com/r.git",
            "ssh://%2duser@git.example.com/r.git",
            "ssh://git@git.example.com/-r.git",
            "ssh://git@git.example.com//-r.git",
            "https://-oProxyCommand=touch/r.git",
            "git://-host.example/r",
            "git@git.example.com:-oProxyCommand=touch",
            "-oProxyCommand=touch@git.example.com:r.git",
            "git@-oProxyCommand=touch:r.git",
            "-user@git.example.com:r.git",
        ] {
            let refused = rules().check(text).err();
            assert_eq!(
                refused.as_ref().map(|r| r.rule),
                Some("option-injection"),
                "{text}"
            );
            // The message names the part, never its value.
            assert!(
                refused.is_some_and(|r| !r.message.contains("touch")),
                "{text}"
            );
            assert!(refuse_options(text).is_err(), "{text}");
        }
        assert!(refuse_options("ssh://git@git.example.com/a-b/-c").is_ok());
        assert!(refuse_options("file:///srv/git/-odd").is_ok());
    }

    #[test]
    fn refuses_what_is_not_allowed() {
        let cases = [
            ("http://github.com/org/repo", "scheme"),
            ("javascript:alert(1)", "scheme"),
            ("https://ghp_token@github.com/org/repo", "no-credentials"),
            ("ssh://git:secret@github.com/org/repo", "no-credentials"),
            ("https://github.com/org/repo?x=1", "url-form"),
            ("https://github.com/", "url-form"),
            ("git@github.com:../../etc", "path-traversal"),
            ("https://github.com/org/%2e%2e/x", "path-traversal"),
            ("file:///etc/passwd", "file-root"),
            ("file:///srv/gitx/repo", "file-root"),
            ("file://otherhost/srv/git/r", "url-form"),
            ("not a url", "url-form"),
            ("", "required"),
        ];
        for (text, rule) in cases {
            assert_eq!(normalized(text), Err(rule), "{text}");
        }
        assert!(RepoRules::new(&["relative"]).is_err());
        assert!(RepoRules::new(&["/srv/../etc"]).is_err());
        assert!(RepoRules::default().check("file:///srv/git/r").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn local_paths_are_resolved_before_the_root_check() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let root = base.join("repos");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("inside")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("escape")).unwrap();
        symlink(root.join("inside"), root.join("alias")).unwrap();
        symlink(base.join("nowhere"), root.join("dangling")).unwrap();
        symlink(&root, base.join("linked-root")).unwrap();
        let rules = RepoRules::new(&[&root]).unwrap();
        let check = |p: PathBuf| rules.check(&format!("file://{}", p.display()));
        let rule = |p: PathBuf| check(p).err().map(|e| e.rule);

        let inside = check(root.join("inside")).unwrap();
        assert_eq!(
            inside.local,
            Some(LocalRepo {
                path: root.join("inside"),
                exists: true
            })
        );
        // A link inside the root is followed: one repository, one normalized URL.
        let alias = check(root.join("alias")).unwrap();
        assert_eq!(alias.normalized, inside.normalized);
        // Through the link that leaves the root, and below it: refused.
        assert_eq!(rule(root.join("escape")), Some("file-root"));
        assert_eq!(rule(root.join("escape/repo")), Some("file-root"));
        assert_eq!(rule(root.join("dangling")), Some("file-root"));
        // A missing path under the root resolves, and says it does not exist.
        let later = check(root.join("later/repo")).unwrap();
        assert_eq!(
            later.local,
            Some(LocalRepo {
                path: root.join("later/repo"),
                exists: false
            })
        );
        // A root reached through a link: both spellings are under it.
        let linked = RepoRules::new(&[base.join("linked-root")]).unwrap();
        let via = |p: PathBuf| linked.check(&format!("file://{}", p.display()));
        assert!(via(base.join("linked-root/inside")).is_ok());
        assert!(via(root.join("inside")).is_ok());
        assert!(via(base.join("linked-root/escape")).is_err());
    }
}
