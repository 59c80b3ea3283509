//! The queue of (second, group) folds due as the watermark passes each second.
//!
//! Every group with traffic in a second has one fold due when the watermark passes that
//! second's end, so a thin fleet of thousands of services queues thousands of folds a second.
//! They are kept per second — a map from second to the groups due in it, sorted only when the
//! second is reached — so queueing one costs a push, not a search of an ordered set of all of
//! them. Folds come out in the order an ordered set of `(second, group)` would give.

use std::collections::BTreeMap;

/// Folds due, by second.
#[derive(Debug, Default)]
pub(crate) struct SecondQueue {
    /// Groups due in each second; `sorted` once the second has been reached (then popped from
    /// the back, so it is kept in descending order).
    by_sec: BTreeMap<i64, Due>,
}

#[derive(Debug, Default)]
struct Due {
    groups: Vec<u32>,
    sorted: bool,
}

impl SecondQueue {
    /// Queues the fold of `group` for second `sec` (queued at most once per pair).
    pub(crate) fn insert(&mut self, sec: i64, group: u32) {
        let due = self.by_sec.entry(sec).or_default();
        due.groups.push(group);
        due.sorted = false;
    }

    /// The first fold due: the earliest second, the lowest group in it.
    pub(crate) fn first(&mut self) -> Option<(i64, u32)> {
        let (&sec, due) = self.by_sec.iter_mut().next()?;
        if !due.sorted {
            due.groups.sort_unstable_by(|a, b| b.cmp(a));
            due.groups.dedup();
            due.sorted = true;
        }
        due.groups.last().map(|&g| (sec, g))
    }

    /// Removes the fold [`Self::first`] returned.
    pub(crate) fn pop_first(&mut self) {
        if self.first().is_none() {
            return;
        }
        if let Some(mut e) = self.by_sec.first_entry() {
            e.get_mut().groups.pop();
            if e.get().groups.is_empty() {
                e.remove();
            }
        }
    }

    /// Forgets the fold of `group` in second `sec`, if queued.
    pub(crate) fn remove(&mut self, sec: i64, group: u32) {
        if let Some(due) = self.by_sec.get_mut(&sec) {
            due.groups.retain(|&g| g != group);
            if due.groups.is_empty() {
                self.by_sec.remove(&sec);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn folds_come_out_as_an_ordered_set_gives_them() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let mut q = SecondQueue::default();
        let mut set = BTreeSet::new();
        for _ in 0..20_000 {
            match rng.gen_range(0..10) {
                0..=5 => {
                    let (s, g) = (rng.gen_range(0..50), rng.gen_range(0..40));
                    if set.insert((s, g)) {
                        q.insert(s, g);
                    }
                }
                6 => {
                    let (s, g) = (rng.gen_range(0..50), rng.gen_range(0..40));
                    set.remove(&(s, g));
                    q.remove(s, g);
                }
                _ => {
                    assert_eq!(q.first(), set.first().copied());
                    if set.pop_first().is_some() {
                        q.pop_first();
                    }
                }
            }
        }
        while let Some(f) = set.pop_first() {
            assert_eq!(q.first(), Some(f));
            q.pop_first();
        }
        assert_eq!(q.first(), None);
    }
}
