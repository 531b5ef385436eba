//! A real browser for the tests: Debian's Chromium, driven by playwright-core from npm through
//! `tests/browser/run.mjs`, which runs one scenario (`tests/browser/scenarios/<name>.mjs`) and
//! prints what it saw as JSON.
//!
//! Both come from the project's own files, the first time a test needs them, never a browser
//! build downloaded by a test tool:
//! - Chromium is `CONFAB_TEST_CHROMIUM`, else `/usr/bin/chromium`; if that is missing, Debian's
//!   `chromium` package is installed with apt-get (as root; otherwise the test fails saying so).
//!   Its version is the distribution's (its security updates replace older builds, so an exact
//!   pin would stop installing at the next one); the test prints it, and refuses one older than
//!   [`MIN_CHROMIUM_MAJOR`].
//! - playwright-core is pinned, with its integrity hash, by `tests/browser/package-lock.json`,
//!   and installed with `npm ci --ignore-scripts` into the tests' tool cache (`tool_cache`, as
//!   `browser-node`), so nothing runs at install and nothing downloads a browser.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use super::tool_cache::{self, run};

/// Oldest Chromium the scenarios are written for.
const MIN_CHROMIUM_MAJOR: u32 = 120;

const PACKAGE: &str = "tests/browser/package.json";
const LOCK: &str = "tests/browser/package-lock.json";
const RUNNER: &str = "tests/browser/run.mjs";

/// What a scenario returned, and what the page logged to its console.
#[derive(Debug)]
pub struct Outcome {
    pub result: Value,
    pub console: Vec<String>,
}

/// Run scenario `name` with `args` in a fresh headless browser; panics saying what failed.
pub async fn scenario(name: &str, args: Value) -> Outcome {
    let (chromium, node_modules) = tools();
    let output = tokio::process::Command::new("node")
        .arg(tool_cache::workspace_root().join(RUNNER))
        .arg(name)
        .arg(args.to_string())
        .env("CONFAB_CHROMIUM", chromium)
        .env("CONFAB_NODE_MODULES", node_modules)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node (the browser tests need Node.js 20 or later on the PATH)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser scenario {name} failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let printed: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("browser scenario {name} printed no JSON ({e}): {stdout}"));
    let console = printed["console"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Outcome {
        result: printed["result"].clone(),
        console,
    }
}

/// Chromium and the node_modules holding playwright-core, installed first if needed.
fn tools() -> (PathBuf, PathBuf) {
    static TOOLS: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    let prepared = TOOLS.get_or_init(|| Ok((chromium()?, node_modules()?)));
    match prepared {
        Ok(tools) => tools.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn chromium() -> Result<PathBuf, String> {
    let path = std::env::var_os("CONFAB_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !path.exists() {
        if std::env::var_os("CONFAB_TEST_CHROMIUM").is_some() {
            return Err(format!(
                "CONFAB_TEST_CHROMIUM names {}, which does not exist",
                path.display()
            ));
        }
        install_debian_chromium()?;
    }
    let version = run(
        Command::new(&path).arg("--version"),
        "cannot ask Chromium its version",
    )?;
    let major = version
        .split_whitespace()
        .find_map(|word| word.split('.').next()?.parse::<u32>().ok())
        .ok_or_else(|| format!("cannot read a version in {version:?}"))?;
    if major < MIN_CHROMIUM_MAJOR {
        return Err(format!(
            "{version} at {} is older than the {MIN_CHROMIUM_MAJOR} the browser tests need",
            path.display()
        ));
    }
    eprintln!("confab tests: browser tests run in {version}");
    Ok(path)
}

/// `apt-get install chromium`, waiting for another test's install to release dpkg's lock; the
/// package lists are refreshed first only if the package cannot be found.
fn install_debian_chromium() -> Result<(), String> {
    eprintln!(
        "confab tests: /usr/bin/chromium is missing; installing Debian's chromium package with \
         apt-get (once per machine)"
    );
    let install = || {
        run(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(["-o", "DPkg::Lock::Timeout=600", "chromium"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            "installing Debian's chromium failed (the browser tests need root for apt-get, or \
             CONFAB_TEST_CHROMIUM naming a Chromium)",
        )
    };
    if install().is_ok() {
        return Ok(());
    }
    run(
        Command::new("apt-get").args(["update", "-o", "DPkg::Lock::Timeout=600"]),
        "refreshing the package lists failed (Debian's archive must be reachable)",
    )?;
    install().map(|_| ())
}

fn node_modules() -> Result<PathBuf, String> {
    tool_cache::npm_packages("browser-node", PACKAGE, LOCK, "playwright-core")
}
