//! Keeping webhooks off the gateway's own network (SSRF).
//!
//! A webhook URL is chosen by a tenant, and the gateway POSTs to it from
//! inside the operator's network. Unless `webhooks.allow_private_targets` is
//! set, a target that resolves to a loopback, private, link-local, CGNAT,
//! multicast or unspecified address is refused twice:
//! - at registration ([`check_url`], which resolves the host), so a tenant
//!   learns at once, and
//! - at every delivery, inside the HTTP client's resolver ([`CheckedResolver`]):
//!   the addresses checked are the addresses connected to, so a name that
//!   resolved to a public address at registration and to 127.0.0.1 now (DNS
//!   rebinding) is still refused. IP-literal URLs never reach a resolver and
//!   are checked by [`check_literal`].
//!
//! A private target and a name that does not resolve are refused with one
//! message, naming neither host nor address: the tenant learns that a target
//! is refused, not which of the operator's names exist.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::dns::Name;

/// Why a webhook target is refused. The message reaches the tenant (the 400
/// at registration, a delivery attempt's `error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the webhook URL must be an absolute http(s) URL with a host and no credentials")]
    BadUrl,
    /// The host and address stay in the value (its `Debug`); the message never shows them.
    #[error("{UNREACHABLE}")]
    Private { host: String, ip: IpAddr },
    #[error("{UNREACHABLE}")]
    Unresolvable(String),
}

/// One message for a private target and a name that does not resolve, with
/// no host in it: were they told apart, a tenant could map which internal
/// names exist by registering guesses (`db.internal` "is private",
/// `nope.internal` "does not resolve").
const UNREACHABLE: &str =
    "the webhook URL's host is not a reachable public address (private, loopback and unresolvable hosts are refused)";

/// Whether an address is off limits for webhooks by default.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking 198.18/15
                || a >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (v6.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible
                || (first == 0x64 && v6.segments()[1] == 0xff9b) // NAT64 64:ff9b::/96 and 64:ff9b:1::/48
                || (first == 0x2002 && {
                    // 6to4 2002::/16 wraps an IPv4 address in its next 32 bits.
                    let [_, hi, lo, ..] = v6.segments();
                    is_private(IpAddr::V4(std::net::Ipv4Addr::from(((hi as u32) << 16) | lo as u32)))
                })
        }
    }
}

/// The URL's host and port, if it is an http(s) URL a webhook may use.
pub fn parse_url(url: &str) -> Result<(Uri, String, u16), TargetError> {
    let uri: Uri = url.parse().map_err(|_| TargetError::BadUrl)?;
    let port = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return Err(TargetError::BadUrl),
    };
    let authority = uri.authority().ok_or(TargetError::BadUrl)?;
    if authority.as_str().contains('@') || url.len() > 2048 {
        return Err(TargetError::BadUrl);
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    if host.is_empty() {
        return Err(TargetError::BadUrl);
    }
    let port = authority.port_u16().unwrap_or(port);
    Ok((uri, host, port))
}

/// An IP-literal host is checked without DNS; `Ok(false)` for a name.
pub fn check_literal(host: &str, allow_private: bool) -> Result<bool, TargetError> {
    match host.parse::<IpAddr>() {
        Ok(ip) if !allow_private && is_private(ip) => Err(TargetError::Private { host: host.into(), ip }),
        Ok(_) => Ok(true),
        Err(_) => Ok(false),
    }
}

/// Checks a URL at registration: well formed and, unless private targets are
/// allowed, resolving only to public addresses.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), TargetError> {
    let (_, host, port) = parse_url(url)?;
    if check_literal(&host, allow_private)? || allow_private {
        return Ok(());
    }
    resolve_public(&host, port).await.map(|_| ())
}

/// Resolves `host` and refuses it if any address is private: a name with one
/// public and one private address could be steered to the private one.
async fn resolve_public(host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(|_| TargetError::Unresolvable(host.into()))?.collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable(host.into()));
    }
    if let Some(bad) = addrs.iter().find(|a| is_private(a.ip())) {
        return Err(TargetError::Private { host: host.into(), ip: bad.ip() });
    }
    Ok(addrs)
}

/// The delivery client's resolver: the addresses it returns are the ones
/// connected to, checked at connect time.
#[derive(Debug, Clone, Copy)]
pub struct CheckedResolver {
    pub allow_private: bool,
}

type Resolving = Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, TargetError>> + Send>>;

impl tower::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = TargetError;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TargetError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // The connector sets the port; 0 here.
            let addrs = if allow_private {
                tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map_err(|_| TargetError::Unresolvable(host.clone()))?
                    .collect()
            } else {
                resolve_public(&host, 0).await?
            };
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "172.32.0.1"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_no_credentials() {
        assert!(parse_url("https://example.com/hook").is_ok());
        assert_eq!(parse_url("http://[::1]:8080/x").unwrap().1, "::1");
        for bad in ["ftp://example.com", "example.com/hook", "http://user:pw@example.com/", "http:///x"] {
            assert_eq!(parse_url(bad).map(|_| ()), Err(TargetError::BadUrl), "{bad}");
        }
    }

    #[tokio::test]
    async fn registration_checks_literals_and_names() {
        assert!(matches!(check_url("http://127.0.0.1:9/x", false).await, Err(TargetError::Private { .. })));
        assert!(matches!(check_url("http://localhost:9/x", false).await, Err(TargetError::Private { .. })));
        assert!(matches!(check_url("http://[::1]/x", false).await, Err(TargetError::Private { .. })));
        assert!(check_url("http://127.0.0.1:9/x", true).await.is_ok());
        assert!(matches!(check_url("http://no-such-host.invalid/x", false).await, Err(TargetError::Unresolvable(_))));
    }

    #[test]
    fn private_and_unresolvable_read_the_same_and_name_no_host() {
        let private = TargetError::Private { host: "db.internal".into(), ip: "10.0.0.5".parse().unwrap() };
        let unknown = TargetError::Unresolvable("nope.internal".into());
        assert_eq!(private.to_string(), unknown.to_string());
        assert!(!private.to_string().contains("internal") && !private.to_string().contains("10.0"));
    }
}
