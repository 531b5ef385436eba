//! Python for the tests that drive confab with a Python client: a virtualenv in the tests' tool
//! cache (`tool_cache`, as `python-venv`) holding exactly `tests/python/requirements.txt`,
//! rebuilt when that file or the base interpreter's version changes. The base interpreter is
//! `CONFAB_TEST_PYTHON` (default `python3`), which needs its `venv` module; the install needs
//! pip's package index. Anything that goes wrong fails the test with the command and its
//! output: never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::tool_cache::{self, run};

/// The pinned requirements, relative to the workspace root.
pub const REQUIREMENTS: &str = "tests/python/requirements.txt";

/// The interpreter of the tests' venv, built (or rebuilt) first if needed. Blocks while it
/// installs; panics saying what failed.
pub fn venv_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(prepare) {
        Ok(python) => python.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn prepare() -> Result<PathBuf, String> {
    let pins = tool_cache::read_pins(REQUIREMENTS)?;
    let base = std::env::var("CONFAB_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let version = run(
        Command::new(&base).arg("--version"),
        "the Python tests need Python 3 (or CONFAB_TEST_PYTHON naming an interpreter)",
    )?;
    let listed: Vec<&str> = pins
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let installing = format!(
        "{} (pinned in {REQUIREMENTS}) with pip into a virtualenv, from {version}",
        listed.join(" ")
    );
    let fingerprint = tool_cache::fingerprint(&[&pins, &version]);
    let venv = tool_cache::ensure("python-venv", &fingerprint, &installing, |staging| {
        build(&base, staging)
    })?;
    Ok(venv.join("bin").join("python"))
}

/// A virtualenv with the requirements installed, in `staging`.
fn build(base: &str, staging: &Path) -> Result<(), String> {
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
            .arg(tool_cache::workspace_root().join(REQUIREMENTS)),
        "pip could not install the pinned packages from its package index (PyPI, unless \
         PIP_INDEX_URL or a pip.conf names another)",
    )?;
    Ok(())
}
