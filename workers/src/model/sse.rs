//! Incremental reader of `data:` lines from a Server-Sent-Events byte stream.

/// Collects bytes and yields each complete `data:` payload. Other fields (`event:`, `id:`,
/// comments) are ignored: the OpenAI streaming protocol carries everything in `data`.
#[derive(Default)]
pub struct DataLines {
    buffer: Vec<u8>,
}

impl DataLines {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete data payload, if a whole line has arrived.
    pub fn next_data(&mut self) -> Option<Result<String, std::str::Utf8Error>> {
        loop {
            let end = self.buffer.iter().position(|&b| b == b'\n')?;
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(data) = line.strip_prefix(b"data:") {
                let data = data.strip_prefix(b" ").unwrap_or(data);
                return Some(std::str::from_utf8(data).map(str::to_owned));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_split_across_chunks_are_joined() {
        let mut lines = DataLines::default();
        lines.push(b": comment\r\ndata: {\"a\"");
        assert!(lines.next_data().is_none());
        lines.push(b":1}\r\n\r\ndata: [DONE]\n\n");
        assert_eq!(lines.next_data().unwrap().unwrap(), "{\"a\":1}");
        assert_eq!(lines.next_data().unwrap().unwrap(), "[DONE]");
        assert!(lines.next_data().is_none());
    }
}
