//! Event-time windows: buckets aligned to a step, a watermark that closes them, and sliding
//! windows assembled by merging closed buckets.
//!
//! A bucket holds the partial aggregate of the events whose time falls in
//! `[index * step, (index + 1) * step)`. Events may arrive in any order until the watermark
//! (highest event time seen minus the allowed lateness) passes the end of their bucket; after
//! that they are late. Because windows only read closed buckets, input disordered within the
//! lateness bound produces exactly the same windows as sorted input.

use std::collections::VecDeque;

use crate::stats::Merge;
use crate::time::Millis;

/// Shape of a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowSpec {
    /// Length of the window (time-based), or the longest span searched (count-based).
    pub length: Millis,
    /// How often the window advances; also the bucket width.
    pub step: Millis,
    /// Count-based windows: the window is the most recent closed buckets that together hold at
    /// least this many events (but never longer than `length`). `None`: time-based.
    pub min_count: Option<u64>,
    /// A window holding fewer than `need` events reaches further back, up to this long in all,
    /// until it holds them. At most `length`: never extended.
    #[serde(default)]
    pub extend: Millis,
    /// Events the rule reading the window needs (its `min_events` or `min_labels`).
    #[serde(default)]
    pub need: u64,
}

/// How a window found its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// The last `length` of buckets.
    Time,
    /// The newest buckets holding `count` events.
    Count,
    /// Reached back past `length` (or `count`) until it held the rule's minimum.
    Extended,
}

impl Extent {
    /// Name used in evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            Extent::Time => "time",
            Extent::Count => "count",
            Extent::Extended => "extended",
        }
    }
}

impl WindowSpec {
    /// Number of buckets in a full window.
    pub fn buckets(&self) -> usize {
        usize::try_from((self.length / self.step).max(1)).unwrap_or(usize::MAX)
    }

    /// Number of buckets an extended window may reach over (at least [`Self::buckets`]).
    pub fn reach(&self) -> usize {
        usize::try_from((self.extend / self.step).max(1)).unwrap_or(usize::MAX).max(self.buckets())
    }

    /// Whether windows reach back past `length` when short of events.
    fn extends(&self) -> bool {
        self.extend > self.length && self.need > 0
    }

    /// The bucket index holding event time `ts`.
    #[inline]
    pub fn bucket_of(&self, ts: Millis) -> i64 {
        ts.div_euclid(self.step)
    }

    /// Start time of a bucket.
    pub fn bucket_start(&self, idx: i64) -> Millis {
        idx * self.step
    }
}

/// A ring of the most recent buckets of one accumulator type.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Ring<A> {
    /// Window shape; `spec.step` is the bucket width.
    pub spec: WindowSpec,
    /// Buckets by ascending index; gaps are allowed (no events).
    buckets: VecDeque<(i64, A)>,
    /// Buckets kept beyond the newest closed one.
    keep: usize,
}

impl<A: Default + Merge + Clone> Ring<A> {
    /// A ring able to serve windows of `spec`, keeping `extra` more buckets of history.
    pub fn new(spec: WindowSpec, extra: usize) -> Self {
        Ring { spec, buckets: VecDeque::new(), keep: spec.reach() + extra }
    }

    /// The bucket for event time `ts`, created on demand.
    #[inline]
    pub fn at(&mut self, ts: Millis) -> &mut A {
        let idx = self.spec.bucket_of(ts);
        // Common case: the newest bucket.
        let pos = match self.buckets.back() {
            Some(&(last, _)) if last == idx => self.buckets.len() - 1,
            Some(&(last, _)) if last < idx => {
                self.buckets.push_back((idx, A::default()));
                self.buckets.len() - 1
            }
            None => {
                self.buckets.push_back((idx, A::default()));
                0
            }
            _ => match self.buckets.binary_search_by_key(&idx, |&(i, _)| i) {
                Ok(p) => p,
                Err(p) => {
                    self.buckets.insert(p, (idx, A::default()));
                    p
                }
            },
        };
        &mut self.buckets[pos].1
    }

    /// The bucket with index `idx`, if it holds anything.
    pub fn get(&self, idx: i64) -> Option<&A> {
        self.buckets.binary_search_by_key(&idx, |&(i, _)| i).ok().map(|p| &self.buckets[p].1)
    }

    /// Drops buckets too old to be part of any window ending at bucket `closed` (inclusive).
    pub fn evict(&mut self, closed: i64) {
        self.evict_into(closed, &mut |_, _| ());
    }

    fn evict_into(&mut self, closed: i64, gone: &mut impl FnMut(i64, &A)) {
        let oldest = closed - self.keep as i64 + 1;
        while matches!(self.buckets.front(), Some(&(i, _)) if i < oldest) {
            if let Some((i, a)) = self.buckets.pop_front() {
                gone(i, &a);
            }
        }
    }

    /// [`Self::evict`] for windows that extend: beyond the last `length`, only the newest
    /// buckets that later windows may still need to reach their minimum are kept.
    pub fn evict_counted(&mut self, closed: i64, count: impl Fn(&A) -> u64) {
        self.evict_counted_into(closed, count, |_, _| ());
    }

    /// [`Self::evict_counted`], handing each bucket dropped to `gone` (oldest first).
    pub fn evict_counted_into(&mut self, closed: i64, count: impl Fn(&A) -> u64, mut gone: impl FnMut(i64, &A)) {
        self.evict_into(closed, &mut gone);
        if !self.spec.extends() {
            return;
        }
        let extra = self.keep.saturating_sub(self.spec.reach()) as i64;
        let time_first = closed - self.spec.buckets() as i64 + 1 - extra;
        let need = self.spec.need.max(self.spec.min_count.unwrap_or(0));
        let mut n = 0;
        let mut keep_from = None;
        for (pos, (i, a)) in self.buckets.iter().enumerate().rev() {
            if *i > closed {
                continue;
            }
            if *i < time_first && n >= need {
                keep_from = Some(pos + 1);
                break;
            }
            n += count(a);
        }
        if let Some(k) = keep_from {
            for (i, a) in self.buckets.drain(..k) {
                gone(i, &a);
            }
        }
    }

    /// The buckets with index in `from..=to`, to change in place (to give back spare capacity
    /// once they are final).
    pub fn range_mut(&mut self, from: i64, to: i64) -> impl Iterator<Item = &mut A> {
        self.buckets.iter_mut().filter(move |(i, _)| (from..=to).contains(i)).map(|(_, a)| a)
    }

    /// Gives back memory the ring does not use (after evictions, for idle targets).
    pub fn shrink(&mut self) {
        if self.buckets.capacity() > self.buckets.len() {
            self.buckets.shrink_to_fit();
        }
    }

    /// Merge of the buckets with index in `from..=to`.
    pub fn sum(&self, from: i64, to: i64) -> A {
        let mut acc = A::default();
        for (i, a) in &self.buckets {
            if *i > to {
                break;
            }
            if *i >= from {
                acc.merge(a);
            }
        }
        acc
    }

    /// The window ending with bucket `last` (inclusive), never reaching before bucket `floor`:
    /// returns the merged aggregate and the first bucket index it covers. For count-based
    /// windows, `count` tells how many events an aggregate holds.
    pub fn window(&self, last: i64, floor: i64, count: impl Fn(&A) -> u64) -> (A, i64) {
        let (acc, first, _) = self.extended_window(last, floor, count);
        (acc, first)
    }

    /// [`Self::window`], reaching back up to `spec.extend` while the window holds fewer than
    /// `spec.need` events; also tells how the start was found.
    pub fn extended_window(&self, last: i64, floor: i64, count: impl Fn(&A) -> u64) -> (A, i64, Extent) {
        self.extended_window_to(last, floor, self.spec.need, count)
    }

    /// [`Self::extended_window`] reaching back for `need` events (at most `spec.need` are kept
    /// beyond the window's length).
    pub fn extended_window_to(&self, last: i64, floor: i64, need: u64, count: impl Fn(&A) -> u64) -> (A, i64, Extent) {
        let time_first = (last - self.spec.buckets() as i64 + 1).max(floor);
        let reach_first =
            if self.spec.extends() { (last - self.spec.reach() as i64 + 1).max(floor) } else { time_first };
        let mut acc = A::default();
        let mut start = last;
        let mut n = 0;
        let mut extended = false;
        for (i, a) in self.buckets.iter().rev() {
            if *i > last {
                continue;
            }
            if *i < reach_first {
                break;
            }
            let base_done = *i < time_first || self.spec.min_count.is_some_and(|m| n >= m);
            if base_done {
                if n >= need || !self.spec.extends() {
                    break;
                }
                extended = true;
            }
            acc.merge(a);
            start = *i;
            n += count(a);
        }
        let extent = match (extended, self.spec.min_count) {
            (true, _) => Extent::Extended,
            (false, Some(_)) => Extent::Count,
            (false, None) => Extent::Time,
        };
        if extent == Extent::Time {
            start = time_first;
        }
        (acc, start, extent)
    }

    /// Buckets currently held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Iterates held buckets in index order.
    pub fn iter(&self) -> impl Iterator<Item = &(i64, A)> {
        self.buckets.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Traffic;

    fn spec() -> WindowSpec {
        WindowSpec { length: 600_000, step: 60_000, min_count: None, extend: 0, need: 0 }
    }

    #[test]
    fn out_of_order_buckets_sum_the_same() {
        let mut a: Ring<Traffic> = Ring::new(spec(), 0);
        let mut b: Ring<Traffic> = Ring::new(spec(), 0);
        let ts = [5_000, 70_000, 130_000, 65_000, 1_000, 200_000];
        for t in ts {
            a.at(t).events += 1;
        }
        for t in ts.iter().rev() {
            b.at(*t).events += 1;
        }
        assert_eq!(a.sum(0, 10).events, 6);
        assert_eq!(a.sum(1, 1), b.sum(1, 1));
        assert_eq!(a.sum(1, 1).events, 2);
    }

    #[test]
    fn eviction_keeps_one_window() {
        let mut r: Ring<Traffic> = Ring::new(spec(), 0);
        for m in 0..30 {
            r.at(m * 60_000).events += 1;
        }
        r.evict(29);
        assert_eq!(r.len(), 10);
        let (w, first) = r.window(29, 0, |t| t.events);
        assert_eq!((w.events, first), (10, 20));
    }

    #[test]
    fn windows_short_of_the_minimum_extend_and_say_so() {
        // 10 min windows needing 5 events, reaching back up to a day.
        let s = WindowSpec { length: 600_000, step: 60_000, min_count: None, extend: 86_400_000, need: 5 };
        let mut r: Ring<Traffic> = Ring::new(s, 1);
        for m in [0, 100, 200, 300, 400, 500, 505, 507] {
            r.at(m * 60_000).events += 1;
        }
        // At minute 507 the last 10 minutes hold 3 events: reach back to minute 300.
        let (w, first, by) = r.extended_window(507, i64::MIN, |t| t.events);
        assert_eq!((w.events, first, by), (5, 300, Extent::Extended));
        // Never into the floor.
        let (w, _, _) = r.extended_window(507, 450, |t| t.events);
        assert_eq!(w.events, 3);
        // Enough in the last 10 minutes: a time window.
        for m in 508..512 {
            r.at(m * 60_000).events += 1;
        }
        let (w, first, by) = r.extended_window(511, i64::MIN, |t| t.events);
        assert_eq!((w.events, first, by), (6, 502, Extent::Time));
        // Eviction keeps what later windows may need, and no more.
        r.evict_counted(511, |t| t.events);
        assert_eq!(r.iter().next().map(|(i, _)| *i), Some(505));
        let (w, _, _) = r.extended_window(511, i64::MIN, |t| t.events);
        assert_eq!(w.events, 6);
    }

    #[test]
    fn count_windows_reach_back_until_enough_events() {
        let s = WindowSpec { length: 3_600_000, step: 60_000, min_count: Some(5), extend: 0, need: 0 };
        let mut r: Ring<Traffic> = Ring::new(s, 0);
        for m in [0, 10, 20, 30, 40, 50] {
            r.at(m * 60_000).events += 2;
        }
        let (w, first) = r.window(50, 0, |t| t.events);
        assert_eq!((w.events, first), (6, 30));
    }
}
