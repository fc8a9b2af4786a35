//! The leader's queue of jobs by the instant they are next due.
//!
//! Many jobs share a due instant (every `* * * * *` job fires at the same second), so the
//! queue keeps one bucket per instant, each holding its jobs in the order they were
//! queued. Taking the next due job reads the front of the first bucket: it touches a few
//! cache lines, where a binary heap of 100,000 entries sifts through some seventeen
//! levels scattered over megabytes on every pop.
//!
//! The queue may hold entries that went stale when their job was replanned; the leader
//! checks each entry it takes against the job's plan and passes over the stale ones.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};

use crate::job::JobName;
use crate::time::Timestamp;

/// Jobs by due instant; jobs due at the same instant in the order they were queued.
#[derive(Debug, Default)]
pub(super) struct DueQueue {
    buckets: BTreeMap<Timestamp, Bucket>,
}

/// The jobs due at one instant, never none. Many instants hold a single job (an
/// `@every` job fires at the millisecond it was created, plus whole periods), and one job
/// is held without the allocation a list would cost.
#[derive(Debug)]
enum Bucket {
    One(JobName),
    Many(VecDeque<JobName>),
}

impl DueQueue {
    /// Queues `name` as due at `at`, after every job already queued for `at`.
    pub(super) fn push(&mut self, at: Timestamp, name: JobName) {
        match self.buckets.entry(at) {
            Entry::Vacant(vacant) => {
                vacant.insert(Bucket::One(name));
            }
            Entry::Occupied(mut occupied) => {
                let bucket = occupied.get_mut();
                match bucket {
                    Bucket::Many(list) => list.push_back(name),
                    Bucket::One(first) => {
                        *bucket = Bucket::Many(VecDeque::from([first.clone(), name]));
                    }
                }
            }
        }
    }

    /// The earliest due instant queued.
    pub(super) fn peek(&self) -> Option<Timestamp> {
        self.buckets.first_key_value().map(|(at, _)| *at)
    }

    /// Takes the first job queued for the earliest instant, if that instant is at or
    /// before `until`.
    pub(super) fn pop_due(&mut self, until: Timestamp) -> Option<(Timestamp, JobName)> {
        let mut first = self.buckets.first_entry()?;
        let at = *first.key();
        if at > until {
            return None;
        }
        if let Bucket::Many(list) = first.get_mut()
            && list.len() > 1
        {
            return list.pop_front().map(|name| (at, name));
        }
        // The instant's last job: its bucket goes with it.
        match first.remove() {
            Bucket::One(name) => Some((at, name)),
            Bucket::Many(mut list) => list.pop_front().map(|name| (at, name)),
        }
    }

    /// The jobs due at or before `until`, in the order [`DueQueue::pop_due`] takes them.
    pub(super) fn upcoming(&self, until: Timestamp) -> impl Iterator<Item = &JobName> {
        self.buckets
            .range(..=until)
            .flat_map(|(_, bucket)| match bucket {
                Bucket::One(name) => core::slice::from_ref(name).iter().chain(&[]),
                Bucket::Many(list) => {
                    let (a, b) = list.as_slices();
                    a.iter().chain(b)
                }
            })
    }

    /// How many entries are queued, stale ones included.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.buckets
            .values()
            .map(|bucket| match bucket {
                Bucket::One(_) => 1,
                Bucket::Many(list) => list.len(),
            })
            .sum()
    }

    /// Empties the queue.
    pub(super) fn clear(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> JobName {
        JobName::new(s).expect("a valid name")
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    #[test]
    fn upcoming_lists_the_due_jobs_in_the_order_they_come_out() {
        let mut queue = DueQueue::default();
        // A bucket whose list wraps round the end of its ring buffer.
        queue.push(at(12), name("w"));
        queue.push(at(12), name("x"));
        queue.push(at(12), name("y"));
        assert_eq!(queue.pop_due(at(12)).map(|(_, n)| n), Some(name("w")));
        queue.push(at(12), name("z"));
        queue.push(at(20), name("late"));
        queue.push(at(10), name("a"));
        queue.push(at(15), name("middle"));

        let upcoming = |queue: &DueQueue, until| -> Vec<String> {
            queue
                .upcoming(at(until))
                .map(|n| n.as_str().to_owned())
                .collect()
        };
        assert_eq!(upcoming(&queue, 15), ["a", "x", "y", "z", "middle"]);
        assert_eq!(upcoming(&queue, 9), Vec::<String>::new());
        assert_eq!(upcoming(&queue, 100).len(), queue.len());

        let mut popped = Vec::new();
        while let Some((_, n)) = queue.pop_due(at(15)) {
            popped.push(n.as_str().to_owned());
        }
        assert_eq!(popped, ["a", "x", "y", "z", "middle"]);
    }

    #[test]
    fn jobs_come_out_by_instant_then_in_the_order_they_were_queued() {
        let mut queue = DueQueue::default();
        queue.push(at(20), name("late"));
        queue.push(at(10), name("b"));
        queue.push(at(10), name("a"));
        queue.push(at(15), name("middle"));
        assert_eq!(queue.len(), 4);
        assert_eq!(queue.peek(), Some(at(10)));

        let mut out = Vec::new();
        while let Some((t, n)) = queue.pop_due(at(100)) {
            out.push((t, n.as_str().to_owned()));
        }
        let expected = [(10, "b"), (10, "a"), (15, "middle"), (20, "late")]
            .map(|(t, n)| (at(t), n.to_owned()));
        assert_eq!(out, expected);
        assert_eq!(queue.len(), 0);
        assert_eq!(queue.peek(), None);
    }

    #[test]
    fn a_job_queued_for_an_instant_being_taken_goes_after_the_ones_still_there() {
        let mut queue = DueQueue::default();
        for n in ["a", "b", "c"] {
            queue.push(at(10), name(n));
        }
        assert_eq!(queue.pop_due(at(10)), Some((at(10), name("a"))));
        queue.push(at(10), name("d"));
        let mut out = Vec::new();
        while let Some((_, n)) = queue.pop_due(at(10)) {
            out.push(n.as_str().to_owned());
        }
        assert_eq!(out, ["b", "c", "d"]);
        // The instant's bucket went with its last job; a new one starts afresh.
        assert_eq!(queue.peek(), None);
        queue.push(at(10), name("e"));
        assert_eq!(queue.pop_due(at(10)), Some((at(10), name("e"))));
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn nothing_is_taken_before_its_instant() {
        let mut queue = DueQueue::default();
        queue.push(at(10), name("a"));
        assert_eq!(queue.pop_due(at(9)), None);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.pop_due(at(10)), Some((at(10), name("a"))));
    }

    #[test]
    fn the_same_job_may_be_queued_at_several_instants() {
        // A replanned job leaves its old entry behind; the leader skips it when taken.
        let mut queue = DueQueue::default();
        queue.push(at(10), name("a"));
        queue.push(at(5), name("a"));
        assert_eq!(queue.pop_due(at(10)), Some((at(5), name("a"))));
        assert_eq!(queue.pop_due(at(10)), Some((at(10), name("a"))));
        queue.push(at(1), name("b"));
        queue.clear();
        assert_eq!((queue.len(), queue.peek()), (0, None));
    }
}
