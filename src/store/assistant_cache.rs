//! Assistants by slug, remembered between requests, so that a turn addressed by slug (seed 001,
//! the OpenAI dialect's `model`) costs no database round trip to find its assistant.
//!
//! A change must be seen at once, by every ingress process: `migrations/0013_assistant_changes.sql`
//! has Postgres `NOTIFY confab_assistants` with the tenant's id whenever an assistant is updated
//! or deleted, and each process `LISTEN`s on a connection of its own and forgets that tenant's
//! assistants when told. While that connection is down nothing is remembered and every lookup
//! reads the database, so a missed notification can never leave a stale assistant behind. A
//! lookup that raced a notification (read before, remembered after) is not remembered: each
//! notification moves a generation on, and a lookup remembers only if it has not moved since
//! the lookup began. Only assistants that exist are remembered, so one created later is found
//! at once too. The worker reads the assistant itself for each turn, so at most the ingress's
//! checks (deployed, the model's abilities) can be a notification's latency behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use super::assistants::{self, Assistant};

/// The channel `0013_assistant_changes.sql` notifies.
const CHANNEL: &str = "confab_assistants";

/// How long the listener waits before connecting again after losing its connection, and how
/// often it looks whether anyone still holds the cache.
const PAUSE: Duration = Duration::from_secs(1);

/// How often the listener asks its server whether it is still there: a server that vanished
/// without closing the connection (a host lost, a network cut before a failover) would
/// otherwise leave it listening to nobody, remembering assistants no notice can reach, for as
/// long as TCP keepalives take (hours). A probe unanswered within `PROBE_WAIT` counts as lost.
const PROBE_EVERY: Duration = Duration::from_secs(5);
const PROBE_WAIT: Duration = Duration::from_secs(2);

/// Assistants remembered at most; past it the memory starts again.
const REMEMBERED: usize = 10_000;

/// The assistants an ingress process has looked up by slug, while it is told of changes.
#[derive(Clone, Default)]
pub struct AssistantCache {
    inner: Arc<Mutex<Memory>>,
}

#[derive(Default)]
struct Memory {
    /// Whether the listener is connected and listening: only then is anything remembered.
    listening: bool,
    /// Moves on with each notification and each change of `listening`.
    generation: u64,
    by_slug: HashMap<(Uuid, String), Assistant>,
}

impl AssistantCache {
    /// A cache kept true by a listener on its own connection to `database_url`, which runs
    /// for as long as anyone holds the cache.
    pub fn listening(database_url: &str) -> Result<Self, confab_shared::db::DbError> {
        let config = confab_shared::db::config(database_url)?;
        let cache = AssistantCache::default();
        tokio::spawn(listen(Arc::downgrade(&cache.inner), config));
        Ok(cache)
    }

    /// The tenant's assistant with this slug, remembered or read with `client`.
    pub async fn by_slug(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        tenant_id: Uuid,
        slug: &str,
    ) -> Result<Option<Assistant>, tokio_postgres::Error> {
        let key = (tenant_id, slug.to_owned());
        let generation = {
            let memory = self.lock();
            if let Some(found) = memory.by_slug.get(&key) {
                return Ok(Some(found.clone()));
            }
            memory.generation
        };
        let found = assistants::by_slug_cached(client, tenant_id, slug).await?;
        if let Some(assistant) = &found {
            let mut memory = self.lock();
            if memory.listening && memory.generation == generation {
                if memory.by_slug.len() >= REMEMBERED {
                    memory.by_slug.clear();
                }
                memory.by_slug.insert(key, assistant.clone());
            }
        }
        Ok(found)
    }

    /// The tenant's assistants changed: forget them now, before the notification of this
    /// very change comes back, so the process that made a change sees it on its next request.
    pub fn changed(&self, tenant_id: Uuid) {
        self.forget(Change::Tenant(tenant_id));
    }

    /// Forget what `change` makes stale: one tenant's assistants, or everything (the
    /// listener's connection came or went).
    fn forget(&self, change: Change) {
        let mut memory = self.lock();
        memory.generation += 1;
        match change {
            Change::Tenant(tenant_id) => {
                memory.by_slug.retain(|(tenant, _), _| *tenant != tenant_id)
            }
            Change::Listening(listening) => {
                memory.listening = listening;
                memory.by_slug.clear();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // A panic while holding it cannot leave a half-made entry: start again empty.
        self.inner.lock().unwrap_or_else(|poisoned| {
            let mut memory = poisoned.into_inner();
            memory.by_slug.clear();
            memory.generation += 1;
            memory
        })
    }
}

/// Listen for changes, connecting again whenever the connection is lost, until nobody holds
/// the cache.
async fn listen(cache: Weak<Mutex<Memory>>, config: tokio_postgres::Config) {
    loop {
        match listen_once(&cache, &config).await {
            Ok(Ended::Unheld) => return,
            Ok(Ended::ConnectionClosed) => {
                tracing::warn!("assistant changes: connection closed; reading every lookup")
            }
            Ok(Ended::Unanswered) => {
                tracing::warn!(
                    "assistant changes: the server stopped answering; reading every lookup"
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "assistant changes: not listening; reading every lookup")
            }
        }
        let Some(inner) = cache.upgrade() else { return };
        AssistantCache { inner }.forget(Change::Listening(false));
        tokio::time::sleep(PAUSE).await;
    }
}

/// How one connection of the listener ended, when not with an error.
enum Ended {
    /// Nobody holds the cache any more.
    Unheld,
    ConnectionClosed,
    /// A probe got no answer in time.
    Unanswered,
}

async fn listen_once(
    cache: &Weak<Mutex<Memory>>,
    config: &tokio_postgres::Config,
) -> Result<Ended, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (sender, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    // The connection delivers notifications, and completes the client's statements, only while
    // it is polled.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            if let AsyncMessage::Notification(n) = message? {
                let _ = sender.send(n.payload().to_owned());
            }
        }
        Ok::<_, tokio_postgres::Error>(())
    });
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        driver.abort();
        return Err(e);
    }
    let held = |cache: &Weak<Mutex<Memory>>| cache.upgrade().map(|inner| AssistantCache { inner });
    let Some(started) = held(cache) else {
        driver.abort();
        return Ok(Ended::Unheld);
    };
    started.forget(Change::Listening(true));
    drop(started);
    let mut probed = tokio::time::Instant::now();
    loop {
        let next = tokio::time::timeout(PAUSE, notifications.recv()).await;
        let Some(cache) = held(cache) else {
            driver.abort();
            return Ok(Ended::Unheld);
        };
        if probed.elapsed() >= PROBE_EVERY {
            probed = tokio::time::Instant::now();
            let answered = tokio::time::timeout(PROBE_WAIT, client.simple_query("SELECT 1")).await;
            if !matches!(answered, Ok(Ok(_))) {
                driver.abort();
                return Ok(Ended::Unanswered);
            }
        }
        match next {
            Err(_) => {}
            Ok(Some(payload)) => match payload.parse::<Uuid>() {
                Ok(tenant_id) => cache.changed(tenant_id),
                Err(_) => cache.forget(Change::Listening(true)),
            },
            // The sender is gone: the connection ended; its error, if any, says why.
            Ok(None) => {
                return match driver.await {
                    Ok(Err(e)) => Err(e),
                    _ => Ok(Ended::ConnectionClosed),
                };
            }
        }
    }
}

/// What makes remembered assistants stale.
enum Change {
    Tenant(Uuid),
    Listening(bool),
}
