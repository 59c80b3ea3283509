//! The `[http]` section: where the API listens, its tokens, retention and what `/metrics` exports.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Duration};

/// The `[http]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to serve on, e.g. `0.0.0.0:9464`; `--http` overrides; unset means no server.
    pub listen: Option<String>,
    /// The URL other members of a scaled-out group send clients to for the targets this
    /// instance decides, e.g. `http://driftwatch-2:9464`. Unset: `http://{host}:{port}` of
    /// the address served on (the host name when it listens on every address).
    pub advertise: Option<String>,
    /// Bearer token required on everything but `/healthz`, `/readyz` and the page's static
    /// shell; `DRIFTWATCH_HTTP_TOKEN` overrides. Unset means no authentication.
    pub token: Option<String>,
    /// Token Flagger's webhooks may send as `metadata.token` (Flagger cannot send headers);
    /// it opens the `/v1/flagger/*` hooks only. Unset: the hooks need the bearer token, if any.
    pub hook_token: Option<String>,
    /// Published decisions kept for `/v1/decisions` (newest win).
    pub decision_retention: usize,
    /// Points kept per time series of the charts.
    pub history_points: usize,
    /// Event time between two points of the charts.
    pub history_step: Duration,
    /// Shortest time between two published views.
    pub publish_interval: Duration,
    /// Which versions get per-version series in `/metrics`.
    pub metrics_targets: MetricsTargets,
}

/// Which versions `/metrics` exports per-version series for. Every version is counted by state
/// in `driftwatch_targets_by_state` whatever this says, and `/v1/targets` lists them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsTargets {
    /// Versions compared with a baseline (and those baselines), and versions with a finding
    /// (any state but `healthy`): the ones an alert can be about. A fleet of thousands of
    /// single-version services stays a few hundred series.
    #[default]
    Compared,
    /// Every tracked version.
    All,
    /// None: only the aggregate series.
    None,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: None,
            advertise: None,
            token: None,
            hook_token: None,
            decision_retention: 10_000,
            history_points: 360,
            history_step: Duration(10_000),
            publish_interval: Duration(200),
            metrics_targets: MetricsTargets::Compared,
        }
    }
}

impl HttpConfig {
    /// Checks values, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| Err(ConfigError::Invalid { key: key.into(), reason });
        if let Some(l) = &self.listen {
            if l.parse::<SocketAddr>().is_err() {
                return bad("http.listen", format!("`{l}` is not an address such as 0.0.0.0:9464"));
            }
        }
        if let Some(a) = &self.advertise {
            let rest = a.strip_prefix("http://").or_else(|| a.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                return bad("http.advertise", format!("`{a}` is not a URL such as http://driftwatch-2:9464"));
            }
        }
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return bad("http.token", "must not be empty (leave it out to disable authentication)".into());
        }
        if self.hook_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return bad("http.hook_token", "must not be empty (leave it out to disable it)".into());
        }
        if self.hook_token.is_some() && self.hook_token == self.token {
            return bad(
                "http.hook_token",
                "must differ from http.token: it sits in Canary specs for anyone who can read them".into(),
            );
        }
        if !(1..=10_000_000).contains(&self.decision_retention) {
            return bad("http.decision_retention", format!("must be 1 to 10000000 (got {})", self.decision_retention));
        }
        if !(2..=100_000).contains(&self.history_points) {
            return bad("http.history_points", format!("must be 2 to 100000 (got {})", self.history_points));
        }
        if self.history_step.0 < 1000 {
            return bad("http.history_step", "must be at least 1s".into());
        }
        if self.publish_interval.0 < 10 || self.publish_interval.0 > 60_000 {
            return bad("http.publish_interval", "must be between 10ms and 60s".into());
        }
        Ok(())
    }
}
