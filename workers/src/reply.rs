//! Publishing a job's reply events to its reply destination.
//!
//! Every event is published `mandatory` on a confirm-mode channel: if the destination no longer
//! exists (the requester disconnected, the ingress died) the broker returns the message, and that
//! raises the job's "caller gone" signal, the same signal the cancel broadcast raises. Deltas are
//! not waited for; the final event is, since the job is acked only after it is confirmed.

use std::time::{Duration, Instant};

use confab_contract::{HEADER_VERSION, ReplyEvent, VERSION};
use lapin::{
    BasicProperties, Channel,
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable, ShortString},
};
use tokio::sync::watch;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("publishing a reply event failed: {0}")]
    Broker(#[from] lapin::Error),
    #[error("encoding a reply event failed: {0}")]
    Encode(#[from] serde_json::Error),
}

pub struct Replies {
    channel: Channel,
    routing_key: ShortString,
    properties: BasicProperties,
    gone: watch::Sender<bool>,
    last_publish: Instant,
}

/// Whether the final event reached the reply destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Yes,
    CallerGone,
}

/// How often a missing reply destination is tried again.
const ANNOUNCE_RETRY: Duration = Duration::from_millis(250);

const MANDATORY: BasicPublishOptions = BasicPublishOptions {
    mandatory: true,
    immediate: false,
};

impl Replies {
    pub fn new(
        channel: Channel,
        reply_to: &str,
        request_id: Uuid,
        gone: watch::Sender<bool>,
    ) -> Self {
        let mut headers = FieldTable::default();
        headers.insert(HEADER_VERSION.into(), AMQPValue::ShortUInt(VERSION));
        let properties = BasicProperties::default()
            .with_correlation_id(request_id.to_string().into())
            .with_content_type("application/json".into())
            .with_headers(headers);
        Self {
            channel,
            routing_key: reply_to.into(),
            properties,
            gone,
            last_publish: Instant::now(),
        }
    }

    /// Time since the last event was published.
    pub fn idle_for(&self) -> std::time::Duration {
        self.last_publish.elapsed()
    }

    /// Publish a non-final event without waiting for the broker's confirmation.
    pub async fn send(&mut self, event: &ReplyEvent) -> Result<(), ReplyError> {
        let confirm = self.publish(event).await?;
        let gone = self.gone.clone();
        tokio::spawn(async move {
            if let Ok(confirmation) = confirm.await
                && confirmation.take_message().is_some()
            {
                gone.send_replace(true);
            }
        });
        Ok(())
    }

    /// Publish the first event and wait until the reply destination has it. A destination that
    /// is missing may be coming back: after a broker restart the ingress declares it again once
    /// it has reconnected, which can be after this worker did. So try again for `patience`
    /// before concluding that the caller is gone.
    pub async fn announce(
        &mut self,
        event: &ReplyEvent,
        patience: Duration,
    ) -> Result<Delivered, ReplyError> {
        let started = Instant::now();
        loop {
            let confirmation = self.publish(event).await?.await?;
            if confirmation.take_message().is_none() {
                return Ok(Delivered::Yes);
            }
            // A cancel broadcast needs no more patience.
            if started.elapsed() >= patience || *self.gone.borrow() {
                self.gone.send_replace(true);
                return Ok(Delivered::CallerGone);
            }
            tokio::time::sleep(ANNOUNCE_RETRY).await;
        }
    }

    /// Publish the final event and wait until the broker has it.
    pub async fn finish(&mut self, event: &ReplyEvent) -> Result<Delivered, ReplyError> {
        let confirmation = self.publish(event).await?.await?;
        if confirmation.take_message().is_some() {
            self.gone.send_replace(true);
            return Ok(Delivered::CallerGone);
        }
        Ok(Delivered::Yes)
    }

    async fn publish(&mut self, event: &ReplyEvent) -> Result<lapin::PublisherConfirm, ReplyError> {
        let body = event.encode()?;
        self.last_publish = Instant::now();
        Ok(self
            .channel
            .basic_publish(
                "".into(),
                self.routing_key.clone(),
                MANDATORY,
                &body,
                self.properties.clone(),
            )
            .await?)
    }
}
