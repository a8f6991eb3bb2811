//! The files articles reference (images, PDFs …) in the snapshot: the
//! list the library hands over and the jobs that make their assets (as
//! they are, or with a gzip form where compressing helps). Uses `article`.

use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3;

use super::asset::Doc;
use super::build::{Fingerprint, Held, Job};
use super::SiteBuilder;

impl SiteBuilder {
    /// The files the next [`SiteBuilder::build`] publishes: route and
    /// file, sorted by route (the library's [`View::media`]). An unchanged
    /// list (the same files) costs the build nothing.
    ///
    /// [`View::media`]: crate::library::View::media
    pub fn set_media(&mut self, media: &[(Arc<str>, Arc<crate::article::Media>)]) {
        let same = self.media_in.len() == media.len()
            && self
                .media_in
                .iter()
                .zip(media)
                .all(|(a, b)| a.0 == b.0 && Arc::ptr_eq(&a.1, &b.1));
        if !same {
            self.media_in = media.to_vec();
            self.media_dirty = true;
        }
    }

    /// Adds a job per referenced file to `jobs`; returns their routes.
    pub(super) fn media_jobs<'a>(
        &self,
        settings_fp: Fingerprint,
        jobs: &mut Vec<Job<'a>>,
    ) -> rustc_hash::FxHashSet<Arc<str>> {
        let mut media_routes: rustc_hash::FxHashSet<Arc<str>> = Default::default();
        for (route, m) in &self.media_in {
            let mut h = Xxh3::new();
            h.update(&settings_fp.to_le_bytes());
            h.update(b"media");
            h.update(route.as_bytes());
            h.update(&m.hash.to_le_bytes());
            h.update(m.media_type.as_bytes());
            media_routes.insert(Arc::clone(route));
            let m2 = Arc::clone(m);
            jobs.push(Job {
                route: Arc::clone(route),
                fp: h.digest128(),
                derived: m.modified,
                content_type: m.media_type,
                cors: false,
                link: None,
                cache_control: None,
                held: Held::Media,
                render: Box::new(move || Doc::Media(Arc::clone(&m2))),
            });
        }
        media_routes
    }
}
