//! Identity and access: tokens in every form the spec allows, every way a
//! token can be wrong, roles, seller scoping, and the operator CLI.

use qt_protocol::{Claims, Role};
use serde_json::json;

use crate::common::{Backend, Client, EVENT, Options, TestServer, claims, http, mint, temp_dir, upgrade_status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_before_any_socket_exists() {
    let server = TestServer::start(Backend::Memory).await;
    assert_eq!(upgrade_status(server.addr, None).await, 401);
    assert_eq!(upgrade_status(server.addr, Some("garbage")).await, 401);
    assert_eq!(upgrade_status(server.addr, Some(&server.expired_token("u"))).await, 401);
    let forged = mint(b"a-different-secret-entirely", &claims("u", Role::Admin, 60));
    assert_eq!(upgrade_status(server.addr, Some(&forged)).await, 401);
    assert_eq!(upgrade_status(server.addr, Some(&server.seller_token("demo"))).await, 403);
    assert_eq!(upgrade_status(server.addr, Some(&server.buyer_token("u"))).await, 101);
    // The header works too (for non-browser clients).
    let mut c = Client::connect_with_header(server.addr, &server.buyer_token("hdr")).await;
    assert_eq!(c.user, "hdr");
    assert_eq!(c.ping().await["type"], "pong");
    assert_eq!(server.metric("qt_joins_total").await, 0.0, "nothing happened for the refused ones");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_checks_roles_and_scopes_sellers_to_their_own_events() {
    let server = TestServer::start(Backend::Memory).await;
    let queue = format!("/api/v1/events/{EVENT}/queue");
    let settings = format!("/api/v1/seller/events/{EVENT}/queue");
    let buyer = server.buyer_token("b");
    let demo = server.seller_token("demo");
    let other = server.seller_token("someone-else");
    let check = |method: &'static str,
                 path: String,
                 token: Option<String>,
                 body: Option<serde_json::Value>,
                 want: u16,
                 code: &'static str| {
        let addr = server.addr;
        async move {
            let r = http(addr, method, &path, token.as_deref(), body).await.unwrap();
            assert_eq!(r.status, want, "{method} {path}: {}", r.body);
            if !code.is_empty() {
                assert_eq!(r.json()["error"]["code"], code, "{method} {path}");
            }
            r
        }
    };
    check("POST", queue.clone(), None, None, 401, "unauthorized").await;
    check("POST", queue.clone(), Some(server.expired_token("b")), None, 401, "unauthorized").await;
    check("POST", queue.clone(), Some(demo.clone()), None, 403, "forbidden").await;
    check("GET", settings.clone(), Some(buyer.clone()), None, 403, "forbidden").await;
    check("GET", settings.clone(), None, None, 401, "unauthorized").await;
    // Another seller sees the demo event as if it did not exist.
    check("GET", settings.clone(), Some(other.clone()), None, 404, "not_found").await;
    check("PATCH", settings.clone(), Some(other.clone()), Some(json!({"paused": true})), 404, "not_found").await;
    let own = check("GET", "/api/v1/seller/events".into(), Some(other), None, 200, "").await;
    assert_eq!(own.json(), json!([]));
    // Bad values change nothing.
    let before = check("GET", settings.clone(), Some(demo.clone()), None, 200, "").await.json();
    for bad in [
        json!({"rate_per_min": 0}),
        json!({"max_active": -1}),
        json!({"window_s": 1}),
        json!({"paused": "yes"}),
        json!({"surprise": 1}),
    ] {
        check("PATCH", settings.clone(), Some(demo.clone()), Some(bad), 400, "bad_request").await;
    }
    let after = check("GET", settings.clone(), Some(demo.clone()), None, 200, "").await.json();
    assert_eq!(before, after);
    let changed = check(
        "PATCH",
        settings.clone(),
        Some(demo.clone()),
        Some(json!({"rate_per_min": 77, "paused": true})),
        200,
        "",
    )
    .await
    .json();
    assert_eq!((changed["rate_per_min"].as_u64(), changed["paused"].as_bool()), (Some(77), Some(true)));
    assert_eq!(changed["max_active"], before["max_active"]);
    let mine = check("GET", "/api/v1/seller/events".into(), Some(demo), None, 200, "").await.json();
    assert_eq!(mine[0]["id"], EVENT);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_get_working_buyer_tokens_unless_disabled() {
    let server = TestServer::start(Backend::Memory).await;
    let r = http(server.addr, "POST", "/api/v1/guest", None, None).await.unwrap();
    assert_eq!(r.status, 201);
    let body = r.json();
    let token = body["token"].as_str().unwrap();
    let mut c = Client::connect(server.addr, token).await;
    assert_eq!(c.user, body["user"].as_str().unwrap());
    assert!(c.join(EVENT).await["type"].is_string());
    server.stop().await;

    let mut opts = Options::new(Backend::Memory);
    opts.tweak = |cfg| cfg.guest = Some(false);
    let closed = TestServer::start_with(opts).await;
    let r = http(closed.addr, "POST", "/api/v1/guest", None, None).await.unwrap();
    assert_eq!(r.status, 403);
    closed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_work_with_a_configured_public_key() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut opts = Options::new(Backend::Memory);
    opts.tweak = |cfg| {
        let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        cfg.jwt_public_key = Some(f.join("rsa_public.pem"));
    };
    let server = TestServer::start_with(opts).await;
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(fixtures.join("rsa_private.pem")).unwrap()).unwrap();
    let rsa_claims = Claims { iat: None, ..claims("rsa-buyer", Role::Buyer, 60) };
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    let token = jsonwebtoken::encode(&header, &rsa_claims, &key).unwrap();
    let mut c = Client::connect(server.addr, &token).await;
    assert_eq!(c.user, "rsa-buyer");
    assert_eq!(c.ping().await["type"], "pong");
    // HS256 with the server secret still works alongside.
    Client::connect(server.addr, &server.buyer_token("hs")).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_command_signs_with_the_servers_key_on_the_same_data_dir() {
    let dir = temp_dir();
    let dir_path = dir.path().to_path_buf();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_queueticket"))
        .args(["token", "--role", "seller", "--sub", "s-1", "--seller", "demo", "--data-dir"])
        .arg(&dir_path)
        .env_remove("QT_JWT_SECRET")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    // The command created the data directory's secret; a server on it uses it.
    let mut opts = Options::new(Backend::Memory);
    opts.data_dir = Some(dir);
    opts.secret_from_data_dir = true;
    let server = TestServer::start_with(opts).await;
    let r =
        http(server.addr, "GET", &format!("/api/v1/seller/events/{EVENT}/queue"), Some(&token), None).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // A seller token without a seller id is refused by the command.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_queueticket"))
        .args(["token", "--role", "seller", "--sub", "s-1", "--data-dir"])
        .arg(&dir_path)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    // And a token the server's harness mints from the same file works too.
    let mut c = server.buyer("cli-buyer").await;
    assert_eq!(c.ping().await["type"], "pong");
    server.stop().await;
}
