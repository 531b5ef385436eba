//! The work one request can cause is bounded, and a busy database is a 503 with `Retry-After`,
//! never a 500: passages per document and bytes per folder (422 naming the limit, nothing
//! half-written, no race past the budget), passages written in one statement, document uploads
//! held to their share of the pool while management and chat stay served, statements past
//! their timeout and pool waits that time out refused with `Retry-After` in every API's shape.
//!
//! Each refusal is forced, not raced: the test holds a lock that the request under test must
//! wait for, and watches `pg_stat_activity` until the request is waiting on it.

use std::time::Duration;

use confab::config::{HeavyWrites, KnowledgeLimits};
use confab_shared::db::PoolSettings;
use serde_json::{Value, json};

use crate::support::stack::{Options, Stack};

/// A Markdown document of `n` sections, each its own passage.
fn sections(n: usize) -> String {
    (0..n)
        .map(|i| format!("# Section {i}\nThe text of section {i}.\n\n"))
        .collect()
}

async fn new_folder(stack: &Stack, name: &str) -> String {
    let (status, folder) = stack
        .api("POST", "/v1/folders", Some(json!({"name": name})))
        .await;
    assert_eq!(status, 201, "{folder}");
    folder["id"].as_str().unwrap().to_owned()
}

fn upload_path(folder: &str) -> String {
    format!("/v1/folders/{folder}/documents")
}

/// Start an upload in its own task, so the test can act while it waits on a lock.
fn spawn_upload(
    stack: &Stack,
    folder: &str,
    title: &str,
    content: &str,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let request = stack
        .http
        .post(stack.url(&upload_path(folder)))
        .bearer_auth(&stack.api_key)
        .json(&json!({"title": title, "content": content}));
    tokio::spawn(async move {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    })
}

/// Wait until `n` backends of the stack's database wait on a lock: the requests under test are
/// then parked exactly where the test wants them.
async fn until_waiting_on_locks(db: &tokio_postgres::Client, n: i64) {
    for _ in 0..1_000 {
        let waiting: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{n} requests never waited on the test's lock");
}

/// A request that must be answered soon; if the feature under test broke it would wait on the
/// test's lock forever, so give up (failing the test) instead of hanging.
async fn answered<T>(request: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), request)
        .await
        .expect("answered while the test holds its lock")
}

fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_over_the_passage_limit_is_refused_422_naming_the_limit_and_nothing_is_stored() {
    let stack = Stack::start(Options {
        knowledge: KnowledgeLimits {
            max_passages: 5,
            ..KnowledgeLimits::DEFAULT
        },
        ..Options::default()
    })
    .await;
    let folder = new_folder(&stack, "help").await;
    let path = upload_path(&folder);
    let (status, refused) = stack
        .api(
            "POST",
            &path,
            Some(json!({"title": "Too long", "content": sections(6)})),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "too_many_passages");
    assert_eq!(
        refused["error"]["details"],
        json!({"field": "content", "limit": "max_passages_per_document", "max": 5, "actual": 6})
    );
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("CONFAB_MAX_PASSAGES_PER_DOCUMENT"),
        "{message}"
    );
    let (_, listed) = stack.api("GET", &path, None).await;
    assert_eq!(listed["data"], json!([]), "nothing stored");

    // At the limit is fine, and so is replacing a document with one within it.
    let (status, stored) = stack
        .api(
            "POST",
            &path,
            Some(json!({"title": "Just right", "content": sections(5)})),
        )
        .await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["chunks"], 5);
    let (status, refused) = stack
        .api(
            "POST",
            &path,
            Some(json!({"title": "Just right", "content": sections(7)})),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    let (_, kept) = stack
        .api(
            "GET",
            &format!("/v1/documents/{}", stored["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(kept["chunks"], 5, "the stored version is kept whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passages_are_written_in_one_statement_with_their_order_headings_and_search_terms() {
    let stack = Stack::start(Options::default()).await;
    let folder = new_folder(&stack, "help").await;
    let path = upload_path(&folder);
    // Count the INSERT statements on `chunks`: a statement-level trigger fires once per
    // statement however many rows it writes.
    let db = stack.db().await;
    db.batch_execute(
        "CREATE TABLE chunk_inserts (at timestamptz NOT NULL DEFAULT now());
         CREATE FUNCTION count_chunk_insert() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO chunk_inserts DEFAULT VALUES; RETURN NULL; END $$;
         CREATE TRIGGER chunk_inserts AFTER INSERT ON chunks
           FOR EACH STATEMENT EXECUTE FUNCTION count_chunk_insert();",
    )
    .await
    .unwrap();
    let (status, stored) = stack
        .api(
            "POST",
            &path,
            Some(json!({"title": "Handbook", "content": sections(300)})),
        )
        .await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["chunks"], 300);
    let statements: i64 = db
        .query_one("SELECT count(*) FROM chunk_inserts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(statements, 1, "300 passages in one statement");
    // Replacing rewrites every passage (the old ones are gone, the new ones complete).
    let (status, replaced) = stack
        .api(
            "POST",
            &path,
            Some(json!({"title": "Handbook", "content": sections(250)})),
        )
        .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["stored"], "updated");
    let id: uuid::Uuid = stored["id"].as_str().unwrap().parse().unwrap();
    let rows = db
        .query(
            "SELECT c.ordinal, c.heading, c.content, c.tokens, \
                    c.search @@ to_tsquery(f.language::regconfig, 'handbook') \
             FROM chunks c JOIN folders f ON f.id = c.folder_id \
             WHERE c.document_id = $1 ORDER BY c.pk",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 250);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.get::<_, i32>(0), i as i32);
        assert_eq!(row.get::<_, String>(1), format!("Section {i}"));
        assert_eq!(row.get::<_, String>(2), format!("The text of section {i}."));
        assert!(row.get::<_, i32>(3) > 0);
        assert!(row.get::<_, bool>(4), "passage {i} is found by its title");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_over_its_byte_budget_refuses_the_upload_422_and_keeps_what_it_had() {
    let stack = Stack::start(Options {
        knowledge: KnowledgeLimits {
            max_folder_bytes: 100,
            ..KnowledgeLimits::DEFAULT
        },
        ..Options::default()
    })
    .await;
    let folder = new_folder(&stack, "help").await;
    let path = upload_path(&folder);
    let put = |title: &str, bytes: usize| {
        let body = json!({"title": title, "content": "x".repeat(bytes), "format": "text"});
        stack.api("POST", &path, Some(body))
    };
    assert_eq!(put("a", 60).await.0, 201);
    let (status, refused) = put("b", 41).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "folder_full");
    assert_eq!(
        refused["error"]["details"],
        json!({"field": "content", "limit": "max_folder_bytes", "max": 100, "actual": 101})
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CONFAB_MAX_FOLDER_BYTES")
    );
    // What fits still fits, a replacement counts only its new version, and other folders
    // have budgets of their own.
    assert_eq!(put("b", 40).await.0, 201);
    assert_eq!(put("a", 60).await.0, 200, "unchanged");
    assert_eq!(put("a", 59).await.0, 200, "replaced within the budget");
    assert_eq!(put("a", 61).await.0, 422);
    let other = new_folder(&stack, "other").await;
    let body = json!({"title": "c", "content": "x".repeat(100), "format": "text"});
    assert_eq!(
        stack.api("POST", &upload_path(&other), Some(body)).await.0,
        201
    );
    let (_, listed) = stack.api("GET", &path, None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_uploads_cannot_both_squeeze_past_the_folder_budget() {
    let stack = Stack::start(Options {
        knowledge: KnowledgeLimits {
            max_folder_bytes: 100,
            ..KnowledgeLimits::DEFAULT
        },
        heavy_writes: HeavyWrites {
            permits: 2,
            wait: Duration::from_secs(10),
        },
        ..Options::default()
    })
    .await;
    let folder = new_folder(&stack, "help").await;
    let folder_id: uuid::Uuid = folder.parse().unwrap();
    // Hold the folder while both uploads start, so both are past every check that comes before
    // the folder's lock when they go on, at the same moment.
    let mut db = stack.db().await;
    let hold = db.transaction().await.unwrap();
    hold.execute(
        "SELECT 1 FROM folders WHERE id = $1 FOR UPDATE",
        &[&folder_id],
    )
    .await
    .unwrap();
    let first = spawn_upload(&stack, &folder, "first", &"x".repeat(60));
    let second = spawn_upload(&stack, &folder, "second", &"y".repeat(60));
    let watcher = stack.db().await;
    until_waiting_on_locks(&watcher, 2).await;
    hold.commit().await.unwrap();
    let (first, second) = answered(async { (first.await.unwrap(), second.await.unwrap()) }).await;
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [201, 422], "{first:?} {second:?}");
    let stored: i64 = watcher
        .query_one(
            "SELECT coalesce(sum(octet_length(content)), 0)::bigint FROM documents \
             WHERE folder_id = $1",
            &[&folder_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_their_share_of_the_pool_get_503_with_retry_after_while_chat_and_management_are_served()
 {
    let stack = Stack::start(Options {
        heavy_writes: HeavyWrites {
            permits: 1,
            wait: Duration::from_millis(200),
        },
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let held = new_folder(&stack, "held").await;
    let other = new_folder(&stack, "other").await;
    let held_id: uuid::Uuid = held.parse().unwrap();
    // The first upload takes the only permit and then waits on the test's lock of its folder.
    let mut db = stack.db().await;
    let hold = db.transaction().await.unwrap();
    hold.execute(
        "SELECT 1 FROM folders WHERE id = $1 FOR UPDATE",
        &[&held_id],
    )
    .await
    .unwrap();
    let first = spawn_upload(&stack, &held, "first", "Some text.");
    until_waiting_on_locks(&stack.db().await, 1).await;

    let response = answered(
        stack
            .http
            .post(stack.url(&upload_path(&other)))
            .bearer_auth(&stack.api_key)
            .json(&json!({"title": "second", "content": "More text."}))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(retry_after(&response), Some(1));
    let refused: Value = response.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "overloaded", "{refused}");

    // The rest of the pool still serves management and chat.
    let (status, _) = answered(stack.api("GET", "/v1/assistants", None)).await;
    assert_eq!(status, 200);
    let chat = answered(stack.chat("support-agent", json!({"message": "Hours?"}))).await;
    assert_eq!(chat.status(), 200);

    hold.commit().await.unwrap();
    let (status, stored) = answered(first).await.unwrap();
    assert_eq!(status, 201, "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_statement_timeout_is_a_503_with_retry_after_not_a_500() {
    let stack = Stack::start(Options {
        database: PoolSettings {
            statement_timeout: Duration::from_millis(300),
            ..Options::default().database
        },
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let mut db = stack.db().await;
    let hold = db.transaction().await.unwrap();
    hold.batch_execute("LOCK TABLE assistants IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let listed = answered(
        stack
            .http
            .get(stack.url("/v1/assistants"))
            .bearer_auth(&stack.api_key)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(listed.status(), 503);
    assert!(retry_after(&listed).is_some());
    let body: Value = listed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");

    let chat = answered(stack.chat("support-agent", json!({"message": "Hours?"}))).await;
    assert_eq!(chat.status(), 503);
    assert!(retry_after(&chat).is_some());
    let body: Value = chat.json().await.unwrap();
    assert_eq!(body["error"]["name"], "ServiceUnavailableError", "{body}");
    hold.rollback().await.unwrap();
}

/// Each chat API's request, and how its error body names a busy service.
fn dialect_probes(identity: &str, channel: &str) -> Vec<(&'static str, String, Value, Value)> {
    vec![
        (
            "POST",
            "/v1/api/chat/support-agent".into(),
            json!({"message": "Hours?"}),
            json!({"/data": null, "/error/name": "ServiceUnavailableError"}),
        ),
        (
            "POST",
            "/api/ai-hub/assistant/ask".into(),
            json!({"message": {"role": "user", "content": "Hours?"}, "id": "c1",
                   "assistantId": "00000000-0000-0000-0000-000000000000"}),
            json!({"/success": false}),
        ),
        (
            "POST",
            "/v1/chat/completions".into(),
            json!({"model": "support-agent", "messages": [{"role": "user", "content": "Hours?"}]}),
            json!({"/error/code": "service_unavailable"}),
        ),
        (
            "POST",
            format!("/conversation/{identity}/chat/{channel}"),
            json!({"text": "Hours?"}),
            json!({"/data": null, "/error/code": "unavailable"}),
        ),
        (
            "GET",
            "/v1/assistants".into(),
            Value::Null,
            json!({"/error/code": "overloaded"}),
        ),
    ]
}

/// Every documented operation that takes the API key, its path filled with ids that name
/// nothing: each must authenticate first, which needs a connection.
fn secured_operations(doc: &Value) -> Vec<(reqwest::Method, String)> {
    let mut all = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let secured = operation
                .get("security")
                .is_none_or(|s| s.as_array().is_none_or(|s| !s.is_empty()));
            if !secured || template.starts_with("/webhooks") {
                continue;
            }
            let path = template
                .replace("{slug}", "support-agent")
                .replace("{model}", "support-agent")
                .replace("{section}", "preferences")
                .split('/')
                .map(|part| {
                    if part.starts_with('{') {
                        "0190f0f0-0000-7000-8000-000000000000"
                    } else {
                        part
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            all.push((method, path));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_wait_that_times_out_is_a_503_with_retry_after_in_every_api_s_shape() {
    let stack = Stack::start(Options {
        database: PoolSettings {
            size: 1,
            wait: Duration::from_millis(200),
            ..Options::default().database
        },
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let (_, identity) = stack
        .api("POST", "/v1/identities", Some(json!({"name": "Ada"})))
        .await;
    let (_, assistants) = stack.api("GET", "/v1/assistants", None).await;
    let (_, channel) = stack
        .api(
            "POST",
            "/v1/channels",
            Some(json!({"name": "Web", "kind": "web",
                        "assistant_id": assistants["data"][0]["id"]})),
        )
        .await;
    let doc: Value = stack
        .http
        .get(stack.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // One request holds the pool's only connection, waiting on the test's lock.
    let mut db = stack.db().await;
    let hold = db.transaction().await.unwrap();
    hold.batch_execute("LOCK TABLE assistants IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let holder = stack
        .http
        .get(stack.url("/v1/assistants"))
        .bearer_auth(&stack.api_key)
        .send();
    let holder = tokio::spawn(holder);
    until_waiting_on_locks(&stack.db().await, 1).await;

    let (identity, channel) = (
        identity["id"].as_str().unwrap(),
        channel["id"].as_str().unwrap(),
    );
    for (method, path, body, expected) in dialect_probes(identity, channel) {
        let mut request = stack
            .http
            .request(method.parse().unwrap(), stack.url(&path))
            .bearer_auth(&stack.api_key);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = answered(request.send()).await.unwrap();
        assert_eq!(response.status(), 503, "{method} {path}");
        assert!(retry_after(&response).is_some(), "{method} {path}");
        let body: Value = response.json().await.unwrap();
        for (pointer, value) in expected.as_object().unwrap() {
            assert_eq!(
                body.pointer(pointer),
                Some(value),
                "{method} {path}: {body}"
            );
        }
    }
    let mut failures = Vec::new();
    for (method, path) in secured_operations(&doc) {
        let request = stack
            .http
            .request(method.clone(), stack.url(&path))
            .bearer_auth(&stack.api_key);
        let response = answered(request.send()).await.unwrap();
        let status = response.status().as_u16();
        let retry = retry_after(&response);
        let json = response.json::<Value>().await.is_ok();
        if status != 503 || retry.is_none() || !json {
            failures.push(format!("{method} {path}: {status}, retry-after {retry:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    hold.rollback().await.unwrap();
    let held = answered(holder).await.unwrap().unwrap();
    assert_eq!(held.status(), 200, "the waiting request is answered");
}

/// The number of the ingress's management answers with `status` so far.
async fn management_answers(stack: &Stack, status: u16) -> u64 {
    let text = stack
        .http
        .get(stack.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series =
        format!("confab_http_requests_total{{dialect=\"management\",status=\"{status}\"}}");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kb_import_waits_out_a_503_for_its_retry_after_instead_of_failing_the_file() {
    let stack = Stack::start(Options {
        workers: 0,
        heavy_writes: HeavyWrites {
            permits: 1,
            wait: Duration::from_millis(200),
        },
        ..Options::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("confab-kb-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hours.md"), "# Hours\nNine to five.\n").unwrap();
    // Another upload takes the only permit and waits on the test's lock of its folder.
    let held = new_folder(&stack, "held").await;
    let held_id: uuid::Uuid = held.parse().unwrap();
    let mut db = stack.db().await;
    let hold = db.transaction().await.unwrap();
    hold.execute(
        "SELECT 1 FROM folders WHERE id = $1 FOR UPDATE",
        &[&held_id],
    )
    .await
    .unwrap();
    let first = spawn_upload(&stack, &held, "first", "Some text.");
    until_waiting_on_locks(&stack.db().await, 1).await;

    let import = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["kb", "import"])
        .arg(&dir)
        .args(["--folder", "help"])
        .env("CONFAB_URL", stack.url(""))
        .env("CONFAB_API_KEY", &stack.api_key)
        .kill_on_drop(true)
        .output();
    let import = tokio::spawn(import);
    // Once the import's upload was refused, free the permit; its retry then goes through.
    for _ in 0..1_000 {
        if management_answers(&stack, 503).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        management_answers(&stack, 503).await > 0,
        "the import's upload was refused"
    );
    hold.commit().await.unwrap();
    assert_eq!(answered(first).await.unwrap().0, 201);
    let output = answered(import).await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let summary = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{summary} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        summary.contains("1 created, 0 updated, 0 unchanged, 0 failed"),
        "{summary}"
    );
}
