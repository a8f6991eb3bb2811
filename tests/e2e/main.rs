//! End-to-end tests: the real `herald` binary on real files in temporary
//! directories. One test binary; one module per area.

mod archive;
mod build;
mod files;
mod guard;
mod hostile;
mod hub;
mod identity;
mod links;
mod live;
mod operating;
mod ports;
mod proxy;
mod reliability;
mod restart;
mod s3;
mod serve;
mod service;
mod skips;
mod stats;
mod statuses;
mod util;
mod validate;
mod website;
mod websub;
mod words;
