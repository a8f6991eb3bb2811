//! Outgoing HTTP for WebSub: one `reqwest` client (rustls with the
//! webpki roots; no proxy from the environment, no redirects, a timeout
//! on every request), and the address policy that keeps subscribers from
//! aiming Herald at its own network (SSRF): a callback may not reach a
//! loopback, private, link-local, multicast or otherwise special address;
//! `allow_private_callbacks` lets loopback and private ones through, never
//! link-local or cloud metadata addresses (see [`refused`]). The policy is applied to the
//! addresses actually connected to — a DNS resolver that drops forbidden
//! ones, and a check of IP literals before each request — so a name that
//! resolves to a public address when subscribing and to 127.0.0.1 when
//! delivering (DNS rebinding) still reaches nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address may not be a callback's, or `None` when it may.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if v4.is_unspecified() || a == 0 {
                Some("unspecified")
            } else if v4.is_broadcast() || a >= 240 {
                Some("reserved")
            } else if v4.octets() == [100, 100, 100, 200] {
                // Alibaba Cloud's instance metadata service.
                Some("metadata")
            } else if a == 100 && (64..128).contains(&b) {
                // RFC 6598 shared address space (carrier-grade NAT).
                Some("private")
            } else if v4.is_documentation() || (a == 198 && (b == 18 || b == 19)) {
                Some("reserved")
            } else if a == 192 && b == 0 && v4.octets()[2] == 0 {
                // RFC 6890 IETF protocol assignments.
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            if seg == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] {
                // AWS's instance metadata service over IPv6.
                Some("metadata")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if seg[0] & 0xfe00 == 0xfc00 || seg[0] & 0xffc0 == 0xfec0 {
                // Unique local (RFC 4193) and the old site-local.
                Some("private")
            } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
                Some("reserved")
            } else if seg[0] == 0x2001 && seg[1] < 0x0200 {
                // IETF protocol assignments (RFC 2928: Teredo,
                // benchmarking, ORCHID …): none is a subscriber.
                Some("reserved")
            } else if seg[0] == 0x3fff && seg[1] < 0x1000 {
                // Documentation (RFC 9637).
                Some("reserved")
            } else if seg[0] == 0x0064 && seg[1] == 0xff9b && seg[2] == 0x0001 {
                // Local-use NAT64 (RFC 8215): the operator's own network.
                Some("private")
            } else if seg[0] == 0x0064 && seg[1] == 0xff9b {
                // NAT64 (RFC 6052): the IPv4 address it embeds decides.
                let v4 = std::net::Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                );
                forbidden(IpAddr::V4(v4))
            } else if seg[0] == 0x2002 {
                // 6to4 (RFC 3056): likewise.
                let v4 = std::net::Ipv4Addr::new(
                    (seg[1] >> 8) as u8,
                    seg[1] as u8,
                    (seg[2] >> 8) as u8,
                    seg[2] as u8,
                );
                forbidden(IpAddr::V4(v4))
            } else if seg[0] & 0xe000 != 0x2000 {
                // Outside global unicast (2000::/3): IPv4-compatible
                // (::a.b.c.d) and IPv4-translated (::ffff:0:a.b.c.d)
                // addresses, the discard prefix 100::/64, and the rest
                // of the unassigned space.
                Some("reserved")
            } else {
                None
            }
        }
    }
}

/// Why a callback may not use `ip` under the setting `allow_private`, or
/// `None` when it may: with the setting, loopback and private addresses
/// are allowed; link-local and metadata addresses, like every other
/// special range, never are (a subscriber must not reach a cloud's
/// instance metadata, whatever the setting).
pub fn refused(ip: IpAddr, allow_private: bool) -> Option<&'static str> {
    match forbidden(ip)? {
        "loopback" | "private" if allow_private => None,
        why => Some(why),
    }
}

/// The addresses of `addrs` a callback may use; the reason of the first
/// refused one when none is left.
pub fn allowed(addrs: Vec<SocketAddr>, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    let mut why = None;
    let ok: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match refused(a.ip(), allow_private) {
            Some(w) => {
                why.get_or_insert_with(|| format!("{w} address {}", a.ip()));
                false
            }
            None => true,
        })
        .collect();
    match (ok.is_empty(), why) {
        (false, _) => Ok(ok),
        (true, Some(w)) => Err(format!("it resolves only to forbidden addresses ({w})")),
        (true, None) => Err("it resolves to no address".into()),
    }
}

/// The DNS resolver of the guarded client: the system's, minus every
/// forbidden address (see [`forbidden`]).
#[derive(Debug)]
struct Guarded {
    allow_private: bool,
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok = allowed(addrs, allow_private)
                .map_err(|why| format!("callback host {host}: {why}"))?;
            Ok(Box::new(ok.into_iter()) as Addrs)
        })
    }
}

/// Why `url`'s host may not be connected to, judged without DNS: an IP
/// literal in a forbidden range. Names are judged by the resolver.
pub fn literal_forbidden(url: &url::Url, allow_private: bool) -> Option<String> {
    let ip: IpAddr = match url.host()? {
        url::Host::Ipv4(v4) => v4.into(),
        url::Host::Ipv6(v6) => v6.into(),
        url::Host::Domain(_) => return None,
    };
    refused(ip, allow_private).map(|w| format!("{w} address {ip}"))
}

/// Checks a callback's host now (an IP literal, or a name resolved within
/// `timeout`): the reason it is refused, if it is.
pub async fn check_host(url: &url::Url, allow_private: bool, timeout: Duration) -> Option<String> {
    if let Some(why) = literal_forbidden(url, allow_private) {
        return Some(why);
    }
    let Some(url::Host::Domain(name)) = url.host() else {
        return None;
    };
    let port = url.port_or_known_default().unwrap_or(80);
    match tokio::time::timeout(timeout, tokio::net::lookup_host((name, port))).await {
        Err(_) => Some(format!("resolving {name} took over {timeout:?}")),
        Ok(Err(e)) => Some(format!("{name} does not resolve: {e}")),
        Ok(Ok(addrs)) => allowed(addrs.collect(), allow_private).err(),
    }
}

/// An HTTP client for WebSub requests: `guard` applies the address policy
/// (for callbacks; external hubs are the operator's and are not guarded);
/// at most `idle_per_host` idle connections are kept per host, each for
/// `idle` (0: every connection is closed after its request).
///
/// # Errors
/// The TLS backend cannot be set up.
pub fn client(
    timeout: Duration,
    guard: Option<bool>,
    user_agent: &str,
    idle_per_host: usize,
    idle: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(idle)
        .pool_max_idle_per_host(idle_per_host)
        .user_agent(user_agent);
    if let Some(allow_private) = guard {
        b = b.dns_resolver(Arc::new(Guarded { allow_private }));
    }
    b.build()
}

/// A request error as one line with its causes (reqwest's own message is
/// only "error sending request").
pub fn why(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each special range is refused with its name; public addresses of
    /// both families pass; IPv4 inside IPv6 (mapped, NAT64, 6to4) is
    /// judged as the IPv4 address it is.
    #[test]
    fn address_policy() {
        for (ip, want) in [
            ("127.0.0.1", Some("loopback")),
            ("127.8.9.10", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("100.64.0.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("224.0.0.1", Some("multicast")),
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("unspecified")),
            ("255.255.255.255", Some("reserved")),
            ("240.0.0.1", Some("reserved")),
            ("192.0.2.1", Some("reserved")),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fe80::1", Some("link-local")),
            ("fd00::1", Some("private")),
            ("ff02::1", Some("multicast")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.0.0.1", Some("private")),
            ("64:ff9b::7f00:1", Some("loopback")),
            ("2002:7f00:1::", Some("loopback")),
            ("2001:db8::1", Some("reserved")),
            ("93.184.216.34", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("2606:4700::1111", None),
            ("::ffff:93.184.216.34", None),
            ("::127.0.0.1", Some("reserved")),
            ("::ffff:0:127.0.0.1", Some("reserved")),
            ("100::1", Some("reserved")),
            ("2001::1", Some("reserved")),
            ("2001:1ff::1", Some("reserved")),
            ("3fff::1", Some("reserved")),
            ("64:ff9b:1::a00:1", Some("private")),
            ("fd00:ec2::254", Some("metadata")),
            ("100.100.100.200", Some("metadata")),
            ("2001:4860::8888", None),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(forbidden(ip), want, "{ip}");
        }
    }

    /// A resolution is cut to its public addresses (what DNS rebinding
    /// would add is dropped); nothing left is an error naming the first
    /// refused address; the setting lets everything through.
    #[test]
    fn resolutions_filtered() {
        let a = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let mixed = vec![a("127.0.0.1:80"), a("93.184.216.34:80"), a("[::1]:80")];
        assert_eq!(
            allowed(mixed.clone(), false),
            Ok(vec![a("93.184.216.34:80")])
        );
        assert_eq!(allowed(mixed.clone(), true), Ok(mixed));
        // The setting opens loopback and private ranges only.
        let meta = vec![
            a("169.254.169.254:80"),
            a("[fe80::1]:80"),
            a("[fd00:ec2::254]:80"),
        ];
        let e = allowed(meta, true).unwrap_err();
        assert!(e.contains("link-local address 169.254.169.254"), "{e}");
        assert_eq!(
            allowed(vec![a("10.0.0.1:80"), a("[ff02::1]:80")], true),
            Ok(vec![a("10.0.0.1:80")])
        );
        let e = allowed(vec![a("10.0.0.1:80"), a("[fe80::1]:80")], false).unwrap_err();
        assert!(e.contains("private address 10.0.0.1"), "{e}");
        assert!(allowed(vec![], false).unwrap_err().contains("no address"));
    }

    /// IP literals in callback URLs are judged without DNS; names are left
    /// to the resolver.
    #[test]
    fn literals() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(literal_forbidden(&u("http://127.0.0.1:9/x"), false).is_some());
        assert!(literal_forbidden(&u("http://[::1]/x"), false).is_some());
        assert!(literal_forbidden(&u("http://[::ffff:192.168.0.1]/"), false).is_some());
        assert!(literal_forbidden(&u("http://127.0.0.1/"), true).is_none());
        assert!(literal_forbidden(&u("http://169.254.169.254/"), true).is_some());
        assert!(literal_forbidden(&u("http://[::ffff:169.254.169.254]/"), true).is_some());
        assert!(literal_forbidden(&u("https://example.org/"), false).is_none());
        assert!(literal_forbidden(&u("https://93.184.216.34/"), false).is_none());
    }
}
