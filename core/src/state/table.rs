//! The jobs of the state, by name.

use std::collections::{BTreeMap, BTreeSet, HashMap, hash_map};

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::JobRecord;
use crate::FixedHash;
use crate::job::JobName;

/// Jobs by name. Lookups, which every command makes, go through a hash map: in a tree of
/// 100,000 names each lookup compares about 35 names, each behind a pointer. Listing and
/// snapshots go through a sorted index of the names, so both stay in name order and a
/// snapshot has exactly the bytes of a sorted map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct JobTable {
    records: HashMap<JobName, JobRecord, FixedHash>,
    names: BTreeSet<JobName>,
}

impl JobTable {
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    pub(super) fn get(&self, name: &JobName) -> Option<&JobRecord> {
        self.records.get(name)
    }

    pub(super) fn get_mut(&mut self, name: &JobName) -> Option<&mut JobRecord> {
        self.records.get_mut(name)
    }

    pub(super) fn insert(&mut self, name: JobName, record: JobRecord) {
        self.names.insert(name.clone());
        self.records.insert(name, record);
    }

    pub(super) fn remove(&mut self, name: &JobName) -> Option<JobRecord> {
        self.names.remove(name);
        self.records.remove(name)
    }

    /// The records, in no particular order.
    pub(super) fn values_mut(&mut self) -> hash_map::ValuesMut<'_, JobName, JobRecord> {
        self.records.values_mut()
    }

    /// Whether the name index and the records hold the same names.
    pub(super) fn is_consistent(&self) -> bool {
        self.names.len() == self.records.len()
            && self.names.iter().all(|n| self.records.contains_key(n))
    }

    /// Every job, in name order.
    pub(super) fn iter(&self) -> Iter<'_> {
        Iter {
            names: self.names.iter(),
            records: &self.records,
        }
    }
}

/// The jobs of a [`JobTable`] in name order.
#[derive(Debug)]
pub(super) struct Iter<'a> {
    names: std::collections::btree_set::Iter<'a, JobName>,
    records: &'a HashMap<JobName, JobRecord, FixedHash>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a JobName, &'a JobRecord);

    fn next(&mut self) -> Option<Self::Item> {
        // Every name in the index has a record: the table's methods change both at once.
        // Should that ever not hold, the name is passed over rather than panicking, and
        // `State::check_invariants` reports it.
        for name in self.names.by_ref() {
            if let Some(record) = self.records.get(name) {
                return Some((name, record));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.names.len(), Some(self.names.len()))
    }
}

/// Exact because the index and the records hold the same names.
impl ExactSizeIterator for Iter<'_> {}

impl Serialize for JobTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.records.len()))?;
        for (name, record) in self.iter() {
            map.serialize_entry(name, record)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for JobTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let sorted = BTreeMap::<JobName, JobRecord>::deserialize(deserializer)?;
        let mut table = JobTable::default();
        table.records.reserve(sorted.len());
        for (name, record) in sorted {
            table.insert(name, record);
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::state::State;
    use crate::testkit::{job, ts};

    fn table(names: &[&str]) -> JobTable {
        let mut state = State::new();
        for (index, name) in (1..).zip(names) {
            state.apply(
                index,
                &Command::PutJob {
                    spec: Box::new(job(name, "@hourly")),
                    replace: false,
                    at: ts("2026-01-01T00:00:00Z"),
                },
            );
        }
        state.jobs
    }

    #[test]
    fn a_table_encodes_as_the_sorted_map_of_its_jobs_and_decodes_back() {
        let table = table(&["c", "a", "b"]);
        let sorted: BTreeMap<JobName, JobRecord> =
            table.iter().map(|(n, r)| (n.clone(), r.clone())).collect();
        let bytes = postcard::to_stdvec(&table).expect("encodes");
        assert_eq!(bytes, postcard::to_stdvec(&sorted).expect("encodes"));
        let back: JobTable = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, table);
        assert!(back.is_consistent());
        let names: Vec<&str> = back.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn removing_a_job_removes_it_from_the_listing() {
        let mut table = table(&["a", "b"]);
        assert!(table.remove(&JobName::new("a").expect("valid")).is_some());
        assert!(table.is_consistent());
        assert_eq!(table.iter().len(), 1);
        assert!(table.remove(&JobName::new("a").expect("valid")).is_none());
    }
}
