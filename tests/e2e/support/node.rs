//! Node.js for the tests that drive confab with the official `openai` package for Node: the
//! scripts in `tests/node/`, run with the packages `tests/node/package-lock.json` pins (with
//! their integrity hashes), installed with `npm ci --ignore-scripts` into the tests' tool cache
//! (`tool_cache`, as `node-sdk`) the first time. Anything that goes wrong fails the test with
//! the command and its output: never a skip.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

use super::tool_cache;

const PACKAGE: &str = "tests/node/package.json";
const LOCK: &str = "tests/node/package-lock.json";

/// Run `tests/node/<script>` with `args`; what it printed, as JSON. Panics saying what failed.
pub async fn run_script(script: &str, args: &[&str]) -> Value {
    let node_modules = node_modules();
    let output = tokio::process::Command::new("node")
        .arg(tool_cache::workspace_root().join("tests/node").join(script))
        .args(args)
        .env("CONFAB_NODE_MODULES", node_modules)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node (these tests need Node.js 20 or later on the PATH)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tests/node/{script} failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("tests/node/{script} printed no JSON ({e}): {stdout}"))
}

/// The pinned packages' node_modules, installed first if needed (blocking).
fn node_modules() -> PathBuf {
    static MODULES: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let installed = MODULES.get_or_init(|| {
        tool_cache::npm_packages("node-sdk", PACKAGE, LOCK, "the openai package for Node.js")
    });
    match installed {
        Ok(dir) => dir.clone(),
        Err(message) => panic!("{message}"),
    }
}
