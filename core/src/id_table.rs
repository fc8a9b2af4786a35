//! Values keyed by run id, for ids handed out in increasing order: the state's runs,
//! and the runs a host executes.

use std::collections::{BTreeMap, btree_map};
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::run::{Run, RunId};

/// How many values a chunk holds when it is sealed.
const CHUNK: usize = 32;

/// How many emptied chunks a table keeps to seal its next tails in.
const SPARE_MAX: usize = 64;

/// A value stored under the run id it holds.
pub(crate) trait Keyed {
    /// The id the value is stored under.
    fn key(&self) -> &RunId;
}

impl Keyed for Run {
    fn key(&self) -> &RunId {
        &self.id
    }
}

/// Values by run id, in id order, in chunks of up to [`CHUNK`] values.
///
/// The state hands out run ids in increasing order, so a new run always goes after every
/// other. A tree keyed by run id would descend some eight levels of a tree of two million
/// runs for each new run and each report, allocate a node every few runs, and keep its
/// leaves half full, since a leaf split by an insertion at its end keeps half its
/// entries. Here new values are appended to the tail chunk, the recent ones that reports
/// name are found there without a search of the tree, and a chunk is sealed full. The
/// tree of sealed chunks is keyed by the least id each may hold, and holds a
/// thirty-second of the entries. A sealed chunk that loses most of its values (to
/// history trimming, say) gives its spare room back; one that loses all of them leaves
/// the tree.
///
/// Equality is equality of the values, whatever the chunks: a state restored from a
/// snapshot equals the state that wrote it.
#[derive(Clone)]
pub(crate) struct IdTable<T> {
    /// Chunks holding the values below `tail_from`, keyed by the least id each may hold:
    /// a chunk holds the ids from its key up to the next key (or `tail_from`), in order.
    sealed: BTreeMap<u64, Vec<T>>,
    /// The values from `tail_from` on, in order.
    tail: Vec<T>,
    /// The least id the tail may hold.
    tail_from: u64,
    len: usize,
    /// Emptied chunks of full size, to seal the next tails in: a table whose values come
    /// and go in their thousands a second would otherwise give memory back to the
    /// allocator and take fresh pages, not in any cache, a moment later.
    spare: Vec<Vec<T>>,
}

impl<T> Default for IdTable<T> {
    fn default() -> Self {
        IdTable {
            sealed: BTreeMap::new(),
            tail: Vec::new(),
            tail_from: 0,
            len: 0,
            spare: Vec::new(),
        }
    }
}

/// Where `id` is in a chunk, or would be inserted.
fn position<T: Keyed>(chunk: &[T], id: RunId) -> Result<usize, usize> {
    // Values in a chunk mostly have consecutive ids: try where `id` would be then.
    if let Some(first) = chunk.first()
        && let Some(guess) = id.0.checked_sub(first.key().0)
        && let Ok(at) = usize::try_from(guess)
        && chunk.get(at).is_some_and(|value| *value.key() == id)
    {
        return Ok(at);
    }
    chunk.binary_search_by_key(&id, |value| *value.key())
}

/// Gives back most of the room of a chunk that has lost most of its values. A chunk of
/// full size moves its values to a smaller one and is kept, empty, to seal a later tail
/// in (up to [`SPARE_MAX`]): a table whose runs are trimmed one here and one there
/// frees a full-size chunk about as often as it seals one.
fn shrink<T>(chunk: &mut Vec<T>, spare: &mut Vec<Vec<T>>) {
    if chunk.capacity() <= 4 || chunk.len() * 4 > chunk.capacity() {
        return;
    }
    if spare_takes(spare, chunk.capacity()) {
        let mut smaller = Vec::with_capacity(chunk.len() * 2);
        smaller.append(chunk);
        spare.push(std::mem::replace(chunk, smaller));
    } else {
        chunk.shrink_to(chunk.len() * 2);
    }
}

/// Whether the spare chunks take a chunk of `capacity`: only full-size ones are kept,
/// up to [`SPARE_MAX`].
fn spare_takes<T>(spare: &[Vec<T>], capacity: usize) -> bool {
    capacity == CHUNK && spare.len() < SPARE_MAX
}

/// Keeps an emptied chunk of full size to seal a later tail in.
fn keep_spare<T>(spare: &mut Vec<Vec<T>>, chunk: Vec<T>) {
    if chunk.is_empty() && spare_takes(spare, chunk.capacity()) {
        spare.push(chunk);
    }
}

impl<T: Keyed> IdTable<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn chunk(&self, id: RunId) -> Option<&Vec<T>> {
        if id.0 >= self.tail_from {
            return Some(&self.tail);
        }
        self.sealed
            .range(..=id.0)
            .next_back()
            .map(|(_, chunk)| chunk)
    }

    pub(crate) fn get(&self, id: RunId) -> Option<&T> {
        let chunk = self.chunk(id)?;
        chunk.get(position(chunk, id).ok()?)
    }

    pub(crate) fn get_mut(&mut self, id: RunId) -> Option<&mut T> {
        let chunk = if id.0 >= self.tail_from {
            &mut self.tail
        } else {
            self.sealed.range_mut(..=id.0).next_back()?.1
        };
        let at = position(chunk, id).ok()?;
        chunk.get_mut(at)
    }

    /// The value stored under `id`, made by `make` and stored if there is none; none,
    /// and nothing stored, if `make` makes a value with another id.
    pub(crate) fn get_or_insert_with(
        &mut self,
        id: RunId,
        make: impl FnOnce() -> T,
    ) -> Option<&mut T> {
        if self.get(id).is_none() {
            let value = make();
            if *value.key() != id {
                return None;
            }
            self.insert(value);
        }
        self.get_mut(id)
    }

    /// Stores `value` under its id; answers the value it replaces, if any.
    pub(crate) fn insert(&mut self, value: T) -> Option<T> {
        let id = *value.key();
        if id.0 < self.tail_from {
            return self.insert_sealed(value);
        }
        if self.tail.last().is_none_or(|last| *last.key() < id) {
            // The usual case: a new value, after every other.
            if self.tail.capacity() == 0 {
                self.tail.reserve_exact(CHUNK);
            }
            self.tail.push(value);
        } else {
            match position(&self.tail, id) {
                Ok(at) => return Some(std::mem::replace(&mut self.tail[at], value)),
                Err(at) => self.tail.insert(at, value),
            }
        }
        self.len += 1;
        if self.tail.len() >= CHUNK {
            let next = self
                .spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(CHUNK));
            let mut full = std::mem::replace(&mut self.tail, next);
            let next_from = match full.last().map(|last| last.key().0) {
                // No id comes after the greatest there is: it stays in the tail, alone.
                Some(u64::MAX) => {
                    self.tail.extend(full.pop());
                    u64::MAX
                }
                Some(last) => last + 1,
                None => self.tail_from,
            };
            self.sealed.insert(self.tail_from, full);
            self.tail_from = next_from;
        }
        None
    }

    /// Inserts a value older than the tail: into the chunk whose range holds its id.
    fn insert_sealed(&mut self, value: T) -> Option<T> {
        let id = *value.key();
        let key = match self.sealed.range(..=id.0).next_back() {
            Some((&key, _)) => key,
            None => {
                // Below every key: the first chunk (or a new one) starts at this id.
                let first = self.sealed.pop_first().map(|(_, chunk)| chunk);
                self.sealed.insert(id.0, first.unwrap_or_default());
                id.0
            }
        };
        let chunk = self.sealed.entry(key).or_default();
        match position(chunk, id) {
            Ok(at) => return Some(std::mem::replace(&mut chunk[at], value)),
            Err(at) => chunk.insert(at, value),
        }
        self.len += 1;
        if chunk.len() > 2 * CHUNK {
            let upper = chunk.split_off(CHUNK);
            chunk.shrink_to(CHUNK);
            if let Some(first) = upper.first() {
                self.sealed.insert(first.key().0, upper);
            }
        }
        None
    }

    pub(crate) fn remove(&mut self, id: RunId) -> Option<T> {
        if id.0 >= self.tail_from {
            let at = position(&self.tail, id).ok()?;
            self.len -= 1;
            return Some(self.tail.remove(at));
        }
        let oldest = self.sealed.first_key_value().map(|(&key, _)| key);
        let (&key, chunk) = self.sealed.range_mut(..=id.0).next_back()?;
        let at = position(chunk, id).ok()?;
        let value = chunk.remove(at);
        self.len -= 1;
        if chunk.is_empty() {
            if let Some(chunk) = self.sealed.remove(&key) {
                keep_spare(&mut self.spare, chunk);
            }
        } else if Some(key) != oldest {
            // The oldest chunk is where values taken in order go from: it is about to
            // empty, and shrinking it on the way would copy it again and again.
            shrink(chunk, &mut self.spare);
        }
        Some(value)
    }

    /// Keeps the values `keep` answers true for, in order; it may change them (but not
    /// their ids).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&mut T) -> bool) {
        let mut removed = 0;
        let spare = &mut self.spare;
        let oldest = self.sealed.first_key_value().map(|(&key, _)| key);
        self.sealed.retain(|&key, chunk| {
            let before = chunk.len();
            chunk.retain_mut(&mut keep);
            removed += before - chunk.len();
            if chunk.is_empty() {
                keep_spare(spare, std::mem::take(chunk));
                return false;
            }
            if Some(key) != oldest {
                shrink(chunk, spare);
            }
            true
        });
        let before = self.tail.len();
        self.tail.retain_mut(&mut keep);
        removed += before - self.tail.len();
        self.len -= removed;
    }

    /// Every value, by id.
    pub(crate) fn iter(&self) -> Iter<'_, T> {
        Iter {
            sealed: self.sealed.values(),
            current: [].iter(),
            tail: Some(&self.tail),
            remaining: self.len,
        }
    }

    /// Every value, by id, to change (but not its id).
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.sealed
            .values_mut()
            .flat_map(|chunk| chunk.iter_mut())
            .chain(self.tail.iter_mut())
    }
}

/// The values of an [`IdTable`] in id order, with their ids.
#[derive(Debug)]
pub(crate) struct Iter<'a, T> {
    sealed: btree_map::Values<'a, u64, Vec<T>>,
    current: std::slice::Iter<'a, T>,
    tail: Option<&'a [T]>,
    remaining: usize,
}

impl<'a, T: Keyed> Iterator for Iter<'a, T> {
    type Item = (&'a RunId, &'a T);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(value) = self.current.next() {
                self.remaining = self.remaining.saturating_sub(1);
                return Some((value.key(), value));
            }
            self.current = match self.sealed.next() {
                Some(chunk) => chunk.iter(),
                None => self.tail.take()?.iter(),
            };
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// Exact because the table counts its values as they come and go.
impl<T: Keyed> ExactSizeIterator for Iter<'_, T> {}

impl<T: Keyed + PartialEq> PartialEq for IdTable<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().map(|(_, v)| v).eq(other.iter().map(|(_, v)| v))
    }
}

impl<T: Keyed + Eq> Eq for IdTable<T> {}

impl<T: Keyed + fmt::Debug> fmt::Debug for IdTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Encoded as the map of values by id, exactly as a sorted map of them would be.
impl<T: Keyed + Serialize> Serialize for IdTable<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len))?;
        for (id, run) in self.iter() {
            map.serialize_entry(id, run)?;
        }
        map.end()
    }
}

impl<'de, T: Keyed + Deserialize<'de>> Deserialize<'de> for IdTable<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TableVisitor(std::marker::PhantomData))
    }
}

struct TableVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Keyed + Deserialize<'de>> Visitor<'de> for TableVisitor<T> {
    type Value = IdTable<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of runs by id")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IdTable<T>, A::Error> {
        use serde::de::Error;
        let mut table = IdTable::default();
        while let Some((id, value)) = map.next_entry::<RunId, T>()? {
            if *value.key() != id {
                return Err(A::Error::custom(format!(
                    "run {} is stored under id {id}",
                    value.key()
                )));
            }
            if table.insert(value).is_some() {
                return Err(A::Error::custom(format!("run {id} is stored twice")));
            }
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::command::Declare;
    use crate::run::Trigger;
    use crate::testkit::{name, ts};

    fn run(id: u64) -> Run {
        let declare = Declare {
            job: name("job"),
            scheduled_at: ts("2026-01-01T00:00:00Z"),
            attempt: 1,
            trigger: Trigger::Schedule,
            host: None,
            term: id,
            at: ts("2026-01-01T00:00:00Z"),
            key: None,
        };
        declare.run(RunId(id))
    }

    fn run_with_term(id: u64, term: u64) -> Run {
        Run { term, ..run(id) }
    }

    /// Inserts a run into the table and its term into the model: both replace alike.
    fn insert_both(
        table: &mut IdTable<Run>,
        model: &mut BTreeMap<u64, u64>,
        id: u64,
        term: u64,
    ) -> Result<(), TestCaseError> {
        let old = table.insert(run_with_term(id, term)).map(|r| r.term);
        prop_assert_eq!(old, model.insert(id, term));
        Ok(())
    }

    /// The table holds exactly the model's runs, in order, and finds each of them.
    fn agrees(table: &IdTable<Run>, model: &BTreeMap<u64, u64>) -> Result<(), TestCaseError> {
        prop_assert_eq!(table.len(), model.len());
        prop_assert_eq!(table.iter().len(), model.len());
        let listed: Vec<(u64, u64)> = table.iter().map(|(id, r)| (id.0, r.term)).collect();
        let expected: Vec<(u64, u64)> = model.iter().map(|(&k, &v)| (k, v)).collect();
        prop_assert_eq!(listed, expected);
        for (&id, &term) in model {
            prop_assert_eq!(table.get(RunId(id)).map(|r| r.term), Some(term));
        }
        Ok(())
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// A new run after every other, as the state makes them.
        Append,
        Insert(u64),
        Remove(u64),
        Touch(u64),
        /// Keeps the values whose term is not a multiple of this, and changes the rest.
        Retain(u64),
        /// Inserts 70 ids from this one up, in order: more than a chunk splits at.
        Fill(u64),
        GetOrInsert(u64),
        TouchAll,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => Just(Op::Append),
            1 => (0u64..400).prop_map(Op::Insert),
            4 => (0u64..400).prop_map(Op::Remove),
            1 => (0u64..400).prop_map(Op::Touch),
            1 => (2u64..6).prop_map(Op::Retain),
            1 => (0u64..400).prop_map(Op::Fill),
            1 => (0u64..400).prop_map(Op::GetOrInsert),
            1 => Just(Op::TouchAll),
        ]
    }

    proptest! {
        /// Any sequence of appends, insertions anywhere, removals, retains and changes leaves the
        /// table agreeing with a sorted map, and its encoding equal to the map's.
        #[test]
        fn the_table_agrees_with_a_sorted_map(ops in proptest::collection::vec(op(), 0..600)) {
            let mut table = IdTable::<Run>::default();
            let mut model = BTreeMap::new();
            let mut next = 0u64;
            for (step, op) in (1u64..).zip(ops) {
                match op {
                    Op::Append => {
                        prop_assert!(table.insert(run(next)).is_none());
                        model.insert(next, next);
                        next += 1;
                    }
                    Op::Insert(id) => {
                        insert_both(&mut table, &mut model, id, 1_000_000 + step)?;
                        next = next.max(id + 1);
                    }
                    Op::Remove(id) => {
                        let gone = table.remove(RunId(id)).map(|r| r.term);
                        prop_assert_eq!(gone, model.remove(&id));
                        prop_assert!(table.get(RunId(id)).is_none());
                    }
                    Op::Fill(from) => {
                        for id in from..from + 70 {
                            insert_both(&mut table, &mut model, id, 3_000_000 + id)?;
                        }
                        next = next.max(from + 70);
                    }
                    Op::GetOrInsert(id) => {
                        let got = table.get_or_insert_with(RunId(id), || {
                            run_with_term(id, 4_000_000 + step)
                        });
                        let expected = *model.entry(id).or_insert(4_000_000 + step);
                        prop_assert_eq!(got.map(|r| r.term), Some(expected));
                        if !model.contains_key(&(id + 1)) {
                            // Made under another id: refused, and nothing stored.
                            let made = table.get_or_insert_with(RunId(id + 1), || run(id));
                            prop_assert!(made.is_none());
                        }
                        next = next.max(id + 1);
                    }
                    Op::TouchAll => {
                        for r in table.values_mut() {
                            r.term += 7;
                        }
                        for term in model.values_mut() {
                            *term += 7;
                        }
                    }
                    Op::Retain(k) => {
                        table.retain(|r| {
                            r.term += 1;
                            (r.term - 1) % k != 0
                        });
                        model.retain(|_, term| *term % k != 0);
                        for term in model.values_mut() {
                            *term += 1;
                        }
                    }
                    Op::Touch(id) => {
                        if let Some(r) = table.get_mut(RunId(id)) {
                            r.term = 2_000_000 + step;
                        }
                        if let Some(term) = model.get_mut(&id) {
                            *term = 2_000_000 + step;
                        }
                    }
                }
            }
            agrees(&table, &model)?;
            let runs: BTreeMap<RunId, Run> =
                table.iter().map(|(id, r)| (*id, r.clone())).collect();
            let bytes = postcard::to_stdvec(&table).expect("encodes");
            prop_assert_eq!(&bytes, &postcard::to_stdvec(&runs).expect("encodes"));
            let back: IdTable<Run> = postcard::from_bytes(&bytes).expect("decodes");
            prop_assert!(back == table);
        }
    }

    #[test]
    fn a_chunk_that_loses_most_of_its_runs_gives_its_room_back_and_an_empty_one_is_reused() {
        let mut table = IdTable::<Run>::default();
        let chunk = CHUNK as u64;
        for id in 0..(3 * chunk) {
            table.insert(run(id));
        }
        assert_eq!(table.sealed.len(), 3);
        // The second chunk loses most of its runs: it shrinks.
        for id in chunk..(2 * chunk - 2) {
            table.remove(RunId(id));
        }
        let second = table.sealed.values().nth(1).expect("a chunk");
        assert_eq!(second.len(), 2);
        assert!(second.capacity() < CHUNK, "capacity {}", second.capacity());
        assert_eq!(table.spare.len(), 1, "its full-size room is kept to reuse");
        // The oldest, taken in order, keeps its size until it empties; then it is kept
        // to seal a later tail in, where the shrunk one is not.
        for id in 0..(chunk - 1) {
            table.remove(RunId(id));
        }
        let oldest = table.sealed.values().next().expect("a chunk");
        assert_eq!((oldest.len(), oldest.capacity()), (1, CHUNK));
        table.remove(RunId(chunk - 1));
        assert_eq!(table.spare.len(), 2, "an emptied full-size chunk is kept");
        table.remove(RunId(2 * chunk - 2));
        table.remove(RunId(2 * chunk - 1));
        assert_eq!(table.spare.len(), 2, "a shrunk chunk is not kept");
        assert_eq!(table.sealed.len(), 1);
        assert_eq!(table.len(), CHUNK);
        for id in (3 * chunk)..(4 * chunk) {
            table.insert(run(id));
        }
        assert_eq!(
            table.spare.len(),
            1,
            "sealing the next tail takes a kept chunk"
        );
        assert_eq!(table.len(), 2 * CHUNK);
        assert!(table.get(RunId(0)).is_none());
        assert!(table.get(RunId(2 * chunk)).is_some());
    }

    #[test]
    fn a_chunk_that_takes_many_older_ids_splits_and_keeps_them_in_order() {
        let mut table = IdTable::<Run>::default();
        for id in 1_000..1_032 {
            table.insert(run(id));
        }
        // Sealed as one chunk that may hold every id below 1,032.
        assert_eq!(table.sealed.len(), 1);
        for id in 0..200 {
            assert!(table.insert(run(id)).is_none());
        }
        assert!(table.sealed.len() > 3, "{} chunks", table.sealed.len());
        assert!(table.sealed.values().all(|c| c.len() <= 2 * CHUNK));
        assert!(table.sealed.values().all(|c| c.capacity() <= 2 * CHUNK + 2));
        assert_eq!(table.len(), 232);
        let ids: Vec<u64> = table.iter().map(|(id, _)| id.0).collect();
        let expected: Vec<u64> = (0..200).chain(1_000..1_032).collect();
        assert_eq!(ids, expected);
        assert!(expected.iter().all(|&id| table.get(RunId(id)).is_some()));
    }

    #[test]
    fn the_greatest_id_there_is_stays_findable() {
        let mut table = IdTable::<Run>::default();
        // Two chunks' worth: the second fills the tail up to the greatest id.
        let ids: Vec<u64> = (u64::MAX - 63..=u64::MAX).collect();
        for &id in &ids {
            table.insert(run(id));
        }
        assert_eq!(table.len(), ids.len());
        assert!(ids.iter().all(|&id| table.get(RunId(id)).is_some()));
        let bytes = postcard::to_stdvec(&table).expect("encodes");
        let back: IdTable<Run> = postcard::from_bytes(&bytes).expect("decodes");
        assert!(back == table);
        assert!(table.remove(RunId(u64::MAX)).is_some());
        assert!(table.insert(run(u64::MAX)).is_none());
        assert_eq!(table.iter().last().map(|(id, _)| id.0), Some(u64::MAX));
    }

    #[test]
    fn a_snapshot_naming_a_run_under_another_id_or_twice_is_refused() {
        let mut misfiled = BTreeMap::new();
        misfiled.insert(RunId(5), run(6));
        let bytes = postcard::to_stdvec(&misfiled).expect("encodes");
        assert!(postcard::from_bytes::<IdTable<Run>>(&bytes).is_err());
        let err = serde_json::from_str::<IdTable<Run>>(&format!(
            r#"{{"6": {0}, "6": {0}}}"#,
            serde_json::to_string(&run(6)).expect("encodes")
        ))
        .expect_err("refused");
        assert!(err.to_string().contains("run 6 is stored twice"), "{err}");
        let err = serde_json::from_str::<IdTable<Run>>(&format!(
            r#"{{"5": {}}}"#,
            serde_json::to_string(&run(6)).expect("encodes")
        ))
        .expect_err("refused");
        assert!(
            err.to_string().contains("run 6 is stored under id 5"),
            "{err}"
        );
    }
}
