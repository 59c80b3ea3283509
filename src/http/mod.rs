//! The HTTP API of `driftwatch run` and `driftwatch demo`: health checks, Prometheus metrics,
//! a JSON query API, active alerts and a status page.
//!
//! Ingestion never waits on a request. The service loop hands the engine to a [`Publisher`]
//! (its [`Observer`]), which at most every `http.publish_interval` — and never more often than
//! keeps its own cost under ~5% of the loop — copies what the API needs into an immutable
//! [`View`] and swaps it in with one atomic pointer store. Requests read whichever view is
//! current; Prometheus text is rendered once per view, on the first scrape, by a request
//! thread. The history behind the charts is sampled from the views by a task of the server.

mod gates;
mod group;
mod history;
pub mod metrics;
mod query;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration as StdDuration, Instant};

use arc_swap::ArcSwap;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::{json, Value};

use crate::clock::wall_ms;
use crate::command::{Command, CommandKind, Reason};
pub use crate::config::http::{HttpConfig, MetricsTargets};
use crate::config::Kind;
use crate::engine::{Counters, Detector, Engine, TargetOverview, TargetState};
use crate::event::BadReason;
use crate::labels::JoinCounters;
use crate::observe::{Observer, ServiceStats};
use crate::time::{format_rfc3339, parse_rfc3339_unbounded, Millis};

use history::History;
use query::{Params, QueryError};

/// One published decision.
#[derive(Debug)]
pub struct Decided {
    /// Position in the log (1, 2, …), used as the pagination cursor.
    pub seq: u64,
    /// The command as published.
    pub command: Command,
}

/// An immutable copy of what the API serves, published by the service loop.
#[derive(Debug, Default)]
pub struct View {
    /// Increases with each publication.
    pub generation: u64,
    /// Wall-clock time it was built.
    pub generated_at: Millis,
    /// State restored and partitions assigned.
    pub ready: bool,
    /// Event-time watermark.
    pub watermark: Option<Millis>,
    /// Service counters.
    pub stats: ServiceStats,
    /// Messages per second over the last publication interval.
    pub events_per_second: f64,
    /// Engine counters.
    pub counters: Counters,
    /// Label-join counters.
    pub joins: JoinCounters,
    /// Request/response pairing counters (fleet inputs), and halves waiting.
    pub pairs: (crate::engine::PairCounters, usize),
    /// Every target, sorted by kind, name and version.
    pub targets: Vec<TargetOverview>,
    /// Published decisions, oldest first.
    pub decisions: Arc<Vec<Arc<Decided>>>,
    /// Published decisions by (command, reason), since the process started.
    pub decision_counts: Arc<BTreeMap<(&'static str, &'static str), u64>>,
    /// Which versions get per-version series in `/metrics`.
    pub metrics_targets: MetricsTargets,
    /// Error-rate e-value threshold, drift PSI threshold, latency ratio threshold.
    pub thresholds: Thresholds,
    metrics: OnceLock<metrics::Rendered>,
    /// Each target's JSON, in the order of `targets`, rendered on first use.
    target_json: OnceLock<Vec<String>>,
    /// The active alerts, computed on first use.
    alerts: OnceLock<Vec<Value>>,
}

/// Thresholds of the policy in force, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Thresholds {
    /// Error-rate e-value threshold.
    pub error_rate_e_value: f64,
    /// PSI threshold.
    pub drift_psi: f64,
    /// Latency quantile ratio threshold.
    pub latency_ratio: f64,
    /// Accuracy drop (lower bound) that triggers a rollback or retrain.
    pub accuracy_drop: f64,
}

impl View {
    fn target(&self, kind: Kind, name: &str, version: &str) -> Option<&TargetOverview> {
        self.targets
            .binary_search_by(|t| (t.kind, t.name.as_str(), t.version.as_str()).cmp(&(kind, name, version)))
            .ok()
            .map(|i| &self.targets[i])
    }

    /// The newest published `kind` command about target `t`, if still retained.
    fn last_decision(&self, kind: CommandKind, t: &TargetOverview) -> Option<&Arc<Decided>> {
        self.decisions.iter().rev().find(|d| {
            d.command.command == kind
                && d.command.target.kind == t.kind
                && d.command.target.name == t.name
                && d.command.target.version == t.version
        })
    }

    /// The Prometheus exposition of this view, rendered on first use.
    pub fn metrics(&self) -> &metrics::Rendered {
        self.metrics.get_or_init(|| metrics::render(self))
    }

    /// The JSON of every target, rendered on first use.
    fn targets_json(&self) -> &[String] {
        self.target_json.get_or_init(|| self.targets.iter().map(|t| target_json(t).to_string()).collect())
    }

    /// The active findings, computed on first use.
    pub fn alerts(&self) -> &[Value] {
        self.alerts.get_or_init(|| active_alerts(self))
    }
}

/// State shared by the publisher and the server.
#[derive(Debug)]
pub struct Shared {
    view: ArcSwap<View>,
    history: Mutex<History>,
    cfg: HttpConfig,
    token: Option<String>,
    /// False once the service loop has ended.
    alive: AtomicBool,
    /// False from a failed Kafka session until the next one publishes a view.
    session_ok: AtomicBool,
}

impl Shared {
    /// Shared state for a server with this config (token already resolved).
    pub fn new(cfg: HttpConfig) -> Arc<Shared> {
        let token = cfg.token.clone();
        Arc::new(Shared {
            view: ArcSwap::from_pointee(View::default()),
            history: Mutex::new(History::new(cfg.history_points, cfg.history_step.0)),
            cfg,
            token,
            alive: AtomicBool::new(true),
            session_ok: AtomicBool::new(true),
        })
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// Marks the service loop as ended: `/healthz` fails from now on.
    pub fn service_ended(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

/// The [`Observer`] that publishes views for the server.
#[derive(Debug)]
pub struct Publisher {
    shared: Arc<Shared>,
    next_at: Instant,
    generation: u64,
    last_rate: Option<(Instant, u64)>,
    rate: f64,
    log: VecDeque<Arc<Decided>>,
    ids: HashSet<String>,
    seq: u64,
    counts: BTreeMap<(&'static str, &'static str), u64>,
    published: Arc<Vec<Arc<Decided>>>,
    published_counts: Arc<BTreeMap<(&'static str, &'static str), u64>>,
    log_changed: bool,
}

impl Publisher {
    /// A publisher feeding `shared`.
    pub fn new(shared: Arc<Shared>) -> Publisher {
        Publisher {
            shared,
            next_at: Instant::now(),
            generation: 0,
            last_rate: None,
            rate: 0.0,
            log: VecDeque::new(),
            ids: HashSet::new(),
            seq: 0,
            counts: BTreeMap::new(),
            published: Arc::new(Vec::new()),
            published_counts: Arc::new(BTreeMap::new()),
            log_changed: false,
        }
    }

    fn record(&mut self, c: &Command) {
        if !self.ids.insert(c.command_id.clone()) {
            return;
        }
        self.seq += 1;
        self.log.push_back(Arc::new(Decided { seq: self.seq, command: c.clone() }));
        while self.log.len() > self.shared.cfg.decision_retention {
            if let Some(old) = self.log.pop_front() {
                self.ids.remove(&old.command.command_id);
            }
        }
        *self.counts.entry((c.command.as_str(), c.reason.as_str())).or_default() += 1;
        self.log_changed = true;
    }
}

impl Observer for Publisher {
    fn wants_views(&self) -> bool {
        true
    }

    fn engine(&mut self, engine: &Engine, stats: &ServiceStats) {
        self.engines(&[engine], stats);
    }

    fn engines(&mut self, engines: &[&Engine], stats: &ServiceStats) {
        let now = Instant::now();
        if now < self.next_at {
            return;
        }
        if let Some((at, messages)) = self.last_rate {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                self.rate = stats.messages.saturating_sub(messages) as f64 / secs;
            }
        }
        self.last_rate = Some((now, stats.messages));
        if self.log_changed {
            self.published = Arc::new(self.log.iter().cloned().collect());
            self.published_counts = Arc::new(self.counts.clone());
            self.log_changed = false;
        }
        self.generation += 1;
        // Several engines (the tasks a group member owns): their targets together, counters
        // summed, and the oldest watermark.
        let mut counters = Counters::default();
        let mut joins = JoinCounters::default();
        let mut targets = Vec::new();
        for e in engines {
            counters.add(e.counters());
            let j = e.join_counters();
            joins.predictions_evicted += j.predictions_evicted;
            joins.labels_unmatched += j.labels_unmatched;
            joins.matched += j.matched;
            joins.predictions_without_value += j.predictions_without_value;
            targets.extend(e.overview());
        }
        if engines.len() > 1 {
            targets.sort_by(|a, b| (a.kind, &a.name, &a.version).cmp(&(b.kind, &b.name, &b.version)));
        }
        let first = engines.first();
        let view = View {
            generation: self.generation,
            generated_at: wall_ms(),
            ready: stats.ready,
            watermark: engines.iter().map(|e| e.watermark()).min().flatten(),
            stats: stats.clone(),
            events_per_second: self.rate,
            counters,
            joins,
            pairs: first.map(|e| (e.pair_counters(), e.pairs_waiting())).unwrap_or_default(),
            targets,
            decisions: self.published.clone(),
            decision_counts: self.published_counts.clone(),
            metrics_targets: self.shared.cfg.metrics_targets,
            thresholds: first
                .map(|e| {
                    let cfg = e.config();
                    Thresholds {
                        error_rate_e_value: e.error_rate_e_value_threshold(),
                        drift_psi: cfg.drift.psi_threshold,
                        latency_ratio: cfg.latency.max_ratio,
                        accuracy_drop: cfg.accuracy.rollback_drop,
                    }
                })
                .unwrap_or_default(),
            metrics: OnceLock::new(),
            target_json: OnceLock::new(),
            alerts: OnceLock::new(),
        };
        self.shared.view.store(Arc::new(view));
        self.shared.session_ok.store(true, Ordering::SeqCst);
        // Keep the cost of building views under ~5% of the loop, however many targets.
        let took = now.elapsed();
        let min = StdDuration::from_millis(self.shared.cfg.publish_interval.0 as u64);
        self.next_at = Instant::now() + min.max(took * 20);
    }

    fn published(&mut self, command: &Command) {
        self.record(command);
    }

    fn session_failed(&mut self) {
        self.shared.session_ok.store(false, Ordering::SeqCst);
        // Publish as soon as the next session runs.
        self.next_at = Instant::now();
    }

    fn restored(&mut self, engine: &Engine) {
        // The decisions kept with the committed state were published before: by this instance
        // before it restarted, or by the group member that owned the state before a rebalance.
        // Those already listed stay as they are; none older than the retained ones comes back.
        let full = self.log.len() >= self.shared.cfg.decision_retention;
        let oldest = self.log.front().map(|d| d.command.decided_at);
        let restored: Vec<Command> =
            engine.decisions().filter(|c| !full || oldest.is_none_or(|o| c.decided_at >= o)).cloned().collect();
        for c in &restored {
            self.record(c);
        }
    }
}

/// Two observers in one (the demo's terminal and the HTTP publisher).
#[derive(Debug)]
pub struct Both<A, B>(pub A, pub B);

impl<A: Observer, B: Observer> Observer for Both<A, B> {
    fn engine(&mut self, engine: &Engine, stats: &ServiceStats) {
        self.0.engine(engine, stats);
        self.1.engine(engine, stats);
    }
    fn engines(&mut self, engines: &[&Engine], stats: &ServiceStats) {
        self.0.engines(engines, stats);
        self.1.engines(engines, stats);
    }
    fn published(&mut self, command: &Command) {
        self.0.published(command);
        self.1.published(command);
    }
    fn restored(&mut self, engine: &Engine) {
        self.0.restored(engine);
        self.1.restored(engine);
    }
    fn session_failed(&mut self) {
        self.0.session_failed();
        self.1.session_failed();
    }
}

/// The URL other members of a group give for a server listening on `addr`: its address, or
/// the host name when it listens on every address.
pub fn advertised_url(addr: SocketAddr) -> String {
    if !addr.ip().is_unspecified() {
        return format!("http://{addr}");
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("http://{host}:{}", addr.port())
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// Where it listens (with the real port when 0 was asked).
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Stops serving and waits for the server thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Why the HTTP server did not start. The cause is part of each message, so none is also a
/// `source`.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address does not parse.
    #[error("--http: `{addr}` is not an address such as 0.0.0.0:9464")]
    Address {
        /// The address as given.
        addr: String,
    },
    /// The address cannot be bound (in use, not this host's, a privileged port).
    #[error("--http: cannot listen on {addr}: {cause}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// The bound socket cannot be made non-blocking or tell its address.
    #[error("--http: {0}")]
    Socket(std::io::Error),
    /// The server's runtime cannot be built.
    #[error("--http: runtime: {0}")]
    Runtime(std::io::Error),
    /// The server's thread cannot start.
    #[error("--http: {0}")]
    Thread(std::io::Error),
}

/// Starts the server on its own threads (a small runtime, apart from the service loop).
pub fn serve(addr: &str, shared: Arc<Shared>) -> Result<Server, ServeError> {
    let addr: SocketAddr = addr.parse().map_err(|_| ServeError::Address { addr: addr.to_owned() })?;
    let std_listener = std::net::TcpListener::bind(addr).map_err(|cause| ServeError::Bind { addr, cause })?;
    std_listener.set_nonblocking(true).map_err(ServeError::Socket)?;
    let local = std_listener.local_addr().map_err(ServeError::Socket)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("driftwatch-http")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let thread = std::thread::Builder::new()
        .name("driftwatch-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("http: {e}");
                        return;
                    }
                };
                let sampler = tokio::spawn(history::sample(shared.clone()));
                let app = router(shared);
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await;
                sampler.abort();
                if let Err(e) = served {
                    tracing::error!("http server: {e}");
                }
            });
            runtime.shutdown_timeout(StdDuration::from_secs(1));
        })
        .map_err(ServeError::Thread)?;
    tracing::info!("serving HTTP on http://{local}");
    Ok(Server { addr: local, shutdown: Some(tx), thread: Some(thread) })
}

/// The routes.
pub fn router(shared: Arc<Shared>) -> Router {
    // The lists a scaled-out group's members can answer together (`scope=group`).
    let lists = Router::new()
        .route("/v1/targets", get(targets))
        .route("/v1/decisions", get(decisions))
        .route("/v1/alerts", get(alerts))
        .route("/v1/history/{kind}/{name}", get(history_handler))
        .route_layer(middleware::from_fn_with_state(shared.clone(), group::scope));
    let api = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/v1/status", get(status))
        .route("/v1/targets/{kind}/{name}/{version}", get(target))
        .route("/v1/group", get(group::group))
        .route("/v1/verdict/{kind}/{name}/{version}", get(gates::verdict_handler))
        .merge(lists)
        .route_layer(middleware::from_fn_with_state(shared.clone(), authorize));
    // Flagger's hooks check the token themselves: it may come in the payload.
    let hooks = Router::new().route("/v1/flagger/{hook}", post(gates::hook_handler));
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(api)
        .merge(hooks)
        .fallback(not_found)
        .with_state(shared)
}

// ---------------------------------------------------------------------------------- responses

fn error(status: StatusCode, code: &str, message: String, parameter: Option<&str>) -> Response {
    let mut body = json!({"error": code, "message": message});
    if let Some(p) = parameter {
        body["parameter"] = json!(p);
    }
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let parameter = self.parameter.clone();
        error(StatusCode::BAD_REQUEST, "bad_request", self.to_string(), Some(&parameter))
    }
}

fn json_response(v: &impl Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string(), None),
    }
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /v1/status, /v1/targets, /v1/decisions, /v1/alerts, /v1/verdict/{kind}/{name}/{version}, /v1/flagger/{rollback,confirm-promotion,pre-rollout}, /metrics".into(),
        None,
    )
}

async fn authorize(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        if !bearer_matches(req.headers(), token) {
            return unauthorized("this endpoint needs `Authorization: Bearer <token>` (http.token)".into());
        }
    }
    next.run(req).await
}

/// Whether the request carries `Authorization: Bearer <token>`.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
}

fn unauthorized(message: String) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", message, None);
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"driftwatch\""));
    r
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; img-src 'self' data:"),
        ],
        include_str!("status.html"),
    )
        .into_response()
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    if s.alive.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the service loop has ended\n").into_response()
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let v = s.view();
    if !s.session_ok.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: Kafka session failed, reconnecting\n").into_response()
    } else if v.stats.restore.is_active() {
        let parts = v.stats.restore.parts();
        let (read, total) = parts.iter().fold((0, 0), |(r, t), p| (r + p.read, t + p.total));
        let msg = format!("not ready: restoring the state of assigned partitions ({read} of {total} records read)\n");
        (StatusCode::SERVICE_UNAVAILABLE, msg).into_response()
    } else if v.ready && s.alive.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else if v.generation == 0 {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: restoring state\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: waiting for partition assignment\n").into_response()
    }
}

async fn metrics_handler(
    State(s): State<Arc<Shared>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    Params::parse(q.as_deref(), &[])?;
    let view = s.view();
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().split(';').next() == Some("gzip")));
    let rendered = view.metrics();
    // A gzip stream may hold several members one after the other: the live part is its own.
    let live = metrics::render_live(&view);
    let join =
        |a: &Bytes, b: Bytes| if b.is_empty() { a.clone() } else { Bytes::from([a.as_ref(), b.as_ref()].concat()) };
    let mut r = if gzip {
        let tail = if live.is_empty() { Bytes::new() } else { metrics::gzip(live.as_bytes()) };
        let mut r = Response::new(Body::from(join(&rendered.gzip, tail)));
        r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        Response::new(Body::from(join(&rendered.text, Bytes::from(live))))
    };
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    Ok(r)
}

async fn status(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Result<Response, QueryError> {
    Params::parse(q.as_deref(), &[])?;
    let v = s.view();
    let by_type = ["request", "prediction", "error", "label"];
    let mut bad = serde_json::Map::new();
    for r in BadReason::ALL {
        bad.insert(r.as_str().into(), json!(v.counters.bad[r.index()]));
    }
    Ok(json_response(&json!({
        "ready": v.ready && s.session_ok.load(Ordering::SeqCst),
        "version": env!("CARGO_PKG_VERSION"),
        "watermark": v.watermark.map(format_rfc3339),
        "generated_at": format_rfc3339(if v.generation == 0 { wall_ms() } else { v.generated_at }),
        "messages": v.stats.messages,
        "dead_letters": v.stats.dead_letters,
        "commands": v.stats.commands,
        "commits": v.stats.commits,
        "sessions": v.stats.sessions,
        "consumer_lag": v.stats.lag,
        "events_per_second": v.events_per_second,
        "targets": v.targets.len(),
        "events_by_type": by_type.iter().zip(v.counters.events).map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "bad_input": bad,
        "late_events": v.counters.late_events,
        "labels": {"matched": v.joins.matched, "predictions_evicted": v.joins.predictions_evicted, "labels_unmatched": v.joins.labels_unmatched},
    })))
}

/// The JSON of one target.
fn target_json(t: &TargetOverview) -> Value {
    let kind = t.kind.as_str();
    json!({
        "kind": kind,
        "name": t.name,
        "version": t.version,
        "baseline": t.baseline,
        "state": t.state,
        "first_seen": format_rfc3339(t.first_seen),
        "last_seen": format_rfc3339(t.last_seen),
        "events": t.events,
        "errors": t.errors,
        "late_events": t.late,
        "window": {
            "start": format_rfc3339(t.window.0),
            "end": format_rfc3339(t.window.1),
            "events": t.window_events,
            "errors": t.window_errors,
            "error_rate": t.window_error_rate,
        },
        "latency_ms": t.latency_ms.map(|[p50, p90, p99]| json!({"p50": p50, "p90": p90, "p99": p99})),
        "labels": t.labels.map(|(joined, coverage)| json!({"joined": joined, "coverage": coverage})),
        "detectors": t.detectors.iter().map(|d| json!({
            "detector": d.detector,
            "feature": d.feature,
            "statistic": d.statistic,
            "value": d.value.filter(|v| v.is_finite()),
            "threshold": d.threshold,
        })).collect::<Vec<_>>(),
        "links": {
            "self": format!("/v1/targets/{kind}/{}/{}", query::encode_segment(&t.name), query::encode_segment(&t.version)),
            "history": format!("/v1/history/{kind}/{}", query::encode_segment(&t.name)),
        },
    })
}

fn parse_kind(s: &str, parameter: &str) -> Result<Kind, QueryError> {
    match s {
        "app" => Ok(Kind::App),
        "model" => Ok(Kind::Model),
        _ => Err(QueryError::new(parameter, format!("must be `app` or `model`, got `{s}`"))),
    }
}

async fn targets(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Result<Response, QueryError> {
    let p = Params::parse(q.as_deref(), &["kind", "name", "state", "limit", "cursor"])?;
    let kind = p.get("kind").map(|k| parse_kind(k, "kind")).transpose()?;
    let state = p.parsed::<TargetState>("state")?;
    let limit = p.limit(100, 1000)?;
    let after = p.text("cursor").map(|c| query::decode_cursor(c, "cursor")).transpose()?;
    let v = s.view();
    let selected = v.targets.iter().enumerate().filter(|(_, t)| {
        kind.is_none_or(|k| t.kind == k)
            && p.text("name").is_none_or(|n| t.name == n)
            && state.is_none_or(|st| t.state == st)
    });
    let total = selected.clone().count();
    let page: Vec<(usize, &TargetOverview)> = selected
        .filter(|(_, t)| {
            after.as_ref().is_none_or(|after| query::cursor_key(t.kind.as_str(), &t.name, &t.version) > *after)
        })
        .take(limit + 1)
        .collect();
    let next = (page.len() > limit).then(|| {
        let last = page[limit - 1].1;
        query::encode_cursor(last.kind.as_str(), &last.name, &last.version)
    });
    // Concatenates the targets' JSON rendered once per view.
    let rendered = v.targets_json();
    let mut body =
        String::with_capacity(64 + page.iter().take(limit).map(|(i, _)| rendered[*i].len() + 1).sum::<usize>());
    body.push_str("{\"targets\":[");
    for (n, (i, _)) in page.iter().take(limit).enumerate() {
        if n > 0 {
            body.push(',');
        }
        body.push_str(&rendered[*i]);
    }
    body.push_str(&format!("],\"next_cursor\":{},\"total\":{total}}}", json!(next)));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn target(
    State(s): State<Arc<Shared>>,
    Path((kind, name, version)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    uri: Uri,
) -> Result<Response, QueryError> {
    Params::parse(q.as_deref(), &[])?;
    let kind = parse_kind(&kind, "kind")?;
    let v = s.view();
    if let Some(r) = group::elsewhere(&v, &name, &uri) {
        return Ok(r);
    }
    let Some(t) = v.target(kind, &name, &version) else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no target {}/{name}/{version} is tracked", kind.as_str()),
            None,
        ));
    };
    let mut body = target_json(t);
    let decisions: Vec<&Command> = v
        .decisions
        .iter()
        .rev()
        .map(|d| &d.command)
        .filter(|c| c.target.kind == kind && c.target.name == name && c.target.version == version)
        .take(100)
        .collect();
    body["decisions"] = json!(decisions);
    Ok(json_response(&body))
}

async fn history_handler(
    State(s): State<Arc<Shared>>,
    Path((kind, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    uri: Uri,
) -> Result<Response, QueryError> {
    Params::parse(q.as_deref(), &[])?;
    let kind = parse_kind(&kind, "kind")?;
    if let Some(r) = group::elsewhere(&s.view(), &name, &uri) {
        return Ok(r);
    }
    let body = match s.history.lock() {
        Ok(h) => h.json(kind, &name),
        Err(_) => None,
    };
    Ok(match body {
        Some(b) => json_response(&b),
        None => error(StatusCode::NOT_FOUND, "not_found", format!("no history for {}/{name}", kind.as_str()), None),
    })
}

async fn decisions(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Result<Response, QueryError> {
    let p = Params::parse(q.as_deref(), &["since", "command", "target", "reason", "limit", "cursor"])?;
    let since = p
        .get("since")
        .map(|x| {
            // Any RFC 3339 time filters, however far from the events.
            parse_rfc3339_unbounded(x).map_err(|e| {
                QueryError::new(
                    "since",
                    format!("must be an RFC 3339 time such as 2026-01-31T12:00:00Z, got `{x}` ({e:?})"),
                )
            })
        })
        .transpose()?;
    let command = p.choice("command", &CommandKind::ALL, CommandKind::as_str)?;
    let reason = p.choice("reason", &Reason::ALL, Reason::as_str)?;
    let target = p.get("target").map(|t| query::parse_target(t, "target")).transpose()?;
    let limit = p.limit(100, 1000)?;
    let before = p
        .text("cursor")
        .map(|c| {
            c.parse::<u64>()
                .ok()
                .filter(|_| c.len() <= 19 && c.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| QueryError::new("cursor", format!("`{c}` is not a cursor from next_cursor")))
        })
        .transpose()?;
    let v = s.view();
    let page: Vec<&Arc<Decided>> = v
        .decisions
        .iter()
        .rev()
        .filter(|d| before.is_none_or(|b| d.seq < b))
        .filter(|d| since.is_none_or(|t| d.command.decided_at >= t))
        .filter(|d| command.is_none_or(|c| d.command.command == c))
        .filter(|d| reason.is_none_or(|r| d.command.reason == r))
        .filter(|d| {
            target.as_ref().is_none_or(|(k, n, ver)| {
                d.command.target.kind == *k
                    && d.command.target.name == *n
                    && ver.as_ref().is_none_or(|ver| &d.command.target.version == ver)
            })
        })
        .take(limit + 1)
        .collect();
    let next = (page.len() > limit).then(|| page[limit - 1].seq.to_string());
    let items: Vec<&Command> = page.iter().take(limit).map(|d| &d.command).collect();
    Ok(json_response(&json!({"decisions": items, "next_cursor": next, "retained": v.decisions.len()})))
}

/// The active findings of a view, newest state first.
pub fn active_alerts(v: &View) -> Vec<Value> {
    let mut out = Vec::new();
    for t in &v.targets {
        let Some(f) = t.state.finding() else {
            continue;
        };
        let target =
            json!({"kind": t.kind.as_str(), "name": t.name, "version": t.version, "baseline_version": t.baseline});
        let id = format!("{}/{}/{}", t.kind.as_str(), t.name, t.version);
        let command = f.command.and_then(|kind| v.last_decision(kind, t));
        let summary = match command {
            Some(d) => format!("{} {id}: {}", f.name, evidence_summary(&d.command)),
            None => format!("{id} is suspect: {}", detector_summary(t, Detector::ErrorRate)),
        };
        out.push(json!({
            "id": format!("{id}/{}", f.name),
            "state": f.alert_state,
            "severity": f.severity,
            "finding": f.name,
            "reason": command.map(|d| d.command.reason.as_str()),
            "target": target,
            "since": command.map_or_else(|| format_rfc3339(t.last_seen), |d| format_rfc3339(d.command.decided_at)),
            "summary": summary,
            "command_id": command.map(|d| d.command.command_id.clone()),
        }));
    }
    out
}

/// What decided a command: `error_rate e_value = 1.234e3 (threshold 111.1111)`.
fn evidence_summary(c: &Command) -> String {
    let h = c.headline();
    format!(
        "{} {} = {} (threshold {})",
        c.reason.as_str(),
        h.statistic.unwrap_or("statistic"),
        fmt_num(h.value),
        fmt_num(h.threshold)
    )
}

/// A detector's latest statistic against its threshold: `error-rate e-value 3.210 of threshold 111.1`.
fn detector_summary(t: &TargetOverview, detector: Detector) -> String {
    let d = t.detectors.iter().find(|d| d.detector == detector);
    format!(
        "{} e-value {} of threshold {}",
        detector.as_str().replace('_', "-"),
        d.and_then(|d| d.value).map_or("?".into(), |x| format!("{x:.3}")),
        d.map_or("?".into(), |d| format!("{:.1}", d.threshold))
    )
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        Some(x) if x.abs() >= 1000.0 => format!("{x:.3e}"),
        Some(x) => format!("{x:.4}"),
        None => "?".into(),
    }
}

async fn alerts(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Result<Response, QueryError> {
    let p = Params::parse(q.as_deref(), &["state", "severity"])?;
    let state = p.one_of("state", &["firing", "pending"])?;
    let severity = p.one_of("severity", &["critical", "warning", "info"])?;
    let v = s.view();
    let alerts: Vec<&Value> = v
        .alerts()
        .iter()
        .filter(|a| state.is_none_or(|st| a["state"] == st) && severity.is_none_or(|sv| a["severity"] == sv))
        .collect();
    Ok(json_response(&json!({
        "generated_at": format_rfc3339(if v.generation == 0 { wall_ms() } else { v.generated_at }),
        "alerts": alerts,
    })))
}
