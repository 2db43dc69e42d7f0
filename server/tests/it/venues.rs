//! Venues over REST, end to end: JSON and CSV (50,000 seats in one
//! request), every wrong field named, reads, replacement and removal only
//! while no event uses the venue, and other sellers and buyers kept out.

use serde_json::{Value, json};

use crate::common::{Backend, TestServer, http};

const PATH: &str = "/api/v1/seller/venues";

async fn csv(server: &TestServer, method: reqwest::Method, path: &str, token: &str, body: String) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("http://{}{path}", server.addr))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn call(server: &TestServer, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let r = http(server.addr, method, path, Some(token), body).await.expect("request");
    let v = if r.body.is_empty() { Value::Null } else { r.json() };
    (r.status, v)
}

fn seat(section: &str, row: &str, number: i64) -> Value {
    json!({"section": section, "row": row, "number": number, "x": number * 10, "y": 5})
}

async fn sellers_manage_their_venues(backend: Backend) {
    let server = TestServer::start(backend).await;
    let seller = server.seller_token("acme");

    // JSON: seat ids from section-row-number unless given.
    let body = json!({"id": "acme-hall", "name": "Acme Hall", "seats": [
        seat("A", "1", 1), seat("A", "1", 2), {"id": "box-1", "section": "Box", "row": "1", "number": 1, "x": 0, "y": 0},
    ]});
    let (status, made) = call(&server, "POST", PATH, &seller, Some(body.clone())).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made, json!({"id": "acme-hall", "name": "Acme Hall", "seats": 3, "sections": ["A", "Box"]}));
    let (status, again) = call(&server, "POST", PATH, &seller, Some(body)).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("conflict")), "{again}");
    let (status, read) = call(&server, "GET", &format!("{PATH}/acme-hall"), &seller, None).await;
    assert_eq!(status, 200, "{read}");
    let ids: Vec<&str> = read["seats"].as_array().expect("seats").iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&"A-1-2") && ids.contains(&"box-1"), "{ids:?}");

    // Every wrong field is named; nothing is stored.
    let bad = json!({"id": "acme-bad", "name": " ", "seats": [seat("A", "1", 1), seat("A", "1", 1),
        {"id": "A|9", "section": "A", "row": "1", "number": 9, "x": 0, "y": 0}]});
    let (status, err) = call(&server, "POST", PATH, &seller, Some(bad)).await;
    assert_eq!(status, 400, "{err}");
    let fields = &err["error"]["fields"];
    for f in ["name", "seats[1].id", "seats[2].id"] {
        assert!(fields[f].is_string(), "{f} in {err}");
    }
    assert_eq!(call(&server, "GET", &format!("{PATH}/acme-bad"), &seller, None).await.0, 404);
    let (status, err) = csv(
        &server,
        reqwest::Method::POST,
        &format!("{PATH}?id=acme-csv-bad&name=X"),
        &seller,
        "section,row,number,x,y\nA,1,1,0,0\nA,1,two,0,0\n".into(),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["fields"]["csv line 3"].is_string(), "{err}");

    // CSV: 50,000 seats in one request.
    let mut text = String::from("section,row,number,x,y\n");
    for i in 0..50_000 {
        text.push_str(&format!("S{},{},{},{},{}\n", i / 5_000, (i / 100) % 50, i % 100, i % 100, i / 100));
    }
    let (status, big) =
        csv(&server, reqwest::Method::POST, &format!("{PATH}?id=acme-arena&name=Acme%20Arena"), &seller, text).await;
    assert_eq!(status, 201, "{big}");
    assert_eq!((big["seats"].as_u64(), big["sections"].as_array().map(Vec::len)), (Some(50_000), Some(10)));

    // Lists page through every venue once.
    let (status, page) = call(&server, "GET", &format!("{PATH}?limit=1"), &seller, None).await;
    assert_eq!((status, page["items"][0]["id"].as_str()), (200, Some("acme-arena")), "{page}");
    let next = page["next"].as_str().expect("a next page").to_owned();
    let (_, rest) = call(&server, "GET", &format!("{PATH}?limit=10&after={next}"), &seller, None).await;
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(1), "{rest}");
    assert!(rest["next"].is_null());

    // Replaced while unused; the id in the body must be the venue's.
    let (status, put) = call(
        &server,
        "PUT",
        &format!("{PATH}/acme-hall"),
        &seller,
        Some(json!({"name": "Acme Hall II", "seats": [seat("C", "1", 1)]})),
    )
    .await;
    assert_eq!((status, put["seats"].as_u64(), put["name"].as_str()), (200, Some(1), Some("Acme Hall II")), "{put}");
    let (status, err) = call(
        &server,
        "PUT",
        &format!("{PATH}/acme-hall"),
        &seller,
        Some(json!({"id": "other", "name": "X", "seats": [seat("C", "1", 1)]})),
    )
    .await;
    assert_eq!((status, err["error"]["fields"]["id"].is_string()), (400, true), "{err}");

    // Other sellers and buyers.
    let other = server.seller_token("rival");
    for (method, path) in [("GET", format!("{PATH}/acme-hall")), ("DELETE", format!("{PATH}/acme-hall"))] {
        assert_eq!(call(&server, method, &path, &other, None).await.0, 404, "{method} {path}");
    }
    let (status, _) = call(
        &server,
        "PUT",
        &format!("{PATH}/acme-hall"),
        &other,
        Some(json!({"name": "Mine", "seats": [seat("C", "1", 1)]})),
    )
    .await;
    assert_eq!(status, 404);
    let (_, theirs) = call(&server, "GET", PATH, &other, None).await;
    assert_eq!(theirs["items"], json!([]));
    assert_eq!(call(&server, "GET", PATH, &server.buyer_token("u-v"), None).await.0, 403);

    // The demo's hall has an event: it neither changes nor goes.
    let demo = server.seller_token("demo");
    let (_, halls) = call(&server, "GET", PATH, &demo, None).await;
    let hall = halls["items"][0]["id"].as_str().expect("the demo hall").to_owned();
    let (status, err) = call(&server, "DELETE", &format!("{PATH}/{hall}"), &demo, None).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("conflict")), "{err}");
    let (status, _) = call(
        &server,
        "PUT",
        &format!("{PATH}/{hall}"),
        &demo,
        Some(json!({"name": "Gone", "seats": [seat("C", "1", 1)]})),
    )
    .await;
    assert_eq!(status, 409);

    // Removed when unused.
    assert_eq!(call(&server, "DELETE", &format!("{PATH}/acme-hall"), &seller, None).await.0, 204);
    assert_eq!(call(&server, "GET", &format!("{PATH}/acme-hall"), &seller, None).await.0, 404);
    server.stop().await;
}

on_both_backends!(sellers_manage_their_venues);
