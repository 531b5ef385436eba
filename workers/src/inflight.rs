//! The jobs this worker process is working on, each with a "caller gone" signal that the cancel
//! broadcast and unroutable reply publishes both raise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use uuid::Uuid;

#[derive(Clone, Default)]
pub struct InFlight {
    jobs: Arc<Mutex<HashMap<Uuid, watch::Sender<bool>>>>,
}

/// Registration of one job; removes it when dropped.
pub struct Registration {
    inflight: InFlight,
    request_id: Uuid,
    pub gone: watch::Sender<bool>,
}

impl InFlight {
    pub fn register(&self, request_id: Uuid) -> Registration {
        let (gone, _) = watch::channel(false);
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(request_id, gone.clone());
        Registration {
            inflight: self.clone(),
            request_id,
            gone,
        }
    }

    /// Signal that the caller of `request_id` is gone; false if no such job runs here.
    pub fn cancel(&self, request_id: Uuid) -> bool {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        match jobs.get(&request_id) {
            Some(gone) => {
                gone.send_replace(true);
                true
            }
            None => false,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut jobs = self
            .inflight
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A redelivery of the same request may have registered since; leave that one alone.
        if jobs
            .get(&self.request_id)
            .is_some_and(|g| g.same_channel(&self.gone))
        {
            jobs.remove(&self.request_id);
        }
    }
}
