//! A database failover under load, caused for real: a private Postgres primary with a streaming
//! standby (synchronous, so an acknowledged commit is on both), two ingress and two worker
//! processes whose `CONFAB_DATABASE_URL` names both hosts (`target_session_attrs=read-write`),
//! clients sending turns all along; the primary is killed mid-load and the standby promoted.
//! Every turn a client was answered is stored on the new primary, none twice, and answers flow
//! again by themselves. The figures are printed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::private_postgres::PrivatePostgres;
use crate::support::stack::{Options, Stack};

const CLIENTS: usize = 6;

/// One request of the load: when it was sent and answered, its question, and its status (0: no
/// answer).
struct Sent {
    at: Instant,
    done: Instant,
    question: String,
    status: u16,
    error: Option<String>,
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
            Err(e) => (0, Some(e.to_string())),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_primary_killed_under_load_fails_over_to_its_standby_losing_no_answered_turn() {
    let primary = PrivatePostgres::start();
    let stack = Stack::start(Options {
        admin_database_url: primary.admin_url(),
        workers: 0,
        rate_limit_per_min: 1_000_000,
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let standby = primary.standby();
    // From now on a commit is acknowledged only once the standby has it.
    let admin = confab::cli::admin::connect(&primary.admin_url())
        .await
        .unwrap();
    for statement in [
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(statement).await.unwrap();
    }
    for _ in 0..100 {
        let sync: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if sync > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(admin);

    let database = stack.database_url.rsplit('/').next().unwrap().to_owned();
    let both = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{database}?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let with_both = |command: &mut tokio::process::Command| {
        command.env("CONFAB_DATABASE_URL", &both);
    };
    let mut workers = vec![
        stack.worker_process_with(with_both),
        stack.worker_process_with(with_both),
    ];
    let (first, a) = stack.ingress_process_with(with_both).await;
    let (second, b) = stack.ingress_process_with(with_both).await;
    let mut ingresses = vec![first, second];

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(client(
                stack.http.clone(),
                vec![a.clone(), b.clone()],
                stack.api_key.clone(),
                id,
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = Instant::now();
    primary.crash();
    tokio::time::sleep(Duration::from_secs(1)).await;
    standby.promote();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for client in clients {
        sent.extend(client.await.unwrap());
    }
    for child in ingresses.iter_mut().chain(workers.iter_mut()) {
        let _ = child.kill().await;
    }

    let db = confab::cli::admin::connect(&format!(
        "postgres://postgres@127.0.0.1:{}/{database}",
        standby.port
    ))
    .await
    .unwrap();
    let rows = db
        .query(
            "SELECT u.content, count(*) OVER (PARTITION BY u.content), \
                    EXISTS (SELECT 1 FROM messages a WHERE a.conversation_pk = u.conversation_pk \
                              AND a.answers = u.id AND a.role = 'assistant') \
             FROM messages u WHERE u.role = 'user'",
            &[],
        )
        .await
        .unwrap();
    let mut stored = BTreeMap::new();
    let mut duplicates = 0;
    for row in &rows {
        let copies: i64 = row.get(1);
        if copies > 1 {
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
        let key = format!(
            "{} {}",
            failed.status,
            failed.error.clone().unwrap_or_default()
        );
        *failures.entry(key).or_default() += 1;
    }
    // The first answer to a request sent after the kill.
    let back_after = answered
        .iter()
        .filter(|s| s.at > killed_at)
        .map(|s| s.done.duration_since(killed_at))
        .min();
    let answers_stored = stored.values().filter(|answered| **answered).count();
    println!(
        "failover: sent {}, answered {}, failed {:?}, turns stored {} ({} answered), \
         duplicates {duplicates}, lost answered turns {lost}, answers flowed again {:.1?} after \
         the primary was killed",
        sent.len(),
        answered.len(),
        failures,
        stored.len(),
        answers_stored,
        back_after
    );
    assert_eq!(duplicates, 0, "a turn stored twice");
    assert_eq!(
        lost, 0,
        "a turn a client was answered is not on the new primary"
    );
    assert!(
        back_after.is_some_and(|after| after < Duration::from_secs(6)),
        "answers flow again by themselves: {back_after:?}"
    );
    let unclear = failures
        .keys()
        .filter(|k| !(k.starts_with("503") || k.starts_with("504")))
        .count();
    assert_eq!(
        unclear, 0,
        "every failure is a clear 503 or 504: {failures:?}"
    );
    drop(stack);
}
