//! Operating details: what exit codes tell apart (a usage error from a bad
//! config file, as the systemd unit and the README say), where relative
//! paths in a config file point, and how a mistyped value is reported.

use crate::util::{run_in, tree, Workspace};

/// The exit code of a config file that cannot be used (BSD `EX_CONFIG`).
const EXIT_CONFIG: i32 = 78;

/// A usage error on the command line exits 2 (clap's code, the common one
/// for command-line tools) and a config error 78 (`EX_CONFIG`): the two
/// can be told apart, the unit keeps systemd from restarting on either,
/// and the README's table says both.
#[test]
fn usage_and_config_errors_exit_with_different_codes() {
    let ws = Workspace::new();
    ws.write(
        "content/a.txt",
        "May 1, 2025, 9 a.m.\n\nNews\n\nA\n\nBody.\n",
    );
    let usage = ws.herald(&["--no-such-flag", "build"]);
    usage.expect_code(2);
    assert!(usage.stderr.contains("Usage: herald"), "{}", usage.stderr);

    ws.write("herald.toml", "max_items = 0\n");
    let config = ws.herald_cfg(&["build"]);
    config.expect_code(EXIT_CONFIG);
    assert_eq!(
        config.stderr,
        "herald: herald.toml:1: max_items: must be at least 1, not 0\n"
    );
    let missing = ws.herald(&["--config", "missing.toml", "check"]);
    missing.expect_code(EXIT_CONFIG);
    assert!(tree(&ws.path("feeds")).is_empty());

    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/herald.service"
    ))
    .expect("the unit");
    let prevent: Vec<&str> = unit
        .lines()
        .find_map(|l| l.strip_prefix("RestartPreventExitStatus="))
        .expect("RestartPreventExitStatus= in the unit")
        .split_whitespace()
        .collect();
    assert_eq!(prevent, ["2", "78"], "neither is fixed by a restart");

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    for row in [
        "| 2 | the command line is wrong (an unknown option or command); not restarted |",
        "| 78 | the configuration file is missing, unreadable or invalid (not restarted) |",
    ] {
        assert!(readme.contains(row), "README lacks {row:?}");
    }
}

/// Relative `content_dir`, `output_dir` and `state_dir` in a config file
/// are relative to the directory holding that file, wherever Herald is
/// started from (as Cargo reads `Cargo.toml`); `--content`,
/// `--output` and `--state` on the command line stay relative to the
/// working directory, like any path argument.
#[test]
fn relative_paths_in_a_config_file_resolve_against_its_directory() {
    let ws = Workspace::new();
    // A decoy where a working-directory reading would look.
    ws.write(
        "content/decoy.txt",
        "May 2, 2025, 9 a.m.\n\nNews\n\nDecoy\n\nNo.\n",
    );
    ws.write(
        "site/articles/real.txt",
        "May 1, 2025, 9 a.m.\n\nNews\n\nThe real one\n\nBody.\n",
    );
    ws.write(
        "site/herald.toml",
        "content_dir = \"articles\"\noutput_dir = \"public\"\nstate_dir = \"../site-state\"\n",
    );
    let elsewhere = ws.path("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    let cfg = ws.path("site/herald.toml");
    let cfg = cfg.to_str().expect("UTF-8 path");
    run_in(&elsewhere, &["--config", cfg, "build"]).expect_code(0);
    let rss = ws.read("site/public/rss.xml");
    assert!(
        rss.contains("The real one") && !rss.contains("Decoy"),
        "{rss}"
    );
    assert!(ws.exists("site-state/state.json"));
    assert!(tree(&elsewhere).is_empty(), "nothing written where it ran");

    // Also relative to the config file when named by a relative path.
    run_in(ws.root(), &["--config", "site/herald.toml", "check"]).expect_code(0);

    // Command-line paths are the working directory's.
    run_in(
        &elsewhere,
        &["--config", cfg, "--output", "out", "--state", "st", "build"],
    )
    .expect_code(0);
    assert!(elsewhere.join("out/rss.xml").exists());
    assert!(elsewhere.join("st/state.json").exists());
}

/// A value of the wrong type is reported in words a reader of the config
/// file knows ("an integer", "a boolean", "a string"), not Rust type names.
#[test]
fn wrong_types_are_named_in_plain_words() {
    let cases = [
        (
            "title = \"x\"\nmax_items = \"many\"\n",
            "herald: herald.toml:2: max_items: invalid type: string \"many\", expected an integer\n",
        ),
        (
            "cache_max_age = -5\n",
            "herald: herald.toml:1: cache_max_age: invalid value: integer `-5`, expected a non-negative integer\n",
        ),
        (
            "follow_external_symlinks = \"yes\"\n",
            "herald: herald.toml:1: follow_external_symlinks: invalid type: string \"yes\", expected a boolean (true or false)\n",
        ),
    ];
    for (config, want) in cases {
        let ws = Workspace::new();
        ws.write("herald.toml", config);
        let run = ws.herald_cfg(&["check"]);
        run.expect_code(EXIT_CONFIG);
        assert_eq!(run.stderr, want, "{config:?}");
    }
}

/// The start-up publish is logged with its counts and time, like every
/// later one, and each warning and rejection of the content appears once
/// in `serve`'s log, as in `build`'s, however many publishes follow.
#[test]
fn serve_logs_its_first_publish_and_each_problem_once() {
    let ws = Workspace::new();
    ws.write(
        "content/a.txt",
        crate::live::column("May 1, 2025, noon", "News", "A", "Body of A."),
    );
    ws.write(
        "content/t.md",
        "---\ntitle: Title only\ndate: 2025-05-02\n---\n",
    );
    ws.write("content/bad.txt", "not a date\n\nNews\n\nBad\n\nBody.\n");
    let mut d = crate::live::TestDaemon::start(ws, "");
    let line = d.wait_log("published");
    assert!(
        line.contains("reason=\"start\"") || line.contains("reason=start"),
        "{line}"
    );
    assert!(
        line.contains("articles=2") && line.contains("rejected=1"),
        "{line}"
    );
    assert!(line.contains("ms="), "{line}");
    for i in 0..3 {
        d.ws.write(
            &format!("content/n{i}.txt"),
            crate::live::column(
                &format!("May {}, 2025, noon", 3 + i),
                "News",
                &format!("N{i}"),
                "Body.",
            ),
        );
        d.poll("/feed.json", "the new article", |r| {
            r.text().contains(&format!("\"N{i}\""))
        });
    }
    let log = d.stop();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("t.md:5: article has a title but no body"), 1, "{log}");
    assert_eq!(count("bad.txt:1: invalid date line"), 1, "{log}");
}
