//! `confab kb import PATH --folder NAME`: load a directory of text and Markdown files into a
//! knowledge folder through the HTTP API (`CONFAB_URL`, `CONFAB_API_KEY`), creating the folder if
//! needed. Each file becomes a document titled by its path under PATH without extension; an
//! unchanged file is recognised by the server and left alone, so importing again is cheap. A 503
//! (the server's uploads at their share of the pool, a busy database) is waited out.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The response's `Retry-After` in seconds, at most [`MAX_RETRY_AFTER`].
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
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
        let mut attempt = 1;
        loop {
            match self.call_once(method.clone(), path, body.as_ref()).await {
                Err(Refused::Busy { retry_after, error }) => {
                    if attempt == MAX_ATTEMPTS {
                        return Err(error);
                    }
                    attempt += 1;
                    tokio::time::sleep(retry_after).await;
                }
                Err(Refused::Other(error)) => return Err(error),
                Ok(answer) => return Ok(answer),
            }
        }
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

/// Every importable file under `root` (or `root` itself), in path order.
fn files(root: &Path) -> Result<Vec<PathBuf>, ImportError> {
    if root.is_file() {
        return Ok(vec![root.to_owned()]);
    }
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| ImportError::Io(format!("cannot read {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                found.push(path);
            }
        }
    }
    found.sort();
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

fn progress(done: usize, total: usize, label: &str) {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let width = 30;
        let filled = (done * width).checked_div(total).unwrap_or(width);
        let _ = write!(
            err,
            "\r[{}{}] {done}/{total} {label:<40.40}",
            "#".repeat(filled),
            "-".repeat(width - filled)
        );
        let _ = err.flush();
    } else {
        let _ = writeln!(err, "{done}/{total} {label}");
    }
}

/// Import `args.path` into the folder `args.folder`; prints a progress bar and a summary.
pub async fn import(args: ImportArgs) -> Result<(), ImportError> {
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
    let files = files(root)?;
    let folder_id = client.folder(folder).await?;
    let (mut created, mut updated, mut unchanged, mut failed) = (0, 0, 0, 0);
    for (index, file) in files.iter().enumerate() {
        let title = title(root, file);
        progress(index, files.len(), &title);
        let format = match file.extension().and_then(|e| e.to_str()) {
            Some("txt") => "text",
            _ => "markdown",
        };
        let outcome = match std::fs::read_to_string(file) {
            Err(e) => Err(ImportError::Io(format!("{}: {e}", file.display()))),
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
        match outcome {
            Ok((_, body)) => match body["stored"].as_str() {
                Some("created") => created += 1,
                Some("updated") => updated += 1,
                _ => unchanged += 1,
            },
            Err(e) => {
                failed += 1;
                eprintln!("\n{title}: {e}");
            }
        }
    }
    progress(files.len(), files.len(), "done");
    eprintln!();
    println!(
        "{} files into folder {folder:?}: {created} created, {updated} updated, {unchanged} unchanged, {failed} failed",
        files.len()
    );
    if failed > 0 {
        return Err(ImportError::Io(format!("{failed} files failed")));
    }
    Ok(())
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
}
