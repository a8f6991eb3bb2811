//! The request path of the hub (W3C WebSub §5.1): a POSTed form with
//! `hub.mode`, `hub.topic`, `hub.callback` and optional
//! `hub.lease_seconds` and `hub.secret` (other parameters are ignored).
//! Read with a hard size cap and a time limit, validated, rate-limited
//! per client, then queued for verification: the answer is 202, or a 4xx
//! naming what is wrong, and nothing is stored before verification.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::{Hub, Intent, Mode, MAX_PENDING};
use crate::site::Site;

/// Longest callback URL accepted, bytes.
const MAX_CALLBACK: usize = 2048;

/// A secret must be shorter than this, bytes (WebSub §5.1).
const SECRET_LIMIT: usize = 200;

/// A text answer with its reason.
fn answer(status: StatusCode, text: impl Into<String>) -> Response<Full<Bytes>> {
    let mut text = text.into();
    text.push('\n');
    let mut r = crate::server::text(status, "text/plain; charset=utf-8", text);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn bad(text: impl Into<String>) -> Response<Full<Bytes>> {
    answer(StatusCode::BAD_REQUEST, text)
}

impl Hub {
    /// Answers one request to the hub from the client whose key (its
    /// address, an IPv6 one by its /64) is `client`, against the feeds of
    /// `site`. Never fails: every outcome is a response.
    pub async fn intake<B>(
        self: &Arc<Self>,
        req: Request<B>,
        client: u128,
        site: &Site,
    ) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if req.method() != Method::POST {
            let mut r = answer(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: the hub takes POSTed forms",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        if !self.within_rate(client) {
            let mut r = answer(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many hub requests from your address: at most {} a minute",
                    self.cfg.requests_per_minute
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return r;
        }
        let form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        if form.is_some_and(|t| t != "application/x-www-form-urlencoded") {
            return answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the hub takes application/x-www-form-urlencoded bodies",
            );
        }
        let max = self.cfg.max_request_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = || {
            answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {max} bytes"),
            )
        };
        if declared.is_some_and(|n| n > max as u64) {
            return too_large();
        }
        let read = Limited::new(req.into_body(), max).collect();
        let body = match tokio::time::timeout(self.cfg.body_timeout, read).await {
            Err(_) => {
                return answer(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "request body not received within {} s",
                        self.cfg.body_timeout.as_secs()
                    ),
                )
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
            // The connection's own clock (the request as a whole within
            // `header_read_timeout_secs`) ran out while the body trickled.
            Ok(Err(e)) if timed_out(&*e) => {
                return answer(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time",
                )
            }
            Ok(Err(e)) => return bad(format!("cannot read the request body: {e}")),
            Ok(Ok(b)) => b.to_bytes(),
        };
        let intent = match self.validate(&body, site) {
            Ok(i) => i,
            Err(r) => return r,
        };
        let Ok(_resolving) = self.resolving.try_acquire() else {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many subscription requests at once; try again later",
            );
        };
        if let Some(why) = super::super::net::check_host(
            &intent.callback,
            self.cfg.allow_private_callbacks,
            self.cfg.request_timeout,
        )
        .await
        {
            return bad(format!(
                "hub.callback refused: {why} (callbacks may not reach loopback, private, link-local, metadata, multicast or reserved addresses)"
            ));
        }
        self.queue(intent)
    }

    /// Parses and checks a request's form: the intent, or the answer
    /// naming what is wrong.
    #[allow(clippy::result_large_err)]
    fn validate(&self, body: &[u8], site: &Site) -> Result<Intent, Response<Full<Bytes>>> {
        let mut mode = None;
        let mut topic = None;
        let mut callback = None;
        let mut lease = None;
        let mut secret = None;
        for (k, v) in form(body) {
            let v = match v {
                Ok(v) => v,
                Err(())
                    if matches!(
                        &*k,
                        "hub.callback"
                            | "hub.secret"
                            | "hub.mode"
                            | "hub.topic"
                            | "hub.lease_seconds"
                    ) =>
                {
                    return Err(bad(format!("{k} is not valid UTF-8")));
                }
                Err(()) => continue,
            };
            let slot = match &*k {
                "hub.mode" => &mut mode,
                "hub.topic" => &mut topic,
                "hub.callback" => &mut callback,
                "hub.lease_seconds" => &mut lease,
                "hub.secret" => &mut secret,
                _ => continue,
            };
            // The first of repeated parameters counts.
            slot.get_or_insert(v);
        }
        let missing = |name: &str| bad(format!("{name} is missing"));
        let mode = match mode.as_deref() {
            None => return Err(missing("hub.mode")),
            Some("subscribe") => Mode::Subscribe,
            Some("unsubscribe") => Mode::Unsubscribe,
            Some("publish") => return Err(bad(
                "hub.mode=publish: this hub publishes only Herald's own feeds, which need no ping",
            )),
            Some(m) => {
                return Err(bad(format!(
                    "hub.mode {:?} is not subscribe or unsubscribe",
                    short(m)
                )))
            }
        };
        let topic = topic.ok_or_else(|| missing("hub.topic"))?;
        let callback = callback.ok_or_else(|| missing("hub.callback"))?;
        let route = topic
            .strip_prefix(&self.base_url)
            .map(|rest| format!("/{rest}"))
            .filter(|r| site.get(r).is_some_and(|a| a.link.is_some()));
        let Some(route) = route else {
            return Err(bad(format!(
                "hub.topic {:?} is not one of this site's feeds (they start with {})",
                short(&topic),
                self.base_url
            )));
        };
        if callback.len() > MAX_CALLBACK {
            return Err(bad(format!(
                "hub.callback is {} bytes; at most {MAX_CALLBACK}",
                callback.len()
            )));
        }
        let cb = url::Url::parse(&callback).map_err(|e| {
            bad(format!(
                "hub.callback {:?} is not a URL: {e}",
                short(&callback)
            ))
        })?;
        if !matches!(cb.scheme(), "http" | "https") || cb.host().is_none() {
            return Err(bad(format!(
                "hub.callback {:?} is not an http(s) URL",
                short(&callback)
            )));
        }
        if let Some(s) = &secret {
            if s.len() >= SECRET_LIMIT {
                return Err(bad(format!(
                    "hub.secret is {} bytes; it must be under {SECRET_LIMIT}",
                    s.len()
                )));
            }
        }
        let max_lease = self.cfg.lease_max.as_secs();
        let lease = match lease.as_deref().map(str::trim) {
            None | Some("") => self.cfg.lease_default.as_secs(),
            Some(l) => match l.parse::<u64>() {
                Ok(n) => n.clamp(1, max_lease),
                Err(_) => {
                    return Err(bad(format!(
                        "hub.lease_seconds {:?} is not a number of seconds",
                        short(l)
                    )))
                }
            },
        };
        Ok(Intent {
            mode,
            route,
            topic,
            callback: cb,
            lease,
            secret: secret.filter(|s| !s.is_empty()),
        })
    }

    /// Queues a valid intent for verification, within the limits on
    /// subscriptions: verifications of one callback host at once (every
    /// mode), subscriptions per host and in all. The counts and the
    /// reservation are taken under one lock, which a verification also
    /// holds while it stores its outcome, so no two requests can both take
    /// the last place. O(1).
    fn queue(self: &Arc<Self>, intent: Intent) -> Response<Full<Bytes>> {
        let callback = intent.callback.as_str().to_string();
        let host = super::store::host_key(&callback);
        let key = (intent.route.clone(), callback.clone());
        let cap = self.cfg.max_subscriptions_per_host;
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.map.contains_key(&key) {
                return answer(
                    StatusCode::ACCEPTED,
                    "a verification of this topic and callback is already under way",
                );
            }
            if pending.map.len() >= MAX_PENDING {
                return answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many verifications under way; try again later",
                );
            }
            let busy = pending.per_host.get(&host).copied().unwrap_or(0);
            if busy >= cap {
                let mut r = answer(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "callback host {host} has {busy} requests being verified; at most {cap} per host"
                    ),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
                return r;
            }
            let mut adds = false;
            if intent.mode == Mode::Subscribe {
                let (total, on_host) = self.store.counts(&host);
                let exists = self.store.get(&intent.route, &callback).is_some();
                let on_host = on_host + pending.new_per_host.get(&host).copied().unwrap_or(0);
                // A renewal adds nothing: it is never refused for the host.
                if !exists && on_host >= cap {
                    return answer(
                        StatusCode::FORBIDDEN,
                        format!("callback host {host} has {on_host} subscriptions; at most {cap} per host"),
                    );
                }
                if !exists && total + pending.new_total >= self.cfg.max_subscriptions {
                    return answer(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "the hub holds its maximum of {} subscriptions",
                            self.cfg.max_subscriptions
                        ),
                    );
                }
                adds = !exists;
            }
            pending.insert(key, intent.mode, host, adds);
        }
        let mode = intent.mode;
        self.rt.spawn(super::verify::run(Arc::clone(self), intent));
        answer(
            StatusCode::ACCEPTED,
            format!(
                "accepted: the intent to {} is verified at the callback next",
                mode.as_str()
            ),
        )
    }
}

/// Whether a body error comes from a read that timed out.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        if c.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return true;
        }
        cur = c.source();
    }
    false
}

/// The pairs of an `application/x-www-form-urlencoded` body (WHATWG URL
/// §5.1), each value decoded, or `Err` when its bytes are not UTF-8 (a
/// name that is not UTF-8 is no parameter of ours: lossy is fine for it).
/// `form_urlencoded::parse` would replace bad bytes with U+FFFD, turning
/// a secret or callback into another one silently.
fn form(body: &[u8]) -> impl Iterator<Item = (String, Result<String, ()>)> + '_ {
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            let decode = |raw: &[u8]| -> Vec<u8> {
                let plus: Vec<u8> = raw
                    .iter()
                    .map(|&b| if b == b'+' { b' ' } else { b })
                    .collect();
                percent_encoding::percent_decode(&plus).collect()
            };
            let k = String::from_utf8_lossy(&decode(k)).into_owned();
            (k, String::from_utf8(decode(v)).map_err(|_| ()))
        })
}

/// At most 100 characters of client text, for an answer (quoted with
/// `{:?}`, which escapes it).
fn short(s: &str) -> String {
    let mut cut: String = s.chars().take(100).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::form;

    /// Values are percent- and plus-decoded; bytes that are not UTF-8 are
    /// an error for that value only, never replaced.
    #[test]
    fn form_decoding() {
        let got: Vec<(String, Result<String, ()>)> =
            form(b"hub.mode=subscribe&a+b=c%20d+e&&hub.secret=ab%FFcd&x&hub.callback=%C3%A9")
                .collect();
        assert_eq!(
            got,
            vec![
                ("hub.mode".into(), Ok("subscribe".into())),
                ("a b".into(), Ok("c d e".into())),
                ("hub.secret".into(), Err(())),
                ("x".into(), Ok(String::new())),
                ("hub.callback".into(), Ok("é".into())),
            ]
        );
    }
}
