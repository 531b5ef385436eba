//! A steady load of turns for the chaos tests, and its tally: clients that each send one turn
//! after another (seed 001, each question unique) through the given ingress processes until
//! stopped, then what was sent, answered, failed and how (status and error name), what the
//! database holds of it, duplicates, answered turns it does not hold, and how long after each
//! fault answers flowed again.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::stack::Stack;

const CLIENTS: usize = 6;

/// One request of the load: when it was sent and answered, its question, and its status (0: no
/// answer at all).
pub struct Sent {
    at: Instant,
    done: Instant,
    question: String,
    status: u16,
    error: Option<String>,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Vec<Sent>>>,
}

impl Load {
    /// Start the clients, spread over `bases` (the ingress processes' URLs).
    pub fn start(stack: &Stack, bases: Vec<String>) -> Load {
        // Idle connections are dropped before the server's own idle deadline (10 s), so that no
        // request is sent on a connection the server is closing at that moment.
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..CLIENTS)
            .map(|id| {
                tokio::spawn(client(
                    http.clone(),
                    bases.clone(),
                    stack.api_key.clone(),
                    id,
                    stop.clone(),
                ))
            })
            .collect();
        Load { stop, clients }
    }

    /// Stop sending; every request, once the last ones are answered.
    pub async fn stop(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        let mut sent = Vec::new();
        for client in self.clients {
            sent.extend(client.await.expect("a client"));
        }
        sent
    }
}

async fn client(
    http: reqwest::Client,
    bases: Vec<String>,
    key: String,
    id: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Sent> {
    let mut sent = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let question = format!("Client {id} turn {n}: what are your business hours?");
        let base = &bases[(id + n) % bases.len()];
        let at = Instant::now();
        let response = http
            .post(format!("{base}/v1/api/chat/support-agent"))
            .bearer_auth(&key)
            .timeout(Duration::from_secs(60))
            .json(&json!({"message": question}))
            .send()
            .await;
        let (status, error) = match response {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let error = (status != 200).then(|| body["error"]["name"].to_string());
                (status, error)
            }
            Err(e) => {
                // The innermost cause says what happened to the connection.
                let mut cause: &dyn std::error::Error = &e;
                while let Some(inner) = cause.source() {
                    cause = inner;
                }
                (0, Some(cause.to_string()))
            }
        };
        if status != 200 {
            // A refused client backs off a little, as a real one would.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent.push(Sent {
            at,
            done: Instant::now(),
            question,
            status,
            error,
        });
        n += 1;
    }
    sent
}

/// What a load came to.
pub struct Tally {
    pub sent: usize,
    pub answered: usize,
    /// `"<status> <error name>"` of each kind of failure, and how many.
    pub failures: BTreeMap<String, usize>,
    pub turns_stored: usize,
    pub answers_stored: usize,
    pub duplicates: usize,
    /// Turns a client was answered that the database does not hold (question and answer).
    pub lost: usize,
    /// After each fault: from the fault to the first answer of a request sent after it.
    pub back_after: Vec<Option<Duration>>,
}

/// Tally `sent` against the database `db` holds, with faults at `faults`.
pub async fn tally(db: &tokio_postgres::Client, sent: &[Sent], faults: &[Instant]) -> Tally {
    let rows = db
        .query(
            "SELECT u.content, count(*) OVER (PARTITION BY u.content), \
                    EXISTS (SELECT 1 FROM messages a WHERE a.conversation_pk = u.conversation_pk \
                              AND a.answers = u.id AND a.role = 'assistant') \
             FROM messages u WHERE u.role = 'user'",
            &[],
        )
        .await
        .expect("the turns");
    let mut stored = BTreeMap::new();
    let mut duplicates = 0;
    for row in &rows {
        if row.get::<_, i64>(1) > 1 {
            duplicates += 1;
        }
        stored.insert(row.get::<_, String>(0), row.get::<_, bool>(2));
    }
    let answered: Vec<&Sent> = sent.iter().filter(|s| s.status == 200).collect();
    let lost = answered
        .iter()
        .filter(|s| stored.get(&s.question) != Some(&true))
        .count();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for failed in sent.iter().filter(|s| s.status != 200) {
        let kind = format!(
            "{} {}",
            failed.status,
            failed.error.clone().unwrap_or_default()
        );
        *failures.entry(kind).or_default() += 1;
    }
    let back_after = faults
        .iter()
        .map(|fault| {
            answered
                .iter()
                .filter(|s| s.at > *fault)
                .map(|s| s.done.duration_since(*fault))
                .min()
        })
        .collect();
    Tally {
        sent: sent.len(),
        answered: answered.len(),
        failures,
        turns_stored: stored.len(),
        answers_stored: stored.values().filter(|a| **a).count(),
        duplicates,
        lost,
        back_after,
    }
}

impl Tally {
    pub fn assert_nothing_lost(&self) {
        assert_eq!(self.duplicates, 0, "a turn stored twice: {self}");
        assert_eq!(
            self.lost, 0,
            "a turn a client was answered is not stored: {self}"
        );
        assert!(self.answered > 0, "{self}");
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, answered {}, failed {:?}, turns stored {} ({} answered), duplicates {}, \
             answered turns lost {}, answers flowing again after each fault {:?}",
            self.sent,
            self.answered,
            self.failures,
            self.turns_stored,
            self.answers_stored,
            self.duplicates,
            self.lost,
            self.back_after
        )
    }
}
