//! A steady load of turns for the chaos tests, and its tally: clients that each send one turn
//! after another (seed 001, each question unique; half of the clients JSON, half streaming)
//! through the given ingress processes until stopped, then what was sent, answered, failed and
//! how (status and error name), what the database holds of it, duplicates, accepted turns it
//! does not hold, and how long after each fault answers flowed again. A turn is accepted once
//! the ingress has its job confirmed: a JSON turn that was answered, and every stream that
//! started (its headers are sent after the confirm), even one a fault then cut.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::stack::{Stack, sse_data};

const CLIENTS: usize = 6;

/// One request of the load: when it was sent and answered, its question, its status (0: no
/// answer at all), whether it streamed, whether its turn was accepted and whether it was
/// answered whole.
pub struct Sent {
    at: Instant,
    done: Instant,
    question: String,
    status: u16,
    stream: bool,
    /// Which of the ingress processes it went to.
    ingress: usize,
    accepted: bool,
    answered: bool,
    error: Option<String>,
}

/// How one request ended.
struct Outcome {
    status: u16,
    accepted: bool,
    answered: bool,
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
        let ingress = (id + n) % bases.len();
        let base = &bases[ingress];
        let at = Instant::now();
        // Odd clients stream, so that streams run through every fault too.
        let stream = id % 2 == 1;
        let response = http
            .post(format!("{base}/v1/api/chat/support-agent"))
            .bearer_auth(&key)
            .timeout(Duration::from_secs(60))
            .json(&json!({"message": question, "stream": stream}))
            .send()
            .await;
        let Outcome {
            status,
            accepted,
            answered,
            error,
        } = match response {
            Ok(response) if stream && response.status() == 200 => read_stream(response).await,
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let error = (status != 200).then(|| body["error"]["name"].to_string());
                Outcome {
                    status,
                    accepted: status == 200,
                    answered: status == 200,
                    error,
                }
            }
            Err(e) => Outcome {
                status: 0,
                accepted: false,
                answered: false,
                error: Some(innermost(&e)),
            },
        };
        if !answered {
            // A refused client backs off a little, as a real one would.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent.push(Sent {
            at,
            done: Instant::now(),
            question,
            status,
            stream,
            ingress,
            accepted,
            answered,
            error,
        });
        n += 1;
    }
    sent
}

/// The innermost cause of an HTTP client error: it says what happened to the connection.
fn innermost(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// Read a started stream to its end: answered if it ends in `[DONE]` with no error event,
/// else failed with the error event's name (or how the connection broke).
async fn read_stream(response: reqwest::Response) -> Outcome {
    let mut body = response.bytes_stream();
    let mut received = String::new();
    let mut broken = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => received.push_str(&String::from_utf8_lossy(&chunk)),
            Err(e) => {
                broken = Some(format!("cut: {}", innermost(&e)));
                break;
            }
        }
    }
    let events = sse_data(&received);
    let error_event = events
        .iter()
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .find(|event| !event["error"].is_null());
    let error = match (error_event, broken) {
        (Some(event), _) => Some(event["error"]["name"].to_string()),
        (None, Some(broken)) => Some(broken),
        (None, None) if events.last().map(String::as_str) != Some("[DONE]") => {
            Some("ended without [DONE]".to_owned())
        }
        (None, None) => None,
    };
    Outcome {
        status: 200,
        accepted: true,
        answered: error.is_none(),
        error,
    }
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
    /// Accepted turns (see the module's doc) the database does not hold with an answer.
    pub lost: usize,
    /// After each fault: from the fault to the first answer of a request sent after it.
    pub back_after: Vec<Option<Duration>>,
    /// The requests that got no HTTP answer at all: which kind, which ingress, when (seconds
    /// from the load's start, as the faults), and how they ended.
    pub unanswered: Vec<String>,
    /// The faults, in seconds from the load's start.
    pub faults_at: Vec<f64>,
}

/// Each stored question, and whether it has an answer (`None`: stored more than once).
async fn stored_turns(db: &tokio_postgres::Client) -> (BTreeMap<String, bool>, usize) {
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
    (stored, duplicates)
}

fn accepted_not_stored(sent: &[Sent], stored: &BTreeMap<String, bool>) -> usize {
    sent.iter()
        .filter(|s| s.accepted && stored.get(&s.question) != Some(&true))
        .count()
}

/// Wait (up to `within`) until every accepted turn of `sent` is stored with its answer: a
/// stream a fault cut is still answered by a worker, after the client saw its end.
pub async fn settle(db: &tokio_postgres::Client, sent: &[Sent], within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let (stored, _) = stored_turns(db).await;
        if accepted_not_stored(sent, &stored) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Tally `sent` against the database `db` holds, with faults at `faults`.
pub async fn tally(db: &tokio_postgres::Client, sent: &[Sent], faults: &[Instant]) -> Tally {
    let (stored, duplicates) = stored_turns(db).await;
    let answered: Vec<&Sent> = sent.iter().filter(|s| s.answered).collect();
    let lost = accepted_not_stored(sent, &stored);
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for failed in sent.iter().filter(|s| !s.answered) {
        let error = failed.error.clone().unwrap_or_default();
        let kind = if failed.stream && failed.status == 200 {
            format!("stream {error}")
        } else {
            format!("{} {error}", failed.status)
        };
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
    let origin = sent.iter().map(|s| s.at).min().unwrap_or_else(Instant::now);
    let since = |at: Instant| at.saturating_duration_since(origin).as_secs_f64();
    let unanswered = sent
        .iter()
        .filter(|s| s.status == 0)
        .map(|s| {
            format!(
                "{} to ingress {} at {:.1} s, {:.1} s: {}",
                if s.stream { "stream" } else { "JSON" },
                s.ingress,
                since(s.at),
                s.done.duration_since(s.at).as_secs_f64(),
                s.error.clone().unwrap_or_default()
            )
        })
        .collect();
    Tally {
        unanswered,
        faults_at: faults.iter().map(|f| since(*f)).collect(),
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
        assert_eq!(self.lost, 0, "an accepted turn is not stored: {self}");
        assert!(self.answered > 0, "{self}");
    }

    /// Every failure told its client what happened: a 5xx with the dialect's error, or a
    /// stream that ended with the dialect's error event (a name, quoted), not a cut one.
    pub fn assert_every_failure_clear(&self) {
        let unclear: Vec<&String> = self
            .failures
            .keys()
            .filter(|kind| !(kind.starts_with('5') || kind.starts_with("stream \"")))
            .collect();
        assert!(unclear.is_empty(), "unclear failures {unclear:?}: {self}");
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, answered {}, failed {:?}, turns stored {} ({} answered), duplicates {}, \
             accepted turns lost {}, answers flowing again after each fault {:?}; faults at \
             {:?} s; no answer at all: {:?}",
            self.sent,
            self.answered,
            self.failures,
            self.turns_stored,
            self.answers_stored,
            self.duplicates,
            self.lost,
            self.back_after,
            self.faults_at,
            self.unanswered
        )
    }
}
