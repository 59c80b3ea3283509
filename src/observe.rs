//! What a running service reports to whoever watches it (the demo's terminal, the HTTP API),
//! independent of the driver that runs it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Times a task or join of a scaled-out group sought its partition back to read again
    /// what it left there to bound its queue (`kafka.max_queued`).
    pub rereads: u64,
    /// How a member of a scaled-out group restores the state of partitions it was assigned
    /// (shared, so that a restore in progress is seen at once, not at the next view).
    pub restore: Arc<RestoreProgress>,
    /// The partitions a member of a scaled-out group owns now, with how far it has read them.
    pub partitions: Vec<OwnedPartition>,
    /// The members of a scaled-out group and what each owns, as the broker last told
    /// (refreshed every few seconds; shared, so that the HTTP API sees the latest).
    pub group: Arc<Mutex<Option<Arc<GroupStatus>>>>,
}

impl ServiceStats {
    /// The group as last seen, if this is a member of a scaled-out group.
    pub fn group(&self) -> Option<Arc<GroupStatus>> {
        self.group.lock().ok().and_then(|g| g.clone())
    }
}

/// One partition a member of a scaled-out group owns, and how far it has read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedPartition {
    /// The topic (an input topic, `{group}-joins` or `{group}-tasks`).
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The stage it feeds: `router`, `join` or `task`.
    pub stage: &'static str,
    /// The offset of the next record to read.
    pub position: i64,
    /// The partition's last stable offset (the end a read_committed consumer reads to), from
    /// the client's statistics; unknown until they tell.
    pub end: Option<i64>,
}

impl OwnedPartition {
    /// Committed records not read yet.
    pub fn lag(&self) -> Option<i64> {
        self.end.map(|e| (e - self.position).max(0))
    }
}

/// Restoring state from a compacted topic: whether a restore runs, and per state partition
/// the records read of those to read. Updated by the thread that restores, read by the HTTP
/// API at any time.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    active: AtomicBool,
    parts: Mutex<Vec<RestorePart>>,
    restored: AtomicU64,
    restores: AtomicU64,
}

/// One state partition of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestorePart {
    /// The partition of the state topic.
    pub partition: i32,
    /// Records read so far.
    pub read: u64,
    /// Records to read (its end offset less its start offset when the restore began).
    pub total: u64,
}

impl RestoreProgress {
    /// A restore begins.
    pub fn begin(&self) {
        if let Ok(mut p) = self.parts.lock() {
            p.clear();
        }
        self.active.store(true, Ordering::SeqCst);
    }
    /// The restore will read `total` records of `partition`.
    pub fn partition(&self, partition: i32, total: u64) {
        if let Ok(mut p) = self.parts.lock() {
            p.push(RestorePart { partition, read: 0, total });
        }
    }
    /// `read` records of `partition` are read.
    pub fn read(&self, partition: i32, read: u64) {
        if let Ok(mut p) = self.parts.lock() {
            if let Some(part) = p.iter_mut().find(|x| x.partition == partition) {
                let more = read.min(part.total).saturating_sub(part.read);
                part.read += more;
                self.restored.fetch_add(more, Ordering::Relaxed);
            }
        }
    }
    /// The restore ended (done or failed).
    pub fn end(&self) {
        if self.active.swap(false, Ordering::SeqCst) {
            self.restores.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// Whether a restore runs now.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }
    /// The partitions of the running (or last) restore.
    pub fn parts(&self) -> Vec<RestorePart> {
        self.parts.lock().map(|p| p.clone()).unwrap_or_default()
    }
    /// Records read by every restore so far.
    pub fn restored_records(&self) -> u64 {
        self.restored.load(Ordering::Relaxed)
    }
    /// Restores finished so far.
    pub fn restores(&self) -> u64 {
        self.restores.load(Ordering::Relaxed)
    }
}

/// The members of a scaled-out group and what each owns, from the group coordinator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStatus {
    /// The consumer group.
    pub group: String,
    /// This instance's name.
    pub instance: String,
    /// Task partitions of the group (`kafka.tasks`): an app or model named `n` is decided by
    /// the owner of task [`crate::engine::stages::task_of`]`(n, tasks)`.
    pub tasks: usize,
    /// Label-join partitions of the group.
    pub joins: usize,
    /// The group's state: `Stable`, `PreparingRebalance`, `CompletingRebalance`, ...
    pub state: String,
    /// Every member, this one included, by instance name.
    pub members: Vec<GroupMember>,
    /// Wall-clock time the coordinator was asked.
    pub seen_at: crate::time::Millis,
}

/// One member of a scaled-out group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMember {
    /// Its instance name (from its client id), or its client id when that is not one of ours.
    pub instance: String,
    /// The host the broker sees it connect from.
    pub host: String,
    /// Where its HTTP API answers, when it serves one and has said so.
    pub url: Option<String>,
    /// The task partitions it owns.
    pub tasks: Vec<usize>,
    /// The join partitions it owns.
    pub joins: Vec<usize>,
    /// The input partitions it routes.
    pub inputs: Vec<(String, i32)>,
}

impl GroupStatus {
    /// The member owning task `t`, if the group is settled enough to say.
    pub fn owner_of_task(&self, t: usize) -> Option<&GroupMember> {
        self.members.iter().find(|m| m.tasks.contains(&t))
    }
    /// This instance, as the group sees it.
    pub fn me(&self) -> Option<&GroupMember> {
        self.members.iter().find(|m| m.instance == self.instance)
    }
}
