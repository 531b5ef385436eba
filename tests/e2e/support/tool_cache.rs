//! The tests' own tool cache: what a test needs beyond Cargo (a Python virtualenv, Node packages)
//! installed under the cargo target directory (`<target>/test-tools/<name>`, `<target>` being
//! `CARGO_TARGET_DIR` or `target/` beside the workspace manifest), at the versions the project's
//! files pin. The first test to need a tool builds it; later tests and runs reuse it until its
//! fingerprint (a hash of the pins and whatever else the build depends on) changes, which a
//! marker file in the tool's directory records.
//!
//! A tool is built in a directory of its own and renamed into place only once complete, so
//! tests and processes starting at once never see half of one; when two build at once, the
//! first rename wins and the other copy is removed. Anything that goes wrong is an error naming
//! the command and its output, for the test to fail with: never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// In a complete tool directory: the fingerprint it was built from.
const MARKER: &str = "confab-tool.sha256";

pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        // An absolute path replaces the root; a relative one is taken from the workspace root.
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// A file of the workspace, read whole.
pub fn read_pins(relative: &str) -> Result<String, String> {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The hash of `inputs`, as a tool's fingerprint.
pub fn fingerprint(inputs: &[&str]) -> String {
    hex::encode(Sha256::digest(inputs.join("\n")))
}

/// The directory of tool `name` built from `fingerprint`: the cached one, or a new one made by
/// `build` (given an empty staging directory) after saying what is being installed.
pub fn ensure(
    name: &str,
    fingerprint: &str,
    installing: &str,
    build: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let tools = target_dir().join("test-tools");
    let dir = tools.join(name);
    if marker(&dir).as_deref() == Some(fingerprint) {
        return Ok(dir);
    }
    eprintln!(
        "confab tests: installing {installing} into {}; done once and reused until the pins change",
        dir.display()
    );
    let started = Instant::now();
    std::fs::create_dir_all(&tools)
        .map_err(|e| format!("cannot create {}: {e}", tools.display()))?;
    let staging = tools.join(format!("{name}.building-{}", unique()));
    std::fs::create_dir_all(&staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    let built = build(&staging)
        .and_then(|()| {
            std::fs::write(staging.join(MARKER), format!("{fingerprint}\n"))
                .map_err(|e| format!("cannot write the marker in {}: {e}", staging.display()))
        })
        .and_then(|()| publish(name, &staging, &dir, fingerprint));
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    built?;
    eprintln!(
        "confab tests: {name} ready at {} after {:.1?}",
        dir.display(),
        started.elapsed()
    );
    Ok(dir)
}

/// Renames the complete tool in `staging` to `dir`, moving an outdated one aside; if another
/// test or process published the same fingerprint first, keeps theirs and removes `staging`.
fn publish(name: &str, staging: &Path, dir: &Path, fingerprint: &str) -> Result<(), String> {
    for _ in 0..5 {
        let error = match std::fs::rename(staging, dir) {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if !dir.exists() {
            return Err(format!(
                "cannot rename {} to {}: {error}",
                staging.display(),
                dir.display()
            ));
        }
        if marker(dir).as_deref() == Some(fingerprint) {
            let _ = std::fs::remove_dir_all(staging);
            return Ok(());
        }
        let aside = dir.with_file_name(format!("{name}.outdated-{}", unique()));
        match std::fs::rename(dir, &aside) {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(&aside);
            }
            // Another process moved it aside first.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(format!(
                    "cannot move the outdated {} aside: {error}",
                    dir.display()
                ));
            }
        }
    }
    Err(format!(
        "could not put the new {name} in place at {}: other processes kept replacing it",
        dir.display()
    ))
}

/// The fingerprint recorded in a complete tool directory, if there is one.
fn marker(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(MARKER)).ok()?;
    Some(text.trim().to_owned())
}

/// Runs a command to its end; its stdout (trimmed) if it succeeded, else `why`, the command and
/// everything it printed.
/// The `node_modules` of the npm packages `package` (a `package.json`) and `lock` (its
/// `package-lock.json`, with every version and integrity hash) pin, installed with `npm ci
/// --ignore-scripts` (nothing runs at install) into the tool `name`. `what` names them in the
/// message that says what is being installed.
pub fn npm_packages(name: &str, package: &str, lock: &str, what: &str) -> Result<PathBuf, String> {
    let package_json = read_pins(package)?;
    let lock_json = read_pins(lock)?;
    let node = run(
        Command::new("node").arg("--version"),
        "these tests need Node.js 20 or later on the PATH",
    )?;
    let fingerprint = fingerprint(&[&package_json, &lock_json, &node]);
    let installing = format!("{what} (pinned in {lock}) with npm ci, for Node.js {node}");
    let dir = ensure(name, &fingerprint, &installing, |staging| {
        for (file, text) in [
            ("package.json", &package_json),
            ("package-lock.json", &lock_json),
        ] {
            std::fs::write(staging.join(file), text)
                .map_err(|e| format!("cannot write {file} in {}: {e}", staging.display()))?;
        }
        run(
            Command::new("npm")
                .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
                .current_dir(staging),
            "npm could not install the pinned packages from its registry (npmjs.org, unless an \
             .npmrc names another)",
        )
        .map(|_| ())
    })?;
    Ok(dir.join("node_modules"))
}

pub fn run(command: &mut Command, why: &str) -> Result<String, String> {
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
