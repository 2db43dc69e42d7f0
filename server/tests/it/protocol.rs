//! Wire-level behaviour: malformed input, oversized frames, rate limits,
//! shutdown. Bad input gets a clear error and the server keeps serving.

use std::time::Duration;

use qt_protocol::ClientMsg;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::{Backend, Client, Ended, Options, TestServer, http, http_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_input_gets_its_error_and_the_socket_keeps_working() {
    let server = TestServer::start(Backend::Memory).await;
    let mut c = server.buyer("m1").await;
    let cases = [
        ("not json at all", None),
        ("[1, 2, 3]", None),
        (r#"{"req": 1}"#, Some(json!(1))),
        (r#"{"type": "teleport", "req": "x"}"#, Some(json!("x"))),
        (r#"{"type": 42, "req": 3}"#, Some(json!(3))),
        (r#"{"type": "join", "req": 4}"#, Some(json!(4))),
        (r#"{"type": "join", "event": ["nope"], "req": 5}"#, Some(json!(5))),
        (r#"{"type": "hold", "event": "demo-live", "seats": "A-1-1", "req": 6}"#, Some(json!(6))),
    ];
    for (text, req) in cases {
        c.send_raw(Message::Text(text.into())).await;
        let e = c.recv().await;
        assert_eq!(e["type"], "error", "{text} → {e}");
        assert_eq!(e["code"], "bad_request", "{text} → {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(e.get("req").cloned(), req, "{text} → {e}");
    }
    c.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(c.recv().await["code"], "bad_request");
    let r = c.join("no-such-event").await;
    assert_eq!(r["code"], "not_found");
    assert_eq!(c.ping().await["type"], "pong");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_that_socket_only() {
    let server = TestServer::start(Backend::Memory).await;
    let mut bystander = server.buyer("ok").await;
    let mut c = server.buyer("big").await;
    let huge = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    c.send_raw(Message::Text(huge.into())).await;
    match c.ended().await {
        Ended::Closed(Some(frame)) => assert_eq!(frame.code, CloseCode::Policy, "{frame:?}"),
        other => panic!("expected a policy-violation close, got {other:?}"),
    }
    assert_eq!(bystander.ping().await["type"], "pong");
    // 64 KiB is still allowed.
    let fits = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(60 * 1024));
    bystander.send_raw(Message::Text(fits.into())).await;
    assert_eq!(bystander.recv().await["type"], "pong");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_messages_over_the_limit_are_rate_limited_not_fatal() {
    let mut opts = Options::new(Backend::Memory);
    opts.tweak = |cfg| cfg.ws_msgs_per_s = 5;
    let server = TestServer::start_with(opts).await;
    let mut c = server.buyer("chatty").await;
    for i in 0..30 {
        c.send_msg(&ClientMsg::Ping, Some(i)).await;
    }
    let mut limited = 0;
    for _ in 0..30 {
        let r = c.recv().await;
        match r["type"].as_str() {
            Some("pong") => {}
            Some("error") => {
                assert_eq!(r["code"], "rate_limited");
                limited += 1;
            }
            _ => panic!("{r}"),
        }
    }
    assert!(limited >= 15, "burst is 10, so most of 30 are limited; got {limited}");
    // The budget refills with time: the second going by is what is under
    // test, not a wait for something to happen.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(c.ping().await["type"], "pong", "the budget comes back");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_tokens_and_upgrades_are_rate_limited_per_address() {
    let mut opts = Options::new(Backend::Memory);
    opts.tweak = |cfg| {
        cfg.guest_per_min = 6;
        cfg.ws_upgrades_per_min = 20;
    };
    let server = TestServer::start_with(opts).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(http(server.addr, "POST", "/api/v1/guest", None, None).await.unwrap().status);
    }
    assert_eq!(statuses[0], 201);
    assert!(statuses.contains(&429), "{statuses:?}");
    let limited = http(server.addr, "POST", "/api/v1/guest", None, None).await.unwrap();
    assert_eq!(limited.status, 429);
    assert_eq!(limited.json()["error"]["code"], "rate_limited");

    let token = server.buyer_token("u");
    let mut refused = 0;
    let mut kept = Vec::new();
    for _ in 0..6 {
        match Client::try_connect(server.addr, Some(&token)).await {
            Ok(ws) => kept.push(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 429);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused >= 3, "burst of 2 upgrades, got {refused} refusals");
    assert_eq!(http(server.addr, "GET", "/healthz", None, None).await.unwrap().status, 200, "server fine");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_limits_apply_per_forwarded_address() {
    let mut opts = Options::new(Backend::Memory);
    opts.tweak = |cfg| {
        cfg.guest_per_min = 3;
        cfg.trust_forwarded_for = true;
    };
    let server = TestServer::start_with(opts).await;
    let guest = |xff: &'static str| {
        let addr = server.addr;
        async move {
            http_with(addr, "POST", "/api/v1/guest", None, None, &[("X-Forwarded-For", xff)]).await.unwrap().status
        }
    };
    assert_eq!(guest("10.9.9.9, 203.0.113.1").await, 201);
    assert_eq!(guest("203.0.113.1").await, 429, "same client address, budget spent");
    assert_eq!(guest("203.0.113.2").await, 201, "another client has its own budget");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_closing_before_it_closes() {
    let server = TestServer::start(Backend::Memory).await;
    let mut c = server.buyer("bye").await;
    assert_eq!(c.ping().await["type"], "pong");
    let stopping = tokio::spawn(server.stop());
    let closing = c.recv_type("closing").await;
    assert!(closing["reconnect_after_ms"].as_u64().is_some_and(|ms| ms > 0));
    assert!(closing["reason"].is_string());
    match c.ended().await {
        Ended::Closed(Some(frame)) => assert_eq!(frame.code, CloseCode::Restart),
        other => panic!("expected a restart close, got {other:?}"),
    }
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_bodies_answer_in_the_error_shape() {
    let server = TestServer::start(Backend::Memory).await;
    let r = http(server.addr, "GET", "/api/v1/nothing-here", None, None).await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    let seller = server.seller_token("demo");
    let path = "/api/v1/seller/events/demo-live/queue";
    let r = http(server.addr, "PATCH", path, Some(&seller), Some(json!("not an object"))).await.unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "bad_request");
    let r = http(server.addr, "GET", "/api/v1/openapi.json", None, None).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.json()["paths"]["/api/v1/events/{event}/queue"].is_object(), "OpenAPI lists the queue");
    server.stop().await;
}
