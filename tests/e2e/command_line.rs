//! The `confab` binary's command line as a person at a terminal meets it: help of every
//! subcommand, a mistyped flag, the version, shell completions. No stack is needed.

use std::process::Output;

fn confab(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_subcommands_help_lists_its_flags_and_their_variables() {
    for (args, wanted) in [
        (
            &["--help"][..],
            &[
                "migrate",
                "ingress",
                "worker",
                "admin",
                "kb",
                "dev",
                "completions",
            ][..],
        ),
        (&["migrate", "--help"], &["Usage: confab migrate"]),
        (
            &["ingress", "--help"],
            &["Usage: confab ingress", "CONFAB_LISTEN"],
        ),
        (
            &["worker", "--help"],
            &[
                "--concurrency <N>",
                "[env: CONFAB_WORKER_CONCURRENCY=]",
                "[default: 16]",
                "--roles <ROLES>",
                "[env: CONFAB_WORKER_ROLES=]",
            ],
        ),
        (&["admin", "--help"], &["create-tenant", "reseal-secrets"]),
        (&["admin", "create-tenant", "--help"], &["--name <NAME>"]),
        (
            &["admin", "reseal-secrets", "--help"],
            &["CONFAB_SECRET_KEYS"],
        ),
        (&["kb", "--help"], &["import"]),
        (
            &["kb", "import", "--help"],
            &[
                "<PATH>",
                "--folder <NAME>",
                "[env: CONFAB_URL=]",
                "[env: CONFAB_API_KEY]",
                "--json",
            ],
        ),
        (
            &["dev", "--help"],
            &[
                "--workers <N>",
                "[env: CONFAB_DEV_WORKERS=]",
                "[default: 2]",
            ],
        ),
        (
            &["completions", "--help"],
            &["<SHELL>", "bash", "zsh", "fish"],
        ),
    ] {
        let output = confab(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        let help = text(&output.stdout);
        for want in wanted {
            assert!(help.contains(want), "{args:?}: {want} missing from\n{help}");
        }
    }
}

#[test]
fn a_mistyped_flag_is_refused_with_exit_code_2_naming_it_and_the_right_one() {
    let output = confab(&["dev", "--worker", "3"]);
    assert_eq!(output.status.code(), Some(2));
    let error = text(&output.stderr);
    assert!(error.contains("unexpected argument '--worker'"), "{error}");
    assert!(
        error.contains("a similar argument exists: '--workers'"),
        "{error}"
    );
    assert!(output.stdout.is_empty());

    let output = confab(&["worker", "--concurency=3"]);
    assert_eq!(output.status.code(), Some(2));
    let error = text(&output.stderr);
    assert!(error.contains("'--concurency'"), "{error}");
    assert!(error.contains("'--concurrency'"), "{error}");

    let output = confab(&["dev", "--workers=none"]);
    assert_eq!(output.status.code(), Some(2));
    let error = text(&output.stderr);
    assert!(
        error.contains("invalid value 'none' for '--workers <N>'"),
        "{error}"
    );
}

#[test]
fn confab_version_prints_the_package_version() {
    let output = confab(&["--version"]);
    assert!(output.status.success());
    assert_eq!(
        text(&output.stdout).trim(),
        format!("confab {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn confab_completions_bash_prints_a_completion_script() {
    let output = confab(&["completions", "bash"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let script = text(&output.stdout);
    assert!(script.contains("_confab()"), "{script}");
    assert!(script.contains("complete -F _confab"), "{script}");
    // It knows the subcommands and their flags.
    for word in [
        "create-tenant",
        "reseal-secrets",
        "import",
        "--workers",
        "--concurrency",
    ] {
        assert!(script.contains(word), "{word} missing from the script");
    }
    let output = confab(&["completions", "fish"]);
    assert!(output.status.success());
    assert!(text(&output.stdout).contains("complete -c confab"));
}

#[test]
fn a_malformed_otlp_endpoint_stops_the_ingress_and_the_worker_at_start_naming_it() {
    for command in ["ingress", "worker"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_confab"))
            .arg(command)
            .env("RUST_LOG", "warn")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{command}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && stderr.contains("not a url"),
            "{command}: {stderr}"
        );
    }
}
