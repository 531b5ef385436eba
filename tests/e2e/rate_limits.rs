//! Per-key rate limits (GCRA): a key may burst its whole per-minute limit, then gets one request
//! per emission interval, however many ingress processes serve it. A fixed one-minute window let
//! a second full burst through right after a minute boundary; these tests show that no second
//! burst passes at any moment after the first, while the refill is admitted on time.
//!
//! Their keys allow 60 requests a minute, so an emission interval is one second and each test
//! takes a few. Timing on a loaded machine only ever loosens the bounds checked here: each bound
//! is what GCRA allows in the time the client measured, which includes every stall.

use std::time::{Duration, Instant};

use confab::store::tenants;
use futures_util::future::join_all;
use uuid::Uuid;

use crate::support::stack::{Options, Stack};

/// The keys' limit per minute.
const LIMIT: u64 = 60;
/// A minute divided by [`LIMIT`]: after a spent burst, one request per this much.
const STEP: Duration = Duration::from_secs(1);

fn limited_stack() -> Options {
    Options {
        rate_limit_per_min: LIMIT as i32,
        workers: 0,
        ..Options::default()
    }
}

/// Calls a cheap authenticated route of one or more ingress processes with one key and keeps
/// what the bounds need: when the latest refused request was sent. A refused request proves the
/// key's next admission was still ahead when it was sent, so an admission after it starts the
/// next emission interval no earlier than that send.
struct Probe {
    http: reqwest::Client,
    key: String,
    /// Base URLs of the ingress processes, used in turn.
    ingresses: Vec<String>,
    next: usize,
    last_refused_sent: Instant,
}

impl Probe {
    fn new(stack: &Stack, ingresses: Vec<String>) -> Probe {
        Probe {
            http: stack.http.clone(),
            key: stack.api_key.clone(),
            ingresses,
            next: 0,
            last_refused_sent: Instant::now(),
        }
    }

    fn next_ingress(&mut self) -> String {
        self.next += 1;
        self.ingresses[self.next % self.ingresses.len()].clone()
    }

    /// `GET /v1/keys` on `ingress`: its status and `Retry-After`.
    async fn call(http: reqwest::Client, key: String, ingress: String) -> (u16, Option<u64>) {
        let response = http
            .get(format!("{ingress}/v1/keys"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().parse().unwrap());
        (response.status().as_u16(), retry_after)
    }

    /// `n` requests at once, spread over the ingress processes; the admitted count. Every refusal
    /// must name the one-second wait (a spent key's next admission is at most one emission
    /// interval away, rounded up to whole seconds).
    async fn burst(&mut self, n: u64) -> u64 {
        let sent = Instant::now();
        let calls: Vec<_> = (0..n)
            .map(|_| Self::call(self.http.clone(), self.key.clone(), self.next_ingress()))
            .collect();
        let mut admitted = 0;
        for (status, retry_after) in join_all(calls).await {
            if status == 200 {
                admitted += 1;
            } else {
                assert_eq!((status, retry_after), (429, Some(1)));
                self.last_refused_sent = sent;
            }
        }
        admitted
    }

    /// Spends a fresh key's burst one request after another: exactly the limit passes, plus one
    /// per emission interval the spending took, then a request is refused.
    async fn spend_the_burst_in_sequence(&mut self) {
        let started = Instant::now();
        let mut admitted = 0;
        loop {
            let sent = Instant::now();
            let (status, retry_after) =
                Self::call(self.http.clone(), self.key.clone(), self.next_ingress()).await;
            if status != 200 {
                assert_eq!((status, retry_after), (429, Some(1)));
                self.last_refused_sent = sent;
                break;
            }
            admitted += 1;
            assert!(admitted <= 2 * LIMIT, "the limit was not enforced");
        }
        let refilled = started.elapsed().as_secs();
        assert!(
            (LIMIT..=LIMIT + refilled).contains(&admitted),
            "{admitted} admitted in {:?}",
            started.elapsed()
        );
    }

    /// After a spent burst: polls until the refill admits one request (within an emission
    /// interval and a little), then sends a whole second burst at once, which is refused but
    /// for what the time since the last refusal refilled (nothing, unless the machine stalled
    /// for a second).
    async fn refill_admits_one_but_not_a_second_burst(&mut self) {
        let waiting = Instant::now();
        loop {
            let sent = Instant::now();
            let (status, retry_after) =
                Self::call(self.http.clone(), self.key.clone(), self.next_ingress()).await;
            if status == 200 {
                break;
            }
            assert_eq!((status, retry_after), (429, Some(1)));
            self.last_refused_sent = sent;
            assert!(
                waiting.elapsed() < 3 * STEP,
                "nothing admitted {:?} after the burst was spent",
                waiting.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let since = self.last_refused_sent;
        let admitted = self.burst(LIMIT).await;
        let refilled = since.elapsed().as_secs();
        assert!(
            admitted <= refilled,
            "a second burst got {admitted} of {LIMIT} through right after the refill"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_spent_burst_one_request_per_emission_interval_passes_never_a_second_burst() {
    let stack = Stack::start(limited_stack()).await;
    let mut probe = Probe::new(&stack, vec![stack.url("")]);
    probe.spend_the_burst_in_sequence().await;
    for _ in 0..2 {
        probe.refill_admits_one_but_not_a_second_burst().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingress_processes_share_one_key_s_burst_and_its_refill() {
    let mut stack = Stack::start(limited_stack()).await;
    let other = stack.another_ingress().await;
    let mut probe = Probe::new(&stack, vec![stack.url(""), other]);

    // Twice the burst at once, half through each: the key's burst passes, no more.
    let started = Instant::now();
    let admitted = probe.burst(2 * LIMIT).await;
    let refilled = started.elapsed().as_secs();
    assert!(
        (LIMIT..=LIMIT + refilled).contains(&admitted),
        "{admitted} admitted in {:?}",
        started.elapsed()
    );
    // Polls and bursts alternate between the two: a refill admitted by one leaves nothing for
    // the other.
    for _ in 0..2 {
        probe.refill_admits_one_but_not_a_second_burst().await;
    }
}

async fn tat(db: &tokio_postgres::Client, key_id: Uuid) -> Option<std::time::SystemTime> {
    db.query_opt("SELECT tat FROM rate_gcra WHERE key_id = $1", &[&key_id])
        .await
        .unwrap()
        .map(|row| row.get(0))
}

async fn tenant_id(db: &tokio_postgres::Client) -> Uuid {
    db.query_one("SELECT id FROM tenants", &[])
        .await
        .unwrap()
        .get(0)
}

/// An identity and a web channel of the tenant, written directly: the stack's key is the one
/// being rate limited.
async fn identity_and_channel(db: &tokio_postgres::Client, tenant: Uuid) -> (Uuid, Uuid) {
    let (assistant, identity, channel) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    db.execute(
        "INSERT INTO assistants (id, tenant_id, name, slug) VALUES ($1, $2, 'a', 'a')",
        &[&assistant, &tenant],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO identities (id, tenant_id) VALUES ($1, $2)",
        &[&identity, &tenant],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO channels (id, tenant_id, name, kind, assistant_id) \
         VALUES ($1, $2, 'web', 'web', $3)",
        &[&channel, &tenant, &assistant],
    )
    .await
    .unwrap();
    (identity, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_not_counted_and_does_not_push_the_next_admission_back() {
    let stack = Stack::start(limited_stack()).await;
    let db = stack.db().await;
    let tenant = tenant_id(&db).await;
    // Ten a minute: an emission interval of six seconds.
    let key = tenants::create_key(&db, tenant, "ten", Some(10))
        .await
        .unwrap();
    let pooled = stack.pooled_db().await;
    let (client, secret) = (&pooled, &key.secret);
    let spend = move || async move {
        tenants::use_key(client, secret, 600)
            .await
            .unwrap()
            .unwrap()
    };
    for n in 1..=10 {
        let used = spend().await;
        assert!(used.allowed, "request {n} of the burst");
        assert_eq!((used.key_id, used.limit), (key.id, 10));
        // The burst's last request already knows the next one's wait: a step, less the time
        // the burst took (far below a second), rounded up.
        if n < 10 {
            assert_eq!(used.wait_secs, 0, "request {n}");
        } else {
            assert!((5..=6).contains(&used.wait_secs), "{used:?}");
        }
    }
    let spent = tat(&db, key.id).await;
    assert!(spent.is_some());
    for _ in 0..5 {
        let refused = spend().await;
        assert!(!refused.allowed);
        assert!((1..=6).contains(&refused.wait_secs), "{refused:?}");
    }
    // A stream token spends its key's limit.
    let (identity, channel) = identity_and_channel(&db, tenant).await;
    let owner = tenants::StreamTokenOwner {
        tenant_id: tenant,
        key_id: key.id,
    };
    let (token, _) = tenants::create_stream_token(&db, owner, identity, channel, 60)
        .await
        .unwrap();
    let (streamed, grant) = tenants::use_stream_token(&db, &token, 600)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((grant.identity_id, grant.channel_id), (identity, channel));
    assert!(!streamed.allowed);
    assert_eq!(streamed.key_id, key.id);
    assert_eq!(
        tat(&db, key.id).await,
        spent,
        "a refusal moved the key's tat"
    );

    // Another key of the tenant has its own limit.
    let other = tenants::create_key(&db, tenant, "other", Some(10))
        .await
        .unwrap();
    let used = tenants::use_key(&pooled, &other.secret, 600)
        .await
        .unwrap()
        .unwrap();
    assert!(used.allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_forgets_only_keys_whose_burst_is_whole_again() {
    let stack = Stack::start(limited_stack()).await;
    let db = stack.db().await;
    let tenant = tenant_id(&db).await;
    let idle = tenants::create_key(&db, tenant, "idle", None)
        .await
        .unwrap();
    // One a minute: its only request keeps it throttled for a minute.
    let busy = tenants::create_key(&db, tenant, "busy", Some(1))
        .await
        .unwrap();
    let pooled = stack.pooled_db().await;
    for key in [&idle, &busy] {
        let used = tenants::use_key(&pooled, &key.secret, 60).await.unwrap();
        assert!(used.unwrap().allowed);
    }
    // The idle key's last request was long enough ago that its tat has passed.
    db.execute(
        "UPDATE rate_gcra SET tat = now() - interval '1 second' WHERE key_id = $1",
        &[&idle.id],
    )
    .await
    .unwrap();
    confab::store::forget_expired(&db).await.unwrap();
    assert_eq!(tat(&db, idle.id).await, None);
    assert!(
        tat(&db, busy.id).await.is_some(),
        "a throttled key forgotten"
    );
}
