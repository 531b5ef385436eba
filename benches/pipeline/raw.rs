//! The raw baselines, with no confab code: an RPC over RabbitMQ with lapin alone, and the
//! Postgres transaction a turn needs, with tokio-postgres alone.
//!
//! The RPC is as durable as a turn, so that no ratio can improve by weakening it (issue 18):
//! each request is a persistent message to a quorum queue, published with a confirm waited
//! for, taken with a manual ack given once its replies are out; the replies go out as a
//! turn's events do (mandatory on a confirm channel, only the last confirm waited for), each
//! request answered by a task of its own, as a worker's prefetch of 16 answers jobs at once.
//! Two layouts are tried, requester and responder on one connection or on two (as the
//! ingress and a worker are), and each figure is the better layout's, printed with it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use confab::ReplyMode;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::{Mutex, mpsc};

use crate::measure::{Phase, Run, Timing, closed_loop};
use crate::stack::{admin_database_url, amqp_url};

/// Reply messages per raw RPC, as in the brief's baseline.
pub const RAW_REPLIES: usize = 20;

/// Waiting raw requests by correlation id (shared mode).
type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<()>>>>;

/// Requests the responder takes at once, as a worker's default prefetch.
const RESPONDER_PREFETCH: u16 = 16;

/// Where the requester and the responder hold their channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    OneConnection,
    TwoConnections,
}

impl Layout {
    pub const ALL: [Layout; 2] = [Layout::OneConnection, Layout::TwoConnections];

    pub fn name(self) -> &'static str {
        match self {
            Layout::OneConnection => "1 connection",
            Layout::TwoConnections => "2 connections",
        }
    }
}

/// A requester and a responder: each request gets `RAW_REPLIES` messages back, in a queue
/// declared for it (per-request) or in the requester's one queue (shared).
pub struct RawRpc {
    connections: Vec<Connection>,
    channel: Channel,
    request_queue: String,
    /// Shared mode: the one reply queue and the waiting requests by correlation id.
    shared: Option<(String, Routes)>,
}

fn exclusive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    }
}

fn no_ack() -> BasicConsumeOptions {
    BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    }
}

async fn connect() -> Connection {
    Connection::connect(&amqp_url(), Default::default())
        .await
        .expect("broker")
}

/// Answer each request on `requests` with `RAW_REPLIES` messages, in a task of its own.
fn respond(mut requests: lapin::Consumer, replies: Channel) {
    tokio::spawn(async move {
        while let Some(Ok(request)) = requests.next().await {
            let replies = replies.clone();
            tokio::spawn(async move {
                let reply_to = request.properties.reply_to().clone().unwrap_or_default();
                let correlation = request
                    .properties
                    .correlation_id()
                    .clone()
                    .unwrap_or_default();
                let mut last = None;
                for i in 0..RAW_REPLIES {
                    let confirm = replies
                        .basic_publish(
                            "".into(),
                            reply_to.clone(),
                            BasicPublishOptions {
                                mandatory: true,
                                ..Default::default()
                            },
                            format!("{{\"seq\":{i},\"text\":\"token\"}}").as_bytes(),
                            BasicProperties::default().with_correlation_id(correlation.clone()),
                        )
                        .await;
                    last = confirm.ok();
                }
                if let Some(confirm) = last {
                    let _ = confirm.await;
                }
                let _ = request.ack(BasicAckOptions::default()).await;
            });
        }
    });
}

impl RawRpc {
    pub async fn start(mode: ReplyMode, layout: Layout) -> Arc<RawRpc> {
        let mut connections = vec![connect().await];
        if layout == Layout::TwoConnections {
            connections.push(connect().await);
        }
        let (requester, responder_connection) =
            (&connections[0], &connections[connections.len() - 1]);
        let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let request_queue = format!("{prefix}.rpc");
        let responder = responder_connection
            .create_channel()
            .await
            .expect("channel");
        let mut quorum = FieldTable::default();
        quorum.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        responder
            .queue_declare(
                request_queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                quorum,
            )
            .await
            .expect("declare");
        responder
            .basic_qos(RESPONDER_PREFETCH, BasicQosOptions::default())
            .await
            .expect("prefetch");
        let requests = responder
            .basic_consume(
                request_queue.as_str().into(),
                "responder".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let replies = responder_connection
            .create_channel()
            .await
            .expect("channel");
        replies
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        respond(requests, replies);
        let channel = requester.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        let shared = if mode == ReplyMode::Shared {
            let queue = format!("{prefix}.replies");
            channel
                .queue_declare(queue.as_str().into(), exclusive(), FieldTable::default())
                .await
                .expect("declare");
            let routes: Routes = Arc::default();
            let mut consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    "replies".into(),
                    no_ack(),
                    FieldTable::default(),
                )
                .await
                .expect("consume");
            let router = routes.clone();
            tokio::spawn(async move {
                while let Some(Ok(reply)) = consumer.next().await {
                    let id = reply
                        .properties
                        .correlation_id()
                        .clone()
                        .unwrap_or_default();
                    if let Some(tx) = router.lock().await.get(id.as_str()) {
                        let _ = tx.send(());
                    }
                }
            });
            Some((queue, routes))
        } else {
            None
        };
        Arc::new(RawRpc {
            connections,
            channel,
            request_queue,
            shared,
        })
    }

    /// One round trip: the time to its first reply message and to its last.
    pub async fn call(&self) -> Timing {
        let started = Instant::now();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut first = None;
        match &self.shared {
            Some((queue, routes)) => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                routes.lock().await.insert(id.clone(), tx);
                self.publish(queue, &id).await;
                for _ in 0..RAW_REPLIES {
                    rx.recv().await.expect("reply");
                    first.get_or_insert_with(|| started.elapsed());
                }
                routes.lock().await.remove(&id);
            }
            None => {
                let queue = format!("{}.reply.{id}", self.request_queue);
                self.channel
                    .queue_declare(queue.as_str().into(), exclusive(), FieldTable::default())
                    .await
                    .expect("declare");
                let mut consumer = self
                    .channel
                    .basic_consume(
                        queue.as_str().into(),
                        queue.as_str().into(),
                        no_ack(),
                        FieldTable::default(),
                    )
                    .await
                    .expect("consume");
                self.publish(&queue, &id).await;
                for _ in 0..RAW_REPLIES {
                    consumer.next().await.expect("reply").expect("delivery");
                    first.get_or_insert_with(|| started.elapsed());
                }
                let _ = self
                    .channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        Timing {
            first: first.unwrap_or_default(),
            total: started.elapsed(),
        }
    }

    /// The request, as a job is published: persistent, confirmed.
    async fn publish(&self, reply_to: &str, id: &str) {
        self.channel
            .basic_publish(
                "".into(),
                self.request_queue.as_str().into(),
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_reply_to(reply_to.into())
                    .with_correlation_id(id.into()),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    /// Delete the request queue and close the connections; the exclusive queues go with them.
    pub async fn close(&self) {
        let _ = self
            .channel
            .queue_delete(
                self.request_queue.as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await;
        for connection in &self.connections {
            let _ = connection.close(200, "bench done".into()).await;
        }
    }
}

/// Raw RPC runs of `mode`, one per concurrency, each the better of the layouts (the one with
/// more calls per second), with the layout.
pub async fn rpc_runs(
    mode: ReplyMode,
    concurrencies: &[usize],
    phase: Phase,
) -> Vec<(Run, Layout)> {
    let mut best: Vec<Option<(Run, Layout)>> = vec![None; concurrencies.len()];
    for layout in Layout::ALL {
        let rpc = RawRpc::start(mode, layout).await;
        for (slot, &clients) in best.iter_mut().zip(concurrencies) {
            let rpc = rpc.clone();
            let run = closed_loop(clients, phase, move |_| {
                let rpc = rpc.clone();
                async move { rpc.call().await }
            })
            .await;
            if slot
                .as_ref()
                .is_none_or(|(kept, _)| run.per_second > kept.per_second)
            {
                *slot = Some((run, layout));
            }
        }
        rpc.close().await;
    }
    best.into_iter().flatten().collect()
}

/// A job's publish with no confab code: a persistent 1 KiB message to a quorum queue, waiting
/// for the broker's confirm (given once the queue's log is synced), on 1 channel and on
/// `clients` clients sharing one channel. The queue is deleted at the end.
pub async fn quorum_publish(clients: usize, phase: Phase) -> (Run, Run) {
    let connection = Connection::connect(&amqp_url(), Default::default())
        .await
        .expect("broker");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let queue: Arc<str> = format!(
        "bench{}.quorum",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
    .into();
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            (*queue).into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .expect("declare a quorum queue");
    let run = |clients: usize| {
        let (channel, queue) = (channel.clone(), queue.clone());
        closed_loop(clients, phase, move |_| {
            let (channel, queue) = (channel.clone(), queue.clone());
            async move {
                let started = Instant::now();
                channel
                    .basic_publish(
                        "".into(),
                        (*queue).into(),
                        BasicPublishOptions::default(),
                        &[b'x'; 1024],
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                    .expect("publish")
                    .await
                    .expect("confirm");
                Timing::whole(started.elapsed())
            }
        })
    };
    let single = run(1).await;
    let parallel = run(clients).await;
    let _ = channel
        .queue_delete((*queue).into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "bench done".into()).await;
    (single, parallel)
}

/// The Postgres baseline: in one transaction, insert a turn and read the conversation's last 20.
pub struct PostgresFigures {
    pub version: String,
    pub single: Run,
    pub parallel: Run,
}

/// Conversations in the private schema, each with 20 turns to start with.
const CONVERSATIONS: usize = 64;

/// A turn's transaction in a private schema (created here, dropped at the end), on 1 connection
/// and on `connections` connections at once.
pub async fn postgres(connections: usize, phase: Phase) -> PostgresFigures {
    let schema = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let admin = confab::cli::admin::connect(&admin_database_url())
        .await
        .expect("the database server");
    let version: String = admin
        .query_one("SHOW server_version", &[])
        .await
        .expect("version")
        .get::<_, String>(0)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.turns (
                 id bigserial PRIMARY KEY,
                 conversation_id uuid NOT NULL,
                 role text NOT NULL,
                 content text NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now());
             CREATE INDEX ON {schema}.turns (conversation_id, id);
             INSERT INTO {schema}.turns (conversation_id, role, content)
                 SELECT c.id, CASE WHEN n % 2 = 0 THEN 'user' ELSE 'assistant' END,
                        repeat('word ', 40)
                 FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, {CONVERSATIONS})) c,
                      generate_series(1, 20) n;
             ANALYZE {schema}.turns;"
        ))
        .await
        .expect("create the private schema");
    let conversations: Arc<Vec<uuid::Uuid>> = Arc::new(
        admin
            .query(
                &format!("SELECT DISTINCT conversation_id FROM {schema}.turns"),
                &[],
            )
            .await
            .expect("conversations")
            .iter()
            .map(|row| row.get(0))
            .collect(),
    );
    let mut sessions = Vec::new();
    for _ in 0..connections {
        let client = confab::cli::admin::connect(&admin_database_url())
            .await
            .expect("connect");
        let insert = client
            .prepare(&format!(
                "INSERT INTO {schema}.turns (conversation_id, role, content) VALUES ($1, 'user', $2)"
            ))
            .await
            .expect("prepare");
        let recent = client
            .prepare(&format!(
                "SELECT role, content FROM {schema}.turns WHERE conversation_id = $1 \
                 ORDER BY id DESC LIMIT 20"
            ))
            .await
            .expect("prepare");
        sessions.push((client, insert, recent));
    }
    let sessions = Arc::new(sessions);
    let run = |clients: usize| {
        let (sessions, conversations) = (sessions.clone(), conversations.clone());
        closed_loop(clients, phase, move |client| {
            let (sessions, conversations) = (sessions.clone(), conversations.clone());
            async move {
                let (db, insert, recent) = &sessions[client];
                let conversation = conversations[client % conversations.len()];
                let started = Instant::now();
                db.batch_execute("BEGIN").await.expect("begin");
                db.execute(insert, &[&conversation, &"What are your opening hours?"])
                    .await
                    .expect("insert");
                let rows = db.query(recent, &[&conversation]).await.expect("select");
                assert_eq!(rows.len(), 20);
                db.batch_execute("COMMIT").await.expect("commit");
                Timing::whole(started.elapsed())
            }
        })
    };
    let single = run(1).await;
    let parallel = run(connections).await;
    drop(sessions);
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .expect("drop the private schema");
    PostgresFigures {
        version,
        single,
        parallel,
    }
}
