//! The served OpenAPI document against the served routes, both ways: every
//! operation it names is answered by a route (not by the fallback), and
//! every route the server's code registers is in it, so a route added with
//! a plain `.route(...)` instead of `routes!(...)` fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::common::{Backend, EVENT, TestServer, http};

/// Routes that are served but are no REST operation: the buyer page and
/// the files beside it.
/// The page, and the payment sandbox: it speaks the Toss Payments API
/// (docs/protocol.md), not ours, under `/pg-sandbox`.
const NOT_IN_DOCUMENT: &[&str] = &[
    "/",
    "/{*path}",
    "/pg-sandbox",
    "/v1/charges",
    "/v1/payments/confirm",
    "/v1/payments/orders/{order_id}",
    "/v1/payments/{payment_key}",
    "/v1/payments/{payment_key}/cancel",
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The (method, path template) of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("the document has paths");
    let mut ops = BTreeSet::new();
    for (path, item) in paths {
        for method in METHODS {
            if item.get(*method).is_some() {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// Whether the router answered a request itself: neither the fallback (or
/// the page's catch-all, which answers the same) nor a 405 from a path that
/// exists for other methods.
fn routed(status: u16, body: &str) -> bool {
    let fallback =
        status == 404 && serde_json::from_str::<Value>(body).is_ok_and(|v| v["error"]["message"] == "route not found");
    status != 405 && !fallback
}

/// The path literals of every `.route(…)`, `.route_service(…)`, `.nest(…)`
/// and `.nest_service(…)` in the server's code outside its unit tests, with
/// the file that registers each.
fn registered_routes() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default().to_owned();
                out.push((path.display().to_string(), code));
            }
        }
    }
    let mut files = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let mut routes = BTreeMap::new();
    for (file, code) in &files {
        for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
            for (at, _) in code.match_indices(call) {
                let rest = code[at + call.len()..].trim_start();
                if let Some(literal) = rest.strip_prefix('"').and_then(|r| r.split_once('"')).map(|(l, _)| l) {
                    routes.insert(literal.to_owned(), file.clone());
                }
            }
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_and_the_routes_name_the_same_operations() {
    let server = TestServer::start(Backend::Memory).await;
    let r = http(server.addr, "GET", "/api/v1/openapi.json", None, None).await.expect("document");
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = r.json();
    let ops = operations(&doc);
    assert!(ops.len() >= 14, "too few operations: {ops:?}");

    // Every documented operation reaches a handler.
    for (method, path) in &ops {
        let target = path
            .replace("{event}", EVENT)
            .replace("{campaign}", "demo-10-percent")
            .replace("{order}", "ord-none")
            .replace("{statement}", "st-none")
            .replace("{venue}", "v-none");
        assert!(!target.contains('{'), "{path}: give its parameter a value here");
        let r = http(server.addr, method, &target, None, None).await.expect("request");
        assert!(routed(r.status, &r.body), "{method} {path} is documented but not served: {} {}", r.status, r.body);
    }

    // Every route the code registers is documented (or is the page).
    let documented: BTreeSet<&str> = ops.iter().map(|(_, p)| p.as_str()).collect();
    let registered = registered_routes();
    for route in NOT_IN_DOCUMENT {
        assert!(registered.contains_key(*route), "{route} is no longer registered; drop it from NOT_IN_DOCUMENT");
    }
    let missing: Vec<_> = registered
        .iter()
        .filter(|(r, _)| !documented.contains(r.as_str()) && !NOT_IN_DOCUMENT.contains(&r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "routes served but missing from the OpenAPI document: {missing:?}; register them with \
         `OpenApiRouter::routes(routes!(handler))` and a `#[utoipa::path]` on the handler \
         (or, for what is no REST operation, list them in NOT_IN_DOCUMENT)"
    );
    let r = http(server.addr, "GET", "/", None, None).await.expect("page");
    assert_eq!(r.status, 200, "the page is served");

    // The routes that only `routes!` registers (they have no `.route` call)
    // are found through the document, and the document through them.
    assert!(documented.contains("/api/v1/events/{event}/queue"), "{documented:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reference_in_the_document_resolves() {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let server = TestServer::start(Backend::Memory).await;
    let doc = http(server.addr, "GET", "/api/v1/openapi.json", None, None).await.expect("document").json();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in &found {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{r}: only local references"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    // The bodies the contract names, with the fields the old hand-written
    // document had lost.
    let admitted = &doc["components"]["schemas"]["Admitted"]["required"];
    for field in ["pass", "expires_at", "max_seats_per_buyer", "hold_s"] {
        assert!(admitted.as_array().unwrap().iter().any(|f| f == field), "admitted lacks {field}");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    server.stop().await;
}
