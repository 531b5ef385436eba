//! Names of every exchange and queue, all under one prefix (`CONFAB_QUEUE_PREFIX`), so two
//! stacks can share a broker without touching each other.

use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Durable quorum queue that holds chat jobs; published to through the default exchange.
    pub fn jobs(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    /// Exchange that receives jobs which exhausted their delivery limit or expired.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// Queue bound to [`Self::dead_letter_exchange`], kept for operators to inspect.
    pub fn dead_letters(&self) -> String {
        format!("{}.jobs.dead", self.prefix)
    }

    /// Durable quorum queue that holds the final reply events of channel turns (WhatsApp,
    /// Telegram): their reply destination, consumed by workers in the delivery role, which send
    /// each answer to its platform. Events carry the turn's request id as correlation id.
    pub fn deliveries(&self) -> String {
        format!("{}.deliveries", self.prefix)
    }

    /// Stream queue (an append-only log, kept for a retention time) of every streamed turn's
    /// reply events, as workers publish them: where a reconnecting client's stream is read
    /// from again, on any ingress. Events carry their request id as correlation id.
    pub fn reply_log(&self) -> String {
        format!("{}.reply-log", self.prefix)
    }

    /// Fanout exchange on which the ingress announces requests whose caller went away.
    pub fn cancel_exchange(&self) -> String {
        format!("{}.cancel", self.prefix)
    }

    /// A worker process's own queue bound to [`Self::cancel_exchange`].
    pub fn worker_cancels(&self, worker_id: &str) -> String {
        format!("{}.cancel.{worker_id}", self.prefix)
    }

    /// Reply queue of one request (per-request reply mode).
    pub fn request_replies(&self, request_id: Uuid) -> String {
        format!("{}.reply.req.{}", self.prefix, request_id.simple())
    }

    /// Reply queue of one ingress process (shared reply mode).
    pub fn ingress_replies(&self, ingress_id: &str) -> String {
        format!("{}.reply.ingress.{ingress_id}", self.prefix)
    }

    /// Every queue name this prefix can own is one of these shapes; used by cleanup tooling.
    pub fn owns(&self, queue: &str) -> bool {
        queue
            .strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_starts_with_the_prefix() {
        let names = Names::new("t1");
        let id = Uuid::nil();
        for name in [
            names.jobs(),
            names.deliveries(),
            names.dead_letter_exchange(),
            names.dead_letters(),
            names.cancel_exchange(),
            names.worker_cancels("w"),
            names.request_replies(id),
            names.ingress_replies("i"),
        ] {
            assert!(names.owns(&name), "{name}");
            assert!(
                !Names::new("t").owns(&name),
                "{name} must not belong to a shorter prefix"
            );
        }
    }
}
