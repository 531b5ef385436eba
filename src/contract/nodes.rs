//! The broker's nodes: `CONFAB_AMQP_URL` names one RabbitMQ node, or the nodes of a cluster as
//! a comma-separated list of AMQP URLs. A process connects to whichever answers, trying each
//! once in turn. Each process starts at a node of its own (by its process id), so that a fleet's
//! connections spread across the cluster, and after a lost connection it starts at the node after
//! the one it had, so that a dead node is not the first one tried again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lapin::{Connection, ConnectionProperties};

use crate::settings::ConfigError;

#[derive(Debug, Clone)]
pub struct BrokerNodes {
    urls: Arc<[String]>,
    /// Where the next connection attempt starts.
    next: Arc<AtomicUsize>,
}

impl BrokerNodes {
    /// The nodes of `list` (one URL, or several separated by commas).
    pub fn parse(list: &str) -> Result<BrokerNodes, ConfigError> {
        let urls: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err(problem("names no broker"));
        }
        if let Some(bad) = urls
            .iter()
            .find(|url| !(url.starts_with("amqp://") || url.starts_with("amqps://")))
        {
            return Err(problem(&format!(
                "{bad:?} is not an AMQP URL (amqp://user:password@host:port/vhost)"
            )));
        }
        let start = std::process::id() as usize % urls.len();
        Ok(BrokerNodes {
            urls: urls.into(),
            next: Arc::new(AtomicUsize::new(start)),
        })
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Connect to the first node that answers, trying each once; the error of the last one if
    /// none does. The next call starts after the node connected to, so a reconnection after
    /// that node's loss tries the others first.
    pub async fn connect(
        &self,
        properties: ConnectionProperties,
    ) -> Result<(Connection, usize), lapin::Error> {
        let len = self.urls.len();
        let start = self.next.load(Ordering::Relaxed) % len;
        let mut tried = 0;
        loop {
            let node = (start + tried) % len;
            match Connection::connect(&self.urls[node], properties.clone()).await {
                Ok(connection) => {
                    self.next.store((node + 1) % len, Ordering::Relaxed);
                    return Ok((connection, node));
                }
                Err(error) if tried + 1 >= len => {
                    self.next.store((start + 1) % len, Ordering::Relaxed);
                    return Err(error);
                }
                Err(_) => tried += 1,
            }
        }
    }
}

fn problem(problem: &str) -> ConfigError {
    ConfigError {
        var: "CONFAB_AMQP_URL",
        problem: problem.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_nodes_is_read_and_checked() {
        let nodes = BrokerNodes::parse(" amqp://a:5672/%2f , amqps://b:5671/%2f,").unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(&*nodes.urls, ["amqp://a:5672/%2f", "amqps://b:5671/%2f"]);
        assert!(BrokerNodes::parse("").is_err());
        assert!(BrokerNodes::parse("amqp://a, http://b").is_err());
    }

    #[tokio::test]
    async fn a_dead_node_is_passed_over_and_not_tried_first_again() {
        // Nothing listens on port 1: connecting fails at once.
        let dead = "amqp://guest:guest@127.0.0.1:1/%2f";
        let nodes = BrokerNodes::parse(&format!("{dead},{dead}")).unwrap();
        assert!(
            nodes
                .connect(ConnectionProperties::default())
                .await
                .is_err()
        );
        let before = nodes.next.load(Ordering::Relaxed);
        assert!(
            nodes
                .connect(ConnectionProperties::default())
                .await
                .is_err()
        );
        assert_ne!(
            nodes.next.load(Ordering::Relaxed),
            before,
            "the start moved on"
        );
    }
}
