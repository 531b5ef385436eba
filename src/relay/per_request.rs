//! Per-request reply queues: declared before the job is published, consumed by a small forwarding
//! task, deleted when the request ends.

use confab_contract::{Names, declare_reply_queue};
use lapin::{
    Channel,
    options::{BasicConsumeOptions, QueueDeleteOptions},
    types::FieldTable,
};
use uuid::Uuid;

use super::RelayError;

pub struct PerRequest {
    channel: Channel,
    names: Names,
}

/// Deletes the request's queue when dropped.
pub struct QueueTeardown {
    channel: Channel,
    queue: String,
}

impl Drop for QueueTeardown {
    fn drop(&mut self) {
        let channel = self.channel.clone();
        let queue = std::mem::take(&mut self.queue);
        // Deleting (rather than only cancelling the consumer) makes the worker's next publish
        // unroutable at once. If the connection is gone the exclusive queue went with it.
        tokio::spawn(async move {
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        });
    }
}

impl PerRequest {
    pub fn new(channel: Channel, names: Names) -> Self {
        Self { channel, names }
    }

    pub async fn subscribe(
        &self,
        request_id: Uuid,
        expires_ms: u32,
    ) -> Result<(String, lapin::Consumer, QueueTeardown), RelayError> {
        let queue = self.names.request_replies(request_id);
        declare_reply_queue(&self.channel, &queue, expires_ms).await?;
        let teardown = QueueTeardown {
            channel: self.channel.clone(),
            queue: queue.clone(),
        };
        // No acks on reply queues: a reply lost with its ingress has nobody left to read it.
        let consumer = self
            .channel
            .basic_consume(
                queue.as_str().into(),
                queue.as_str().into(),
                BasicConsumeOptions {
                    no_ack: true,
                    exclusive: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok((queue, consumer, teardown))
    }
}
