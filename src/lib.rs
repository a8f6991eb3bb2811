//! Herald: a feed publisher daemon. Editors drop articles into a folder;
//! Herald notices, rebuilds the RSS 2.0, Atom 1.0 and JSON Feed documents
//! (plus an HTML index, article pages and OPML) and serves them over HTTP.
//!
//! # Layout
//!
//! Data flows one way; a later stage never reaches back into an earlier one.
//!
//! ```text
//!  content/ ──notify──▶ watch ──batch of paths──▶ library ──▶ render ──▶ Site (immutable snapshot)
//!                                                   │                       ├──▶ feeds/ on disk (atomic rename)
//!                                parse (pure) ◀─────┘                       └──▶ ArcSwap ──▶ server (hyper) ──▶ readers
//! ```
//!
//! - [`config`]: settings from TOML, defaults that work with no file.
//! - [`article`]: the `Article` model, slugs, text hygiene.
//! - [`parse`]: file text → `Article` (scraped column, Markdown). Pure.
//! - [`links`]: URLs in article HTML: found, rewritten. Pure.
//! - [`state`]: the persistent record that keeps ids and `updated` stable.
//! - [`library`]: all articles by path; full scan or incremental apply.
//! - [`render`]: articles → feed, page and OPML bytes. Pure.
//! - [`site`]: the snapshot served and mirrored to disk.
//! - [`watch`]: file events → batches of changed paths.
//! - [`server`]: hyper 1.x over the current snapshot.
//! - [`stats`]: who reads the feeds: aggregators' reported subscribers,
//!   distinct direct pollers, WebSub subscriptions; per feed and day.
//! - [`admin`]: the admin listener: `/metrics`, `/stats`, `/stats.html`.
//! - [`metrics`]: counters for `/metrics`, with the publish loop's health.
//! - [`health`]: what the publish loop says about itself (`/healthz`, watchdog).
//! - [`sendfile`]: large bodies in unlinked files, sent with `sendfile(2)`.
//! - [`syndicate`]: WebSub: publish pings and the built-in hub.
//! - [`mirror`]: the snapshot mirrored to an S3-compatible bucket.
//! - [`daemon`]: wiring of all of the above; `build`, `check` and `serve`.
//! - `escape`: HTML escaping, written once. Pure.
//! - `durable`: the one way a file of record is replaced (temp file,
//!   fsync, rename, directory fsync).
#![warn(missing_docs)]

pub mod admin;
pub mod article;
pub mod config;
pub mod daemon;
mod durable;
mod escape;
pub mod health;
pub mod library;
pub mod links;
pub mod metrics;
pub mod mirror;
pub mod parse;
pub mod render;
pub mod sendfile;
pub mod server;
pub mod site;
pub mod state;
pub mod stats;
pub mod syndicate;
pub mod watch;
