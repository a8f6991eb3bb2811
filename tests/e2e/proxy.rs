//! Behind a reverse proxy (`trusted_proxies`): the client named by the
//! proxy's `X-Forwarded-For` or `Forwarded` is the one the hub's rate
//! limit, the per-address connection cap and the readership counts see;
//! the same headers from any other address are not believed.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};

use crate::live::{column, parse_response, Resp, TestDaemon, DEADLINE};
use crate::util::Workspace;

const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    rustix::net::bind(&fd, &SocketAddr::new(IpAddr::V4(from), 0)).expect("bind client address");
    rustix::net::connect(&fd, &to).expect("connect");
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// One request from `from` with `headers` and a closed connection after.
fn send(from: Ipv4Addr, to: SocketAddr, head: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = connect_from(from, to);
    let mut req = format!(
        "{head} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if head.starts_with("POST") {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw, false)
}

fn junk_post(from: Ipv4Addr, to: SocketAddr, headers: &[(&str, &str)]) -> u16 {
    send(from, to, "POST /websub", headers, "hub.mode=subscribe").status
}

fn ws() -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "content/a.txt",
        column("May 1, 2025, noon", "News", "A", "Body."),
    );
    ws
}

/// One client behind the proxy going over the hub's rate gets 429 while
/// another behind the same proxy is still heard; a stranger's own
/// `X-Forwarded-For` changes nothing; readers behind the proxy are
/// counted one by one; the proxy may hold more connections than one
/// client's share.
#[test]
fn the_client_behind_a_trusted_proxy_is_the_one_limited_and_counted() {
    let d = TestDaemon::start(
        ws(),
        "trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\nmax_connections_per_ip = 2\n\
         [websub]\nbuiltin = true\nrequests_per_minute = 10\n",
    );
    let to = d.addr;
    let xff = |ip: &'static str| [("X-Forwarded-For", ip)];
    let statuses: Vec<u16> = (0..12)
        .map(|_| junk_post(PROXY, to, &xff("198.51.100.7")))
        .collect();
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // Another client of the same proxy, by either header, and through a
    // chain of trusted proxies.
    assert_eq!(junk_post(PROXY, to, &xff("198.51.100.8")), 400);
    assert_eq!(
        junk_post(PROXY, to, &[("Forwarded", "for=198.51.100.9;proto=https")]),
        400
    );
    assert_eq!(
        junk_post(PROXY, to, &xff("198.51.100.7, 198.51.100.10, 10.1.2.3")),
        400,
        "the rightmost untrusted address is the client"
    );
    assert_eq!(
        junk_post(PROXY, to, &xff("198.51.100.10, 198.51.100.7")),
        429,
        "what the client wrote itself is not believed"
    );
    // A stranger rotating X-Forwarded-For is still one client.
    let statuses: Vec<u16> = (0..12)
        .map(|i| {
            let ip = format!("203.0.113.{i}");
            junk_post(STRANGER, to, &[("X-Forwarded-For", &ip)])
        })
        .collect();
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    // 20 readers behind the proxy, 3 connections of the proxy held open
    // meanwhile (the share of one client is 2).
    let ask = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = connect_from(PROXY, to);
            s.write_all(ask.as_bytes()).unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            assert!(
                buf[..n].starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&buf[..n])
            );
            s
        })
        .collect();
    for i in 0..20 {
        let ip = format!("192.0.2.{i}");
        let r = send(PROXY, to, "GET /atom.xml", &[("X-Forwarded-For", &ip)], "");
        assert_eq!(r.status, 200);
    }
    drop(held);
    let v: serde_json::Value =
        serde_json::from_slice(&d.admin_get("/stats").body).expect("/stats is JSON");
    let n = v["days"][0]["feeds"]["/atom.xml"]["direct_pollers"]
        .as_u64()
        .unwrap();
    assert!((19..=21).contains(&n), "20 readers counted as {n}: {v}");
    d.stop();
}

/// Without `trusted_proxies`, forwarding headers are ignored: every
/// request of the proxy is the proxy's.
#[test]
fn forwarding_headers_are_ignored_by_default() {
    let d = TestDaemon::start(ws(), "[websub]\nbuiltin = true\nrequests_per_minute = 10\n");
    let statuses: Vec<u16> = (0..12)
        .map(|i| {
            let ip = format!("198.51.100.{i}");
            junk_post(PROXY, d.addr, &[("X-Forwarded-For", &ip)])
        })
        .collect();
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    d.stop();
}
