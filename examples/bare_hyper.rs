//! A bare hyper 1.x server that answers every request with one file's
//! bytes held in memory, for comparing `herald serve` with hyper itself in
//! `benches/wrk_vs_nginx.sh` (`BARE=1`):
//!
//! ```text
//! cargo run --release --example bare_hyper -- ADDR FILE [--auto] [--timer] [--per-thread]
//! ```
//!
//! `FILE` and `FILE.gz` are read once. A request whose `Accept-Encoding`
//! contains `gzip` gets the `.gz` bytes with `Content-Encoding: gzip`; an
//! `If-None-Match` equal to that representation's ETag gets a 304. Two
//! runtime worker threads, as Herald. By default connections are served by
//! `hyper::server::conn::http1` with no timer; `--auto` uses
//! `hyper_util`'s HTTP/1 + h2c builder as Herald does, and `--timer` adds
//! the header-read timeout (a timer armed per request head) hyper offers;
//! `--per-thread` runs two single-threaded runtimes accepting on the same
//! socket instead of one two-worker runtime (Herald deals connections to
//! its worker threads from one acceptor).
//! The first line on stderr is `listening on http://ADDR/`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

struct Rep {
    body: Bytes,
    etag: HeaderValue,
}

struct Files {
    plain: Rep,
    gzip: Rep,
}

fn etag(b: &[u8]) -> HeaderValue {
    // FNV-1a: enough to tell the two bodies apart; this is not Herald's.
    let h = b.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3)
    });
    HeaderValue::from_str(&format!("\"{h:016x}\"")).expect("hex digits are a valid header value")
}

fn respond(req: &Request<hyper::body::Incoming>, f: &Files) -> Response<Full<Bytes>> {
    let gz = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let rep = if gz { &f.gzip } else { &f.plain };
    let fresh = req.headers().get(header::IF_NONE_MATCH) == Some(&rep.etag);
    let mut r = Response::new(Full::new(if fresh {
        Bytes::new()
    } else {
        rep.body.clone()
    }));
    let h = r.headers_mut();
    h.insert(header::ETAG, rep.etag.clone());
    if fresh {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        return r;
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/rss+xml; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(rep.body.len()));
    if gz {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(addr), Some(file)) = (args.first(), args.get(1)) else {
        eprintln!("usage: bare_hyper ADDR FILE [--auto] [--timer]");
        std::process::exit(2);
    };
    let auto = args.iter().any(|a| a == "--auto");
    let timer = args.iter().any(|a| a == "--timer");
    let plain = Bytes::from(std::fs::read(file)?);
    let gzip = Bytes::from(std::fs::read(format!("{file}.gz"))?);
    let files = Arc::new(Files {
        plain: Rep {
            etag: etag(&plain),
            body: plain,
        },
        gzip: Rep {
            etag: etag(&gzip),
            body: gzip,
        },
    });
    let per_thread = args.iter().any(|a| a == "--per-thread");
    let std_listener = std::net::TcpListener::bind(addr.as_str())?;
    std_listener.set_nonblocking(true)?;
    eprintln!("listening on http://{}/", std_listener.local_addr()?);
    if per_thread {
        // One single-threaded runtime per core, all accepting on the same
        // socket, as nginx's worker processes do.
        let mut threads = Vec::new();
        for _ in 0..2 {
            let l = std_listener.try_clone()?;
            let files = Arc::clone(&files);
            threads.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(serve(l, files, auto, timer))
            }));
        }
        for t in threads {
            t.join().expect("server thread")?;
        }
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(std_listener, files, auto, timer))
}

async fn serve(
    l: std::net::TcpListener,
    files: Arc<Files>,
    auto: bool,
    timer: bool,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(l)?;
    let mut auto_b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.keep_alive(true);
    if timer {
        auto_b
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        h1.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
    }
    let auto_b = Arc::new(auto_b);
    let h1 = Arc::new(h1);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let f = Arc::clone(&files);
        let svc = hyper::service::service_fn(move |req| {
            std::future::ready(Ok::<_, Infallible>(respond(&req, &f)))
        });
        let io = TokioIo::new(stream);
        if auto {
            let b = Arc::clone(&auto_b);
            tokio::spawn(async move {
                let _ = b.serve_connection(io, svc).await;
            });
        } else {
            let b = Arc::clone(&h1);
            tokio::spawn(async move {
                let _ = b.serve_connection(io, svc).await;
            });
        }
    }
}
