//! The ingress's connection to RabbitMQ: one supervised session at a time, re-established by
//! itself after the broker goes away. While there is no session, new requests are refused at
//! once (503 in each dialect's shape) instead of waiting; requests already accepted wait for the
//! next session (see `pipeline::Turn`), since their jobs are still queued.

use std::sync::Arc;
use std::time::Duration;

use confab_contract::{
    BrokerNodes, Cancel, CancelKind, HEADER_VERSION, Job, Names, QueueLimits, ReplyEvent, VERSION,
    declare_work_topology,
};
use confab_shared::retry::Policy;
use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable},
};
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};
use uuid::Uuid;

use crate::config::ReplyMode;
use crate::relay::{Relay, SharedRoutes};

/// One live connection with its channels.
pub struct Session {
    connection: Connection,
    /// Confirm-mode channel for jobs and cancels.
    publish: Channel,
    pub relay: Relay,
    /// Flips to true when this session is lost, so waiting requests end at once.
    lost: watch::Sender<bool>,
}

impl Session {
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.subscribe()
    }

    pub fn is_alive(&self) -> bool {
        self.connection.status().connected()
    }

    /// `request_id`'s reply events read again from the reply log.
    pub async fn replay(
        &self,
        names: &Names,
        request_id: Uuid,
    ) -> Result<crate::relay::Subscription, crate::relay::RelayError> {
        crate::relay::Subscription::replay(&self.connection, names, request_id).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    /// The work queue is at its length limit and refused the job.
    #[error("the work queue is full")]
    QueueFull,
    #[error("encoding the job failed: {0}")]
    Encode(#[from] serde_json::Error),
}

impl From<lapin::Error> for PublishError {
    fn from(error: lapin::Error) -> Self {
        PublishError::Unavailable(error.to_string())
    }
}

/// A queue's counts, as the broker reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    pub messages: u32,
    pub consumers: u32,
}

pub struct Broker {
    current: watch::Sender<Option<Arc<Session>>>,
    names: Names,
}

/// What the supervisor needs to open sessions.
#[derive(Clone)]
pub struct BrokerSettings {
    /// The node, or the cluster's nodes, to connect to.
    pub nodes: BrokerNodes,
    pub names: Names,
    pub queue_limits: QueueLimits,
    pub reply_mode: ReplyMode,
    /// Names this process's shared reply queue.
    pub ingress_id: String,
}

impl Broker {
    /// Start the supervisor; returns once the first connection attempt finished (successfully
    /// or not), so a healthy start serves its first request without a 503. The supervisor
    /// runs until the returned handle aborts it.
    pub async fn start(
        settings: BrokerSettings,
        routes: SharedRoutes,
    ) -> (Arc<Broker>, tokio::task::AbortHandle) {
        let broker = Arc::new(Broker {
            current: watch::Sender::new(None),
            names: settings.names.clone(),
        });
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let supervisor = tokio::spawn(supervise(broker.clone(), settings, routes, first_tx));
        let _ = first_rx.await;
        (broker, supervisor.abort_handle())
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The live session, if any.
    pub fn session(&self) -> Option<Arc<Session>> {
        self.current.borrow().clone().filter(|s| s.is_alive())
    }

    /// The live session, once there is one: at once if connected, else after a reconnection.
    pub async fn next_session(&self) -> Arc<Session> {
        let mut current = self.current.subscribe();
        loop {
            if let Some(session) = self.session() {
                return session;
            }
            // The sender lives in `self`, so this only returns after a change.
            let _ = current.changed().await;
        }
    }

    /// Jobs waiting in the work queue and the workers consuming it, as the broker counts them.
    /// On a channel of its own: a passive declare that fails closes its channel.
    pub async fn work_queue(&self) -> Result<QueueCounts, lapin::Error> {
        let Some(session) = self.session() else {
            return Err(lapin::Error::from(
                lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed),
            ));
        };
        let channel = session.connection.create_channel().await?;
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare(
                self.names.jobs().as_str().into(),
                passive,
                FieldTable::default(),
            )
            .await;
        let _ = channel.close(200, "done".into()).await;
        let queue = queue?;
        Ok(QueueCounts {
            messages: queue.message_count(),
            consumers: queue.consumer_count(),
        })
    }

    fn set(&self, session: Option<Arc<Session>>) {
        self.current.send_replace(session);
    }

    /// Publish a job and wait for the broker's confirmation that it is queued.
    ///
    /// In a `publish` span, whose trace context goes with the job (`traceparent`), so that the
    /// worker's spans of this request are its children: the trace goes on past the broker.
    pub async fn publish_job(&self, session: &Session, job: &Job) -> Result<(), PublishError> {
        let queue = self.names.jobs();
        let span = info_span!(
            "publish",
            otel.kind = "producer",
            messaging.system = "rabbitmq",
            messaging.destination.name = %queue,
        );
        async {
            let body = confab_contract::encode(job)?;
            let remaining_ms = (job.deadline_ms - confab_contract::now_ms()).max(1);
            let mut headers = version_header();
            confab_shared::telemetry::current_trace_headers().write(&mut headers);
            let properties = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_message_id(job.request_id.to_string().into())
                .with_correlation_id(job.request_id.to_string().into())
                .with_reply_to(job.reply_to.as_str().into())
                // The job expires in the queue at its deadline; workers also check it on receipt.
                .with_expiration(remaining_ms.to_string().into())
                .with_headers(headers);
            publish_confirmed(session, &queue, &body, properties).await
        }
        .instrument(span)
        .await
    }

    /// Tell every worker that `request_id` must stop. Best effort: a worker also notices a
    /// caller that is gone through its unroutable reply publishes.
    pub async fn broadcast_cancel(&self, request_id: Uuid) {
        self.broadcast(request_id, CancelKind::Stop).await;
    }

    /// Tell every worker what became of `request_id`'s caller (see [`CancelKind`]).
    pub async fn broadcast(&self, request_id: Uuid, kind: CancelKind) {
        let Some(session) = self.session() else {
            return;
        };
        let cancel = Cancel {
            v: VERSION,
            request_id,
            kind,
        };
        let Ok(body) = confab_contract::encode(&cancel) else {
            return;
        };
        let published = session
            .publish
            .basic_publish(
                self.names.cancel_exchange().as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_headers(version_header()),
            )
            .await;
        if let Err(e) = published {
            warn!(%request_id, error = %e, "cancel broadcast failed");
        }
    }
}

impl Broker {
    /// Publish a reply event of `request_id` to a durable queue (a channel answer made without
    /// the model, for the delivery role) and wait for the broker's confirmation.
    pub async fn publish_reply(
        &self,
        session: &Session,
        queue: &str,
        request_id: Uuid,
        event: &ReplyEvent,
    ) -> Result<(), PublishError> {
        let body = event.encode()?;
        // The request's trace goes on in the delivery role, as it does after a worker's answer.
        let mut headers = version_header();
        confab_shared::telemetry::current_trace_headers().write(&mut headers);
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_correlation_id(request_id.to_string().into())
            .with_headers(headers);
        publish_confirmed(session, queue, &body, properties).await
    }
}

/// Publish to a durable queue through the default exchange, `mandatory`, and wait for the
/// broker's confirm: a nack means the queue is full, a return that it does not exist.
async fn publish_confirmed(
    session: &Session,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), PublishError> {
    let confirmation = session
        .publish
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            body,
            properties,
        )
        .await?
        .await?;
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err(PublishError::Unavailable(format!(
            "the queue {queue} does not exist"
        ))),
        Confirmation::Nack(_) => Err(PublishError::QueueFull),
    }
}

pub fn version_header() -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(HEADER_VERSION.into(), AMQPValue::ShortUInt(VERSION));
    headers
}

async fn open(settings: &BrokerSettings, routes: &SharedRoutes) -> Result<Session, String> {
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("confab-ingress {}", settings.ingress_id).into());
    let (connection, node) = settings
        .nodes
        .connect(properties)
        .await
        .map_err(|e| e.to_string())?;
    if settings.nodes.len() > 1 {
        tracing::info!(node, "connected to the broker's node");
    }
    let publish = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    declare_work_topology(&connection, &settings.names, settings.queue_limits)
        .await
        .map_err(|e| e.to_string())?;
    if let Err(e) =
        confab_contract::declare_reply_log(&connection, &settings.names, settings.queue_limits)
            .await
    {
        warn!(error = %e, "the reply log is unavailable; streams cannot be resumed for now");
    }
    let replies = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    let relay = Relay::open(
        settings.reply_mode,
        &settings.names,
        &settings.ingress_id,
        replies,
        routes.clone(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let (lost, _) = watch::channel(false);
    Ok(Session {
        connection,
        publish,
        relay,
        lost,
    })
}

async fn supervise(
    broker: Arc<Broker>,
    settings: BrokerSettings,
    routes: SharedRoutes,
    first: tokio::sync::oneshot::Sender<()>,
) {
    let mut first = Some(first);
    let mut pauses = Policy::BROKER_SESSION.pauses();
    loop {
        let pause = match open(&settings, &routes).await {
            Ok(session) => {
                info!(mode = ?settings.reply_mode, "connected to the broker");
                pauses = Policy::BROKER_SESSION.pauses();
                let session = Arc::new(session);
                broker.set(Some(session.clone()));
                if let Some(first) = first.take() {
                    let _ = first.send(());
                }
                wait_until_lost(&session).await;
                warn!("lost the broker connection; reconnecting");
                broker.set(None);
                session.lost.send_replace(true);
                routes.fail_all();
                pauses.next_pause()
            }
            Err(e) => {
                let pause = pauses.next_pause();
                warn!(error = %e, retry_in = ?pause, "cannot connect to the broker");
                if let Some(first) = first.take() {
                    let _ = first.send(());
                }
                pause
            }
        };
        tokio::time::sleep(pause).await;
    }
}

async fn wait_until_lost(session: &Session) {
    let mut events = session.connection.events_listener();
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            event = events.next() => match event {
                // lapin reports a channel the broker closed with an error (a declare or consume
                // refused) here too; only a connection that stopped being connected is lost.
                Some(lapin::Event::Error(e)) if session.is_alive() => {
                    info!(error = %e, "broker channel error; the connection goes on");
                }
                Some(lapin::Event::Error(e)) => {
                    warn!(error = %e, "broker connection error");
                    return;
                }
                None => return,
                Some(_) => {}
            },
            _ = check.tick() => {
                if !session.is_alive() {
                    return;
                }
            }
        }
    }
}
