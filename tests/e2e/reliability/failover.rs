//! A database failover under load, caused for real: a private Postgres primary with a streaming
//! standby (synchronous, so an acknowledged commit is on both), two ingress and two worker
//! processes whose `CONFAB_DATABASE_URL` names both hosts (`target_session_attrs=read-write`),
//! clients sending turns all along; the primary is killed mid-load and the standby promoted.
//! Every turn a client was answered is stored on the new primary, none twice, and answers flow
//! again by themselves. The figures are printed.

use std::time::{Duration, Instant};

use super::load::Load;
use crate::support::private_postgres::PrivatePostgres;
use crate::support::stack::{Options, Stack};

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
    let mut workers = [
        stack.worker_process_with(with_both),
        stack.worker_process_with(with_both),
    ];
    let (first, a) = stack.ingress_process_with(with_both).await;
    let (second, b) = stack.ingress_process_with(with_both).await;
    let mut ingresses = [first, second];

    let load = Load::start(&stack, vec![a, b]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = Instant::now();
    primary.crash();
    tokio::time::sleep(Duration::from_secs(1)).await;
    standby.promote();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent = load.stop().await;
    let db = confab::cli::admin::connect(&format!(
        "postgres://postgres@127.0.0.1:{}/{database}",
        standby.port
    ))
    .await
    .unwrap();
    super::load::settle(&db, &sent, Duration::from_secs(30)).await;
    for child in ingresses.iter_mut().chain(workers.iter_mut()) {
        let _ = child.kill().await;
    }

    let tally = super::load::tally(&db, &sent, &[killed_at]).await;
    println!("failover (Postgres primary killed, standby promoted): {tally}");
    tally.assert_nothing_lost();
    assert!(
        tally.back_after[0].is_some_and(|after| after < Duration::from_secs(6)),
        "answers flow again by themselves: {tally}"
    );
    assert!(
        tally
            .failures
            .keys()
            .all(|k| k.starts_with("503") || k.starts_with("504") || k.starts_with("stream \"")),
        "every failure is a clear 503 or 504, or a stream's error event: {tally}"
    );
    drop(stack);
}
