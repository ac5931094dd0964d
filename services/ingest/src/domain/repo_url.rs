//! Repository URLs: allowed schemes, no credentials, local paths only under configured roots,
//! and no hosts that resolve to loopback, private, link-local or metadata addresses (a scan
//! service that fetches arbitrary URLs is otherwise an SSRF vector).
//!
//! The check here is the first line; scanners check the resolved address again when they
//! connect, which also covers DNS answers that change in between.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Component, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use scanstream_contracts::RepoKey;
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
    #[error("ingest.allowed_hosts entry {0:?} is neither a host name nor a CIDR")]
    AllowedHost(String),
    #[error("ingest.file_roots entry {0:?} must be an absolute path without '..'")]
    FileRoot(String),
}

enum HostRule {
    Name(String),
    Suffix(String),
    Net(IpNet),
}

/// How long a DNS answer is reused, and how many are kept.
const DNS_TTL: Duration = Duration::from_secs(60);
const DNS_CACHE_MAX: usize = 10_000;
const DNS_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_URL_LEN: usize = 2048;

/// The deployment's rules for repository URLs.
pub struct RepoPolicy {
    file_roots: Vec<PathBuf>,
    allowed: Vec<HostRule>,
    dns: Mutex<HashMap<String, (Instant, Vec<IpAddr>)>>,
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
        let mut allowed = Vec::new();
        for entry in allowed_hosts {
            let entry = entry.trim().to_ascii_lowercase();
            if let Ok(net) = entry.parse::<IpNet>() {
                allowed.push(HostRule::Net(net));
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                allowed.push(HostRule::Net(IpNet::from(ip)));
            } else if let Some(suffix) = entry.strip_prefix("*.") {
                allowed.push(HostRule::Suffix(format!(".{suffix}")));
            } else if !entry.is_empty()
                && entry
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                allowed.push(HostRule::Name(entry));
            } else {
                return Err(RepoUrlError::AllowedHost(entry));
            }
        }
        Ok(Self {
            file_roots: roots,
            allowed,
            dns: Mutex::new(HashMap::new()),
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
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name_allowed = self.allowed.iter().any(|rule| match rule {
            HostRule::Name(n) => n == bare,
            HostRule::Suffix(s) => bare.ends_with(s.as_str()),
            HostRule::Net(_) => false,
        });
        if name_allowed {
            return Ok(());
        }
        let refused = || {
            Invalid::new(
                "private-address",
                format!(
                    "repo host {bare} is or resolves to a loopback, private, link-local or metadata \
                     address; an operator can allow it in ingest.allowed_hosts"
                ),
            )
        };
        if bare == "localhost" || bare.ends_with(".localhost") || bare == "metadata.google.internal"
        {
            return Err(refused());
        }
        let addresses = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.resolve(bare, port).await,
        };
        for ip in addresses {
            let ip_allowed = self
                .allowed
                .iter()
                .any(|rule| matches!(rule, HostRule::Net(net) if net.contains(&ip)));
            if forbidden(ip) && !ip_allowed {
                return Err(refused());
            }
        }
        Ok(())
    }

    /// The host's addresses, cached; none when it does not resolve (the scanner then fails the
    /// fetch with a clear reason, and checks again whatever it resolves then).
    async fn resolve(&self, host: &str, port: u16) -> Vec<IpAddr> {
        if let Ok(cache) = self.dns.lock()
            && let Some((at, ips)) = cache.get(host)
            && at.elapsed() < DNS_TTL
        {
            return ips.clone();
        }
        let lookup = tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port))).await;
        let ips: Vec<IpAddr> = match lookup {
            Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
            _ => Vec::new(),
        };
        if let Ok(mut cache) = self.dns.lock() {
            if cache.len() >= DNS_CACHE_MAX {
                cache.clear();
            }
            cache.insert(host.to_owned(), (Instant::now(), ips.clone()));
        }
        ips
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

/// Addresses a repository must never be fetched from.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local, incl. fd00:ec2::254 (AWS metadata)
                || (first & 0xffc0) == 0xfe80 // link-local
                || is_nat64_of_forbidden(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, incl. 169.254.169.254 (cloud metadata)
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn is_nat64_of_forbidden(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [hi, lo] = [s[6], s[7]];
        let v4 = Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
        return forbidden_v4(v4);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RepoPolicy {
        RepoPolicy::new(
            &["/srv/git".into()],
            &["git.internal.example".into(), "10.9.0.0/16".into()],
        )
        .unwrap_or_else(|e| panic!("{e}"))
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
