//! A connection's clock: when a connection must be closed, computed from
//! what happened on it — bytes read, bytes written — at instants passed in.
//! Pure: no system call, no timer; the socket wrapper (`io.rs`) reads the
//! time, reports events and arms one timer for [`Clock::deadline`].
//!
//! Two limits:
//!
//! - **head**: a request must be answered within `head` of its first
//!   byte (of the connection opening, for the first request). Until the
//!   first bytes prove otherwise a connection may be starting HTTP/2, but
//!   only a *complete* preface (RFC 9113 §3.4) ends the head clock: a
//!   client that sends `P` and then trickles is cut off like any slow
//!   request head (as nginx's `client_header_timeout` times the whole
//!   head, not each read).
//! - **idle**: a connection with no activity for `idle` is closed. On
//!   HTTP/1 activity is any byte either way. On HTTP/2 it is a request
//!   being answered: a HEADERS, CONTINUATION or DATA frame going out
//!   (the server answers every request at once, so a request shows as its
//!   response). PING, SETTINGS, WINDOW_UPDATE and the other control frames
//!   either way do not count, so keep-alive PINGs cannot keep an unused
//!   connection open, while a slow reader of a large response (DATA
//!   leaving as its window opens) is not idle. A reader that stops reading
//!   altogether lets no DATA out and is idle.

use std::io::IoSlice;
use std::time::Duration;

/// The HTTP/2 connection preface a client sends first (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the connection speaks, as far as its bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// Every byte read so far (this many) is a prefix of the HTTP/2
    /// preface: not known yet.
    Sniffing(u8),
    /// HTTP/1.x.
    Http1,
    /// HTTP/2, from a complete preface.
    Http2,
}

/// The deadlines of one connection. Instants are durations on one
/// monotonic clock (the caller's).
#[derive(Debug)]
pub(super) struct Clock {
    idle: Duration,
    head: Duration,
    proto: Proto,
    /// The last activity (see the module doc).
    last: Duration,
    /// When the request head now being read began; `None` once answered
    /// (and on HTTP/2).
    head_since: Option<Duration>,
    /// The frames the server writes, on HTTP/2.
    frames: FrameScan,
}

impl Clock {
    /// A connection opened at `now`: its head clock runs from now.
    pub(super) fn new(now: Duration, idle: Duration, head: Duration) -> Clock {
        Clock {
            idle,
            head,
            proto: Proto::Sniffing(0),
            last: now,
            head_since: Some(now),
            frames: FrameScan::default(),
        }
    }

    /// The instant at which the connection is over a limit.
    pub(super) fn deadline(&self) -> Duration {
        let idle = self.last.saturating_add(self.idle);
        match self.head_since {
            Some(h) => h.saturating_add(self.head).min(idle),
            None => idle,
        }
    }

    /// `bytes` (not empty) were read at `now`. Returns the new deadline
    /// when it may have moved earlier (a request head began), so the
    /// caller's timer need only be moved then.
    pub(super) fn read(&mut self, now: Duration, bytes: &[u8]) -> Option<Duration> {
        match self.proto {
            Proto::Http1 => {
                self.last = now;
                if self.head_since.is_none() {
                    self.head_since = Some(now);
                    return Some(self.deadline());
                }
                None
            }
            // Requests show as their responses; the rest is control.
            Proto::Http2 => None,
            Proto::Sniffing(seen) => {
                self.last = now;
                let want = &PREFACE[usize::from(seen)..];
                let n = bytes.len().min(want.len());
                self.proto = if bytes[..n] != want[..n] {
                    // The head clock keeps running from the opening.
                    Proto::Http1
                } else if n == want.len() {
                    self.head_since = None;
                    Proto::Http2
                } else {
                    // At most 24 bytes: fits.
                    Proto::Sniffing(seen + n as u8)
                };
                None
            }
        }
    }

    /// The first `n` bytes of `bufs` were written at `now`.
    pub(super) fn wrote(&mut self, now: Duration, bufs: &[IoSlice<'_>], n: usize) {
        match self.proto {
            Proto::Http2 => {
                if self.frames.scan(bufs, n) {
                    self.last = now;
                }
            }
            // An answer before the protocol was known (an error for a
            // connection that ended mid-preface) is HTTP/1.
            Proto::Http1 | Proto::Sniffing(_) => {
                self.proto = Proto::Http1;
                self.last = now;
                self.head_since = None;
            }
        }
    }
}

/// Follows the HTTP/2 frames in the bytes a server writes (RFC 9113 §4.1:
/// a 9-byte header with a 24-bit payload length and a type), reading
/// frame headers only and skipping payloads by their length, so a body
/// sent from a file is never touched.
#[derive(Debug, Default)]
struct FrameScan {
    /// The current frame header, `have` bytes of it seen.
    header: [u8; 9],
    have: u8,
    /// Payload bytes of the current frame still to come.
    left: usize,
    /// The current frame answers a request (HEADERS, CONTINUATION, DATA).
    answering: bool,
}

impl FrameScan {
    /// Follows the first `n` bytes of `bufs`. True when any of them
    /// belongs to a HEADERS, CONTINUATION or DATA frame.
    fn scan(&mut self, bufs: &[IoSlice<'_>], mut n: usize) -> bool {
        let mut answered = false;
        for buf in bufs {
            if n == 0 {
                break;
            }
            let mut b = &buf[..n.min(buf.len())];
            n -= b.len();
            while !b.is_empty() {
                if self.left > 0 {
                    let k = self.left.min(b.len());
                    self.left -= k;
                    answered |= self.answering;
                    b = &b[k..];
                    continue;
                }
                let have = usize::from(self.have);
                let k = (9 - have).min(b.len());
                self.header[have..have + k].copy_from_slice(&b[..k]);
                self.have += k as u8;
                b = &b[k..];
                if self.have == 9 {
                    self.have = 0;
                    let h = self.header;
                    self.left =
                        usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    // DATA, HEADERS, CONTINUATION.
                    self.answering = matches!(h[3], 0x0 | 0x1 | 0x9);
                    answered |= self.answering;
                }
            }
        }
        answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One thing that happens on a connection, at a second.
    enum Ev {
        Read(f64, &'static [u8]),
        Wrote(f64, Vec<u8>),
        /// Only the first `n` bytes of these went out.
        WrotePart(f64, Vec<u8>, usize),
    }

    fn at(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// An HTTP/2 frame: header for a `len`-byte payload of `kind`, and the
    /// payload, whose bytes read as a frame header would be a PING's (so a
    /// payload taken for headers would show).
    fn frame(kind: u8, len: usize) -> Vec<u8> {
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            0,
            0,
            0,
            0,
            1,
        ];
        f.extend(std::iter::repeat_n(PING, len));
        f
    }
    const DATA: u8 = 0x0;
    const HEADERS: u8 = 0x1;
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const WINDOW_UPDATE: u8 = 0x8;

    /// Deadlines from events, idle 60 s and head 10 s, connection opened at
    /// 0: each case lists its events and the deadline after them.
    #[test]
    fn deadlines() {
        let p = PREFACE;
        let cases: Vec<(&str, Vec<Ev>, f64)> = vec![
            ("silent: the head clock from the opening", vec![], 10.0),
            ("P first, nothing more", vec![Ev::Read(1.0, b"P")], 10.0),
            (
                "P, then the preface trickled: still the head clock",
                vec![
                    Ev::Read(1.0, b"P"),
                    Ev::Read(4.0, b"RI * "),
                    Ev::Read(8.0, b"HTTP/2.0\r\n\r\nSM\r\n\r"),
                ],
                10.0,
            ),
            (
                "preface split in two: HTTP/2, idle from its end",
                vec![Ev::Read(1.0, &p[..5]), Ev::Read(2.0, &p[5..])],
                62.0,
            ),
            (
                "preface and SETTINGS in one read",
                vec![Ev::Read(
                    1.0,
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0",
                )],
                61.0,
            ),
            (
                "P then not the preface: HTTP/1, head clock from the opening",
                vec![Ev::Read(1.0, b"P"), Ev::Read(3.0, b"OST / HTTP/1.1\r\n")],
                10.0,
            ),
            (
                "HTTP/1 request answered: idle from the answer",
                vec![
                    Ev::Read(1.0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                    Ev::Wrote(1.5, b"HTTP/1.1 200 OK\r\n".to_vec()),
                ],
                61.5,
            ),
            (
                "keep-alive: the next head's clock starts at its first byte",
                vec![
                    Ev::Read(1.0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                    Ev::Wrote(1.0, b"HTTP/1.1 200 OK\r\n".to_vec()),
                    Ev::Read(30.0, b"GET / HT"),
                    Ev::Read(35.0, b"TP/1.1\r\n"),
                ],
                40.0,
            ),
            (
                "HTTP/1 slow reader: bytes written keep it open",
                vec![
                    Ev::Read(1.0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                    Ev::Wrote(1.0, vec![b'x'; 100]),
                    Ev::Wrote(50.0, vec![b'x'; 100]),
                ],
                110.0,
            ),
            (
                "answer to a connection that ended mid-preface: HTTP/1",
                vec![
                    Ev::Read(1.0, b"PRI"),
                    Ev::Wrote(2.0, b"HTTP/1.1 400".to_vec()),
                ],
                62.0,
            ),
            (
                "idle HTTP/2: SETTINGS, PINGs and WINDOW_UPDATEs do not count",
                vec![
                    Ev::Read(0.5, p),
                    Ev::Wrote(0.5, [frame(SETTINGS, 6), frame(SETTINGS, 0)].concat()),
                    Ev::Read(0.6, b"\0\0\0\x04\x01\0\0\0\0"),
                    Ev::Wrote(30.0, frame(PING, 8)),
                    Ev::Read(30.1, b"\0\0\x08\x06\x01\0\0\0\0ABCDEFGH"),
                    Ev::Read(40.0, b"\0\0\x04\x08\0\0\0\0\0\0\x01\0\0"),
                    Ev::Wrote(45.0, frame(WINDOW_UPDATE, 4)),
                ],
                60.5,
            ),
            (
                "HTTP/2 request answered: idle from the answer",
                vec![
                    Ev::Read(0.5, p),
                    Ev::Wrote(0.5, frame(SETTINGS, 0)),
                    Ev::Read(20.0, b"\0\0\x10\x01\x05\0\0\0\x01"),
                    Ev::Wrote(20.5, [frame(HEADERS, 12), frame(DATA, 40)].concat()),
                    Ev::Wrote(50.0, frame(PING, 8)),
                ],
                80.5,
            ),
            (
                "HTTP/2 slow reader: each bit of a long DATA frame counts",
                vec![
                    Ev::Read(0.5, p),
                    Ev::Wrote(
                        1.0,
                        [frame(HEADERS, 12), frame(DATA, 1000)].concat()[..100].to_vec(),
                    ),
                    Ev::WrotePart(50.0, vec![PING; 500], 300),
                    Ev::Wrote(100.0, vec![PING; 400]),
                ],
                160.0,
            ),
            (
                "HTTP/2 frame header split across writes",
                vec![
                    Ev::Read(0.5, p),
                    Ev::Wrote(1.0, frame(PING, 8)),
                    Ev::Wrote(2.0, frame(DATA, 10)[..4].to_vec()),
                    Ev::Wrote(3.0, frame(DATA, 10)[4..].to_vec()),
                ],
                63.0,
            ),
            (
                "HTTP/2 stalled reader: no DATA goes out, idle after the last",
                vec![
                    Ev::Read(0.5, p),
                    Ev::Wrote(5.0, [frame(HEADERS, 12), frame(DATA, 16384)].concat()),
                    Ev::Wrote(40.0, frame(PING, 8)),
                ],
                65.0,
            ),
        ];
        for (label, events, want) in cases {
            let mut c = Clock::new(Duration::ZERO, at(60.0), at(10.0));
            for ev in events {
                match ev {
                    Ev::Read(t, b) => {
                        if let Some(d) = c.read(at(t), b) {
                            assert_eq!(d, c.deadline(), "{label}: the deadline returned");
                        }
                    }
                    Ev::Wrote(t, b) => c.wrote(at(t), &[IoSlice::new(&b)], b.len()),
                    Ev::WrotePart(t, b, n) => {
                        let (x, y) = b.split_at(b.len() / 2);
                        c.wrote(at(t), &[IoSlice::new(x), IoSlice::new(y)], n)
                    }
                }
            }
            assert_eq!(c.deadline(), at(want), "{label}");
        }
    }

    /// A head starting on an idle keep-alive connection moves the deadline
    /// earlier, and says so; bytes of the same head do not.
    #[test]
    fn head_start_reported() {
        let mut c = Clock::new(Duration::ZERO, at(60.0), at(10.0));
        assert_eq!(c.read(at(1.0), b"GET / HTTP/1.1\r\n"), None, "sniffing");
        c.wrote(at(1.0), &[IoSlice::new(b"HTTP/1.1 200 OK\r\n")], 17);
        assert_eq!(c.deadline(), at(61.0));
        assert_eq!(c.read(at(5.0), b"GET"), Some(at(15.0)));
        assert_eq!(c.read(at(6.0), b" / HTTP/1.1\r\n"), None);
        assert_eq!(c.deadline(), at(15.0));
    }
}
