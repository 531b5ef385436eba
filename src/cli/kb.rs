//! `confab kb import PATH --folder NAME`: load a directory of text and Markdown files into a
//! knowledge folder through the HTTP API (`CONFAB_URL`, `CONFAB_API_KEY`), creating the folder if
//! needed. Each file becomes a document titled by its path under PATH without extension; an
//! unchanged file is recognised by the server and left alone (`stored: unchanged`), so importing
//! again is cheap. A 503 (the server's uploads at their share of the pool, a busy database) is
//! waited out.
//!
//! The directory is walked with walkdir without following symlinks: a link (to a parent, to a
//! file elsewhere) is reported as skipped, so no link can make the walk recurse or import a file
//! twice. Progress (files, bytes and passages done, rate, time left) is drawn by indicatif on
//! stderr, only when stderr is a terminal; it ends with a summary (created, updated, unchanged,
//! failed with reasons, symlinks skipped), or with `--json`, one JSON document of the same on
//! stdout instead.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use confab_shared::retry::{self, Policy, RetryAfter, Retryable};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

const EXTENSIONS: &[&str] = &["md", "markdown", "txt"];

/// Where `confab kb import` reads from, where it writes to, and how it reports.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// A file, or a directory whose .md, .markdown and .txt files are imported; each becomes a
    /// document titled by its path under PATH without extension
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// The knowledge folder to load into, created if the tenant has none of that name
    #[arg(long, value_name = "NAME")]
    pub folder: String,
    /// Base URL of the confab HTTP API
    #[arg(
        long,
        value_name = "URL",
        env = "CONFAB_URL",
        default_value = DEFAULT_URL
    )]
    pub url: String,
    /// An API key of the tenant (`confab admin create-tenant` prints one)
    #[arg(
        long,
        value_name = "KEY",
        env = "CONFAB_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Print the results as one JSON document on stdout (counts, and each file's outcome with
    /// its reason if it failed) instead of the progress bar and the summary
    #[arg(long)]
    pub json: bool,
}

const DEFAULT_URL: &str = "http://127.0.0.1:8080";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "no API key: set CONFAB_API_KEY (or --api-key); create a key with `confab admin create-tenant` or POST /v1/keys"
    )]
    NoKey,
    #[error("{0}")]
    Io(String),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the API answered {status}: {body}")]
    Api { status: u16, body: String },
}

/// Tries of one call that the API answers 503 with `Retry-After`.
const MAX_ATTEMPTS: u32 = 5;
/// The longest `Retry-After` honoured, so a wrong header cannot stall an import.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A call that did not succeed: worth repeating after a pause, or not.
enum Refused {
    Busy {
        retry_after: Duration,
        error: ImportError,
    },
    Other(ImportError),
}

/// How a busy API is tried again: after the `Retry-After` it names (the doubling pauses only
/// stand in if a 503 had none).
const BUSY_RETRIES: Policy =
    Policy::doubling(Duration::from_secs(1), MAX_RETRY_AFTER).tries(MAX_ATTEMPTS);

impl Refused {
    fn into_error(self) -> ImportError {
        match self {
            Refused::Busy { error, .. } | Refused::Other(error) => error,
        }
    }
}

impl RetryAfter for Refused {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Refused::Busy { retry_after, .. } => Some(*retry_after),
            Refused::Other(_) => None,
        }
    }
}

/// The response's `Retry-After`, at most [`MAX_RETRY_AFTER`].
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    retry::retry_after_header(response.headers()).map(|pause| pause.min(MAX_RETRY_AFTER))
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    /// One call, repeated while the API answers 503 (uploads beyond the server's share, a busy
    /// database), each time after its `Retry-After`, so an import shares the server instead of
    /// failing files.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), ImportError> {
        (|| self.call_once(method.clone(), path, body.as_ref()))
            .retry(BUSY_RETRIES.backoff())
            .when(|refused| matches!(refused, Refused::Busy { .. }))
            .adjust(retry::honour_retry_after)
            .await
            .map_err(Refused::into_error)
    }

    async fn call_once(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Refused> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| Refused::Other(e.into()))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(&response);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status < 400 {
            return Ok((status, body));
        }
        let error = ImportError::Api {
            status,
            body: body.to_string(),
        };
        Err(match retry_after {
            Some(retry_after) if status == 503 => Refused::Busy { retry_after, error },
            _ => Refused::Other(error),
        })
    }

    /// The id of the folder named `name`, created if there is none.
    async fn folder(&self, name: &str) -> Result<String, ImportError> {
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/folders?limit=200&cursor={c}"),
                None => "/v1/folders?limit=200".to_owned(),
            };
            let (_, page) = self.call(reqwest::Method::GET, &path, None).await?;
            let found = page["data"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|f| f["name"] == name);
            if let Some(id) = found.and_then(|f| f["id"].as_str()) {
                return Ok(id.to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        let (_, created) = self
            .call(
                reqwest::Method::POST,
                "/v1/folders",
                Some(json!({"name": name})),
            )
            .await?;
        created["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ImportError::Io("the API created a folder without an id".into()))
    }
}

/// What a walk of the import root found.
#[derive(Debug, Default)]
struct Found {
    /// Importable files and their sizes, in path order.
    files: Vec<(PathBuf, u64)>,
    /// Symlinks met on the way, not followed: `(link, where it points)`.
    symlinks: Vec<(PathBuf, PathBuf)>,
    /// Entries that could not be read, with the reason.
    unreadable: Vec<(PathBuf, String)>,
}

fn importable(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Every importable file under `root` (or `root` itself, whatever its extension). Symlinks below
/// the root are not followed, so a link to a parent cannot make the walk recurse.
fn files(root: &Path) -> Result<Found, ImportError> {
    let mut found = Found::default();
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.depth() == 0 => {
                return Err(ImportError::Io(format!(
                    "cannot read {}: {e}",
                    root.display()
                )));
            }
            Err(e) => {
                let path = e.path().unwrap_or(root).to_owned();
                found.unreadable.push((path, e.to_string()));
                continue;
            }
        };
        let path = entry.path();
        if entry.path_is_symlink() && entry.depth() > 0 {
            let target = std::fs::read_link(path).unwrap_or_default();
            found.symlinks.push((path.to_owned(), target));
        } else if entry.file_type().is_file() && (entry.depth() == 0 || importable(path)) {
            match entry.metadata() {
                Ok(meta) => found.files.push((path.to_owned(), meta.len())),
                Err(e) => found.unreadable.push((path.to_owned(), e.to_string())),
            }
        }
    }
    found.files.sort();
    found.symlinks.sort();
    Ok(found)
}

/// A document's title: its path under the import root without extension, `/`-separated.
fn title(root: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(root).unwrap_or(file);
    let relative = if relative.as_os_str().is_empty() {
        file
    } else {
        relative
    };
    let without_extension = relative.with_extension("");
    let parts: Vec<String> = without_extension
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.is_empty() || root.is_file() {
        file.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        parts.join("/")
    }
}

/// How one file (or unreadable entry) went.
#[derive(Debug)]
struct Outcome {
    path: PathBuf,
    title: String,
    /// `created`, `updated`, `unchanged` (the server's `stored`), or `failed`.
    stored: &'static str,
    bytes: u64,
    passages: u64,
    document_id: Option<String>,
    error: Option<String>,
}

/// The import's results, printed as the summary or as `--json`.
#[derive(Debug)]
struct Report {
    folder: String,
    folder_id: String,
    outcomes: Vec<Outcome>,
    symlinks: Vec<(PathBuf, PathBuf)>,
    elapsed: Duration,
}

impl Report {
    fn count(&self, stored: &str) -> usize {
        self.outcomes.iter().filter(|o| o.stored == stored).count()
    }

    fn bytes(&self) -> u64 {
        self.outcomes.iter().map(|o| o.bytes).sum()
    }

    fn passages(&self) -> u64 {
        self.outcomes.iter().map(|o| o.passages).sum()
    }

    fn failures(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| o.stored == "failed")
    }

    fn json(&self) -> Value {
        let files: Vec<Value> = self
            .outcomes
            .iter()
            .map(|o| {
                json!({
                    "path": o.path.to_string_lossy(),
                    "title": o.title,
                    "stored": o.stored,
                    "bytes": o.bytes,
                    "passages": o.passages,
                    "document_id": o.document_id,
                    "error": o.error,
                })
            })
            .collect();
        let symlinks: Vec<Value> = self
            .symlinks
            .iter()
            .map(|(link, target)| {
                json!({"path": link.to_string_lossy(), "target": target.to_string_lossy()})
            })
            .collect();
        json!({
            "folder": self.folder,
            "folder_id": self.folder_id,
            "files": self.outcomes.len(),
            "created": self.count("created"),
            "updated": self.count("updated"),
            "unchanged": self.count("unchanged"),
            "failed": self.count("failed"),
            "bytes": self.bytes(),
            "passages": self.passages(),
            "seconds": self.elapsed.as_secs_f64(),
            "results": files,
            "skipped_symlinks": symlinks,
        })
    }

    fn summary(&self) -> String {
        let mut text = format!(
            "{} files into folder {:?}: {} created, {} updated, {} unchanged, {} failed ({} bytes, {} passages, {:.1} s)",
            self.outcomes.len(),
            self.folder,
            self.count("created"),
            self.count("updated"),
            self.count("unchanged"),
            self.count("failed"),
            self.bytes(),
            self.passages(),
            self.elapsed.as_secs_f64(),
        );
        for failure in self.failures() {
            let reason = failure.error.as_deref().unwrap_or("unknown");
            text.push_str(&format!("\nfailed: {}: {reason}", failure.path.display()));
        }
        for (link, target) in &self.symlinks {
            text.push_str(&format!(
                "\nskipped symlink (not followed): {} -> {}",
                link.display(),
                target.display()
            ));
        }
        text
    }
}

const PROGRESS: &str = "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left) {msg}";

/// The progress bar: bytes as its length, files and passages in its message; drawn on stderr
/// only when that is a terminal and the results are not wanted as JSON.
fn progress_bar(total_bytes: u64, json: bool) -> ProgressBar {
    let target = if !json && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total_bytes), target);
    let style = ProgressStyle::with_template(PROGRESS)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#>-");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Import `args.path` into the folder `args.folder`; shows progress and prints a summary, or
/// with `--json` the results as one JSON document. An error when any file failed.
pub async fn import(args: ImportArgs) -> Result<(), ImportError> {
    let started = Instant::now();
    let key = args
        .api_key
        .filter(|k| !k.is_empty())
        .ok_or(ImportError::NoKey)?;
    // An empty variable means the default, as for every CONFAB_* variable.
    let base = match args.url.trim() {
        "" => DEFAULT_URL,
        url => url,
    };
    let (root, folder) = (args.path.as_path(), args.folder.as_str());
    let client = Client {
        http: reqwest::Client::new(),
        base: base.trim_end_matches('/').to_owned(),
        key,
    };
    let found = files(root)?;
    let folder_id = client.folder(folder).await?;
    let total_files = found.files.len();
    let bar = progress_bar(found.files.iter().map(|(_, len)| len).sum(), args.json);
    let mut outcomes: Vec<Outcome> = found
        .unreadable
        .into_iter()
        .map(|(path, error)| Outcome {
            title: title(root, &path),
            path,
            stored: "failed",
            bytes: 0,
            passages: 0,
            document_id: None,
            error: Some(error),
        })
        .collect();
    let mut passages_done = 0u64;
    for (index, (file, size)) in found.files.into_iter().enumerate() {
        let title = title(root, &file);
        bar.set_message(format!(
            "{index}/{total_files} files, {passages_done} passages: {title}"
        ));
        let format = match file.extension().and_then(|e| e.to_str()) {
            Some("txt") => "text",
            _ => "markdown",
        };
        let answer = match std::fs::read_to_string(&file) {
            Err(e) => Err(ImportError::Io(format!("cannot read the file: {e}"))),
            Ok(content) => {
                client
                    .call(
                        reqwest::Method::POST,
                        &format!("/v1/folders/{folder_id}/documents"),
                        Some(json!({"title": title, "content": content, "format": format})),
                    )
                    .await
            }
        };
        let outcome = match answer {
            Ok((_, body)) => {
                let passages = body["chunks"].as_u64().unwrap_or(0);
                passages_done += passages;
                Outcome {
                    stored: match body["stored"].as_str() {
                        Some("created") => "created",
                        Some("updated") => "updated",
                        _ => "unchanged",
                    },
                    passages,
                    document_id: body["id"].as_str().map(str::to_owned),
                    error: None,
                    path: file,
                    title,
                    bytes: size,
                }
            }
            Err(e) => {
                if !args.json {
                    // Said at once, above the bar, not only in the summary.
                    bar.suspend(|| eprintln!("{}: {e}", file.display()));
                }
                Outcome {
                    stored: "failed",
                    passages: 0,
                    document_id: None,
                    error: Some(e.to_string()),
                    path: file,
                    title,
                    bytes: size,
                }
            }
        };
        outcomes.push(outcome);
        bar.inc(size);
    }
    bar.finish_and_clear();
    let report = Report {
        folder: folder.to_owned(),
        folder_id,
        outcomes,
        symlinks: found.symlinks,
        elapsed: started.elapsed(),
    };
    if args.json {
        println!("{}", report.json());
    } else {
        println!("{}", report.summary());
    }
    match report.count("failed") {
        0 => Ok(()),
        1 => Err(ImportError::Io("1 file failed".into())),
        failed => Err(ImportError::Io(format!("{failed} files failed"))),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_paths_under_the_root_without_extension() {
        let root = Path::new("/docs");
        assert_eq!(
            title(root, Path::new("/docs/billing/refunds.md")),
            "billing/refunds"
        );
        assert_eq!(title(root, Path::new("/docs/faq.txt")), "faq");
    }

    #[test]
    fn the_progress_template_is_valid() {
        assert!(ProgressStyle::with_template(PROGRESS).is_ok());
    }

    #[test]
    fn the_walk_reports_symlinks_instead_of_following_them() {
        let dir = std::env::temp_dir().join(format!("confab-walk-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/deep.md"), "# Deep").unwrap();
        std::fs::write(dir.join("top.TXT"), "top").unwrap();
        std::fs::write(dir.join("skip.pdf"), "no").unwrap();
        std::os::unix::fs::symlink("../..", dir.join("a/b/loop")).unwrap();
        std::os::unix::fs::symlink("top.TXT", dir.join("link.md")).unwrap();
        let found = files(&dir).unwrap();
        let names: Vec<_> = found.files.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(names, [dir.join("a/b/deep.md"), dir.join("top.TXT")]);
        assert_eq!(found.files[0].1, 6, "sizes are read on the walk");
        assert_eq!(
            found.symlinks,
            [
                (dir.join("a/b/loop"), PathBuf::from("../..")),
                (dir.join("link.md"), PathBuf::from("top.TXT")),
            ]
        );
        assert!(found.unreadable.is_empty());
        // A file named as the root is imported whatever its extension.
        let one = files(&dir.join("skip.pdf")).unwrap();
        assert_eq!(one.files.len(), 1);
        assert!(files(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
