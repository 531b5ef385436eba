//! The jobs this worker process is working on, each with a "caller gone" signal.
//!
//! An explicit cancel raises it at once. A caller whose connection went away (the ingress's
//! `left` broadcast, or a reply publish that comes back unroutable) raises it only after the
//! resume grace, and not while a reconnected client listens to the request's events again
//! (its `listening` broadcasts): a dropped connection is not a cancel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

#[derive(Clone, Default)]
pub struct InFlight {
    jobs: Arc<Mutex<HashMap<Uuid, Signals>>>,
}

/// One job's "caller gone" signal and what decides it.
#[derive(Clone)]
pub struct Signals {
    pub gone: watch::Sender<bool>,
    grace: Duration,
    presence: Arc<Mutex<Presence>>,
    /// Gone because somebody cancelled the request, not because its caller left.
    cancelled: Arc<AtomicBool>,
}

#[derive(Default)]
struct Presence {
    /// A grace watch runs.
    leaving: bool,
    /// When a reconnected client last said it listens.
    heard: Option<Instant>,
}

impl Signals {
    /// An explicit cancel: stop at once, and say so to whoever still listens.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.stop();
    }

    /// Whether the request was cancelled (rather than left by its caller).
    pub fn was_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Stop at once.
    pub fn stop(&self) {
        self.gone.send_replace(true);
    }

    /// The caller's connection went away: stop after the grace unless a client listens by then.
    pub fn left(&self) {
        if self.grace.is_zero() {
            return self.stop();
        }
        {
            let mut presence = self.presence.lock().unwrap_or_else(PoisonError::into_inner);
            if presence.leaving || *self.gone.borrow() {
                return;
            }
            presence.leaving = true;
        }
        let signals = self.clone();
        tokio::spawn(async move { signals.watch_grace().await });
    }

    /// A reconnected client reads the events again.
    pub fn listening(&self) {
        let mut presence = self.presence.lock().unwrap_or_else(PoisonError::into_inner);
        presence.heard = Some(Instant::now());
    }

    /// Whether a reconnected client has said it listens.
    pub fn listened(&self) -> bool {
        self.presence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .heard
            .is_some()
    }

    async fn watch_grace(self) {
        let mut wait = self.grace;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                // The job ended meanwhile: its turn holds the signal while it runs.
                () = self.gone.closed() => return,
            }
            let heard = self
                .presence
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .heard;
            match heard.map(|at| at.elapsed()) {
                Some(since) if since < self.grace => wait = self.grace - since,
                _ => return self.stop(),
            }
        }
    }
}

/// Registration of one job; removes it when dropped.
pub struct Registration {
    inflight: InFlight,
    request_id: Uuid,
    pub signals: Signals,
}

impl InFlight {
    /// Register a job; `grace` is how long it outlives a caller that left (zero for callers
    /// that cannot reconnect).
    pub fn register(&self, request_id: Uuid, grace: Duration) -> Registration {
        let (gone, _) = watch::channel(false);
        let signals = Signals {
            gone,
            grace,
            presence: Arc::default(),
            cancelled: Arc::default(),
        };
        self.lock().insert(request_id, signals.clone());
        Registration {
            inflight: self.clone(),
            request_id,
            signals,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Signals>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The signals of `request_id`, if it runs here.
    pub fn get(&self, request_id: Uuid) -> Option<Signals> {
        self.lock().get(&request_id).cloned()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut jobs = self.inflight.lock();
        // A redelivery of the same request may have registered since; leave that one alone.
        if jobs
            .get(&self.request_id)
            .is_some_and(|s| s.gone.same_channel(&self.signals.gone))
        {
            jobs.remove(&self.request_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_cancel_counts_as_cancelled() {
        let inflight = InFlight::default();
        let left = inflight.register(Uuid::now_v7(), Duration::ZERO);
        left.signals.left();
        assert!(*left.signals.gone.borrow(), "gone at once without a grace");
        assert!(
            !left.signals.was_cancelled(),
            "a caller that left cancelled nothing"
        );
        let cancelled = inflight.register(Uuid::now_v7(), Duration::from_secs(60));
        cancelled.signals.cancel();
        assert!(*cancelled.signals.gone.borrow(), "a cancel needs no grace");
        assert!(cancelled.signals.was_cancelled());
    }

    #[tokio::test]
    async fn a_caller_that_left_is_gone_after_the_grace_unless_someone_listens() {
        let inflight = InFlight::default();
        let grace = Duration::from_millis(300);
        let left = inflight.register(Uuid::now_v7(), grace);
        let mut gone = left.signals.gone.subscribe();
        left.signals.left();
        assert!(!*gone.borrow());
        tokio::time::timeout(Duration::from_secs(5), gone.wait_for(|g| *g))
            .await
            .expect("gone after the grace")
            .expect("the job is registered");

        let listened = inflight.register(Uuid::now_v7(), grace);
        let gone = listened.signals.gone.subscribe();
        listened.signals.left();
        for _ in 0..6 {
            listened.signals.listening();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!*gone.borrow(), "a listened-to job was stopped");

        let stopped = inflight.register(Uuid::now_v7(), grace);
        stopped.signals.stop();
        assert!(*stopped.signals.gone.borrow());
        let no_grace = inflight.register(Uuid::now_v7(), Duration::ZERO);
        no_grace.signals.left();
        assert!(*no_grace.signals.gone.borrow());
    }
}
