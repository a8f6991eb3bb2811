//! The last line of defence around rendering: a panic while rendering
//! (a bug Herald must not have, but might) is traced to the articles that
//! cause it, which are rejected with a log line naming their files; the
//! rest of the site is rendered and published as usual. Parsing has its
//! own guard, per file, in the library.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::SystemTime;

use crate::article::Article;
use crate::library::{panic_message, Library, View};
use crate::render::Settings;
use crate::site::SiteBuilder;

/// Settles `lib`'s view with `settle` (`Library::view` as of a given
/// time, and whatever must happen before anything shows it) and renders it
/// with `build`, which is told whether its builder must start afresh (true
/// after a panic, which may have left it half-updated). When `build`
/// panics, every article of the view is rendered alone into a throw-away
/// site; those that panic are rejected in the library and the view is
/// settled and rendered again. A panic no single article reproduces is
/// passed on.
///
/// `settings` derives the render settings from the settled view (they
/// depend on it through the state file).
pub fn render_guarded<T>(
    lib: &mut Library,
    settle: impl FnMut(&mut Library) -> View,
    settings: impl FnMut(&mut Library, &View) -> Settings,
    build: impl FnMut(&View, &Settings, bool) -> T,
) -> (View, Settings, T) {
    guarded(lib, settle, settings, build, renders_alone)
}

/// [`render_guarded`] with the test that decides whether one article
/// breaks rendering given.
fn guarded<T>(
    lib: &mut Library,
    mut settle: impl FnMut(&mut Library) -> View,
    mut settings: impl FnMut(&mut Library, &View) -> Settings,
    mut build: impl FnMut(&View, &Settings, bool) -> T,
    alone: impl Fn(&Arc<Article>, &Settings) -> Result<(), String>,
) -> (View, Settings, T) {
    let mut fresh = false;
    loop {
        let view = settle(lib);
        let s = settings(lib, &view);
        let panic = match catch_unwind(AssertUnwindSafe(|| build(&view, &s, fresh))) {
            Ok(out) => return (view, s, out),
            Err(p) => p,
        };
        let why = panic_message(panic.as_ref());
        let culprits: Vec<&Arc<Article>> = view
            .articles
            .iter()
            .filter(|a| alone(a, &s).is_err())
            .collect();
        if culprits.is_empty() {
            resume_unwind(panic);
        }
        for a in culprits {
            let reason =
                format!("Herald failed rendering this article (a bug; please report it): {why}");
            tracing::error!("{}: rejected: {reason}", a.source.display());
            lib.reject(&a.source, reason);
        }
        fresh = true;
    }
}

/// Renders one article into a site of its own (every feed format, its
/// page, the index), catching a panic.
fn renders_alone(a: &Arc<Article>, s: &Settings) -> Result<(), String> {
    catch_unwind(|| {
        SiteBuilder::default().build(std::slice::from_ref(a), 0, s, SystemTime::UNIX_EPOCH);
    })
    .map_err(|p| panic_message(p.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::ParseCtx;
    use crate::state::State;

    /// A panic while rendering rejects exactly the article that causes it,
    /// naming its file; the others are rendered, by a fresh builder; a
    /// panic no article reproduces alone is passed on.
    #[test]
    fn a_rendering_panic_rejects_its_article_only() {
        let d = tempfile::tempdir().unwrap();
        for (name, title) in [("a.txt", "Fine"), ("b.txt", "Boom"), ("c.txt", "Also fine")] {
            std::fs::write(
                d.path().join(name),
                format!("May 1, 2025, noon\n\nNews\n\n{title}\n\nBody.\n"),
            )
            .unwrap();
        }
        let mut lib = Library::new(
            d.path().to_path_buf(),
            ParseCtx::new(chrono_tz::UTC),
            State::default(),
            "example.com".into(),
        );
        lib.scan().unwrap();
        let now = chrono::Utc::now();
        let settle = |l: &mut Library| l.view(now);
        let settings = |_: &mut Library, _: &View| crate::render::testdata::settings();
        let boom = |a: &Arc<Article>| a.title == "Boom";
        let mut fresh_seen = Vec::new();
        let (view, _, titles) = guarded(
            &mut lib,
            settle,
            settings,
            |v, _, fresh| {
                fresh_seen.push(fresh);
                assert!(!v.articles.iter().any(boom), "boom");
                v.articles
                    .iter()
                    .map(|a| a.title.clone())
                    .collect::<Vec<_>>()
            },
            |a, _| if boom(a) { Err("boom".into()) } else { Ok(()) },
        );
        assert_eq!(titles, ["Fine", "Also fine"]);
        assert_eq!(fresh_seen, [false, true]);
        assert_eq!(view.rejected.len(), 1);
        let msg = view.rejected[0].to_string();
        assert!(
            msg.contains("b.txt") && msg.contains("failed rendering"),
            "{msg}"
        );

        let unexplained = std::panic::catch_unwind(AssertUnwindSafe(|| {
            guarded(
                &mut lib,
                settle,
                settings,
                |_, _, _| panic!("everywhere"),
                |_, _| Ok(()),
            )
        }));
        assert!(unexplained.is_err());
    }
}
