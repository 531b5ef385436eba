//! Slow and stalled clients cost the ingress a bounded amount, for a bounded time: a socket that
//! sends nothing or only part of its headers is closed at the header deadline, a body that stops
//! arriving is refused, connections over the cap get a clear 503, and a stream whose client
//! stops reading is ended while its turn is still finished and stored.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use confab::config::ConnectionLimits;

use crate::support::openai_server::{FakeOpenAi, Script};
use crate::support::stack::{Options, Stack};

fn limits(header_read_timeout: Duration, max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout,
        write_stall: Duration::from_secs(60),
        max_connections,
    }
}

async fn connect(stack: &Stack) -> TcpStream {
    let addr = stack.url("").trim_start_matches("http://").to_owned();
    TcpStream::connect(addr.trim_end_matches('/'))
        .await
        .unwrap()
}

/// Everything the server sends until it closes the connection; `None` if it is still open
/// after `patience` (far longer than any deadline under test).
async fn read_until_closed(tcp: &mut TcpStream, patience: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(patience, tcp.read_to_end(&mut received)).await;
    match read {
        Ok(_) => Some(received),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_send_nothing_or_part_of_their_headers_are_closed_at_the_deadline() {
    let stack = Stack::start(Options {
        connection_limits: limits(Duration::from_secs(1), 4096),
        ..Options::default()
    })
    .await;
    let partial = [
        &b""[..],
        b"POST /v1/api/chat/support-agent HT",
        b"POST /v1/api/chat/support-agent HTTP/1.1\r\nhost: x\r\ncontent-type: appl",
    ];
    for sent in partial {
        let mut tcp = connect(&stack).await;
        tcp.write_all(sent).await.unwrap();
        let closed = read_until_closed(&mut tcp, Duration::from_secs(15)).await;
        assert!(
            closed.is_some(),
            "still open after {:?}",
            String::from_utf8_lossy(sent)
        );
    }
    // A client that keeps to the deadline is served as always.
    let (status, _) = stack.api("GET", "/v1/assistants", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_refused_in_the_routes_shape() {
    let stack = Stack::start(Options {
        body_read_timeout: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let mut tcp = connect(&stack).await;
    let head = format!(
        "POST /v1/api/chat/support-agent HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"message\": ",
        stack.api_key
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut answer))
        .await
        .expect("an answer before the client sends the rest")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"ValidationError\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_a_clear_503_and_a_freed_slot_is_reused() {
    let stack = Stack::start(Options {
        connection_limits: limits(Duration::from_secs(30), 2),
        ..Options::default()
    })
    .await;
    let first = connect(&stack).await;
    let _second = connect(&stack).await;
    // Accepted in order: the third finds both slots taken.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = connect(&stack).await;
    let refused = read_until_closed(&mut third, Duration::from_secs(10))
        .await
        .expect("the refusal closes the connection");
    let refused = String::from_utf8_lossy(&refused);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    let body = refused.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"]["code"], "overloaded");

    drop(first);
    let mut served = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, _) = stack.api("GET", "/healthz", None).await;
        if status == 200 {
            served = Some(status);
            break;
        }
    }
    assert_eq!(served, Some(200), "the freed slot was never reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_client_stops_reading_is_ended_and_its_turn_still_stored() {
    // 20 MB of answer: far more than the socket buffers and the stream's own buffer hold.
    let piece = "x".repeat(5_000);
    let server = FakeOpenAi::start(Script::Tokens {
        pieces: vec![piece; 4_000],
        prompt_tokens: 10,
        completion_tokens: 4_000,
    })
    .await;
    let stack = Stack::start(Options {
        openai_base_url: server.base_url(),
        openai_api_key: "sk-test".into(),
        stream_stall: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    stack
        .create_assistant(json!({"name": "Long", "model": "openai/test-model"}))
        .await;
    let mut tcp = connect(&stack).await;
    let body = json!({"message": "Tell me everything", "stream": true}).to_string();
    let request = format!(
        "POST /v1/api/chat/long HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        stack.api_key,
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();

    // The client reads nothing while the whole answer is generated and stored.
    let db = stack.db().await;
    let mut stored = None;
    for _ in 0..300 {
        let row = db
            .query_opt(
                "SELECT length(content), status FROM messages WHERE role = 'assistant'",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            stored = Some((row.get::<_, i32>(0), row.get::<_, String>(1)));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (length, status) = stored.expect("the turn was stored while its client read nothing");
    assert_eq!((length, status.as_str()), (20_000_000, "complete"));

    // What the client finally reads is the start of the answer, then the end of the stream,
    // without the rest and without its `[DONE]`.
    let mut received = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk))
            .await
            .expect("the ended stream does not hang")
            .unwrap();
        if read == 0 || received.ends_with(b"0\r\n\r\n") {
            break;
        }
        received.extend_from_slice(&chunk[..read]);
        if received.ends_with(b"0\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(
        received.len() < 20_000_000,
        "{} bytes relayed",
        received.len()
    );
    assert!(!text.contains("[DONE]"));
}
