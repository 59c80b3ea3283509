//! Merging several inputs by event time: which input's next record the engine takes.
//!
//! `replay` of several files and `run` on several Kafka partitions use this one rule, so that
//! the engine sees the same order — and makes the same decisions — however the events are
//! split over inputs and however fast each input is read. The rule is Kafka Streams' partition
//! group with enforced processing (and Flink's per-input watermarks): take the input whose next
//! record has the lowest event time, but only while no input that may still deliver an older
//! record has nothing ready. An input with nothing ready holds back what is newer than the last
//! record it delivered (its records are in event-time order: the next one is not older) until it
//! is known to be at its end — a file's end; for Kafka, no message for `kafka.idle_timeout`,
//! because a partition read to its end now may receive records older than the others' a moment
//! later.
//!
//! The choice depends only on what each input has left, never on what was taken before, so a
//! service restarted from stored positions continues the very order an uninterrupted run
//! takes. Two kinds of record go first, whatever their time, because the engine only counts
//! them: a record that cannot be decoded, and one whose time lies more than
//! `windows.max_future` ahead of the newest event (the engine rejects it). Held back by its
//! time instead, one absurd timestamp would stall its input until every other input reached it.

use crate::time::Millis;

/// What one input offers the merge now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// A record is ready: its event time, or `None` when it could not be decoded.
    Ready(Option<Millis>),
    /// Nothing is ready, and more may come: records newer than the time given (the newest this
    /// input delivered), or any record when it delivered none, wait for it. At that very time,
    /// inputs before it go first, as ties do.
    Waiting(Option<Millis>),
    /// Nothing is ready and nothing is expected (the input is at its end or idle).
    Done,
}

/// The merge's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Take the next record of this input.
    Input(usize),
    /// Some input may still deliver an older record: wait for it.
    Wait,
    /// No input has anything.
    Empty,
}

/// The input whose record goes next. `newest` is the newest event time the engine has seen and
/// `max_future` how far ahead of it the engine accepts events. Ties go to the lowest index.
pub fn pick(heads: impl IntoIterator<Item = Head>, newest: Option<Millis>, max_future: Millis) -> Pick {
    let too_far = newest.map_or(Millis::MAX, |n| n.saturating_add(max_future));
    let mut best: Option<(Millis, usize)> = None;
    // The first (time, input) a waiting input may still deliver: only records before it go.
    let mut limit: Option<(Option<Millis>, usize)> = None;
    for (i, head) in heads.into_iter().enumerate() {
        let key = match head {
            Head::Ready(None) => return Pick::Input(i),
            Head::Ready(Some(ts)) if ts > too_far => return Pick::Input(i),
            Head::Ready(Some(ts)) => ts,
            Head::Waiting(after) => {
                if limit.is_none_or(|l| (after, i) < l) {
                    limit = Some((after, i));
                }
                continue;
            }
            Head::Done => continue,
        };
        if best.is_none_or(|(b, _)| key < b) {
            best = Some((key, i));
        }
    }
    match (best, limit) {
        (Some((ts, i)), Some(l)) if (Some(ts), i) > l => Pick::Wait,
        (Some((_, i)), _) => Pick::Input(i),
        (None, Some(_)) => Pick::Wait,
        (None, None) => Pick::Empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Head::*;

    const FUTURE: Millis = 3_600_000;

    #[test]
    fn lowest_time_first_ties_to_the_lowest_index() {
        assert_eq!(pick([Ready(Some(5)), Ready(Some(3)), Ready(Some(3))], Some(3), FUTURE), Pick::Input(1));
        assert_eq!(pick([Done, Ready(Some(9))], None, FUTURE), Pick::Input(1));
        assert_eq!(pick([Done, Done], Some(1), FUTURE), Pick::Empty);
        assert_eq!(pick(Vec::new(), None, FUTURE), Pick::Empty);
    }

    #[test]
    fn an_input_that_may_deliver_older_records_holds_the_merge() {
        assert_eq!(pick([Ready(Some(1)), Waiting(None)], Some(1), FUTURE), Pick::Wait);
        assert_eq!(pick([Waiting(None), Done], None, FUTURE), Pick::Wait);
        assert_eq!(pick([Ready(Some(5)), Waiting(Some(4))], Some(4), FUTURE), Pick::Wait);
    }

    #[test]
    fn a_waiting_input_holds_back_only_what_is_newer_than_it_delivered() {
        assert_eq!(pick([Ready(Some(3)), Waiting(Some(4))], Some(4), FUTURE), Pick::Input(0));
        // A tie goes to the lower index: the waiting input's next record may have that time.
        assert_eq!(pick([Ready(Some(4)), Waiting(Some(4))], Some(4), FUTURE), Pick::Input(0));
        assert_eq!(pick([Waiting(Some(4)), Ready(Some(4))], Some(4), FUTURE), Pick::Wait);
        // The most restrictive waiting input counts.
        assert_eq!(pick([Ready(Some(3)), Waiting(Some(9)), Waiting(Some(2))], Some(9), FUTURE), Pick::Wait);
    }

    #[test]
    fn undecodable_and_far_future_records_go_at_once() {
        assert_eq!(pick([Ready(Some(1)), Waiting(None), Ready(None)], Some(1), FUTURE), Pick::Input(2));
        let far = 10 + FUTURE + 1;
        assert_eq!(pick([Ready(Some(20)), Ready(Some(far)), Waiting(None)], Some(10), FUTURE), Pick::Input(1));
        // Before any event, nothing is too far ahead.
        assert_eq!(pick([Ready(Some(20)), Ready(Some(far))], None, FUTURE), Pick::Input(0));
    }

    #[test]
    fn merged_order_does_not_depend_on_how_far_each_input_was_read() {
        // Three in-order inputs merged with every input fully ready, and again with inputs
        // revealed one record at a time in a scrambled fetch order: the same sequence.
        let inputs: [Vec<Millis>; 3] = [vec![1, 4, 4, 9], vec![2, 3, 10], vec![4, 5, 6, 7, 8]];
        let merge_all = |avail: &dyn Fn(usize, usize) -> bool| {
            let mut next = [0usize; 3];
            let mut out = Vec::new();
            let mut newest = None;
            let mut fetched = [0usize; 3];
            let mut round = 0;
            loop {
                round += 1;
                for (i, f) in fetched.iter_mut().enumerate() {
                    if avail(i, round) {
                        *f = (*f + 1).min(inputs[i].len());
                    }
                }
                let heads = (0..3).map(|i| match (next[i] < fetched[i], next[i] < inputs[i].len()) {
                    (true, _) => Ready(Some(inputs[i][next[i]])),
                    (false, true) => Waiting(next[i].checked_sub(1).map(|k| inputs[i][k])),
                    (false, false) => Done,
                });
                match pick(heads, newest, FUTURE) {
                    Pick::Input(i) => {
                        out.push((i, inputs[i][next[i]]));
                        newest = newest.max(Some(inputs[i][next[i]]));
                        next[i] += 1;
                    }
                    Pick::Wait => {}
                    Pick::Empty => return out,
                }
            }
        };
        let all = merge_all(&|_, _| true);
        let scrambled = merge_all(&|i, round| (round * 7 + i * 3) % 5 == 0);
        assert_eq!(all, scrambled);
        let times: Vec<Millis> = all.iter().map(|&(_, t)| t).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    }
}
