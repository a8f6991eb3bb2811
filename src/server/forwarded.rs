//! Who the client is behind a reverse proxy: the connection's address,
//! unless it is one of `trusted_proxies`; then the address the proxy
//! names in `Forwarded` (RFC 7239 §5.2, `for=`) or, without that header,
//! `X-Forwarded-For`. That address is what the hub's rate limit and the
//! readership counts see. Headers from any other address are ignored: a
//! client could write them itself.
//!
//! Each proxy appends the address it received the request from, so the
//! list is read from the right: trusted proxies are passed over and the
//! first address that is not one is the client. What the client wrote
//! itself sits further left and is never reached. An entry that is no
//! address (`unknown`, an obfuscated `_name`, garbage) ends the walk at
//! the last address known to be true: the proxy that sent it.

use std::net::IpAddr;

use hyper::header::{HeaderMap, HeaderName};
use ipnet::IpNet;

/// The reverse proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(std::sync::Arc<[IpNet]>);

impl TrustedProxies {
    /// Believes the proxies at `nets` (addresses are /32 or /128 networks).
    pub fn new(nets: &[IpNet]) -> TrustedProxies {
        TrustedProxies(nets.into())
    }

    /// Whether `ip` is a trusted proxy (an IPv4-mapped IPv6 address as
    /// its IPv4 address).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client a request from `peer` with `headers` comes from.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded = HeaderName::from_static("forwarded");
        let chain: Vec<&str> = if headers.contains_key(&forwarded) {
            list(headers, &forwarded)
                .map(|element| {
                    element
                        .split(';')
                        .find_map(|pair| {
                            let (k, v) = pair.split_once('=')?;
                            k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
                        })
                        .unwrap_or("")
                })
                .collect()
        } else {
            list(headers, &HeaderName::from_static("x-forwarded-for")).collect()
        };
        let mut client = peer;
        for hop in chain.iter().rev() {
            let Some(ip) = address(hop) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// The comma-separated elements of every `name` header, in order.
fn list<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`,
/// `2001:db8::1`, `[2001:db8::1]:4711`, each perhaps in quotes.
fn address(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One case per header shape: (trusted, peer, headers, client).
    #[test]
    fn the_client_is_the_rightmost_untrusted_address() {
        let nets: Vec<IpNet> = ["10.0.0.0/8", "127.0.0.1/32", "2001:db8:f::/48"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let t = TrustedProxies::new(&nets);
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("no header", "127.0.0.1", &[], "127.0.0.1"),
            (
                "stranger's header ignored",
                "192.0.2.9",
                &[("x-forwarded-for", "1.2.3.4")],
                "192.0.2.9",
            ),
            (
                "one hop",
                "127.0.0.1",
                &[("x-forwarded-for", "1.2.3.4")],
                "1.2.3.4",
            ),
            (
                "spoofed left part",
                "127.0.0.1",
                &[("x-forwarded-for", "6.6.6.6, 1.2.3.4")],
                "1.2.3.4",
            ),
            (
                "trusted hops passed",
                "127.0.0.1",
                &[("x-forwarded-for", "1.2.3.4, 10.9.8.7")],
                "1.2.3.4",
            ),
            (
                "two header lines",
                "127.0.0.1",
                &[
                    ("x-forwarded-for", "1.2.3.4"),
                    ("x-forwarded-for", "10.0.0.2"),
                ],
                "1.2.3.4",
            ),
            (
                "with port",
                "127.0.0.1",
                &[("x-forwarded-for", "1.2.3.4:5678")],
                "1.2.3.4",
            ),
            (
                "garbage stops at the proxy",
                "127.0.0.1",
                &[("x-forwarded-for", "1.2.3.4, nonsense")],
                "127.0.0.1",
            ),
            (
                "all trusted",
                "127.0.0.1",
                &[("x-forwarded-for", "10.0.0.3")],
                "10.0.0.3",
            ),
            (
                "forwarded",
                "127.0.0.1",
                &[("forwarded", "for=1.2.3.4;proto=https")],
                "1.2.3.4",
            ),
            (
                "forwarded v6",
                "127.0.0.1",
                &[("forwarded", "for=\"[2001:db8::17]:4711\"")],
                "2001:db8::17",
            ),
            (
                "forwarded chain",
                "127.0.0.1",
                &[("forwarded", "for=6.6.6.6, for=1.2.3.4;by=x, For=10.0.0.1")],
                "1.2.3.4",
            ),
            (
                "forwarded wins",
                "127.0.0.1",
                &[("forwarded", "for=1.2.3.4"), ("x-forwarded-for", "5.6.7.8")],
                "1.2.3.4",
            ),
            (
                "forwarded unknown",
                "127.0.0.1",
                &[("forwarded", "for=unknown")],
                "127.0.0.1",
            ),
            (
                "mapped proxy",
                "::ffff:127.0.0.1",
                &[("x-forwarded-for", "1.2.3.4")],
                "1.2.3.4",
            ),
            (
                "v6 proxy network",
                "2001:db8:f::1",
                &[("x-forwarded-for", "2001:db8:1::1")],
                "2001:db8:1::1",
            ),
        ];
        for (label, peer, headers, want) in cases {
            let mut map = HeaderMap::new();
            for (k, v) in *headers {
                map.append(HeaderName::from_static(k), v.parse().unwrap());
            }
            let got = t.client(peer.parse().unwrap(), &map);
            assert_eq!(got, want.parse::<IpAddr>().unwrap(), "{label}");
        }
        assert!(!TrustedProxies::default().trusts("127.0.0.1".parse().unwrap()));
    }
}
