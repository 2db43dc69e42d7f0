//! The Toss Payments adapter of the gateway port: confirm, look up by order
//! id and cancel over HTTP, each retried with exponential backoff and full
//! jitter, and each bounded by a per-request time-out and a total time.
//!
//! It owns the Toss wire types (`wire`), which the sandbox serves too. It
//! never logs the secret key, never unwraps network data, and never turns a
//! reply it could not read into a guess: what is not known good or known
//! bad comes back `Unknown`.
//!
//! What is retried: time-outs, connection errors, cut-off replies, 5xx,
//! 408, 429, `IDEMPOTENT_REQUEST_PROCESSING` (a previous attempt with the
//! same `Idempotency-Key` is still running) and Toss's "try again" codes
//! (`PROVIDER_ERROR`, `FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING`,
//! `FAILED_INTERNAL_SYSTEM_PROCESSING`, `UNKNOWN_PAYMENT_ERROR`). Every other
//! 4xx is final at once: card rejections, `NOT_FOUND_PAYMENT_SESSION` (the
//! payment window expired; a retry cannot revive it) and credential errors
//! (`UNAUTHORIZED_KEY`, `INVALID_API_KEY`): a wrong key is a configuration
//! error that no retry fixes, so it is a `Declined` with its code, logged
//! as an error, and nothing was charged.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderValue, StatusCode, header};
use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use base64::Engine;
use reqwest::{Method, RequestBuilder, Url};
use thiserror::Error;
use tokio::time::Instant;
use tracing::{debug, error, info, instrument, warn};

use super::{Approval, Declined, Gateway, Lookup, Outcome};

/// The Toss wire format: request and reply bodies, shared with the sandbox.
pub(crate) mod wire {
    use serde::{Deserialize, Serialize};

    /// `POST /v1/payments/confirm`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ConfirmRequest {
        pub payment_key: String,
        pub order_id: String,
        pub amount: i64,
    }

    /// `POST /v1/payments/{paymentKey}/cancel`. Without `cancelAmount` the
    /// whole payment is cancelled.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct CancelRequest {
        pub cancel_reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cancel_amount: Option<i64>,
    }

    /// The payment object, reduced to what we read. Toss sends many more
    /// fields; they are ignored.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Payment {
        pub payment_key: String,
        pub order_id: String,
        /// `DONE`, `CANCELED`, `PARTIAL_CANCELED`, `ABORTED`, `EXPIRED`,
        /// `READY`, `IN_PROGRESS`, `WAITING_FOR_DEPOSIT`.
        pub status: String,
        pub total_amount: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub balance_amount: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub currency: Option<String>,
        #[serde(default)]
        pub approved_at: Option<String>,
        #[serde(default)]
        pub cancels: Option<Vec<Cancel>>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Cancel {
        pub cancel_amount: i64,
        pub cancel_reason: String,
        pub canceled_at: String,
    }

    /// Every Toss error reply.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct ErrorBody {
        #[serde(default)]
        pub code: String,
        #[serde(default)]
        pub message: String,
    }
}

/// Toss error codes this module acts on.
pub mod codes {
    pub const ALREADY_PROCESSED_PAYMENT: &str = "ALREADY_PROCESSED_PAYMENT";
    pub const ALREADY_CANCELED_PAYMENT: &str = "ALREADY_CANCELED_PAYMENT";
    pub const NOT_FOUND_PAYMENT: &str = "NOT_FOUND_PAYMENT";
    pub const IDEMPOTENT_REQUEST_PROCESSING: &str = "IDEMPOTENT_REQUEST_PROCESSING";
    pub const REJECT_CARD_PAYMENT: &str = "REJECT_CARD_PAYMENT";
    pub const UNAUTHORIZED_KEY: &str = "UNAUTHORIZED_KEY";
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    pub const PROVIDER_ERROR: &str = "PROVIDER_ERROR";
    pub const FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING: &str = "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING";
    pub const FAILED_INTERNAL_SYSTEM_PROCESSING: &str = "FAILED_INTERNAL_SYSTEM_PROCESSING";
    pub const UNKNOWN_PAYMENT_ERROR: &str = "UNKNOWN_PAYMENT_ERROR";

    /// Codes that mean "try again", whatever the HTTP status.
    pub const RETRYABLE: [&str; 5] = [
        IDEMPOTENT_REQUEST_PROCESSING,
        PROVIDER_ERROR,
        FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING,
        FAILED_INTERNAL_SYSTEM_PROCESSING,
        UNKNOWN_PAYMENT_ERROR,
    ];

    /// Codes that say our credentials are wrong: final, and an operator
    /// must fix the configuration.
    pub const CREDENTIALS: [&str; 4] =
        [UNAUTHORIZED_KEY, "INVALID_API_KEY", "INCORRECT_BASIC_AUTH_FORMAT", "INVALID_AUTHORIZE_AUTH"];
}

/// How hard one call tries before its outcome is `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// One HTTP exchange, connect to last byte of the reply.
    pub request_timeout: Duration,
    /// The first backoff step; each later one doubles, up to `max_delay`.
    /// The sleep before a retry is uniform in zero..=step (full jitter), so
    /// many callers that failed together do not retry together.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The whole call, every attempt and sleep included. No attempt starts
    /// after it, and a running one is cut short at it.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(3),
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            max_attempts: 10,
            max_total: Duration::from_secs(20),
        }
    }
}

/// Why a `TossGateway` could not be built.
#[derive(Debug, Error)]
pub enum TossConfigError {
    #[error("the payment gateway base URL {url:?} is not valid: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("the payment gateway's extra trusted roots are not valid PEM certificates: {0}")]
    Roots(String),
    #[error("the payment gateway secret key is empty")]
    EmptySecret,
    #[error("the retry policy is not valid: {0}")]
    Policy(&'static str),
    #[error("failed to build the payment gateway HTTP client")]
    Client(#[source] reqwest::Error),
}

/// The largest reply body read; a bigger one counts as unreadable.
const MAX_REPLY_BYTES: usize = 1 << 20;

/// A Toss Payments client.
pub struct TossGateway {
    http: reqwest::Client,
    /// `{base}`, for example `https://api.tosspayments.com` or
    /// `http://127.0.0.1:8080/pg-sandbox`; paths are appended to it.
    base: Url,
    /// `Basic base64(secret:)`, marked sensitive so it never prints.
    authorization: HeaderValue,
    policy: RetryPolicy,
}

impl std::fmt::Debug for TossGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TossGateway").field("base", &self.base.as_str()).field("policy", &self.policy).finish()
    }
}

/// A final answer to one call: the gateway read our request and decided.
#[derive(Debug)]
enum Answer {
    Payment(wire::Payment),
    Refused(StatusCode, wire::ErrorBody),
}

/// Why an attempt gave no final answer: a short reason for logs and for
/// `Unknown`. Retried while the policy allows.
#[derive(Debug)]
struct Transient(String);

impl TossGateway {
    /// A client for the Toss API at `base_url` (no trailing `/v1`).
    pub fn new(base_url: &str, secret_key: &str, policy: RetryPolicy) -> Result<Self, TossConfigError> {
        Self::trusting(base_url, secret_key, policy, &[])
    }

    /// Like [`new`](Self::new), and an `https` gateway may also present a
    /// certificate issued by one of `extra_roots_pem` (PEM certificates: a
    /// private CA, a TLS egress proxy's), besides the system's roots.
    pub fn trusting(
        base_url: &str,
        secret_key: &str,
        policy: RetryPolicy,
        extra_roots_pem: &[u8],
    ) -> Result<Self, TossConfigError> {
        let bad = |reason: &str| TossConfigError::BaseUrl { url: base_url.to_owned(), reason: reason.to_owned() };
        let base = Url::parse(base_url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if base.cannot_be_a_base() || base.query().is_some() || base.fragment().is_some() {
            return Err(bad("it must be a plain base URL without query or fragment"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad("credentials belong in the secret key, not the URL"));
        }
        if secret_key.is_empty() {
            return Err(TossConfigError::EmptySecret);
        }
        if policy.max_attempts == 0 {
            return Err(TossConfigError::Policy("max_attempts must be at least 1"));
        }
        if policy.request_timeout.is_zero() || policy.max_total.is_zero() {
            return Err(TossConfigError::Policy("the time-outs must be positive"));
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{secret_key}:"));
        let mut authorization =
            HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| TossConfigError::EmptySecret)?;
        authorization.set_sensitive(true);
        let roots = if extra_roots_pem.is_empty() {
            Vec::new()
        } else {
            match reqwest::Certificate::from_pem_bundle(extra_roots_pem) {
                Ok(roots) if !roots.is_empty() => roots,
                Ok(_) => return Err(TossConfigError::Roots("no certificate found".into())),
                Err(e) => return Err(TossConfigError::Roots(e.to_string())),
            }
        };
        let http = reqwest::Client::builder()
            .tls_certs_merge(roots)
            .connect_timeout(policy.request_timeout)
            .timeout(policy.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("queueticket/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(TossConfigError::Client)?;
        Ok(Self { http, base, authorization, policy })
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// `{base}/a/b/c`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url, idempotency_key: Option<&str>) -> RequestBuilder {
        let request = self.http.request(method, url).header(header::AUTHORIZATION, self.authorization.clone());
        match idempotency_key {
            Some(key) => request.header("Idempotency-Key", key),
            None => request,
        }
    }

    /// Runs `request` until a final answer, the attempts run out or
    /// `deadline` passes. `Err` carries the reason the outcome is unknown.
    async fn call<F>(&self, op: &'static str, deadline: Instant, request: F) -> Result<Answer, String>
    where
        F: Fn() -> RequestBuilder + Send + Sync,
    {
        let attempts = AtomicU32::new(0);
        let attempt = || async {
            let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
            let budget = self.policy.request_timeout.min(deadline.saturating_duration_since(Instant::now()));
            let result = exchange(request(), budget).await;
            match &result {
                Ok(Answer::Payment(p)) => debug!(op, attempt = n, status = %p.status, "gateway answered"),
                Ok(Answer::Refused(status, e)) => {
                    info!(op, attempt = n, status = status.as_u16(), code = %e.code, "gateway refused")
                }
                Err(Transient(reason)) => info!(op, attempt = n, %reason, "gateway attempt failed"),
            }
            result
        };
        let retried = attempt.retry(Schedule::new(&self.policy, deadline));
        // The schedule and the per-attempt budget already end the call at
        // the deadline; this is the backstop that makes it a rule.
        let outcome = tokio::time::timeout_at(deadline + Duration::from_millis(50), retried).await;
        let n = attempts.load(Ordering::Relaxed);
        let tries = if n == 1 { "1 attempt".to_owned() } else { format!("{n} attempts") };
        match outcome {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(Transient(reason))) => Err(format!("{reason} after {tries}")),
            Err(_) => Err(format!("gateway gave no answer within {} ms ({tries})", self.policy.max_total.as_millis())),
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.policy.max_total
    }

    async fn lookup_until(&self, order_id: &str, deadline: Instant) -> Lookup {
        let url = self.url(&["v1", "payments", "orders", order_id]);
        match self.call("lookup", deadline, || self.request(Method::GET, url.clone(), None)).await {
            Ok(Answer::Payment(p)) if approved(&p.status) => Lookup::Found(approval(p)),
            // Ended without money taken.
            Ok(Answer::Payment(p)) if matches!(p.status.as_str(), "ABORTED" | "EXPIRED") => {
                debug!(status = %p.status, "the gateway's payment for the order ended unapproved");
                Lookup::NotFound
            }
            // Still being decided (`READY`, `IN_PROGRESS`, …): not known yet.
            Ok(Answer::Payment(p)) => Lookup::Unknown(format!("the gateway's payment is {}", p.status)),
            Ok(Answer::Refused(StatusCode::NOT_FOUND, e)) if e.code == codes::NOT_FOUND_PAYMENT => Lookup::NotFound,
            Ok(Answer::Refused(status, e)) => {
                log_refusal("lookup", status, &e);
                Lookup::Unknown(format!("gateway refused the lookup: {} {}", status.as_u16(), e.code))
            }
            Err(reason) => Lookup::Unknown(reason),
        }
    }

    /// `GET /v1/payments/{paymentKey}`.
    async fn payment_until(&self, payment_key: &str, deadline: Instant) -> Result<Answer, String> {
        let url = self.url(&["v1", "payments", payment_key]);
        self.call("get", deadline, || self.request(Method::GET, url.clone(), None)).await
    }
}

#[async_trait]
impl Gateway for TossGateway {
    #[instrument(name = "pg_confirm", skip_all, fields(order_id = %order_id, amount))]
    async fn confirm(&self, payment_key: &str, order_id: &str, amount: i64) -> Outcome {
        let deadline = self.deadline();
        let url = self.url(&["v1", "payments", "confirm"]);
        let body = wire::ConfirmRequest { payment_key: payment_key.to_owned(), order_id: order_id.to_owned(), amount };
        let answer = self
            .call("confirm", deadline, || self.request(Method::POST, url.clone(), Some(order_id)).json(&body))
            .await;
        match answer {
            Ok(Answer::Payment(p)) => {
                if p.total_amount != amount || p.order_id != order_id {
                    debug!(reply_amount = p.total_amount, reply_order = %p.order_id,
                        "the gateway's confirm reply does not match the request");
                }
                confirmed(p)
            }
            Ok(Answer::Refused(_, e)) if e.code == codes::ALREADY_PROCESSED_PAYMENT => {
                // An earlier attempt (ours, or another node's) went through;
                // its reply was lost. The gateway's record is the answer.
                info!("gateway says the payment was already processed; looking it up");
                match self.lookup_until(order_id, deadline).await {
                    Lookup::Found(approval) => Outcome::Approved(approval),
                    Lookup::NotFound => Outcome::Unknown(
                        "gateway says the payment was already processed but has no approved payment for the order"
                            .into(),
                    ),
                    Lookup::Unknown(reason) => Outcome::Unknown(reason),
                }
            }
            Ok(Answer::Refused(status, e)) => {
                log_refusal("confirm", status, &e);
                Outcome::Declined(Declined { code: e.code, message: e.message })
            }
            Err(reason) => {
                warn!(%reason, "confirm outcome unknown");
                Outcome::Unknown(reason)
            }
        }
    }

    #[instrument(name = "pg_lookup", skip_all, fields(order_id = %order_id))]
    async fn lookup(&self, order_id: &str) -> Lookup {
        self.lookup_until(order_id, self.deadline()).await
    }

    #[instrument(name = "pg_cancel", skip_all, fields(payment_key = %payment_key, idempotency_key = %idempotency_key))]
    async fn cancel(&self, payment_key: &str, reason: &str, idempotency_key: &str) -> Outcome {
        let deadline = self.deadline();
        let url = self.url(&["v1", "payments", payment_key, "cancel"]);
        let body = wire::CancelRequest { cancel_reason: reason.to_owned(), cancel_amount: None };
        let answer = self
            .call("cancel", deadline, || self.request(Method::POST, url.clone(), Some(idempotency_key)).json(&body))
            .await;
        match answer {
            Ok(Answer::Payment(p)) if p.status == "CANCELED" => Outcome::Approved(approval(p)),
            // A 200 that is not a whole refund (a partial one, say) is not
            // the refund asked for.
            Ok(Answer::Payment(p)) => Outcome::Unknown(format!("the refunded payment is {}", p.status)),
            Ok(Answer::Refused(_, e)) if e.code == codes::ALREADY_CANCELED_PAYMENT => {
                // Cancelled before, under another key: the refund stands.
                match self.payment_until(payment_key, deadline).await {
                    Ok(Answer::Payment(p)) if p.status == "CANCELED" => Outcome::Approved(approval(p)),
                    Ok(Answer::Payment(p)) => {
                        Outcome::Unknown(format!("gateway says already cancelled but the payment is {}", p.status))
                    }
                    Ok(Answer::Refused(status, e)) => {
                        Outcome::Unknown(format!("gateway refused to show the payment: {} {}", status.as_u16(), e.code))
                    }
                    Err(reason) => Outcome::Unknown(reason),
                }
            }
            Ok(Answer::Refused(status, e)) => {
                log_refusal("cancel", status, &e);
                Outcome::Declined(Declined { code: e.code, message: e.message })
            }
            Err(reason) => {
                warn!(%reason, "cancel outcome unknown");
                Outcome::Unknown(reason)
            }
        }
    }
}

/// One HTTP exchange within `budget`, its reply classified.
async fn exchange(request: RequestBuilder, budget: Duration) -> Result<Answer, Transient> {
    let work = async {
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(Transient(format!("gateway answered {} with an oversized body", status.as_u16())));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    };
    let (status, body) = match tokio::time::timeout(budget, work).await {
        Ok(result) => result?,
        Err(_) => return Err(Transient("gateway timed out".into())),
    };
    classify(status, &body)
}

fn transport(e: reqwest::Error) -> Transient {
    let what = if e.is_timeout() {
        "gateway timed out"
    } else if e.is_connect() {
        "gateway connection failed"
    } else if e.is_body() || e.is_decode() {
        "gateway reply was cut off"
    } else {
        "gateway request failed"
    };
    debug!(error = %e.without_url(), "{what}");
    Transient(what.into())
}

fn classify(status: StatusCode, body: &[u8]) -> Result<Answer, Transient> {
    if status.is_success() {
        return serde_json::from_slice::<wire::Payment>(body)
            .map(Answer::Payment)
            .map_err(|_| Transient(format!("gateway answered {} with an unreadable payment", status.as_u16())));
    }
    let error = serde_json::from_slice::<wire::ErrorBody>(body)
        .ok()
        .filter(|e| !e.code.is_empty())
        .unwrap_or_else(|| wire::ErrorBody { code: format!("HTTP_{}", status.as_u16()), message: String::new() });
    if retryable(status, &error.code) {
        Err(Transient(format!("gateway answered {} {}", status.as_u16(), error.code)))
    } else {
        Ok(Answer::Refused(status, error))
    }
}

fn retryable(status: StatusCode, code: &str) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || codes::RETRYABLE.contains(&code)
}

fn log_refusal(op: &'static str, status: StatusCode, e: &wire::ErrorBody) {
    if codes::CREDENTIALS.contains(&e.code.as_str()) {
        error!(op, status = status.as_u16(), code = %e.code,
            "the payment gateway rejected our credentials; check --pg-secret-key");
    } else {
        info!(op, status = status.as_u16(), code = %e.code, message = %e.message, "gateway declined");
    }
}

/// Statuses of a payment that was approved (and maybe refunded since).
fn approved(status: &str) -> bool {
    matches!(status, "DONE" | "CANCELED" | "PARTIAL_CANCELED")
}

/// What a 200 to a confirm means, by the payment's status.
fn confirmed(p: wire::Payment) -> Outcome {
    if approved(&p.status) {
        return Outcome::Approved(approval(p));
    }
    if matches!(p.status.as_str(), "ABORTED" | "EXPIRED") {
        info!(status = %p.status, "gateway answered the confirm with a failed payment");
        return Outcome::Declined(Declined {
            code: p.status.clone(),
            message: format!("the payment ended {}", p.status),
        });
    }
    Outcome::Unknown(format!("gateway answered the confirm with a payment in status {}", p.status))
}

fn approval(p: wire::Payment) -> Approval {
    Approval {
        payment_key: p.payment_key,
        order_id: p.order_id,
        amount: p.total_amount,
        status: p.status,
        approved_at: p.approved_at,
    }
}

/// Exponential steps with full jitter, ending when the attempts run out or
/// the next attempt would start at or past the deadline.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    steps: ExponentialBuilder,
    deadline: Instant,
}

impl Schedule {
    fn new(policy: &RetryPolicy, deadline: Instant) -> Self {
        let retries = usize::try_from(policy.max_attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        let steps = ExponentialBuilder::new()
            .with_min_delay(policy.first_delay)
            .with_max_delay(policy.max_delay.max(policy.first_delay))
            .with_factor(2.0)
            .with_max_times(retries);
        Self { steps, deadline }
    }
}

impl BackoffBuilder for Schedule {
    type Backoff = Delays;

    fn build(self) -> Delays {
        Delays { steps: self.steps.build(), deadline: self.deadline }
    }
}

struct Delays {
    steps: <ExponentialBuilder as BackoffBuilder>::Backoff,
    deadline: Instant,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let step = self.steps.next()?;
        let delay = step.mul_f64(rand::random::<f64>());
        (Instant::now() + delay < self.deadline).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use axum::Router;
    use axum::routing::post;

    use super::*;
    use crate::gateway::sandbox::{Sandbox, SandboxSettings, router};

    const SECRET: &str = "test_sk_unit";

    /// Quick retries so each test stays well under a second or two.
    fn fast() -> RetryPolicy {
        RetryPolicy {
            request_timeout: Duration::from_millis(500),
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_attempts: 6,
            max_total: Duration::from_secs(2),
        }
    }

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// A sandbox on a loopback port, mounted as the server mounts it.
    async fn sandbox(settings: SandboxSettings) -> (Arc<Sandbox>, String) {
        let sb = Arc::new(Sandbox::open(None, SECRET, settings).await.expect("sandbox"));
        let base = serve(Router::new().nest("/pg-sandbox", router(sb.clone()))).await;
        (sb, format!("{base}/pg-sandbox"))
    }

    fn client(base: &str, policy: RetryPolicy) -> TossGateway {
        TossGateway::new(base, SECRET, policy).expect("client")
    }

    async fn charges(sb: &Sandbox, order: &str) -> Vec<crate::gateway::sandbox::Charge> {
        sb.charges(Some(order), 100).await.expect("charges")
    }

    #[tokio::test]
    async fn ok_is_approved_with_the_amount() {
        let (sb, base) = sandbox(SandboxSettings::default()).await;
        let outcome = client(&base, fast()).confirm("ok-1", "order-ok", 50_000).await;
        let Outcome::Approved(a) = outcome else { panic!("expected approval, got {outcome:?}") };
        assert_eq!((a.payment_key.as_str(), a.order_id.as_str(), a.amount), ("ok-1", "order-ok", 50_000));
        assert_eq!(a.status, "DONE");
        assert!(a.approved_at.is_some());
        let ledger = charges(&sb, "order-ok").await;
        assert_eq!(ledger.len(), 1);
        assert_eq!((ledger[0].amount, ledger[0].status.as_str()), (50_000, "DONE"));
    }

    #[tokio::test]
    async fn decline_is_final_after_one_request() {
        let (sb, base) = sandbox(SandboxSettings::default()).await;
        let outcome = client(&base, fast()).confirm("decline-1", "order-decline", 1_000).await;
        let Outcome::Declined(d) = outcome else { panic!("expected a decline, got {outcome:?}") };
        assert_eq!(d.code, codes::REJECT_CARD_PAYMENT);
        assert_eq!(sb.confirm_requests("order-decline"), 1);
        assert!(charges(&sb, "order-decline").await.is_empty());
    }

    #[tokio::test]
    async fn flaky_is_approved_on_the_third_confirm() {
        let (sb, base) = sandbox(SandboxSettings::default()).await;
        let outcome = client(&base, fast()).confirm("flaky-1", "order-flaky", 2_000).await;
        assert!(matches!(outcome, Outcome::Approved(ref a) if a.amount == 2_000), "{outcome:?}");
        assert_eq!(sb.confirm_requests("order-flaky"), 3);
        assert_eq!(charges(&sb, "order-flaky").await.len(), 1);
    }

    #[tokio::test]
    async fn slow_is_approved_through_in_progress_retries_with_one_charge() {
        let settings = SandboxSettings { slow_ms: 300, ..SandboxSettings::default() };
        let (sb, base) = sandbox(settings).await;
        let policy = RetryPolicy { request_timeout: Duration::from_millis(100), max_attempts: 50, ..fast() };
        let outcome = client(&base, policy).confirm("slow-1", "order-slow", 3_000).await;
        assert!(matches!(outcome, Outcome::Approved(ref a) if a.amount == 3_000), "{outcome:?}");
        assert!(sb.confirm_requests("order-slow") >= 2);
        assert!(sb.in_progress_answers() >= 1, "a retry during the slow confirm must see 409");
        assert_eq!(charges(&sb, "order-slow").await.len(), 1);
    }

    #[tokio::test]
    async fn lost_reply_is_an_error_to_the_client() {
        let (_sb, base) = sandbox(SandboxSettings::default()).await;
        let http = reqwest::Client::new();
        let sent = http
            .post(format!("{base}/v1/payments/confirm"))
            .basic_auth(SECRET, Some(""))
            .header("Idempotency-Key", "order-lost-raw")
            .json(&serde_json::json!({"paymentKey": "lost-raw", "orderId": "order-lost-raw", "amount": 10}))
            .send()
            .await;
        let error = sent.expect_err("a lost reply must not reach the client as a status");
        assert!(error.status().is_none(), "{error:?}");
    }

    #[tokio::test]
    async fn lost_is_approved_on_retry_with_one_charge() {
        let (sb, base) = sandbox(SandboxSettings::default()).await;
        let outcome = client(&base, fast()).confirm("lost-1", "order-lost", 4_000).await;
        assert!(matches!(outcome, Outcome::Approved(ref a) if a.amount == 4_000), "{outcome:?}");
        assert_eq!(sb.confirm_requests("order-lost"), 2);
        assert_eq!(charges(&sb, "order-lost").await.len(), 1);
    }

    #[tokio::test]
    async fn forged_amount_reaches_the_caller_while_the_ledger_keeps_the_truth() {
        let (sb, base) = sandbox(SandboxSettings::default()).await;
        let outcome = client(&base, fast()).confirm("forged-1", "order-forged", 5_000).await;
        assert!(matches!(outcome, Outcome::Approved(ref a) if a.amount == 6_000), "{outcome:?}");
        let ledger = charges(&sb, "order-forged").await;
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger[0].amount, 5_000);
    }

    #[tokio::test]
    async fn the_same_key_twice_charges_once() {
        let (sb, base) = sandbox(SandboxSettings::default()).await;
        let gw = client(&base, fast());
        let first = gw.confirm("ok-twice", "order-twice", 7_000).await;
        let second = gw.confirm("ok-twice", "order-twice", 7_000).await;
        assert!(matches!(first, Outcome::Approved(_)), "{first:?}");
        assert_eq!(first, second);
        assert_eq!(sb.confirm_requests("order-twice"), 2);
        assert_eq!(charges(&sb, "order-twice").await.len(), 1);
    }

    #[tokio::test]
    async fn already_processed_is_resolved_by_a_lookup() {
        let (sb, base) = sandbox(SandboxSettings::default()).await;
        // Another client confirmed the order under another key.
        let http = reqwest::Client::new();
        let status = http
            .post(format!("{base}/v1/payments/confirm"))
            .basic_auth(SECRET, Some(""))
            .header("Idempotency-Key", "someone-else")
            .json(&serde_json::json!({"paymentKey": "ok-dup", "orderId": "order-dup", "amount": 900}))
            .send()
            .await
            .expect("send")
            .status();
        assert_eq!(status, StatusCode::OK);
        let outcome = client(&base, fast()).confirm("ok-dup", "order-dup", 900).await;
        assert!(matches!(outcome, Outcome::Approved(ref a) if a.amount == 900 && a.order_id == "order-dup"));
        assert_eq!(charges(&sb, "order-dup").await.len(), 1);
    }

    #[tokio::test]
    async fn lookup_finds_an_approved_order_and_not_another() {
        let (_sb, base) = sandbox(SandboxSettings::default()).await;
        let gw = client(&base, fast());
        assert_eq!(gw.lookup("order-none").await, Lookup::NotFound);
        let Outcome::Approved(approval) = gw.confirm("ok-look", "order-look", 1_234).await else { panic!() };
        assert_eq!(gw.lookup("order-look").await, Lookup::Found(approval));
        // A declined order has no approved payment either.
        let _ = gw.confirm("decline-look", "order-look-declined", 1).await;
        assert_eq!(gw.lookup("order-look-declined").await, Lookup::NotFound);
    }

    #[tokio::test]
    async fn cancel_marks_the_charge_canceled_and_is_idempotent() {
        let (sb, base) = sandbox(SandboxSettings::default()).await;
        let gw = client(&base, fast());
        assert!(matches!(gw.confirm("ok-cancel", "order-cancel", 8_000).await, Outcome::Approved(_)));
        let first = gw.cancel("ok-cancel", "buyer asked", "refund-1").await;
        let Outcome::Approved(ref a) = first else { panic!("expected a refund, got {first:?}") };
        assert_eq!((a.status.as_str(), a.amount), ("CANCELED", 8_000));
        assert_eq!(gw.cancel("ok-cancel", "buyer asked", "refund-1").await, first);
        // Another key finds it cancelled already: still a refund, not a decline.
        let other = gw.cancel("ok-cancel", "again", "refund-2").await;
        assert!(matches!(other, Outcome::Approved(ref a) if a.status == "CANCELED"), "{other:?}");
        let ledger = charges(&sb, "order-cancel").await;
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger[0].status, "CANCELED");
        assert!(matches!(gw.lookup("order-cancel").await, Lookup::Found(ref a) if a.status == "CANCELED"));
        let missing = gw.cancel("ok-nobody", "no such payment", "refund-3").await;
        assert!(matches!(missing, Outcome::Declined(ref d) if d.code == codes::NOT_FOUND_PAYMENT), "{missing:?}");
    }

    #[tokio::test]
    async fn a_wrong_secret_is_declined_at_once() {
        let (sb, base) = sandbox(SandboxSettings::default()).await;
        let gw = TossGateway::new(&base, "test_sk_wrong", fast()).expect("client");
        let outcome = gw.confirm("ok-auth", "order-auth", 1_000).await;
        assert!(matches!(outcome, Outcome::Declined(ref d) if d.code == codes::UNAUTHORIZED_KEY), "{outcome:?}");
        assert!(charges(&sb, "order-auth").await.is_empty());
        assert!(matches!(gw.lookup("order-auth").await, Lookup::Unknown(_)));
    }

    /// A gateway that answers 500 to everything, counting requests.
    async fn always_500() -> (Arc<AtomicUsize>, String) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = Router::new().route(
            "/v1/payments/confirm",
            post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::INTERNAL_SERVER_ERROR, r#"{"code":"FAILED_INTERNAL_SYSTEM_PROCESSING","message":"x"}"#)
                }
            }),
        );
        (hits, serve(app).await)
    }

    #[tokio::test]
    async fn always_failing_gateway_gives_unknown_after_the_attempts() {
        let (hits, base) = always_500().await;
        let policy = RetryPolicy { max_attempts: 4, ..fast() };
        let started = std::time::Instant::now();
        let outcome = client(&base, policy).confirm("ok-x", "order-500", 1).await;
        let Outcome::Unknown(reason) = outcome else { panic!("expected unknown, got {outcome:?}") };
        assert!(reason.contains("500") && reason.contains("after 4 attempts"), "{reason}");
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        assert!(started.elapsed() < policy.max_total);
    }

    #[tokio::test]
    async fn always_failing_gateway_gives_unknown_within_the_total_time() {
        let (hits, base) = always_500().await;
        let policy = RetryPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(100),
            max_attempts: 1_000,
            max_total: Duration::from_millis(400),
            ..fast()
        };
        let started = std::time::Instant::now();
        let outcome = client(&base, policy).confirm("ok-x", "order-500-total", 1).await;
        let elapsed = started.elapsed();
        assert!(matches!(outcome, Outcome::Unknown(_)), "{outcome:?}");
        assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
        let hits = hits.load(Ordering::SeqCst);
        assert!((2..100).contains(&hits), "{hits}");
    }

    /// The sandbox behind TLS with a certificate of a throwaway CA; the
    /// PEM of that CA.
    async fn tls_sandbox() -> (String, String) {
        use tokio_rustls::rustls::{self, pki_types::PrivatePkcs8KeyDer};
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        let key = PrivatePkcs8KeyDer::from(ca.key_pair.serialize_der());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![ca.cert.der().clone()], key.into())
            .expect("server certificate");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let sb = Arc::new(Sandbox::open(None, SECRET, SandboxSettings::default()).await.expect("sandbox"));
        let app = Router::new().nest("/pg-sandbox", router(sb));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that does not trust the CA hangs up here.
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req| {
                        tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new))
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        (format!("https://localhost:{port}/pg-sandbox"), ca.cert.pem())
    }

    #[tokio::test]
    async fn an_https_gateway_is_paid_through_when_its_certificate_is_trusted() {
        let (base, ca) = tls_sandbox().await;
        let gw = TossGateway::trusting(&base, SECRET, fast(), ca.as_bytes()).expect("client");
        let outcome = gw.confirm("ok-tls", "order-tls", 12_000).await;
        let Outcome::Approved(a) = outcome else { panic!("expected approval over TLS, got {outcome:?}") };
        assert_eq!((a.order_id.as_str(), a.amount), ("order-tls", 12_000));
        assert!(matches!(gw.lookup("order-tls").await, Lookup::Found(found) if found.payment_key == "ok-tls"));
        // Without the CA the same gateway is not trusted: nothing is known.
        let untrusting = TossGateway::new(&base, SECRET, RetryPolicy { max_attempts: 2, ..fast() }).expect("client");
        let outcome = untrusting.confirm("ok-tls-2", "order-tls-2", 12_000).await;
        assert!(matches!(outcome, Outcome::Unknown(_)), "an untrusted certificate must not be talked to: {outcome:?}");
    }

    #[tokio::test]
    async fn an_unreachable_gateway_gives_unknown_in_time() {
        // Bind and drop: nothing listens on the port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let policy = RetryPolicy { max_attempts: 3, ..fast() };
        let outcome = client(&format!("http://127.0.0.1:{port}"), policy).confirm("ok-x", "order-gone", 1).await;
        let Outcome::Unknown(reason) = outcome else { panic!("expected unknown, got {outcome:?}") };
        assert!(reason.contains("after 3 attempts"), "{reason}");
    }

    #[test]
    fn the_schedule_is_jittered_and_bounded() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        rt.block_on(async {
            let policy = RetryPolicy::default();
            let delays: Vec<_> = Schedule::new(&policy, Instant::now() + Duration::from_secs(3600)).build().collect();
            assert_eq!(delays.len(), 9, "10 attempts are 9 retries");
            let steps = [200, 400, 800, 1_600, 2_000, 2_000, 2_000, 2_000, 2_000].map(Duration::from_millis);
            for (delay, step) in delays.iter().zip(steps) {
                assert!(*delay <= step, "{delay:?} > {step:?}");
            }
            let none: Vec<_> = Schedule::new(&policy, Instant::now()).build().collect();
            assert!(none.is_empty(), "no retry may start past the deadline");
        });
    }

    #[test]
    fn config_errors_never_show_the_secret() {
        assert!(TossGateway::new("https://api.tosspayments.com", "test_sk_x", RetryPolicy::default()).is_ok());
        assert!(matches!(
            TossGateway::trusting("https://pg.test", "test_sk_x", RetryPolicy::default(), b"not pem"),
            Err(TossConfigError::Roots(_))
        ));
        assert!(TossGateway::new("not a url", "test_sk_x", RetryPolicy::default()).is_err());
        assert!(matches!(
            TossGateway::new("http://127.0.0.1:1", "", RetryPolicy::default()),
            Err(TossConfigError::EmptySecret)
        ));
        let gw = TossGateway::new("http://127.0.0.1:1/pg-sandbox/", "test_sk_hidden", RetryPolicy::default())
            .expect("client");
        assert!(!format!("{gw:?}").contains("test_sk_hidden"));
        assert_eq!(gw.url(&["v1", "payments", "orders", "a/b"]).path(), "/pg-sandbox/v1/payments/orders/a%2Fb");
    }

    #[test]
    fn retry_classes() {
        assert!(retryable(StatusCode::INTERNAL_SERVER_ERROR, "X"));
        assert!(retryable(StatusCode::CONFLICT, codes::IDEMPOTENT_REQUEST_PROCESSING));
        assert!(retryable(StatusCode::BAD_REQUEST, codes::PROVIDER_ERROR));
        assert!(!retryable(StatusCode::CONFLICT, "SOMETHING_ELSE"));
        assert!(!retryable(StatusCode::FORBIDDEN, codes::REJECT_CARD_PAYMENT));
        assert!(!retryable(StatusCode::BAD_REQUEST, "INVALID_CARD_EXPIRATION"));
        assert!(!retryable(StatusCode::NOT_FOUND, "NOT_FOUND_PAYMENT_SESSION"));
        assert!(!retryable(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED_KEY));
    }
}
