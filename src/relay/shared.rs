//! The shared reply queue of one ingress process, and the in-memory routes from request id to
//! the task waiting for that request's events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use confab_contract::{Names, ReplyEvent, declare_reply_queue};
use futures_util::StreamExt;
use lapin::{Channel, options::BasicConsumeOptions, types::FieldTable};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{RelayError, decode_for};

/// Requests waiting for events, by request id. Survives reconnections; emptied when a session
/// is lost so that every waiting request notices at once (and subscribes again on the next).
#[derive(Clone, Default)]
pub struct SharedRoutes {
    routes: Arc<Mutex<HashMap<Uuid, mpsc::UnboundedSender<ReplyEvent>>>>,
}

impl SharedRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, mpsc::UnboundedSender<ReplyEvent>>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn route(&self, request_id: Uuid, event: ReplyEvent) {
        if let Some(tx) = self.lock().get(&request_id) {
            let _ = tx.send(event);
        }
    }

    /// Drop every route: their receivers see the end of the stream.
    pub fn fail_all(&self) {
        self.lock().clear();
    }
}

pub struct Shared {
    queue: String,
    routes: SharedRoutes,
}

/// Removes the request's route when dropped.
pub struct RouteTeardown {
    routes: SharedRoutes,
    request_id: Uuid,
    /// Weak, so that a route dropped by `fail_all` still ends the request's stream.
    sender: mpsc::WeakUnboundedSender<ReplyEvent>,
}

impl Drop for RouteTeardown {
    fn drop(&mut self) {
        let mut routes = self.routes.lock();
        // After a reconnection the request subscribes again before dropping its old
        // subscription; leave the new route alone.
        let ours = self.sender.upgrade();
        if routes
            .get(&self.request_id)
            .zip(ours.as_ref())
            .is_some_and(|(route, ours)| route.same_channel(ours))
        {
            routes.remove(&self.request_id);
        }
    }
}

/// How long the shared queue survives without a consumer (only after a crash it could not
/// delete itself; it is exclusive, so normally it goes with the connection).
const SHARED_QUEUE_EXPIRES_MS: u32 = 60_000;

impl Shared {
    pub async fn open(
        channel: Channel,
        names: &Names,
        ingress_id: &str,
        routes: SharedRoutes,
    ) -> Result<Shared, RelayError> {
        let queue = names.ingress_replies(ingress_id);
        declare_reply_queue(&channel, &queue, SHARED_QUEUE_EXPIRES_MS).await?;
        let mut consumer = channel
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
        let router = routes.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                if let Some((request_id, event)) = decode_for(&delivery) {
                    router.route(request_id, event);
                }
            }
        });
        Ok(Shared { queue, routes })
    }

    pub fn subscribe(
        &self,
        request_id: Uuid,
    ) -> (String, mpsc::UnboundedReceiver<ReplyEvent>, RouteTeardown) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sender = tx.downgrade();
        self.routes.lock().insert(request_id, tx);
        let teardown = RouteTeardown {
            routes: self.routes.clone(),
            request_id,
            sender,
        };
        (self.queue.clone(), rx, teardown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            queue: "t.reply.ingress.i".into(),
            routes: SharedRoutes::default(),
        }
    }

    #[test]
    fn an_old_subscription_dropped_after_a_new_one_leaves_the_new_route_alone() {
        let relay = shared();
        let request = Uuid::now_v7();
        let (_, old_events, old_teardown) = relay.subscribe(request);
        relay.routes.fail_all();
        let (_, mut events, _teardown) = relay.subscribe(request);
        drop((old_events, old_teardown));
        relay.routes.route(request, ReplyEvent::Keepalive);
        assert_eq!(events.try_recv(), Ok(ReplyEvent::Keepalive));
    }

    #[test]
    fn a_lost_session_ends_every_waiting_stream() {
        let relay = shared();
        let (_, mut events, _teardown) = relay.subscribe(Uuid::now_v7());
        relay.routes.fail_all();
        assert_eq!(
            events.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        );
    }
}
