//! What a running service reports to whoever watches it (the demo's terminal, the HTTP API),
//! independent of the driver that runs it.

use crate::command::Command;
use crate::engine::Engine;

/// What a running service reports to whoever watches it (the demo's terminal, the HTTP API).
pub trait Observer: Send {
    /// Called after each poll batch with the engine, at most every ~200 ms.
    fn engine(&mut self, _engine: &Engine, _stats: &ServiceStats) {}
    /// Called instead of [`Self::engine`] by a member of a scaled-out group, with the engines
    /// of the tasks it owns now (none while it owns none).
    fn engines(&mut self, engines: &[&Engine], stats: &ServiceStats) {
        if let Some(e) = engines.first() {
            self.engine(e, stats);
        }
    }
    /// Called with each command when it has been published (committed in exactly-once mode).
    fn published(&mut self, _command: &Command) {}
    /// Called when a session has restored the engine from the changelog, before consuming.
    fn restored(&mut self, _engine: &Engine) {}
    /// Whether [`Self::engine`] builds views of every target (then the engine keeps their
    /// latency quantiles as buckets close, see [`Engine::keep_view_quantiles`]).
    fn wants_views(&self) -> bool {
        false
    }
    /// Called when a session ended on an error; the next one starts after a backoff.
    fn session_failed(&mut self) {}
}

/// An observer that does nothing.
#[derive(Debug, Default)]
pub struct NoObserver;
impl Observer for NoObserver {}

/// Counters of the service.
#[derive(Debug, Clone, Default)]
pub struct ServiceStats {
    /// Messages consumed.
    pub messages: u64,
    /// Bad messages forwarded to the dead-letter topic.
    pub dead_letters: u64,
    /// Commands published.
    pub commands: u64,
    /// Transactions (or offset commits) completed.
    pub commits: u64,
    /// Sessions started (1 + recoveries).
    pub sessions: u64,
    /// Consumer lag summed over assigned partitions, when known.
    pub lag: Option<i64>,
    /// True once state is restored and partitions are assigned.
    pub ready: bool,
    /// Messages read and waiting for their turn in the merge of the input partitions.
    pub queued: u64,
    /// Set while a member of a scaled-out group restores the state of partitions it was just
    /// assigned (shared, so that it is seen at once, not at the next view).
    pub restoring: std::sync::Arc<std::sync::atomic::AtomicBool>,
}
