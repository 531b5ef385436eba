//! The `confab-worker` binary's own command line: its help names each flag with its variable,
//! a mistyped flag is refused with exit code 2 and a suggestion, a bad value names the flag, and
//! `--version` answers. None of these needs a broker or a database: they end before the start.

#![allow(clippy::unwrap_used)]

use std::process::Output;

fn worker(args: &[&str], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_confab-worker"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn confab_worker_help_lists_its_flags_with_their_variables_and_defaults() {
    let output = worker(&["--help"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let help = text(&output.stdout);
    for want in [
        "Usage: confab-worker [OPTIONS]",
        "--concurrency <N>",
        "[env: CONFAB_WORKER_CONCURRENCY=]",
        "[default: 16]",
        "--roles <ROLES>",
        "[env: CONFAB_WORKER_ROLES=]",
        "[default: chat,delivery]",
        "--version",
    ] {
        assert!(help.contains(want), "{want} missing from\n{help}");
    }
}

#[test]
fn confab_worker_refuses_a_mistyped_flag_with_exit_code_2_and_a_suggestion() {
    let output = worker(&["--role", "chat"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let error = text(&output.stderr);
    assert!(error.contains("unexpected argument '--role'"), "{error}");
    assert!(
        error.contains("a similar argument exists: '--roles'"),
        "{error}"
    );
}

#[test]
fn a_bad_value_from_the_flag_or_its_variable_is_refused_naming_the_flag() {
    let output = worker(&["--concurrency=0"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let error = text(&output.stderr);
    assert!(
        error.contains("invalid value '0' for '--concurrency <N>'"),
        "{error}"
    );

    let output = worker(&[], &[("CONFAB_WORKER_ROLES", "chat,cook")]);
    assert_eq!(output.status.code(), Some(2));
    let error = text(&output.stderr);
    assert!(error.contains("'--roles <ROLES>'"), "{error}");
    assert!(error.contains("unknown role \"cook\""), "{error}");
}

#[test]
fn confab_worker_version_prints_the_package_version() {
    let output = worker(&["--version"], &[]);
    assert!(output.status.success());
    assert_eq!(
        text(&output.stdout).trim(),
        format!("confab-worker {}", env!("CARGO_PKG_VERSION"))
    );
}
