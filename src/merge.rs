//! Merging several inputs by event time: which input's next record the engine takes.
//!
//! `replay` of several files and `run` on several Kafka partitions use this one rule, so that
//! the engine sees the same order — and makes the same decisions — however the events are
//! split over inputs and however fast each input is read. The rule is Kafka Streams' partition
//! group (and Flink's per-input watermarks): take the input whose next record has the lowest
//! event time, but only while every input that may still deliver an older record has something
//! ready; an input with nothing ready that is not known to be at its end holds the merge back.
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
    /// Nothing is ready, and an older record may still come: the merge waits for it.
    Waiting,
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
    let mut waiting = false;
    for (i, head) in heads.into_iter().enumerate() {
        let key = match head {
            Head::Ready(None) => return Pick::Input(i),
            Head::Ready(Some(ts)) if ts > too_far => return Pick::Input(i),
            Head::Ready(Some(ts)) => ts,
            Head::Waiting => {
                waiting = true;
                continue;
            }
            Head::Done => continue,
        };
        if best.is_none_or(|(b, _)| key < b) {
            best = Some((key, i));
        }
    }
    match best {
        _ if waiting => Pick::Wait,
        Some((_, i)) => Pick::Input(i),
        None => Pick::Empty,
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
        assert_eq!(pick([Ready(Some(1)), Waiting], Some(1), FUTURE), Pick::Wait);
        assert_eq!(pick([Waiting, Done], None, FUTURE), Pick::Wait);
    }

    #[test]
    fn undecodable_and_far_future_records_go_at_once() {
        assert_eq!(pick([Ready(Some(1)), Waiting, Ready(None)], Some(1), FUTURE), Pick::Input(2));
        let far = 10 + FUTURE + 1;
        assert_eq!(pick([Ready(Some(20)), Ready(Some(far)), Waiting], Some(10), FUTURE), Pick::Input(1));
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
                    (false, true) => Waiting,
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
