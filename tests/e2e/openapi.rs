//! The OpenAPI document tells the truth. `GET /openapi.json` is fetched from a live stack, every
//! operation in it is called (successes, and each API family's 400, 401 and 404; the dialects'
//! 413, 429 and 502 too), and every answer is validated against the schema the document declares
//! for its status and content type, every SSE `data:` event included. An operation the document
//! lists but no call here exercises fails the test: a new route needs a call below as well as its
//! `Operation`.

mod checker;
mod dialects;
pub mod validate;

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::stack::{Options, Stack};
use checker::{Checker, Req};

/// A well-formed id that names nothing.
const MISSING: &str = "0190f0f0-0000-7000-8000-000000000000";

/// What the management calls created, for the dialect calls to use.
pub struct World {
    pub agent: String,
    pub broken: String,
    pub identity: String,
    pub channel: String,
    pub broken_channel: String,
    pub folder: String,
}

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

/// A JSON body larger than the stack's 64 KiB limit.
pub fn oversized() -> String {
    json!({"message": "a".repeat(70_000)}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_as_documented() {
    let stack = Stack::start(Options::default()).await;
    let doc: Value = stack
        .http
        .get(stack.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "confab");
    let mut api = Checker::new(&stack, doc);

    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        api.expect(Req::get(path).key(""), 200).await;
    }
    let world = management(&mut api).await;
    dialects::agents(&mut api, &world).await;
    dialects::identity_chat(&mut api, &world).await;
    dialects::web_channel(&mut api, &world).await;
    dialects::ai_hub(&mut api, &world).await;
    dialects::openai(&mut api, &world).await;
    knowledge_and_memory(&mut api, &world).await;
    requests(&mut api).await;
    conversations(&mut api).await;
    rate_limited(&mut api).await;
    webhooks(&mut api, &world).await;
    deletions(&mut api, &world).await;

    let missing = api.unexercised();
    assert!(
        missing.is_empty(),
        "documented but never called: {missing:?}"
    );
    let dialect = [400, 401, 404, 413, 429, 502];
    for (tag, statuses) in [
        ("agents", &dialect[..]),
        ("identity-chat", &dialect[..]),
        ("ai-hub", &dialect[..]),
        ("openai", &dialect[..]),
        ("assistants", &[400, 401, 404, 409, 413][..]),
        ("channels", &[400, 401, 404][..]),
        ("identities", &[400, 401, 404, 409][..]),
        ("folders", &[400, 401, 404, 409][..]),
        ("documents", &[400, 401, 404][..]),
        ("keys", &[400, 401, 404, 429][..]),
        ("conversations", &[400, 401, 404][..]),
        ("webhooks", &[401, 403, 404, 405, 413][..]),
        ("web-channel", &[304, 400, 401, 403, 404][..]),
    ] {
        let seen = api.statuses_of(tag);
        for status in statuses {
            assert!(
                seen.contains(status),
                "{tag}: no {status} checked; saw {seen:?}"
            );
        }
    }
}

async fn management(api: &mut Checker<'_>) -> World {
    let agent = api
        .expect(
            Req::post(
                "/v1/assistants",
                json!({"name": "Support Agent", "instructions": "Our business hours are 9:00 to 17:00."}),
            ),
            201,
        )
        .await
        .body;
    // Its vendor is unreachable (the stack's OpenAI URL refuses connections): every turn is a
    // model error.
    let broken = api
        .expect(
            Req::post(
                "/v1/assistants",
                json!({"name": "Broken Bot", "model": "openai/none"}),
            ),
            201,
        )
        .await
        .body;
    let assistant = format!("/v1/assistants/{}", id(&agent));
    api.expect(
        Req::post("/v1/assistants", json!({"name": "Support Agent"})),
        409,
    )
    .await;
    api.expect(
        Req::post("/v1/assistants", json!({"name": "A", "colour": "red"})),
        400,
    )
    .await;
    api.expect(Req::post("/v1/assistants", json!({})).raw(oversized()), 413)
        .await;
    api.expect(
        Req::post("/v1/assistants", json!({"name": "B"})).key(""),
        401,
    )
    .await;
    api.expect(Req::get("/v1/assistants?limit=1"), 200).await;
    api.expect(Req::get("/v1/assistants?limit=0"), 400).await;
    api.expect(Req::get("/v1/assistants?limit=1&limit=2"), 400)
        .await;
    api.expect(Req::get("/v1/identities?cursor=a&cursor=b"), 400)
        .await;
    api.expect(Req::get(&assistant), 200).await;
    api.expect(Req::get(&format!("/v1/assistants/{MISSING}")), 404)
        .await;
    api.expect(Req::get("/v1/assistants/not-a-uuid").key("cfk_wrong"), 401)
        .await;

    let folder = api
        .expect(Req::post("/v1/folders", json!({"name": "FAQ"})), 201)
        .await
        .body;
    api.expect(Req::post("/v1/folders", json!({"name": "FAQ"})), 409)
        .await;
    api.expect(
        Req::post("/v1/folders", json!({"name": "X", "language": "klingon"})),
        400,
    )
    .await;
    api.expect(Req::get("/v1/folders"), 200).await;
    api.expect(Req::get(&format!("/v1/folders/{}", id(&folder))), 200)
        .await;
    api.expect(Req::get(&format!("/v1/folders/{MISSING}")), 404)
        .await;
    api.expect(Req::get("/v1/folders").key(""), 401).await;
    let patch = json!({"description": "Helps.", "folder_ids": [id(&folder)], "deployed": true});
    api.expect(Req::patch(&assistant, patch), 200).await;
    let taken = json!({"slug": "support-agent"});
    api.expect(
        Req::patch(&format!("/v1/assistants/{}", id(&broken)), taken),
        409,
    )
    .await;

    let ada = json!({"name": "Ada", "external_id": "+15550001", "profile": {"tier": "gold"}});
    let identity = api.expect(Req::post("/v1/identities", ada), 201).await.body;
    let path = format!("/v1/identities/{}", id(&identity));
    api.expect(
        Req::post("/v1/identities", json!({"external_id": "+15550001"})),
        409,
    )
    .await;
    api.expect(Req::post("/v1/identities", json!({"nickname": "A"})), 400)
        .await;
    api.expect(Req::get("/v1/identities?external_id=%2B15550001"), 200)
        .await;
    api.expect(Req::get(&path), 200).await;
    api.expect(
        Req::patch(&path, json!({"profile": {"language": "pt-BR"}})),
        200,
    )
    .await;
    api.expect(Req::get(&format!("/v1/identities/{MISSING}")), 404)
        .await;
    api.expect(Req::get("/v1/identities").key(""), 401).await;

    let web = json!({"name": "Website", "kind": "web", "assistant_id": id(&agent), "config": {
        "public": true,
        "allowed_origins": [dialects::SHOP],
        "identity_secret": dialects::IDENTITY_SECRET,
    }});
    let channel = api.expect(Req::post("/v1/channels", web), 201).await.body;
    let path = format!("/v1/channels/{}", id(&channel));
    let broken_web = json!({"name": "Broken", "kind": "custom", "assistant_id": id(&broken)});
    let broken_channel = api
        .expect(Req::post("/v1/channels", broken_web), 201)
        .await
        .body;
    let fax = json!({"name": "x", "kind": "fax", "assistant_id": id(&agent)});
    api.expect(Req::post("/v1/channels", fax), 400).await;
    api.expect(Req::get("/v1/channels"), 200).await;
    api.expect(Req::get(&path), 200).await;
    api.expect(
        Req::patch(&path, json!({"name": "Web", "config": {"secret": null}})),
        200,
    )
    .await;
    api.expect(Req::get(&format!("/v1/channels/{MISSING}")), 404)
        .await;
    api.expect(Req::get("/v1/channels").key(""), 401).await;

    let key = api
        .expect(Req::post("/v1/keys", json!({"name": "ci"})), 201)
        .await
        .body;
    let path = format!("/v1/keys/{}", id(&key));
    api.expect(Req::get("/v1/keys"), 200).await;
    api.expect(Req::get(&path), 200).await;
    api.expect(Req::patch(&path, json!({"rate_limit_per_min": 1000})), 200)
        .await;
    api.expect(Req::patch(&path, json!({})), 400).await;
    api.expect(Req::get(&format!("/v1/keys/{MISSING}")), 404)
        .await;
    api.expect(Req::get("/v1/keys").key(""), 401).await;
    api.expect(Req::delete(&path), 204).await;

    World {
        agent: id(&agent),
        broken: id(&broken),
        identity: id(&identity),
        channel: id(&channel),
        broken_channel: id(&broken_channel),
        folder: id(&folder),
    }
}

/// After the dialects have made some conversations.
async fn knowledge_and_memory(api: &mut Checker<'_>, world: &World) {
    let documents = format!("/v1/folders/{}/documents", world.folder);
    let page = json!({"title": "Refunds", "content": "# Refunds\nRefunds take five days."});
    let created = api
        .expect(Req::post(&documents, page.clone()), 201)
        .await
        .body;
    api.expect(Req::post(&documents, page), 200).await;
    api.expect(Req::post(&documents, json!({"title": "No content"})), 400)
        .await;
    let missing_folder = format!("/v1/folders/{MISSING}/documents");
    api.expect(
        Req::post(&missing_folder, json!({"title": "T", "content": "c"})),
        404,
    )
    .await;
    api.expect(
        Req::post(&documents, json!({"title": "T", "content": "c"})).key(""),
        401,
    )
    .await;
    api.expect(Req::get(&documents), 200).await;
    api.expect(Req::get(&missing_folder), 404).await;
    let document = format!("/v1/documents/{}", id(&created));
    api.expect(Req::get(&document), 200).await;
    api.expect(Req::get(&format!("/v1/documents/{MISSING}")), 404)
        .await;
    api.expect(Req::delete(&document), 204).await;
    api.expect(Req::delete(&document), 404).await;

    let memory = format!("/v1/identities/{}/memory", world.identity);
    api.expect(Req::get(&memory), 200).await;
    api.expect(Req::get(&format!("/v1/identities/{MISSING}/memory")), 404)
        .await;
    let full = json!({"preferences": {"language": "pt"}, "data": {"plan": "pro"}, "stage": "lead", "associations": {"crm": "42"}});
    api.expect(Req::put(&memory, full), 200).await;
    api.expect(Req::put(&memory, json!({"stage": 7})), 400)
        .await;
    api.expect(Req::patch(&memory, json!({"stage": "customer"})), 200)
        .await;
    api.expect(
        Req::put(&format!("{memory}/preferences/tone"), json!("formal")),
        200,
    )
    .await;
    api.expect(Req::put(&format!("{memory}/moods/tone"), json!("x")), 400)
        .await;
    api.expect(Req::delete(&format!("{memory}/preferences/tone")), 200)
        .await;
}

async fn requests(api: &mut Checker<'_>) {
    let cancel = format!("/v1/requests/{MISSING}/cancel");
    api.expect(Req::post_empty(&cancel), 404).await;
    api.expect(Req::post_empty(&cancel).key(""), 401).await;
}

async fn conversations(api: &mut Checker<'_>) {
    let all = api
        .expect(Req::get("/v1/conversations?limit=200"), 200)
        .await
        .body;
    let conversations = all["data"].as_array().unwrap();
    assert!(conversations.len() >= 4, "{all}");
    let path = format!(
        "/v1/conversations/{}",
        conversations[0]["id"].as_str().unwrap()
    );
    api.expect(
        Req::get(&format!("/v1/conversations?assistant_id={MISSING}")),
        200,
    )
    .await;
    api.expect(Req::get("/v1/conversations?assistant_id=nope"), 400)
        .await;
    api.expect(Req::get("/v1/conversations").key(""), 401).await;
    api.expect(Req::get(&path), 200).await;
    let turns = api
        .expect(Req::get(&format!("{path}/messages")), 200)
        .await
        .body;
    assert!(!turns["data"].as_array().unwrap().is_empty());
    api.expect(Req::delete(&path), 204).await;
    api.expect(Req::get(&path), 404).await;
    api.expect(Req::get(&format!("{path}/messages")), 404).await;
    api.expect(Req::delete(&path), 404).await;
}

/// Every family's 429, from a key allowed one request a minute.
async fn rate_limited(api: &mut Checker<'_>) {
    let tight = json!({"name": "tight", "rate_limit_per_min": 1});
    let key = api.expect(Req::post("/v1/keys", tight), 201).await.body;
    let secret = key["api_key"].as_str().unwrap().to_owned();
    // Use the minute up, far enough from the window's end that the calls below all fall in it.
    let stack = api.stack();
    loop {
        let response = stack
            .http
            .get(stack.url("/v1/models"))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            let left: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            if left >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(left + 1)).await;
        }
    }
    let hi = json!({"message": "hi"});
    let ask =
        json!({"message": {"role": "user", "content": "hi"}, "id": "c", "assistantId": MISSING});
    let requests = [
        Req::get("/v1/keys"),
        Req::post("/v1/api/chat/support-agent", hi),
        Req::post(
            &format!("/conversation/{MISSING}/chat/{MISSING}"),
            json!({"text": "hi"}),
        ),
        Req::post("/api/ai-hub/assistant/ask", ask),
        Req::get("/v1/models"),
    ];
    for request in requests {
        api.expect(request.key(&secret), 429).await;
    }
}

async fn deletions(api: &mut Checker<'_>, world: &World) {
    // A channel still uses the support agent.
    api.expect(Req::delete(&format!("/v1/assistants/{}", world.agent)), 409)
        .await;
    api.expect(
        Req::delete(&format!("/v1/channels/{}", world.broken_channel)),
        204,
    )
    .await;
    api.expect(Req::delete(&format!("/v1/channels/{MISSING}")), 404)
        .await;
    api.expect(
        Req::delete(&format!("/v1/assistants/{}", world.broken)),
        204,
    )
    .await;
    api.expect(Req::delete(&format!("/v1/assistants/{MISSING}")), 404)
        .await;
    let temp = api
        .expect(Req::post("/v1/identities", json!({})), 201)
        .await
        .body;
    api.expect(Req::delete(&format!("/v1/identities/{}", id(&temp))), 204)
        .await;
    api.expect(Req::delete(&format!("/v1/identities/{MISSING}")), 404)
        .await;
    api.expect(Req::delete(&format!("/v1/keys/{MISSING}")), 404)
        .await;
}

/// Platform webhooks: no API key, the channel's secrets instead.
async fn webhooks(api: &mut Checker<'_>, world: &World) {
    let whatsapp = api
        .expect(
            Req::post(
                "/v1/channels",
                json!({"name": "WhatsApp", "kind": "whatsapp", "assistant_id": world.agent,
                       "config": {"verify_token": "vt", "app_secret": "s", "access_token": "t",
                                  "phone_number_id": "PN"}}),
            ),
            201,
        )
        .await
        .body;
    let telegram = api
        .expect(
            Req::post(
                "/v1/channels",
                json!({"name": "Telegram", "kind": "telegram", "assistant_id": world.agent,
                       "config": {"bot_token": "1:x"}}),
            ),
            201,
        )
        .await
        .body;
    let hook = format!("/webhooks/whatsapp/{}", id(&whatsapp));
    let tg_hook = format!("/webhooks/telegram/{}", id(&telegram));
    let challenge = format!("{hook}?hub.mode=subscribe&hub.verify_token=vt&hub.challenge=42");
    api.expect(Req::get(&challenge).key(""), 200).await;
    let wrong = format!("{hook}?hub.mode=subscribe&hub.verify_token=x&hub.challenge=42");
    api.expect(Req::get(&wrong).key(""), 403).await;
    let unknown = format!("/webhooks/whatsapp/{}", uuid::Uuid::now_v7());
    api.expect(Req::get(&unknown).key(""), 404).await;
    api.expect(Req::get(&tg_hook).key(""), 405).await;

    // A status notification for a message never sent: taken over, changes nothing.
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"metadata": {"phone_number_id": "PN"},
         "statuses": [{"id": "wamid.none", "status": "read", "timestamp": "1"}]}}]}]})
    .to_string();
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(b"s").unwrap();
    hmac::Mac::update(&mut mac, body.as_bytes());
    let hex: String = hmac::Mac::finalize(mac)
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let signed = |req: Req| {
        req.key("")
            .header("x-hub-signature-256", &format!("sha256={hex}"))
    };
    let receipt = api
        .expect(signed(Req::post(&hook, json!(null)).raw(body.clone())), 200)
        .await;
    assert_eq!(receipt.body["statuses"], 1);
    api.expect(Req::post(&hook, json!(null)).raw(body.clone()).key(""), 401)
        .await;
    api.expect(
        signed(Req::post(&unknown, json!(null)).raw(body.clone())),
        404,
    )
    .await;
    // The Telegram channel has no secret_token: it takes no webhooks.
    api.expect(Req::post(&tg_hook, json!({"update_id": 1})).key(""), 403)
        .await;
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(100 * 1024));
    api.expect(signed(Req::post(&hook, json!(null)).raw(huge)), 413)
        .await;
}
