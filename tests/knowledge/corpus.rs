//! The retrieval corpus shipped with the tests (`tests/knowledge/`): self-written help pages of
//! a bicycle shop and questions whose answer is in one known page. Shared by the e2e test and the
//! retrieval-quality bench.

use std::path::{Path, PathBuf};

/// `tests/knowledge` of this repository.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/knowledge")
}

/// Every page as (title = file stem, Markdown content), in name order.
pub fn documents() -> Vec<(String, String)> {
    let mut pages: Vec<(String, String)> = std::fs::read_dir(dir().join("corpus"))
        .expect("the corpus directory")
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let title = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("a UTF-8 file name")
                .to_owned();
            (
                title,
                std::fs::read_to_string(&path).expect("a readable page"),
            )
        })
        .collect();
    pages.sort();
    pages
}

/// Every (question, title of the page that answers it).
pub fn questions() -> Vec<(String, String)> {
    std::fs::read_to_string(dir().join("questions.tsv"))
        .expect("the question set")
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (question, title) = line.split_once('\t')?;
            Some((question.to_owned(), title.to_owned()))
        })
        .collect()
}
