//! Retrieval quality: hit@1 and hit@3 of the knowledge search over the corpus and questions in
//! `tests/knowledge/`, so changes to ranking (weights, chunking, embeddings) can be compared.
//!
//! `cargo bench --bench retrieval`. Needs the local Postgres, like the tests.

#[path = "../tests/knowledge/corpus.rs"]
mod corpus;

use uuid::Uuid;

#[tokio::main]
async fn main() {
    let admin_url = std::env::var("CONFAB_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let database = format!("confab_r_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let admin = confab::cli::admin::connect(&admin_url)
        .await
        .expect("database server");
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .expect("create database");
    let url = format!(
        "{}/{database}",
        admin_url.rsplit_once('/').expect("a URL").0
    );
    let result = measure(&url).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await;
    let (hit1, hit3, total, misses) = result;
    println!(
        "retrieval over {} documents, {total} questions (tests/knowledge/)",
        corpus::documents().len()
    );
    println!("hit@1 {hit1}/{total} = {:.2}", hit1 as f64 / total as f64);
    println!("hit@3 {hit3}/{total} = {:.2}", hit3 as f64 / total as f64);
    for miss in misses {
        println!("  not first: {miss}");
    }
}

async fn measure(url: &str) -> (usize, usize, usize, Vec<String>) {
    let mut client = confab::cli::admin::connect(url).await.expect("connect");
    confab::store::migrate::run(&mut client)
        .await
        .expect("migrate");
    let tenant = confab::cli::admin::create_tenant(&mut client, "bench")
        .await
        .expect("tenant");
    let tenant_id: Uuid = tenant["tenant_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let folder = confab::store::folders::create(&client, tenant_id, "help", "english")
        .await
        .expect("folder");
    let tx = client.transaction().await.expect("transaction");
    let limits = confab::store::documents::KnowledgeLimits::DEFAULT;
    for (title, content) in corpus::documents() {
        let draft = confab::store::documents::Draft::new(&title, "markdown", &content, &limits)
            .expect("a corpus document within the limits");
        confab::store::documents::store(&tx, tenant_id, folder.id, &draft, &limits)
            .await
            .expect("store a document");
    }
    tx.commit().await.expect("commit");
    let questions = corpus::questions();
    let (mut hit1, mut hit3, mut misses) = (0, 0, Vec::new());
    for (question, expected) in &questions {
        let found = confab_worker::knowledge::search(&client, tenant_id, &[folder.id], question, 3)
            .await
            .expect("search");
        let titles: Vec<&str> = found.iter().map(|p| p.title.as_str()).collect();
        if titles.first() == Some(&expected.as_str()) {
            hit1 += 1;
        } else {
            misses.push(format!("{question:?} -> {titles:?}, wanted {expected}"));
        }
        if titles.contains(&expected.as_str()) {
            hit3 += 1;
        }
    }
    (hit1, hit3, questions.len(), misses)
}
