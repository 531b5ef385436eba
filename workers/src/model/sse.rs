//! The `data` of each event of a provider's Server-Sent-Events body, decoded by sse-stream to
//! the letter of the SSE format (LF, CRLF or CR line ends, data over several lines joined, UTF-8
//! split across chunks, a byte-order mark, comments; a last event without its blank line is
//! dropped), with the provider's idle limit on every chunk of the body, so a provider that
//! sends only comments as keepalives is still alive.

use std::time::Duration;

use bytes::Buf;
use futures_util::{Stream, StreamExt};
use sse_stream::SseByteStream;

/// Why a body's events stopped.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    #[error("no data for {0:?}")]
    Idle(Duration),
    #[error(transparent)]
    Transport(reqwest::Error),
    #[error("bad event stream: {0}")]
    Decode(String),
}

/// Each event's data, in order; events without a `data` field (an `id` or `retry` alone) are
/// skipped. Ends with the body, or with the first error.
pub fn data_events<S, B>(body: S, idle: Duration) -> impl Stream<Item = Result<String, SseError>>
where
    S: Stream<Item = Result<B, reqwest::Error>> + Unpin,
    B: Buf,
{
    let chunks = futures_util::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.next()).await {
            Err(_) => Some((Err(SseError::Idle(idle)), None)),
            Ok(None) => None,
            Ok(Some(chunk)) => Some((chunk.map_err(SseError::Transport), Some(body))),
        }
    });
    SseByteStream::new(Box::pin(chunks)).filter_map(|event| async move {
        match event {
            Ok(event) => event.data.map(Ok),
            Err(sse_stream::Error::Body(error)) => Some(Err(match error.downcast::<SseError>() {
                Ok(error) => *error,
                Err(other) => SseError::Decode(other.to_string()),
            })),
            Err(other) => Some(Err(SseError::Decode(other.to_string()))),
        }
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    async fn data_of(chunks: &[&'static [u8]]) -> Vec<String> {
        let body = futures_util::stream::iter(
            chunks
                .iter()
                .map(|chunk| Ok::<_, reqwest::Error>(Bytes::from_static(chunk))),
        );
        data_events(body, Duration::from_secs(5))
            .map(|data| data.expect("valid"))
            .collect()
            .await
    }

    #[tokio::test]
    async fn events_split_across_chunks_are_joined_and_other_fields_ignored() {
        let data = data_of(&[
            b": comment\r\ndata: {\"a\"",
            b":1}\r\n\r\nevent: x\nid: 7\ndata: [DONE]\n\n",
        ])
        .await;
        assert_eq!(data, ["{\"a\":1}", "[DONE]"]);
    }

    #[tokio::test]
    async fn the_formats_less_common_forms_read_as_the_spec_says() {
        // CR line ends, data over two lines, no space after the colon, a character split
        // between chunks, an id-only event, and a last event without its blank line.
        let data = data_of(&[
            b"data:{\"t\":\r",
            b"data:\"\xC3",
            b"\xA9\"}\r\r",
            b"id: 1\n\n",
            b"data: cut off",
        ])
        .await;
        assert_eq!(data, ["{\"t\":\n\"é\"}"]);
    }

    #[tokio::test]
    async fn a_body_silent_past_the_idle_limit_ends_with_a_timeout() {
        let body = futures_util::stream::iter([Ok::<_, reqwest::Error>(Bytes::from_static(
            b"data: 1\n\n",
        ))])
        .chain(futures_util::stream::pending());
        let mut events = Box::pin(data_events(body, Duration::from_millis(100)));
        assert_eq!(events.next().await.expect("one").expect("data"), "1");
        let ended = events.next().await.expect("an error");
        assert!(matches!(ended, Err(SseError::Idle(_))), "{ended:?}");
    }
}
