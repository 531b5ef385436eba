//! The delivery role: sends channel answers to their platform. Channel turns (WhatsApp,
//! Telegram) have `<prefix>.deliveries` as reply destination; this role consumes their final
//! events and hands each to [`send`], which finds where the answer goes, sends it and records
//! the outcome. A delivery is acked only once its outcome is recorded, so a worker dying
//! mid-send redelivers it (the platform may then see an answer twice, never none).

mod send;

use std::sync::Arc;
use std::time::Duration;

use confab_contract::{ReplyEvent, TraceHeaders, declare_work_topology};
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use lapin::{
    ConnectionProperties,
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};
use uuid::Uuid;

use crate::WorkerConfig;
use crate::consume::SessionError;
use crate::readiness::Readiness;
use confab_shared::{platforms, telemetry};
use send::Deliverer;

/// Run delivery sessions until `shutdown` flips to true, reconnecting after failures.
pub async fn run(
    config: &WorkerConfig,
    pool: Pool,
    worker_id: &str,
    readiness: Arc<Readiness>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SessionError> {
    if !config.delivery.secrets.is_enabled() {
        tracing::warn!("CONFAB_SECRET_KEYS is not set: channel secrets are read unencrypted");
    }
    let http = platforms::http_client(config.delivery.http_timeout)
        .map_err(|e| SessionError::Setup(e.to_string()))?;
    let deliverer = Arc::new(Deliverer {
        pool,
        http,
        settings: config.delivery.clone(),
    });
    let nodes = crate::consume::broker_nodes(config)?;
    crate::consume::reconnecting("delivery", shutdown.clone(), || {
        session(
            config,
            &nodes,
            &deliverer,
            worker_id,
            &readiness,
            shutdown.clone(),
        )
    })
    .await
}

/// One connection's worth of deliveries: until shutdown (then the sends in flight finish or are
/// returned) or until the connection fails.
async fn session(
    config: &WorkerConfig,
    nodes: &confab_contract::BrokerNodes,
    deliverer: &Arc<Deliverer>,
    worker_id: &str,
    readiness: &Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let names = &config.shared.names;
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("confab-worker {worker_id} delivery").into());
    let (connection, _node) = nodes.connect(properties).await?;
    let channel = connection.create_channel().await?;
    declare_work_topology(&connection, names, config.shared.queue_limits).await?;
    channel
        .basic_qos(
            deliverer.settings.concurrency,
            BasicQosOptions { global: false },
        )
        .await?;
    let tag = format!("{worker_id}-delivery");
    let mut deliveries = channel
        .basic_consume(
            names.deliveries().as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    info!(queue = %names.deliveries(), "delivering channel answers");
    let consuming = readiness.consuming();
    let mut sends = JoinSet::new();
    let ended = loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break Ok(()),
            delivery = deliveries.next() => match delivery {
                Some(Ok(delivery)) => {
                    sends.spawn(settle(deliverer.clone(), delivery));
                }
                Some(Err(e)) => break Err(e.into()),
                None => break Err(SessionError::ConsumerClosed),
            },
            Some(_) = sends.join_next() => {}
        }
    };
    drop(consuming);
    if ended.is_ok() {
        crate::consume::drain(&channel, &tag, &mut sends, config.shutdown_grace).await;
        let _ = connection.close(200, "worker stopping".into()).await;
    }
    ended
}

/// Ack a delivery once its outcome is recorded; one that could not be recorded goes back to the
/// queue. A final event is handled in a `delivery` span, in the trace of the turn whose answer
/// it is (its context came in the event's headers), so that a channel message's trace runs from
/// its webhook to its sending; the turn's progress events are only acked.
async fn settle(deliverer: Arc<Deliverer>, delivery: Delivery) {
    let request_id = delivery
        .properties
        .correlation_id()
        .as_ref()
        .and_then(|id| Uuid::parse_str(id.as_str()).ok());
    let (Some(request_id), Ok(event)) = (request_id, ReplyEvent::decode(&delivery.data)) else {
        error!("undecodable delivery; dropping it");
        ack(&delivery).await;
        return;
    };
    if !event.is_final() {
        ack(&delivery).await;
        return;
    }
    let span = info_span!("delivery", %request_id, trace_id = tracing::field::Empty);
    if telemetry::enabled() {
        let remote = TraceHeaders::read(delivery.properties.headers().as_ref());
        telemetry::set_remote_parent(&span, &remote);
        telemetry::record_trace_id(&span);
    }
    settle_in_span(deliverer, delivery, request_id, event)
        .instrument(span)
        .await
}

async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        warn!(error = %e, "could not settle a delivery; the broker will redeliver it");
    }
}

async fn settle_in_span(
    deliverer: Arc<Deliverer>,
    delivery: Delivery,
    request_id: Uuid,
    event: ReplyEvent,
) {
    let result = match deliverer.handle(request_id, event).await {
        Ok(()) => delivery.ack(BasicAckOptions::default()).await,
        Err(e) => {
            // The database is unreachable: try again later; the delivery limit bounds it.
            warn!(error = %e, "could not record a delivery; returning it to the queue");
            tokio::time::sleep(Duration::from_secs(1)).await;
            delivery
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await
        }
    };
    if let Err(e) = result {
        warn!(error = %e, "could not settle a delivery; the broker will redeliver it");
    }
}
