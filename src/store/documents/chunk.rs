//! Splitting documents into passages for retrieval: along headings (Markdown) and paragraphs,
//! merging short paragraphs up to a target size and splitting long ones at sentence ends, so
//! that each passage is about one thing and small enough to share a context with others.

/// A passage aims at this many bytes (about 200 tokens) and never exceeds twice it.
pub const TARGET_BYTES: usize = 800;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The Markdown heading path above the passage ("Billing > Refunds"), or empty.
    pub heading: String,
    pub content: String,
}

/// Split `content`; `markdown` decides whether `#` lines are headings.
pub fn split(content: &str, markdown: bool) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut headings: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut paragraph = String::new();
    let mut in_code = false;
    for line in content.lines() {
        let trimmed = line.trim();
        if markdown && trimmed.starts_with("```") {
            in_code = !in_code;
        }
        let heading = markdown && !in_code && heading_level(trimmed).is_some();
        if trimmed.is_empty() || heading {
            push_paragraph(&mut chunks, &headings, &mut current, &mut paragraph);
        }
        if heading {
            flush(&mut chunks, &headings, &mut current);
            let level = heading_level(trimmed).unwrap_or(1);
            headings.truncate(level - 1);
            headings.push(trimmed.trim_start_matches('#').trim().to_owned());
        } else if !trimmed.is_empty() {
            if !paragraph.is_empty() {
                paragraph.push('\n');
            }
            paragraph.push_str(line.trim_end());
        }
    }
    push_paragraph(&mut chunks, &headings, &mut current, &mut paragraph);
    flush(&mut chunks, &headings, &mut current);
    chunks
}

/// `#` to `######` followed by a space.
fn heading_level(line: &str) -> Option<usize> {
    let hashes = line.chars().take_while(|&c| c == '#').count();
    ((1..=6).contains(&hashes) && line[hashes..].starts_with(' ')).then_some(hashes)
}

fn push_paragraph(
    chunks: &mut Vec<Chunk>,
    headings: &[String],
    current: &mut String,
    paragraph: &mut String,
) {
    if paragraph.is_empty() {
        return;
    }
    let text = std::mem::take(paragraph);
    for piece in split_long(&text) {
        if !current.is_empty() && current.len() + piece.len() > TARGET_BYTES {
            flush(chunks, headings, current);
        }
        if !current.is_empty() {
            current.push_str("\n\n");
        }
        current.push_str(&piece);
    }
}

fn flush(chunks: &mut Vec<Chunk>, headings: &[String], current: &mut String) {
    if current.trim().is_empty() {
        current.clear();
        return;
    }
    chunks.push(Chunk {
        heading: headings.join(" > "),
        content: std::mem::take(current),
    });
}

/// A paragraph longer than twice the target, cut at sentence ends (or anywhere, for text without
/// them) into pieces of about the target size.
fn split_long(paragraph: &str) -> Vec<String> {
    if paragraph.len() <= 2 * TARGET_BYTES {
        return vec![paragraph.to_owned()];
    }
    let mut pieces = Vec::new();
    let mut piece = String::new();
    for sentence in paragraph.split_inclusive(['.', '!', '?']) {
        if !piece.is_empty() && piece.len() + sentence.len() > TARGET_BYTES {
            pieces.push(std::mem::take(&mut piece).trim().to_owned());
        }
        piece.push_str(sentence);
        while piece.len() > 2 * TARGET_BYTES {
            let mut cut = TARGET_BYTES;
            while !piece.is_char_boundary(cut) {
                cut += 1;
            }
            let rest = piece.split_off(cut);
            pieces.push(std::mem::replace(&mut piece, rest).trim().to_owned());
        }
    }
    if !piece.trim().is_empty() {
        pieces.push(piece.trim().to_owned());
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_split_at_headings_with_their_path() {
        let doc = "# Billing\nIntro line.\n\n## Refunds\nRefunds take five days.\n\n## Invoices\nInvoices are monthly.\n";
        let chunks = split(doc, true);
        assert_eq!(
            chunks,
            vec![
                Chunk {
                    heading: "Billing".into(),
                    content: "Intro line.".into()
                },
                Chunk {
                    heading: "Billing > Refunds".into(),
                    content: "Refunds take five days.".into()
                },
                Chunk {
                    heading: "Billing > Invoices".into(),
                    content: "Invoices are monthly.".into()
                },
            ]
        );
    }

    #[test]
    fn short_paragraphs_merge_and_long_ones_split_without_losing_text() {
        let short = "One.\n\nTwo.\n\nThree.";
        assert_eq!(split(short, false).len(), 1);
        let long: String = (0..400)
            .map(|i| format!("Sentence number {i} is here. "))
            .collect();
        let chunks = split(&long, false);
        assert!(chunks.len() > 3);
        assert!(chunks.iter().all(|c| c.content.len() <= 2 * TARGET_BYTES));
        let words = |s: &str| s.split_whitespace().count();
        assert_eq!(
            chunks.iter().map(|c| words(&c.content)).sum::<usize>(),
            words(&long)
        );
    }

    #[test]
    fn hashes_in_plain_text_and_code_blocks_are_not_headings() {
        assert_eq!(split("# not a heading\ntext", false)[0].heading, "");
        let doc = "# Setup\n```sh\n# a comment\nmake\n```\n";
        let chunks = split(doc, true);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].heading, "Setup");
        assert!(chunks[0].content.contains("# a comment"));
    }
}
