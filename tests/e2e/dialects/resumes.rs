//! Streams started by a POST (seed 001, OpenAI, seed 002) resume through
//! `GET /v1/requests/{id}/events` on another ingress: exactly the events after the client's
//! `Last-Event-ID`, in the first stream's own shape and ids, then the live rest, and the answer
//! stored once; also when the worker dies meanwhile and another takes the job over.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::ACCEPT;
use serde_json::{Value, json};
use uuid::Uuid;

use super::ai_hub::support::{SEED_ASSISTANT, seed_stack};
use crate::support::stack::{Options, Stack, request_id_of, sse_data};

const LONG_ANSWER: &str = "Our opening hours are long and varied because the shop serves \
    customers in many time zones, so the hours run from seven in the morning until eleven at \
    night on weekdays, from nine until nine on Saturdays, and from ten until six on Sundays.";

fn options() -> Options {
    Options {
        builtin_token_delay: Duration::from_millis(40),
        resume_grace: Duration::from_secs(10),
        ..Options::default()
    }
}

/// Start a stream, read its first `events` whole events and drop the connection: the request
/// id, what was read, and the id of its last event.
async fn cut(response: reqwest::Response, events: usize) -> (String, String, String) {
    let (request_id, received, _body) = read_first(response, events).await;
    let whole = received[..received.rfind("\n\n").unwrap() + 2].to_owned();
    let last = last_id(&whole);
    (request_id, whole, last)
}

/// The request id of a stream, what it sent up to at least its first `events` events, and
/// its body, still open, to read the rest from.
async fn read_first(
    response: reqwest::Response,
    events: usize,
) -> (
    String,
    String,
    impl futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>>,
) {
    assert_eq!(response.status(), 200);
    let request_id = request_id_of(&response);
    let mut body = response.bytes_stream();
    let mut received = String::new();
    while sse_data(&received).len() < events {
        let chunk = body.next().await.expect("more events").unwrap();
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    (request_id, received, body)
}

fn last_id(body: &str) -> String {
    body.lines()
        .rev()
        .find_map(|line| line.strip_prefix("id:"))
        .map(|id| id.trim().to_owned())
        .expect("events with ids")
}

fn first_id(body: &str) -> String {
    body.lines()
        .find_map(|line| line.strip_prefix("id:"))
        .map(|id| id.trim().to_owned())
        .expect("events with ids")
}

fn position(id: &str) -> u64 {
    id.rsplit(':').next().unwrap().parse().unwrap()
}

async fn events_of(
    stack: &Stack,
    base: &str,
    request_id: &str,
    last: Option<&str>,
    key: &str,
) -> (u16, String) {
    let mut request = stack
        .http
        .get(format!("{base}/v1/requests/{request_id}/events"))
        .bearer_auth(key);
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn stored_answers(stack: &Stack) -> Vec<(String, String)> {
    let db = stack.db().await;
    db.query(
        "SELECT content, status FROM messages WHERE role = 'assistant' ORDER BY pk",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}

/// The text of `{"chunk": ..}` events (seed 001).
fn chunks(body: &str) -> String {
    sse_data(body)
        .iter()
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|event| event["chunk"].as_str().map(str::to_owned))
        .collect()
}

/// The text of OpenAI chunks, and every chunk's (id, created).
fn completion_chunks(body: &str) -> (String, Vec<(Value, Value)>) {
    let mut text = String::new();
    let mut ids = Vec::new();
    for data in sse_data(body) {
        let Ok(chunk) = serde_json::from_str::<Value>(&data) else {
            continue;
        };
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
        ids.push((chunk["id"].clone(), chunk["created"].clone()));
    }
    (text, ids)
}

/// A stack of `options` with the "Hours" agent (LONG_ANSWER), and the base URL of a second
/// ingress of it to resume on.
async fn hours_on_two_ingresses(options: Options) -> (Stack, String) {
    let mut stack = Stack::start(options).await;
    stack
        .create_assistant(json!({"name": "Hours", "instructions": LONG_ANSWER}))
        .await;
    let other_ingress = stack.another_ingress().await;
    (stack, other_ingress)
}

/// Ask the "Hours" agent (LONG_ANSWER) for a stream.
async fn ask_hours_streamed(stack: &Stack) -> reqwest::Response {
    stack
        .http
        .post(stack.url("/v1/api/chat/hours"))
        .bearer_auth(&stack.api_key)
        .json(&json!({"message": "What are your opening hours?", "stream": true}))
        .send()
        .await
        .unwrap()
}

/// The worker dies after the client's connection did; the job is redelivered to another worker,
/// which continues the answer the reply log holds, so the client resuming on another ingress
/// gets exactly the rest: one answer, no word twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumed_while_its_worker_is_killed_and_the_job_redelivered_is_one_answer() {
    let (mut stack, other_ingress) = hours_on_two_ingresses(Options {
        workers: 0,
        builtin_token_delay: Duration::from_millis(100),
        ..options()
    })
    .await;
    let doomed = stack.start_worker_process();
    let (request_id, before, last) = cut(ask_hours_streamed(&stack).await, 3).await;
    stack.kill_worker_process(doomed).await;
    stack.start_worker_process();

    let (status, rest) = events_of(
        &stack,
        &other_ingress,
        &request_id,
        Some(&last),
        &stack.api_key,
    )
    .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(position(&first_id(&rest)), position(&last) + 1);
    assert!(!rest.contains("\"error\""), "{rest}");
    assert_eq!(sse_data(&rest).last().map(String::as_str), Some("[DONE]"));
    let text = format!("{}{}", chunks(&before), chunks(&rest));
    assert_eq!(text, LONG_ANSWER, "every word once, in order");
    assert_eq!(
        stored_answers(&stack).await,
        [(text, "complete".to_owned())]
    );
}

/// A stream's format reaches the log with its worker's first event, so a client that resumes
/// while the job still waits for a worker (here longer than the reader first looks for the
/// format) is not told the stream is gone: it waits, and reads the whole answer once a worker
/// takes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumed_while_its_job_waits_for_a_worker_is_read_whole_once_one_takes_it() {
    let (mut stack, other_ingress) = hours_on_two_ingresses(Options {
        workers: 0,
        ..options()
    })
    .await;
    let started = ask_hours_streamed(&stack).await;
    let request_id = request_id_of(&started);
    let resumed = tokio::spawn(
        stack
            .http
            .get(format!("{other_ingress}/v1/requests/{request_id}/events"))
            .bearer_auth(&stack.api_key)
            .send(),
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        !resumed.is_finished(),
        "the resume waits for the job's worker"
    );
    stack.start_worker_process();
    let response = resumed.await.unwrap().unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(chunks(&body), LONG_ANSWER, "{body}");
    assert_eq!(sse_data(&body).last().map(String::as_str), Some("[DONE]"));
    drop(started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_and_openai_streams_cut_midway_resume_on_another_ingress_with_exactly_the_rest() {
    let (stack, other_ingress) = hours_on_two_ingresses(options()).await;
    let post = |path: &str, body: Value| {
        stack
            .http
            .post(stack.url(path))
            .bearer_auth(&stack.api_key)
            .json(&body)
            .send()
    };

    // Seed 001, started on an ingress process that is gone before the client reconnects.
    let (mut first_ingress, first_url) = stack.ingress_process().await;
    let started = stack
        .http
        .post(format!("{first_url}/v1/api/chat/hours"))
        .bearer_auth(&stack.api_key)
        .json(&json!({"message": "What are your opening hours?", "stream": true}))
        .send();
    let (request_id, before, last) = cut(started.await.unwrap(), 3).await;
    first_ingress.kill().await.unwrap();
    let (status, rest) = events_of(
        &stack,
        &other_ingress,
        &request_id,
        Some(&last),
        &stack.api_key,
    )
    .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(position(&first_id(&rest)), position(&last) + 1);
    assert_eq!(sse_data(&rest).last().map(String::as_str), Some("[DONE]"));
    let text = format!("{}{}", chunks(&before), chunks(&rest));
    let stored = stored_answers(&stack).await;
    assert_eq!(stored, [(text.clone(), "complete".to_owned())]);
    // After the end: the whole stream from the start, then nothing left.
    let (status, whole) =
        events_of(&stack, &other_ingress, &request_id, None, &stack.api_key).await;
    assert_eq!((status, chunks(&whole)), (200, text), "{whole}");
    let end = last_id(&whole);
    let (status, _) = events_of(
        &stack,
        &other_ingress,
        &request_id,
        Some(&end),
        &stack.api_key,
    )
    .await;
    assert_eq!(status, 204);

    // OpenAI: the resumed chunks keep the first stream's id and created.
    let started = post(
        "/v1/chat/completions",
        json!({"model": "hours", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "What are your opening hours?"}]}),
    );
    let (request_id, before, last) = cut(started.await.unwrap(), 4).await;
    let (status, rest) = events_of(
        &stack,
        &other_ingress,
        &request_id,
        Some(&last),
        &stack.api_key,
    )
    .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(sse_data(&rest).last().map(String::as_str), Some("[DONE]"));
    let (first_text, first_ids) = completion_chunks(&before);
    let (rest_text, rest_ids) = completion_chunks(&rest);
    assert!(rest_ids.iter().all(|id| *id == first_ids[0]), "{rest}");
    let stored = stored_answers(&stack).await;
    assert_eq!(stored[1].0, format!("{first_text}{rest_text}"));
    assert!(
        rest.contains("\"usage\":{"),
        "the usage chunk is rendered again: {rest}"
    );

    // Only the tenant's own streams, and only streams.
    let other = stack.other_tenant().await;
    let (status, _) = events_of(&stack, &other_ingress, &request_id, None, &other).await;
    assert_eq!(status, 404);
    let (status, body) = events_of(
        &stack,
        &other_ingress,
        &request_id,
        Some(&format!("{}:2", uuid::Uuid::now_v7())),
        &stack.api_key,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let json_turn = post("/v1/api/chat/hours", json!({"message": "Hours?"}))
        .await
        .unwrap();
    let json_id = request_id_of(&json_turn);
    json_turn.text().await.unwrap();
    let (status, body) = events_of(&stack, &other_ingress, &json_id, None, &stack.api_key).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("reply log"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_002_stream_is_read_again_in_its_own_shape() {
    let stack = seed_stack(options()).await;
    let response = stack
        .http
        .post(stack.url("/api/ai-hub/assistant/ask"))
        .bearer_auth(&stack.api_key)
        .header(ACCEPT, "text/event-stream")
        .json(&json!({
            "message": {"id": "m-resume", "role": "user", "content": "How do I reset my password?"},
            "id": "conv-resume",
            "assistantId": SEED_ASSISTANT,
        }))
        .send()
        .await
        .unwrap();
    let request_id = request_id_of(&response);
    let first = response.text().await.unwrap();
    let base = stack.url("").trim_end_matches('/').to_owned();
    let (status, again) = events_of(&stack, &base, &request_id, None, &stack.api_key).await;
    assert_eq!(status, 200, "{again}");
    let types = |body: &str| -> Vec<(String, Value)> {
        sse_data(body)
            .iter()
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .map(|e| (e["type"].as_str().unwrap().to_owned(), e["content"].clone()))
            .collect()
    };
    let (first, again) = (types(&first), types(&again));
    assert_eq!(first.len(), again.len());
    assert_eq!(
        first[..first.len() - 1],
        again[..again.len() - 1],
        "the same tokens"
    );
    assert_eq!(again.last().unwrap().0, "done");
}

/// Publish `body` to the stack's reply log as `request_id`'s record, as a worker publishes an
/// event (or, with `format`, as a worker logs a stream's format), and wait for its confirm.
async fn log_record(
    channel: &lapin::Channel,
    stack: &Stack,
    request_id: Uuid,
    body: &[u8],
    format: bool,
) {
    use lapin::types::{AMQPValue, FieldTable};
    let mut headers = FieldTable::default();
    headers.insert(
        confab_contract::HEADER_VERSION.into(),
        AMQPValue::ShortUInt(confab_contract::VERSION),
    );
    if format {
        headers.insert(
            confab_contract::HEADER_STREAM_FORMAT.into(),
            AMQPValue::Boolean(true),
        );
    }
    let properties = lapin::BasicProperties::default()
        .with_correlation_id(request_id.to_string().into())
        .with_content_type("application/json".into())
        .with_headers(headers);
    let log = stack.names.reply_log();
    channel
        .basic_publish(
            "".into(),
            log.as_str().into(),
            Default::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// A request the ingress accepted, pending in `conversation_id`, and a confirm-mode channel
/// (with its connection) to log its records on.
async fn pending_request(
    stack: &Stack,
    conversation_id: &str,
) -> (Uuid, lapin::Connection, lapin::Channel) {
    let request_id = Uuid::now_v7();
    stack
        .db()
        .await
        .execute(
            "INSERT INTO pending_turns (tenant_id, conversation_id, request_id, deadline, place) \
             VALUES ($1, $2, $3, now() + interval '1 minute', 1)",
            &[&stack.tenant_id, &conversation_id, &request_id],
        )
        .await
        .unwrap();
    let connection = lapin::Connection::connect(&stack.options.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    (request_id, connection, channel)
}

/// A `done` event of the answer `text` in `conversation_id`.
fn done_event(conversation_id: &str, text: &str) -> confab_contract::ReplyEvent {
    confab_contract::ReplyEvent::Done(Box::new(confab_contract::Done {
        message_id: "msg_1".into(),
        conversation_id: conversation_id.into(),
        text: text.into(),
        created_ms: 0,
        usage: Default::default(),
        model: "builtin".into(),
        sources: Vec::new(),
        timing: Default::default(),
        finish_reason: Default::default(),
        tool_calls: Vec::new(),
        last_delta: None,
    }))
}

/// The reply log may lack a record a reply destination got (its writer drops what it cannot
/// write while the log is unavailable): a resume relays the answer up to the missing delta and
/// then fails, in the dialect's shape, rather than relay the answer with a hole in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_stream_missing_a_delta_is_resumed_up_to_the_gap_and_then_fails() {
    use confab_contract::ReplyEvent;
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let (request_id, connection, channel) = pending_request(&stack, "conv_gap").await;
    let format = serde_json::to_vec(&json!({"family": confab::dialects::agents::FORMAT})).unwrap();
    log_record(&channel, &stack, request_id, &format, true).await;
    let delta = |seq, text: &str| ReplyEvent::Delta {
        seq,
        text: text.into(),
    };
    // Delta 1 (" dear") never reached the log.
    for event in [
        delta(0, "Hello"),
        delta(2, " friend"),
        done_event("conv_gap", "Hello dear friend"),
    ] {
        log_record(
            &channel,
            &stack,
            request_id,
            &event.encode().unwrap(),
            false,
        )
        .await;
    }

    let (status, body) = events_of(
        &stack,
        &stack.url(""),
        &request_id.to_string(),
        None,
        &stack.api_key,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(chunks(&body), "Hello", "{body}");
    let last: Value = sse_data(&body)
        .iter()
        .rev()
        .find_map(|data| serde_json::from_str(data).ok())
        .expect("an event");
    assert_eq!(last["error"]["name"], "InternalServerError", "{body}");
    assert!(!body.contains("friend"), "{body}");
    let _ = connection.close(200, "done".into()).await;
}

/// The ingress does not wait for a stream's format to be confirmed before it publishes the job,
/// so the worker's first events may reach the log first: a resume still finds the format and
/// renders every event, those before it included, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_format_reached_the_log_after_its_first_events_is_read_again_whole() {
    use confab_contract::ReplyEvent;
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let (request_id, connection, channel) = pending_request(&stack, "conv_reordered").await;
    let event = |event: ReplyEvent| event.encode().unwrap();
    let done = done_event("conv_reordered", "Hello there");
    let accepted = ReplyEvent::Accepted {
        worker: "w".into(),
        attempt: 1,
        continues: None,
    };
    let first = ReplyEvent::Delta {
        seq: 0,
        text: "Hello".into(),
    };
    let second = ReplyEvent::Delta {
        seq: 1,
        text: " there".into(),
    };
    log_record(&channel, &stack, request_id, &event(accepted), false).await;
    log_record(&channel, &stack, request_id, &event(first), false).await;
    let format = serde_json::to_vec(&json!({"family": confab::dialects::agents::FORMAT})).unwrap();
    log_record(&channel, &stack, request_id, &format, true).await;
    log_record(&channel, &stack, request_id, &event(second), false).await;
    log_record(&channel, &stack, request_id, &event(done), false).await;

    let (status, body) = events_of(
        &stack,
        &stack.url(""),
        &request_id.to_string(),
        None,
        &stack.api_key,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(chunks(&body), "Hello there", "{body}");
    assert_eq!(
        sse_data(&body).last().map(String::as_str),
        Some("[DONE]"),
        "{body}"
    );
    let _ = connection.close(200, "done".into()).await;
}

/// Every resume reads the reply log on a channel of its own, torn down when the reader is done.
/// Many readers coming and going must leave the ingress's broker session whole: a teardown that
/// raced the consumer's cancel once made lapin fail the whole connection, and every request then
/// in flight answered 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_readers_of_a_finished_stream_leave_the_broker_session_intact() {
    let stack = Stack::start(Options::default()).await;
    stack
        .create_assistant(json!({"name": "Hours", "instructions": LONG_ANSWER}))
        .await;
    let response = ask_hours_streamed(&stack).await;
    let request_id = request_id_of(&response);
    let answer = chunks(&response.text().await.unwrap());
    assert_eq!(answer, LONG_ANSWER);

    let base = stack.url("");
    for _round in 0..10 {
        // Live streams meanwhile, so that readers are torn down with the log's later records
        // still arriving on their channels.
        let live = (0..3).map(|_| async {
            let body = json!({"message": "What are your opening hours?", "stream": true});
            stack.chat("hours", body).await.text().await.unwrap()
        });
        let reads = (0..12).map(|_| events_of(&stack, &base, &request_id, None, &stack.api_key));
        let (reads, live) = tokio::join!(
            futures_util::future::join_all(reads),
            futures_util::future::join_all(live)
        );
        for (status, whole) in reads {
            assert_eq!((status, chunks(&whole)), (200, answer.clone()), "{whole}");
        }
        for body in live {
            assert_eq!(chunks(&body), LONG_ANSWER, "{body}");
        }
    }
    let after = stack.chat("hours", json!({"message": "Thanks!"})).await;
    assert_eq!(
        after.status(),
        200,
        "the broker session still carries turns"
    );
}

/// A resume the broker refuses (here the reply log is gone, as for a while after a broker
/// restart) closes only the reader's channel: lapin reports that on the connection's events
/// too, and the ingress once took it for a lost connection and failed every stream in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_the_broker_refuses_fails_alone_and_the_streams_in_flight_go_on() {
    let stack = Stack::start(options()).await;
    stack
        .create_assistant(json!({"name": "Hours", "instructions": LONG_ANSWER}))
        .await;
    let started = stack
        .chat(
            "hours",
            json!({"message": "What are your opening hours?", "stream": true}),
        )
        .await;
    let (request_id, mut received, mut body) = read_first(started, 2).await;

    let amqp = lapin::Connection::connect(&stack.options.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = amqp.create_channel().await.unwrap();
    channel
        .queue_delete(stack.names.reply_log().as_str().into(), Default::default())
        .await
        .unwrap();
    let (status, refused) =
        events_of(&stack, &stack.url(""), &request_id, None, &stack.api_key).await;
    assert_eq!(status, 503, "{refused}");

    while let Some(chunk) = body.next().await {
        received.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(!received.contains("\"error\""), "{received}");
    assert_eq!(
        sse_data(&received).last().map(String::as_str),
        Some("[DONE]")
    );
    assert_eq!(chunks(&received), LONG_ANSWER);
}
