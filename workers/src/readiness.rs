//! Whether this worker takes work: every role it runs (chat jobs, channel deliveries) has a
//! broker session consuming its queue. The metrics listener's `GET /readyz` answers from it, so
//! an orchestrator counts a new worker available (and a rolling update goes on) only once it
//! takes jobs, and sees one that lost its broker as not ready while it reconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Readiness {
    roles: usize,
    consuming: AtomicUsize,
}

impl Readiness {
    /// For a worker running `roles` roles, none consuming yet.
    pub fn new(roles: usize) -> Arc<Self> {
        Arc::new(Self {
            roles,
            consuming: AtomicUsize::new(0),
        })
    }

    /// Every role consumes.
    pub fn is_ready(&self) -> bool {
        self.consuming.load(Ordering::Acquire) >= self.roles
    }

    /// One role's session consumes until the returned guard is dropped (its session ends). A
    /// role runs one session at a time, so guards never outnumber roles.
    pub fn consuming(self: &Arc<Self>) -> Consuming {
        self.consuming.fetch_add(1, Ordering::AcqRel);
        Consuming(self.clone())
    }
}

pub struct Consuming(Arc<Readiness>);

impl Drop for Consuming {
    fn drop(&mut self) {
        self.0.consuming.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_every_role_consumes() {
        let readiness = Readiness::new(2);
        assert!(!readiness.is_ready());
        let chat = readiness.consuming();
        assert!(!readiness.is_ready(), "one role of two");
        let delivery = readiness.consuming();
        assert!(readiness.is_ready());
        drop(chat);
        assert!(!readiness.is_ready(), "a session that ended");
        let _chat_again = readiness.consuming();
        assert!(readiness.is_ready());
        drop(delivery);
        assert!(!readiness.is_ready());
    }
}
