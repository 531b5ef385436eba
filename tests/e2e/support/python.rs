//! Python for the tests that drive confab with a Python client: a virtualenv of the tests' own
//! under the cargo target directory (`<target>/test-tools/python-venv`, `<target>` being
//! `CARGO_TARGET_DIR` or `target/` beside the workspace manifest) holding exactly
//! `tests/python/requirements.txt`. The first test to need it builds it; later tests and runs
//! reuse it until that file (or the base interpreter's version) changes, which a marker file in
//! the venv records as a hash.
//!
//! A venv is built in a directory of its own and renamed into place only once complete, so tests
//! and processes starting at once never see half of one; when two build at once, the first
//! rename wins and the other copy is removed. The base interpreter is `CONFAB_TEST_PYTHON`
//! (default `python3`), which needs its `venv` module; the install needs pip's package index.
//! Anything that goes wrong fails the test with the command and its output: never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// The pinned requirements, relative to the workspace root.
pub const REQUIREMENTS: &str = "tests/python/requirements.txt";
/// In a complete venv: the hash of the requirements and interpreter it was built from.
const MARKER: &str = "confab-requirements.sha256";

/// The interpreter of the tests' venv, built (or rebuilt) first if needed. Blocks while it
/// installs; panics saying what failed.
pub fn venv_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(prepare) {
        Ok(python) => python.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        // An absolute path replaces the root; a relative one is taken from the workspace root.
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

fn prepare() -> Result<PathBuf, String> {
    let requirements = workspace_root().join(REQUIREMENTS);
    let pins = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let base = std::env::var("CONFAB_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let version = run(
        Command::new(&base).arg("--version"),
        "the Python tests need Python 3 (or CONFAB_TEST_PYTHON naming an interpreter)",
    )?;
    let want = hex(&Sha256::digest(format!("{pins}\n{version}")));

    let tools = target_dir().join("test-tools");
    let venv = tools.join("python-venv");
    let python = venv.join("bin").join("python");
    if marker(&venv).as_deref() == Some(want.as_str()) {
        return Ok(python);
    }

    let listed: Vec<&str> = pins
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    eprintln!(
        "confab tests: installing {} (pinned in {REQUIREMENTS}) with pip into a virtualenv at {}, \
         from {version}; done once and reused until that file changes",
        listed.join(" "),
        venv.display()
    );
    let started = Instant::now();
    std::fs::create_dir_all(&tools)
        .map_err(|e| format!("cannot create {}: {e}", tools.display()))?;
    let staging = tools.join(format!("python-venv.building-{}", unique()));
    let built =
        build(&base, &staging, &requirements, &want).and_then(|()| publish(&staging, &venv, &want));
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    built?;
    eprintln!(
        "confab tests: Python venv ready at {} after {:.1?}",
        venv.display(),
        started.elapsed()
    );
    Ok(python)
}

/// A complete venv with the requirements installed and the marker written last, in `staging`.
fn build(base: &str, staging: &Path, requirements: &Path, want: &str) -> Result<(), String> {
    run(
        Command::new(base).args(["-m", "venv"]).arg(staging),
        "creating the virtualenv failed (Debian and Ubuntu ship the venv module as python3-venv)",
    )?;
    let python = staging.join("bin").join("python");
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--require-virtualenv"])
            .args([
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar=off",
            ])
            .arg("-r")
            .arg(requirements),
        "pip could not install the pinned packages from its package index (PyPI, unless \
         PIP_INDEX_URL or a pip.conf names another)",
    )?;
    std::fs::write(staging.join(MARKER), format!("{want}\n")).map_err(|e| {
        format!(
            "cannot write the venv's marker in {}: {e}",
            staging.display()
        )
    })
}

/// Renames the complete venv in `staging` to `venv`, moving an outdated one aside; if another
/// test or process published the same requirements first, keeps theirs and removes `staging`.
fn publish(staging: &Path, venv: &Path, want: &str) -> Result<(), String> {
    for _ in 0..5 {
        let error = match std::fs::rename(staging, venv) {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if !venv.exists() {
            return Err(format!(
                "cannot rename {} to {}: {error}",
                staging.display(),
                venv.display()
            ));
        }
        if marker(venv).as_deref() == Some(want) {
            let _ = std::fs::remove_dir_all(staging);
            return Ok(());
        }
        let aside = venv.with_file_name(format!("python-venv.outdated-{}", unique()));
        match std::fs::rename(venv, &aside) {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(&aside);
            }
            // Another process moved it aside first.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(format!(
                    "cannot move the outdated {} aside: {error}",
                    venv.display()
                ));
            }
        }
    }
    Err(format!(
        "could not put the new venv in place at {}: other processes kept replacing it",
        venv.display()
    ))
}

/// The hash recorded in a complete venv, if there is one.
fn marker(venv: &Path) -> Option<String> {
    let text = std::fs::read_to_string(venv.join(MARKER)).ok()?;
    Some(text.trim().to_owned())
}

/// Runs a command to its end; its stdout (trimmed) if it succeeded, else `why`, the command and
/// everything it printed.
fn run(command: &mut Command, why: &str) -> Result<String, String> {
    let shown = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let output = command
        .output()
        .map_err(|e| format!("{why}: cannot run `{shown}`: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{why}: `{shown}` failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            output.status
        ));
    }
    Ok(stdout.trim().to_owned())
}

/// A name no other test or process uses at the same time.
fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!("{}-{nanos}", std::process::id())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
