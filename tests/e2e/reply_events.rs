//! The reply events a worker publishes for a streamed turn, read off a reply queue of the test's
//! own: a first delivery says no `accepted`, and a job whose reader takes the last delta from
//! `done` gets no separate event for it, while every word still arrives exactly once.

use confab_contract::{Done, ReplyEvent, encode};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use std::time::Duration;

use crate::support::stack::{Options, Stack, amqp_url};

/// The events of one streamed job, published by hand with `last_delta_in_done` as given, up to
/// and including its final one.
async fn streamed_events(stack: &Stack, last_delta_in_done: bool) -> Vec<ReplyEvent> {
    let agent = stack.support_agent().await;
    let connection = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let request_id = uuid::Uuid::now_v7();
    let replies = format!(
        "{}.test-replies-{}",
        stack.names.prefix(),
        request_id.simple()
    );
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare(replies.as_str().into(), exclusive, FieldTable::default())
        .await
        .unwrap();
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut deliveries = channel
        .basic_consume(
            replies.as_str().into(),
            "test".into(),
            no_ack,
            FieldTable::default(),
        )
        .await
        .unwrap();
    let question = "When are you open, and how do refunds work?";
    let mut job = stack.job(&agent, "conv_events", question, &replies).await;
    job.stream = true;
    job.last_delta_in_done = last_delta_in_done;
    channel
        .basic_publish(
            "".into(),
            stack.names.jobs().as_str().into(),
            BasicPublishOptions::default(),
            &encode(&job).unwrap(),
            Default::default(),
        )
        .await
        .unwrap();
    let mut events = Vec::new();
    loop {
        let delivery = tokio::time::timeout(Duration::from_secs(20), deliveries.next())
            .await
            .expect("reply events")
            .unwrap()
            .unwrap();
        let event = ReplyEvent::decode(&delivery.data).unwrap();
        let last = event.is_final();
        events.push(event);
        if last {
            break;
        }
    }
    let _ = connection.close(200, "".into()).await;
    events
}

/// The deltas' texts in order (checking their `seq`s count up from 0), and the final `done`.
fn deltas_and_done(events: Vec<ReplyEvent>) -> (Vec<String>, Done) {
    let mut texts = Vec::new();
    for event in events {
        match event {
            ReplyEvent::Delta { seq, text } => {
                assert_eq!(seq as usize, texts.len(), "deltas in order");
                texts.push(text);
            }
            ReplyEvent::Keepalive => {}
            ReplyEvent::Done(done) => return (texts, *done),
            other => panic!("a first delivery's stream has only deltas and done: {other:?}"),
        }
    }
    panic!("no done")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_reader_takes_the_last_delta_from_done_gets_it_there_and_no_accepted() {
    let stack = Stack::start(Options::default()).await;
    let (texts, done) = deltas_and_done(streamed_events(&stack, true).await);
    let last = done
        .last_delta
        .clone()
        .expect("done carries the last delta");
    assert_eq!(last.seq as usize, texts.len(), "it follows the deltas sent");
    assert!(!last.text.is_empty());
    assert!(!texts.is_empty(), "the first words went out at once");
    assert_eq!(
        texts.concat() + &last.text,
        done.text,
        "every word exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_an_older_ingress_gets_every_delta_as_an_event_of_its_own() {
    let stack = Stack::start(Options::default()).await;
    let (texts, done) = deltas_and_done(streamed_events(&stack, false).await);
    assert_eq!(done.last_delta, None);
    assert!(
        texts.len() >= 2,
        "the first words, then the rest: {texts:?}"
    );
    assert_eq!(texts.concat(), done.text);
}
