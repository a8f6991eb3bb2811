//! The bucket side of the mirror: an S3 (or S3-compatible) bucket through
//! `object_store`'s signed client — list the objects under the prefix
//! with their sizes and ETags, PUT one object with its headers, delete
//! objects in bulk. Credentials come from the standard AWS environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! web identity, ECS/EKS container credentials, EC2 instance metadata),
//! and failing those from the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, profile
//! `AWS_PROFILE` or `default`) — never from `herald.toml`. Uses `config`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    Attribute, AttributeValue, Attributes, BackoffConfig, ClientOptions, ObjectStore, PutOptions,
    PutPayload, RetryConfig,
};

use crate::config::PublishConfig;

/// What the bucket holds at one key, as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remote {
    /// Length of the stored body.
    pub size: u64,
    /// MD5 of the stored body, when the ETag is one (a single-part PUT's
    /// is; a multipart upload's is not, and compares unequal).
    pub md5: Option<[u8; 16]>,
}

/// A failed request, with what kind of failure it is.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct BucketError {
    /// The request (`PUT site/rss.xml`, `listing s3://b/site`).
    pub what: String,
    /// The client's error.
    #[source]
    pub source: object_store::Error,
    /// No credentials were found but the instance metadata service's.
    pub no_credentials: bool,
}

impl BucketError {
    /// Whether the credentials were refused or lack a permission: retried
    /// like any failure, but said plainly, since only the operator can
    /// fix it. The client reports some of these as generic errors; their
    /// status and S3 error code tell.
    pub fn is_denied(&self) -> bool {
        if matches!(
            self.source,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) {
            return true;
        }
        let text = self.chain();
        text.contains("403 Forbidden")
            || text.contains("401 Unauthorized")
            || s3_code(&text).is_some_and(|(code, _)| DENIED.contains(&code))
    }

    /// The error and its causes, each once.
    fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut cause = std::error::Error::source(&self.source);
        while let Some(c) = cause {
            let text = c.to_string();
            if !s.contains(&text) {
                s.push_str(": ");
                s.push_str(&text);
            }
            cause = c.source();
        }
        s
    }

    /// One line for the log: the request and the error chain, an S3 error
    /// document cut down to its code and message, and what to check when
    /// the credentials are at fault.
    pub fn line(&self) -> String {
        let full = self.chain();
        let mut s = match (full.find("<?xml"), s3_code(&full)) {
            (Some(at), Some((code, message))) => format!("{}{code}: {message}", &full[..at]),
            _ => full.clone(),
        };
        s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if self.no_credentials {
            s.push_str(
                " (no AWS credentials were found in the environment or the shared credentials file, so the EC2 instance metadata service was asked: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in Herald's environment)",
            );
        } else if self.is_denied() {
            s.push_str(
                " (the bucket refused Herald's credentials or their permissions: check the AWS credentials in Herald's environment and the bucket's policy)",
            );
        }
        s
    }
}

/// S3 error codes that mean the credentials or their permissions.
const DENIED: [&str; 6] = [
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
];

/// The `<Code>` and `<Message>` of an S3 error document in `text`.
fn s3_code(text: &str) -> Option<(&str, &str)> {
    let field = |name: &str| {
        let open = format!("<{name}>");
        let from = text.find(&open)? + open.len();
        let len = text[from..].find(&format!("</{name}>"))?;
        Some(&text[from..from + len])
    };
    Some((field("Code")?, field("Message").unwrap_or("")))
}

/// One bucket and key prefix.
#[derive(Debug)]
pub struct Bucket {
    store: AmazonS3,
    /// Key prefix with its trailing `/`, or empty.
    prefix: String,
    /// No credentials but the instance metadata service's (said in errors).
    no_credentials: bool,
}

impl Bucket {
    /// A client for `cfg`'s bucket. Nothing is sent yet.
    ///
    /// # Errors
    /// The client cannot be configured (a bad endpoint).
    pub fn open(cfg: &PublishConfig) -> Result<Bucket, BucketError> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(cfg.request_timeout)
                    .with_connect_timeout(cfg.request_timeout.min(Duration::from_secs(5))),
            )
            // A few quick retries of one request; a target that stays
            // down is the mirror's own backoff's business.
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: cfg.request_timeout,
            });
        if let Some(e) = &cfg.endpoint {
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                // Path-style requests (`endpoint/bucket/key`): what every
                // S3-compatible server understands.
                .with_virtual_hosted_style_request(false);
        }
        let env = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        let mut no_credentials = false;
        if !env("AWS_ACCESS_KEY_ID") {
            if let Some((id, secret, token)) = shared_credentials() {
                b = b.with_access_key_id(id).with_secret_access_key(secret);
                if let Some(t) = token {
                    b = b.with_token(t);
                }
            } else {
                no_credentials = !env("AWS_WEB_IDENTITY_TOKEN_FILE")
                    && !env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                    && !env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
            }
        }
        let store = b.build().map_err(|source| BucketError {
            what: format!("configuring {}", cfg.to),
            source,
            no_credentials: false,
        })?;
        let prefix = if cfg.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", cfg.prefix)
        };
        Ok(Bucket {
            store,
            prefix,
            no_credentials,
        })
    }

    fn error(&self, what: String, source: object_store::Error) -> BucketError {
        BucketError {
            what,
            source,
            no_credentials: self.no_credentials,
        }
    }

    /// The key of a file of the site (`articles/x/index.html`): the
    /// prefix and the file's name as it is on disk, not percent-encoded,
    /// so that the URL a reader requests (`/tags/%C3%A9lections/rss.xml`,
    /// decoded once by S3, its website endpoint or a CDN) finds it. `None`
    /// for a name no object key may have (a control character, a `.` or
    /// `..` segment).
    pub fn key(&self, file: &str) -> Option<String> {
        let key = format!("{}{file}", self.prefix);
        Key::parse(&key).ok().map(|_| key)
    }

    /// Every object under the prefix, by key.
    ///
    /// # Errors
    /// The listing failed.
    pub async fn list(&self) -> Result<HashMap<String, Remote>, BucketError> {
        let prefix = match self.prefix.as_str() {
            "" => None,
            p => {
                Some(Key::parse(p).map_err(|e| self.error("listing the bucket".into(), e.into()))?)
            }
        };
        let mut stream = self.store.list(prefix.as_ref());
        let mut out = HashMap::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|source| self.error("listing the bucket".into(), source))?;
            let md5 = meta.e_tag.as_deref().and_then(md5_of_etag);
            out.insert(
                meta.location.to_string(),
                Remote {
                    size: meta.size,
                    md5,
                },
            );
        }
        Ok(out)
    }

    /// Stores `body` at `key` with the given headers.
    ///
    /// # Errors
    /// The request failed.
    pub async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &'static str,
        cache_control: String,
        gzip: bool,
    ) -> Result<(), BucketError> {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, AttributeValue::from(content_type));
        attributes.insert(Attribute::CacheControl, AttributeValue::from(cache_control));
        if gzip {
            attributes.insert(Attribute::ContentEncoding, AttributeValue::from("gzip"));
        }
        let opts = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        // `Key::from` would percent-encode the name (and the client
        // encode it again in the URL): the key is taken as it is.
        let path = Key::parse(key).map_err(|e| self.error(format!("PUT {key}"), e.into()))?;
        self.store
            .put_opts(&path, PutPayload::from(body), opts)
            .await
            .map(|_| ())
            .map_err(|source| self.error(format!("PUT {key}"), source))
    }

    /// Deletes `keys` (in bulk requests where the server takes them).
    /// Returns the keys deleted.
    ///
    /// # Errors
    /// A request failed; keys before it may be gone.
    pub async fn delete(&self, keys: &[String]) -> Result<Vec<String>, BucketError> {
        let paths: Vec<object_store::Result<Key>> = keys
            .iter()
            .map(|k| Key::parse(k).map_err(object_store::Error::from))
            .collect();
        let mut stream = self
            .store
            .delete_stream(futures::stream::iter(paths).boxed());
        let mut done = Vec::with_capacity(keys.len());
        while let Some(r) = stream.next().await {
            match r {
                Ok(p) => done.push(p.to_string()),
                // Already gone is what was wanted.
                Err(object_store::Error::NotFound { path, .. }) => done.push(path),
                Err(source) => return Err(self.error("DELETE".into(), source)),
            }
        }
        Ok(done)
    }
}

/// The MD5 in an ETag (`"9e107d9d372bb6826bd81d3542a419d6"`), when it is
/// one.
fn md5_of_etag(etag: &str) -> Option<[u8; 16]> {
    let hex = etag.trim_matches('"');
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Keys from the shared credentials file, the last link of the AWS chain
/// that `object_store` does not read itself: `AWS_SHARED_CREDENTIALS_FILE`
/// or `~/.aws/credentials`, section `AWS_PROFILE` (or `default`).
fn shared_credentials() -> Option<(String, String, Option<String>)> {
    let path = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials"))
        })?;
    let text = std::fs::read_to_string(path).ok()?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    parse_credentials(&text, &profile)
}

/// The access key, secret and session token of `profile` in the text of a
/// shared credentials file (INI).
fn parse_credentials(text: &str, profile: &str) -> Option<(String, String, Option<String>)> {
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            continue;
        }
        let Some((k, v)) = line.split_once('=').filter(|_| inside) else {
            continue;
        };
        let v = Some(v.trim().to_string());
        match k.trim() {
            "aws_access_key_id" => id = v,
            "aws_secret_access_key" => secret = v,
            "aws_session_token" => token = v,
            _ => {}
        }
    }
    Some((id?, secret?, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ETag that is an MD5 is read as one; a multipart ETag is not.
    #[test]
    fn etags() {
        assert_eq!(
            md5_of_etag("\"9e107d9d372bb6826bd81d3542a419d6\""),
            Some([
                0x9e, 0x10, 0x7d, 0x9d, 0x37, 0x2b, 0xb6, 0x82, 0x6b, 0xd8, 0x1d, 0x35, 0x42, 0xa4,
                0x19, 0xd6
            ])
        );
        assert_eq!(md5_of_etag("\"9e107d9d372bb6826bd81d3542a419d6-2\""), None);
        assert_eq!(md5_of_etag("\"zz107d9d372bb6826bd81d3542a419d6\""), None);
    }

    /// An S3 error document in an error is cut to its code and message on
    /// one line; a refused key is told to be the credentials' fault.
    #[test]
    fn error_lines() {
        let e = |text: &str| BucketError {
            what: "listing the bucket".into(),
            source: object_store::Error::Generic {
                store: "S3",
                source: text.to_string().into(),
            },
            no_credentials: false,
        };
        let denied = e("GET /b: 403 Forbidden: <?xml version=\"1.0\"?>\n<Error><Code>InvalidAccessKeyId</Code><Message>No such key.</Message></Error>");
        assert!(denied.is_denied());
        let line = denied.line();
        assert!(!line.contains('\n') && !line.contains("<?xml"), "{line}");
        assert!(line.contains("InvalidAccessKeyId: No such key."), "{line}");
        assert!(line.contains("check the AWS credentials"), "{line}");
        let down = e("GET /b: error sending request: connection refused");
        assert!(!down.is_denied());
        assert!(!down.line().contains("credentials"), "{}", down.line());
    }

    /// The profile's keys are read from its own section only.
    #[test]
    fn credentials_file() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = S\n\n\
                    [other]\naws_access_key_id=B\naws_secret_access_key=T\naws_session_token=X\n";
        assert_eq!(
            parse_credentials(text, "default"),
            Some(("A".into(), "S".into(), None))
        );
        assert_eq!(
            parse_credentials(text, "other"),
            Some(("B".into(), "T".into(), Some("X".into())))
        );
        assert_eq!(parse_credentials(text, "missing"), None);
    }
}
