//! Which network hosts repositories may be fetched from. A scan service that fetches arbitrary
//! URLs is otherwise an SSRF vector: hosts that are or resolve to loopback, private, link-local,
//! carrier-grade NAT or cloud metadata addresses are refused unless an operator allows them
//! (`ingest.allowed_hosts`). Ingest checks when it accepts a request; the scanner checks again
//! before each fetch, which also covers DNS answers that changed in between.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;
use ipnet::IpNet;

/// How long a DNS answer is reused, and how many are kept.
const DNS_TTL: Duration = Duration::from_secs(60);
const DNS_CACHE_MAX: usize = 10_000;
const DNS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum HostPolicyError {
    #[error("ingest.allowed_hosts entry {0:?} is neither a host name nor a CIDR")]
    AllowedHost(String),
}

/// A host that must not be fetched from; the message names the host and how to allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "repo host {0} is or resolves to a loopback, private, link-local or metadata address; an operator can allow it in ingest.allowed_hosts"
)]
pub struct HostRefused(pub String);

#[derive(Debug)]
enum HostRule {
    Name(String),
    Suffix(String),
    Net(IpNet),
}

/// The deployment's allowed hosts and a small DNS cache.
#[derive(Debug)]
pub struct HostPolicy {
    allowed: Vec<HostRule>,
    dns: Mutex<HashMap<String, (Instant, Vec<IpAddr>)>>,
}

impl HostPolicy {
    /// `allowed_hosts`: host names, `*.suffix` patterns, IPs or CIDRs.
    pub fn new(allowed_hosts: &[String]) -> Result<Self, HostPolicyError> {
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
                return Err(HostPolicyError::AllowedHost(entry));
            }
        }
        Ok(Self {
            allowed,
            dns: Mutex::new(HashMap::new()),
        })
    }

    /// Refuses `host` when it is, or resolves to, a forbidden address that is not allowed. A
    /// host that does not resolve passes: fetching it then fails with git's own reason.
    pub async fn check(&self, host: &str, port: u16) -> Result<(), HostRefused> {
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let name_allowed = self.allowed.iter().any(|rule| match rule {
            HostRule::Name(n) => *n == bare,
            HostRule::Suffix(s) => bare.ends_with(s.as_str()),
            HostRule::Net(_) => false,
        });
        if name_allowed {
            return Ok(());
        }
        if bare == "localhost" || bare.ends_with(".localhost") || bare == "metadata.google.internal"
        {
            return Err(HostRefused(bare));
        }
        let addresses = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.resolve(&bare, port).await,
        };
        for ip in addresses {
            let ip_allowed = self
                .allowed
                .iter()
                .any(|rule| matches!(rule, HostRule::Net(net) if net.contains(&ip)));
            if forbidden(ip) && !ip_allowed {
                return Err(HostRefused(bare));
            }
        }
        Ok(())
    }

    /// The host's addresses, cached; none when it does not resolve.
    async fn resolve(&self, host: &str, port: u16) -> Vec<IpAddr> {
        if let Some((at, ips)) = lock(&self.dns).get(host)
            && at.elapsed() < DNS_TTL
        {
            return ips.clone();
        }
        let lookup = tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port))).await;
        let ips: Vec<IpAddr> = match lookup {
            Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
            _ => Vec::new(),
        };
        {
            let mut cache = lock(&self.dns);
            if cache.len() >= DNS_CACHE_MAX {
                cache.clear();
            }
            cache.insert(host.to_owned(), (Instant::now(), ips.clone()));
        }
        ips
    }
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

    #[tokio::test]
    async fn private_and_metadata_hosts_are_refused_unless_allowed() {
        let policy =
            HostPolicy::new(&["git.internal.example".into(), "10.9.0.0/16".into()]).unwrap();
        for bad in [
            "127.0.0.1",
            "localhost",
            "169.254.169.254",
            "10.0.0.5",
            "192.168.1.1",
            "[::1]",
            "[fd00:ec2::254]",
            "[::ffff:127.0.0.1]",
            "metadata.google.internal",
            "100.64.0.1",
        ] {
            assert!(policy.check(bad, 443).await.is_err(), "{bad}");
        }
        for ok in ["10.9.3.4", "git.internal.example", "93.184.216.34"] {
            assert!(policy.check(ok, 443).await.is_ok(), "{ok}");
        }
        assert!(HostPolicy::new(&["bad host!".into()]).is_err());
    }
}
