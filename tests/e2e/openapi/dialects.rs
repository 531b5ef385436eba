//! The four chat dialects, each called for its successes (JSON and SSE), its validation, auth and
//! not-found errors, an oversized body, and a model failure (the broken assistant's vendor is
//! unreachable): as a 502, and as the error event of a stream.

use serde_json::{Value, json};

use super::checker::{Checker, Req};
use super::{MISSING, World, oversized};

/// The last event of a stream, which must say the turn failed.
fn assert_failed_last(events: &[Value], is_error: impl Fn(&Value) -> bool) {
    let last = events.last().expect("events");
    assert!(
        is_error(last),
        "the stream did not end in an error: {events:?}"
    );
}

pub async fn agents(api: &mut Checker<'_>, _world: &World) {
    let chat = "/v1/api/chat/support-agent";
    let first = api
        .expect(Req::post(chat, json!({"message": "My name is Ada."})), 200)
        .await
        .body;
    let conversation = first["data"]["conversationId"].clone();
    let again = json!({"message": "What is my name?", "conversationId": conversation});
    api.expect(Req::post(chat, again), 200).await;
    let streamed = api
        .expect(
            Req::post(chat, json!({"message": "hi", "stream": true})),
            200,
        )
        .await;
    assert!(streamed.headers.contains_key("x-conversation-id"));
    assert!(streamed.events.iter().all(|e| e.get("chunk").is_some()));

    let broken = "/v1/api/chat/broken-bot";
    api.expect(Req::post(broken, json!({"message": "hi"})), 502)
        .await;
    let failed = api
        .expect(
            Req::post(broken, json!({"message": "hi", "stream": true})),
            200,
        )
        .await;
    assert_failed_last(&failed.events, |e| e["error"]["name"] == "ModelError");

    api.expect(Req::post(chat, json!({"stream": true})), 400)
        .await;
    api.expect(Req::post(chat, json!({})).raw("{\"message\"".into()), 400)
        .await;
    api.expect(Req::post(chat, json!({})).raw(oversized()), 413)
        .await;
    api.expect(Req::post(chat, json!({"message": "hi"})).key(""), 401)
        .await;
    api.expect(
        Req::post("/v1/api/chat/nobody", json!({"message": "hi"})),
        404,
    )
    .await;
    let unknown = json!({"message": "hi", "conversationId": "conv_unknown"});
    api.expect(Req::post(chat, unknown), 404).await;
}

pub async fn identity_chat(api: &mut Checker<'_>, world: &World) {
    let chat = format!("/conversation/{}/chat/{}", world.identity, world.channel);
    let hello = json!({"text": "Hello, I need help with my order", "metadata": {"source": "web"}});
    api.expect(Req::post(&chat, hello), 200).await;
    let fresh = json!({"text": "Start over", "new_conversation": true});
    api.expect(Req::post(&chat, fresh), 200).await;
    let broken = format!(
        "/conversation/{}/chat/{}",
        world.identity, world.broken_channel
    );
    api.expect(Req::post(&broken, json!({"text": "hi"})), 502)
        .await;
    api.expect(Req::post(&chat, json!({"text": ""})), 400).await;
    api.expect(Req::post(&chat, json!({})).raw(oversized()), 413)
        .await;
    api.expect(Req::post(&chat, json!({"text": "hi"})).key(""), 401)
        .await;
    let nobody = format!("/conversation/{MISSING}/chat/{}", world.channel);
    api.expect(Req::post(&nobody, json!({"text": "hi"})), 404)
        .await;

    let stream = |channel: &str, rest: &str| {
        format!(
            "/conversation/{}/streaming?channel_id={channel}{rest}",
            world.identity
        )
    };
    let answer = api
        .expect(Req::get(&stream(&world.channel, "&message=Hello")), 200)
        .await;
    assert_eq!(answer.events.last().unwrap()["type"], "complete");
    // Read again, whole, through the generic route; then a reconnect that has it all.
    let request_id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
    let events = format!("/v1/requests/{request_id}/events");
    let again = api.expect(Req::get(&events), 200).await;
    assert_eq!(again.events, answer.events);
    let end = format!("{request_id}:{}", answer.events.len());
    api.expect(Req::get(&events).header("last-event-id", &end), 204)
        .await;
    api.expect(
        Req::get(&stream(&world.channel, "&message=Hello")).header("last-event-id", &end),
        204,
    )
    .await;
    let failed = api
        .expect(Req::get(&stream(&world.broken_channel, "&message=hi")), 200)
        .await;
    assert_failed_last(&failed.events, |e| e["type"] == "error");
    api.expect(Req::get(&stream(&world.channel, "")), 400).await;
    api.expect(
        Req::get(&stream(&world.channel, "&message=hi")).key(""),
        401,
    )
    .await;
    api.expect(Req::get(&stream(MISSING, "&message=hi")), 404)
        .await;

    let scope = json!({"identity_id": world.identity, "channel_id": world.channel});
    let minted = api
        .expect(Req::post("/v1/stream-tokens", scope.clone()), 201)
        .await
        .body;
    let token = minted["token"].as_str().unwrap();
    let other_channel = stream(&world.broken_channel, &format!("&message=hi&token={token}"));
    api.expect(Req::get(&other_channel).key(""), 403).await;
    let with_token = stream(&world.channel, &format!("&message=hi&token={token}"));
    api.expect(Req::get(&with_token).key(""), 200).await;
    api.expect(Req::get(&with_token).key(""), 409).await;
    api.expect(Req::post("/v1/stream-tokens", scope).key(""), 401)
        .await;
    api.expect(Req::post("/v1/stream-tokens", json!({})), 400)
        .await;
    let nobody = json!({"identity_id": MISSING, "channel_id": world.channel});
    api.expect(Req::post("/v1/stream-tokens", nobody), 404)
        .await;
}

/// The origin the world's web channel allows, and its identity secret.
pub const SHOP: &str = "http://shop.example";
pub const IDENTITY_SECRET: &str = "a-secret-of-the-shop-0123";

/// The web channel's visitor routes, the widget and the hosted page.
pub async fn web_channel(api: &mut Checker<'_>, world: &World) {
    let sessions = format!("/v1/web/channels/{}/sessions", world.channel);
    let session = api
        .expect(
            Req::post(&sessions, json!({}))
                .key("")
                .header("origin", SHOP),
            201,
        )
        .await
        .body;
    let token = session["token"].as_str().unwrap().to_owned();
    let returning = json!({"visitor_key": session["visitor_key"]});
    let again = api
        .expect(
            Req::post(&sessions, returning)
                .key("")
                .header("origin", SHOP),
            201,
        )
        .await
        .body;
    assert_eq!(again["identity_id"], session["identity_id"]);
    api.expect(
        Req::post(&sessions, json!({}))
            .key("")
            .header("origin", "http://evil.example"),
        403,
    )
    .await;
    let forged = json!({"user_id": "u-1", "user_signature": "00"});
    api.expect(
        Req::post(&sessions, forged).key("").header("origin", SHOP),
        403,
    )
    .await;
    api.expect(
        Req::post(&sessions, json!({"visitor": 1}))
            .key("")
            .header("origin", SHOP),
        400,
    )
    .await;
    let nowhere = format!("/v1/web/channels/{}/sessions", world.broken_channel);
    api.expect(
        Req::post(&nowhere, json!({}))
            .key("")
            .header("origin", SHOP),
        404,
    )
    .await;

    let conversation = format!("/v1/web/channels/{}/conversation", world.channel);
    api.expect(Req::get(&conversation).key(&token), 200).await;
    api.expect(Req::get(&conversation).key(""), 401).await;
    let elsewhere = format!("/v1/web/channels/{}/conversation", world.broken_channel);
    api.expect(Req::get(&elsewhere).key(&token), 403).await;

    let widget = api.expect(Req::get("/widget.js").key(""), 200).await;
    let etag = widget.headers["etag"].to_str().unwrap().to_owned();
    api.expect(
        Req::get("/widget.js")
            .key("")
            .header("if-none-match", &etag),
        304,
    )
    .await;
    api.expect(Req::get(&format!("/chat/{}", world.channel)).key(""), 200)
        .await;
    api.expect(
        Req::get(&format!("/chat/{}", world.broken_channel)).key(""),
        404,
    )
    .await;
}

fn question(assistant: &str, conversation: &str) -> Value {
    json!({
        "message": {"role": "user", "content": "What are your business hours?"},
        "id": conversation,
        "assistantId": assistant,
    })
}

pub async fn ai_hub(api: &mut Checker<'_>, world: &World) {
    let ask = "/api/ai-hub/assistant/ask";
    let mut first = question(&world.agent, "conv-hub");
    first["message"]["createdAt"] = json!("2024-01-20T15:30:00.123Z");
    first["metadata"] = json!({"Channel": "web"});
    first["foldersId"] = json!([world.folder]);
    api.expect(Req::post(ask, first), 200).await;
    let system = json!({
        "message": {"id": "sys-1", "role": "system", "content": "Be brief."},
        "id": "conv-hub",
        "assistantId": world.agent,
    });
    let stored = api.expect(Req::post(ask, system), 200).await.body;
    assert_eq!(stored["message"]["role"], "system");
    let mut preview = question("anything", "conv-preview");
    preview["previewAssistantData"] = json!({"name": "Preview", "description": "We open at 9."});
    api.expect(Req::post(ask, preview), 200).await;
    let streamed = Req::post(ask, question(&world.agent, "conv-hub-sse"))
        .header("accept", "text/event-stream");
    let answer = api.expect(streamed, 200).await;
    assert_eq!(answer.events.last().unwrap()["type"], "done");

    api.expect(Req::post(ask, question(&world.broken, "conv-broken")), 502)
        .await;
    let failed = Req::post(ask, question(&world.broken, "conv-broken-sse"))
        .header("accept", "text/event-stream");
    let failed = api.expect(failed, 200).await;
    assert_failed_last(&failed.events, |e| e["type"] == "error");

    api.expect(Req::post(ask, json!({"id": "c"})), 400).await;
    api.expect(Req::post(ask, json!({})).raw(oversized()), 413)
        .await;
    api.expect(Req::post(ask, question(&world.agent, "c")).key(""), 401)
        .await;
    api.expect(Req::post(ask, question(MISSING, "c")), 404)
        .await;
}

fn completion(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "What are your business hours?"}]})
}

pub async fn openai(api: &mut Checker<'_>, _world: &World) {
    let url = "/v1/chat/completions";
    let mut stateless = completion("support-agent");
    stateless["messages"] = json!([
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "My name is Ada."}]},
        {"role": "assistant", "content": null},
        {"role": "user", "content": "What is my name?"},
    ]);
    stateless["temperature"] = json!(0.2);
    api.expect(Req::post(url, stateless), 200).await;
    let mut named = completion("support-agent");
    named["conversation_id"] = json!("my-chat-1");
    api.expect(Req::post(url, named), 200).await;
    let by_header =
        Req::post(url, completion("support-agent")).header("x-conversation-id", "my-chat-1");
    api.expect(by_header, 200).await;
    let mut streamed = completion("support-agent");
    streamed["stream"] = json!(true);
    api.expect(Req::post(url, streamed.clone()), 200).await;
    streamed["stream_options"] = json!({"include_usage": true});
    let with_usage = api.expect(Req::post(url, streamed), 200).await;
    assert!(with_usage.events.last().unwrap()["usage"].is_object());

    api.expect(Req::post(url, completion("broken-bot")), 502)
        .await;
    let mut failed = completion("broken-bot");
    failed["stream"] = json!(true);
    let failed = api.expect(Req::post(url, failed), 200).await;
    assert_failed_last(&failed.events, |e| e["error"]["code"] == "model_error");

    api.expect(Req::post(url, json!({"model": "support-agent"})), 400)
        .await;
    api.expect(Req::post(url, json!({})).raw(oversized()), 413)
        .await;
    api.expect(Req::post(url, completion("support-agent")).key(""), 401)
        .await;
    api.expect(Req::post(url, completion("nobody")), 404).await;
    api.expect(Req::get("/v1/models"), 200).await;
    api.expect(Req::get("/v1/models/support-agent"), 200).await;
    api.expect(Req::get("/v1/models/no-such-assistant"), 404)
        .await;
    api.expect(Req::get("/v1/models").key("cfk_wrong"), 401)
        .await;
}
