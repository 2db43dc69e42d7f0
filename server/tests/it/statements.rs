//! Settlement statements over REST, end to end: sales and a refund paid
//! through the sandbox reach the ledger; the statement's every figure is
//! worked out by hand here; the CSV sums to it; a closed statement never
//! changes and a later refund lands in the next one; other sellers and
//! buyers get nothing.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::common::{Backend, TestServer, http, seeded};
use crate::orders::{DOORS_OPEN, holding_at, key, order_for, pay_to_the_end};

const PATH: &str = "/api/v1/seller/statements";

fn period(from: &str, to: &str) -> Value {
    json!({"event": "demo-live", "from": from, "to": to})
}

/// Now moved by `days`, as RFC 3339.
fn days_from_now(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    t.format(&time::format_description::well_known::Rfc3339).expect("a time")
}

/// The default plan: 3 % of gross less seller-funded discounts.
fn fee(base: i64) -> i64 {
    base * 300 / 10_000
}

async fn post(server: &TestServer, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let r = http(server.addr, "POST", path, Some(token), body).await.expect("post");
    let v = if r.body.is_empty() { Value::Null } else { r.json() };
    (r.status, v)
}

async fn get(server: &TestServer, path: &str, token: &str) -> (u16, String) {
    let r = http(server.addr, "GET", path, Some(token), None).await.expect("get");
    (r.status, r.body)
}

/// Makes (or finds) the statement until its figures show `orders` paid
/// orders and `refunds` refunded: the ledger is fed by the outbox.
async fn statement_with(server: &TestServer, body: &Value, orders: i64, refunds: i64) -> Value {
    let seller = server.seller_token("demo");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, s) = post(server, PATH, &seller, Some(body.clone())).await;
        assert!(status == 201 || status == 200, "{status} {s}");
        if s["orders"] == orders && (s["refunds"].as_i64() > Some(0)) == (refunds > 0) {
            return s;
        }
        assert!(Instant::now() < deadline, "the ledger never reached the statement: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn balanced(s: &Value) {
    let n = |k: &str| s[k].as_i64().unwrap_or_else(|| panic!("{k} in {s}"));
    assert_eq!(
        n("net"),
        n("gross") - n("discounts_seller") - n("fees") + n("fee_clawbacks") - n("refunds"),
        "the balance: {s}"
    );
}

async fn a_statement_settles_sales_and_refunds(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let seller = server.seller_token("demo");
    let mut paid = Vec::new();
    for (user, seats) in [("u-st-1", &["C-2-1", "C-2-2"][..]), ("u-st-2", &["C-2-3"][..])] {
        let mut buyer = holding_at(server.addr, &server.buyer_token(user), seats).await;
        let (id, order) = order_for(&mut buyer, None).await;
        assert_eq!(pay_to_the_end(&mut buyer, &id, &key("ok")).await["status"], "paid");
        paid.push((id, order["subtotal"].as_i64().expect("subtotal"), seats.len() as i64));
    }
    let refund = |id: &str| format!("/api/v1/seller/orders/{id}/refund");
    let (status, _) = post(&server, &refund(&paid[0].0), &seller, Some(json!({"reason": "moved"}))).await;
    assert_eq!(status, 200);

    let (from, to, later_to) = (days_from_now(-30), days_from_now(30), days_from_now(60));
    let body = period(&from, &to);
    let s = statement_with(&server, &body, 2, 1).await;
    let (sub1, sub2) = (paid[0].1, paid[1].1);
    // By hand: two sales, the first refunded whole; no discounts.
    assert_eq!((s["status"].as_str(), s["currency"].as_str()), (Some("open"), Some("KRW")));
    assert_eq!(s["tickets"], paid[1].2, "{s}");
    assert_eq!(s["gross"], sub1 + sub2);
    assert_eq!((s["discounts_seller"].as_i64(), s["discounts_platform"].as_i64()), (Some(0), Some(0)));
    assert_eq!(s["fees"], fee(sub1) + fee(sub2));
    assert_eq!(s["fee_clawbacks"], fee(sub1));
    assert_eq!(s["refunds"], sub1);
    assert_eq!(s["net"], sub2 - fee(sub2));
    balanced(&s);
    // The same period again is the same statement.
    let (status, again) = post(&server, PATH, &seller, Some(body.clone())).await;
    assert_eq!((status, &again["id"]), (200, &s["id"]));

    // The CSV: one line per sale and refund, summing to the statement.
    let id = s["id"].as_str().expect("id");
    let (status, csv) = get(&server, &format!("{PATH}/{id}.csv"), &seller).await;
    assert_eq!(status, 200, "{csv}");
    let mut rows = csv.lines();
    let header: Vec<&str> = rows.next().expect("a header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("{name} in {header:?}"));
    let lines: Vec<Vec<String>> = rows.map(|l| l.split(',').map(str::to_owned).collect()).collect();
    assert_eq!(lines.len(), 3, "{csv}");
    for name in ["gross", "fees", "fee_clawbacks", "refunds", "net", "tickets"] {
        let sum: i64 = lines.iter().map(|l| l[col(name)].parse::<i64>().expect("a number")).sum();
        assert_eq!(sum, s[name].as_i64().expect("figure"), "{name} of the CSV");
    }

    // Closed: it never changes; a refund after the close goes to a later one.
    let (status, closed) = post(&server, &format!("{PATH}/{id}/close"), &seller, None).await;
    assert_eq!((status, closed["status"].as_str()), (200, Some("closed")), "{closed}");
    let (status, _) = post(&server, &refund(&paid[1].0), &seller, Some(json!({"reason": "moved"}))).await;
    assert_eq!(status, 200);
    let later = statement_with(&server, &period(&to, &later_to), 0, 1).await;
    assert_eq!((later["refunds"].as_i64(), later["fee_clawbacks"].as_i64()), (Some(sub2), Some(fee(sub2))));
    balanced(&later);
    let (_, now) = get(&server, &format!("{PATH}/{id}"), &seller).await;
    let now: Value = serde_json::from_str(&now).expect("json");
    for k in ["orders", "gross", "fees", "fee_clawbacks", "refunds", "net", "status"] {
        assert_eq!(now[k], closed[k], "{k} of a closed statement changed");
    }
    let (status, listed) = get(&server, &format!("{PATH}?limit=1"), &seller).await;
    let listed: Value = serde_json::from_str(&listed).expect("json");
    assert_eq!((status, listed["items"].as_array().map(Vec::len)), (200, Some(1)), "{listed}");
    assert!(listed["next"].is_string());

    // Another seller sees none of it; a buyer may not ask; bad input names the field.
    let other = server.seller_token("other");
    assert_eq!(get(&server, &format!("{PATH}/{id}"), &other).await.0, 404);
    assert_eq!(get(&server, &format!("{PATH}/{id}.csv"), &other).await.0, 404);
    assert_eq!(post(&server, &format!("{PATH}/{id}/close"), &other, None).await.0, 404);
    assert_eq!(post(&server, PATH, &other, Some(body.clone())).await.0, 404, "another seller's event");
    let (_, theirs) = get(&server, PATH, &other).await;
    assert!(theirs.contains("\"items\":[]"), "{theirs}");
    let buyer = server.buyer_token("u-st-1");
    assert_eq!(get(&server, PATH, &buyer).await.0, 403);
    let (status, bad) = post(&server, PATH, &seller, Some(period("yesterday", &to))).await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"]["fields"]["from"].is_string(), "{bad}");
    let (status, bad) = post(&server, PATH, &seller, Some(period(&to, &from))).await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"]["fields"]["to"].is_string(), "{bad}");
    assert_eq!(get(&server, &format!("{PATH}/st-missing"), &seller).await.0, 404);
    server.stop().await;
}

on_both_backends!(a_statement_settles_sales_and_refunds);
