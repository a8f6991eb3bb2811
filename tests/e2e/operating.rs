//! Operating details: what exit codes tell apart (a usage error from a bad
//! config file, as the systemd unit and the README say).

use crate::util::{tree, Workspace};

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
