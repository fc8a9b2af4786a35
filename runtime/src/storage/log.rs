//! The Raft log in flat files: openraft's [`RaftLogStorage`] over a [`Disk`].
//!
//! # Layout
//!
//! Everything lives in one directory:
//!
//! - `log-<index>.seg`: a segment, a sequence of records (see [`record`](super::record)),
//!   each the postcard of one [`Entry`]. `<index>` is the index of its first entry, 20
//!   zero-padded digits, so segments sort by name. A segment is written by appending;
//!   the next one starts when a record would take it past
//!   [`LogConfig::segment_bytes_max`].
//! - `vote`: the last vote saved, one record, replaced atomically.
//! - `purged`: the last purged log id, one record, replaced atomically.
//! - `committed`: the last committed log id, one record, replaced atomically. It is only
//!   a hint that lets openraft re-apply committed entries at start (see
//!   [`RaftLogStorage::save_committed`]); an unreadable one is read as none, which only
//!   means the state machine restarts from its snapshot, so it is never a reason to
//!   refuse to start.
//!
//! # Durability
//!
//! [`LogStore::append`] writes the records, fsyncs the segment (and the directory when it
//! created a segment), and only then reports the entries flushed. When it starts a new
//! segment it first fsyncs the previous one, so only the last segment can ever end in a
//! torn record. Purging writes `purged` before it deletes segments, and truncating
//! deletes segments newest first, so a crash part-way never leaves a hole.
//!
//! # Recovery
//!
//! [`LogStore::open`] reads every segment in order and checks every record. It repairs
//! exactly one kind of damage, a torn tail of the last segment, which is what a crash in
//! the middle of an append (never acknowledged) leaves behind:
//!
//! - the file ends inside a record header or inside a payload;
//! - the file ends in zero bytes (the file system allocated space the data never
//!   reached), including zero fill that begins inside the last record's header;
//! - the last record's payload checksum does not match and nothing but zero bytes
//!   follows it.
//!
//! The torn tail is cut away with a warning naming the file, offset and bytes dropped.
//! Anything else is [`OpenError::Corrupt`]: a bad header checksum or a bad payload
//! checksum with more records after it, a missing record marker, a record larger than
//! [`LogConfig::record_bytes_max`], a payload that does not decode, indexes that are not
//! consecutive, a segment whose name is not the index of its first entry, an empty
//! segment before the last, entries missing between the last purged one and the first
//! kept. Losing an acknowledged entry can lose a committed write, so the daemon refuses to
//! start and says what to do.
//!
//! Entries after the last purged one are kept in memory for reads; openraft purges after
//! each snapshot, so this stays bounded by the snapshot policy.

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;

use super::record::{self, Damage, HEADER_LEN};
use super::{Corruption, OpenError, as_u64};
use crate::io::Disk;
use crate::raft::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Bounds on the log's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is closed, and the next one started, when a record would take it past
    /// this many bytes. A single record larger than this gets a segment of its own.
    pub segment_bytes_max: u64,
    /// The largest entry, encoded, that the log accepts; a larger one is refused on write
    /// and read as corruption.
    pub record_bytes_max: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 64 * 1024 * 1024,
            record_bytes_max: 64 * 1024 * 1024,
        }
    }
}

const SEGMENT_PREFIX: &str = "log-";
const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_INDEX_DIGITS: usize = 20;
const VOTE_FILE: &str = "vote";
const PURGED_FILE: &str = "purged";
const COMMITTED_FILE: &str = "committed";
/// How many entries the committed id may advance before it is written again.
const COMMITTED_WRITE_EVERY_ENTRIES: u64 = 1000;
/// What an atomic write interrupted by a crash leaves behind (see
/// [`Disk::write_atomic`]): removed at open.
const LEFTOVER_TEMPORARIES: [&str; 3] = ["vote.tmp", "purged.tmp", "committed.tmp"];

/// The entries after the last purged one, by index, shared with the readers.
type Entries = Arc<Mutex<BTreeMap<u64, Entry>>>;

fn lock(entries: &Mutex<BTreeMap<u64, Entry>>) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
    // Nothing panics while holding the lock, and the map is valid between any two
    // statements anyway: a poisoned lock is still usable.
    entries.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One segment file, as far as the writer needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    /// The index of its first entry (and its name).
    first_index: u64,
    path: PathBuf,
    /// Its length in bytes: where the next record goes.
    len_bytes: u64,
    /// The offset of the record of entry `first_index + i` at `i`. Never empty.
    offsets: Vec<u64>,
}

impl Segment {
    fn last_index(&self) -> Option<u64> {
        let count = as_u64(self.offsets.len());
        count
            .checked_sub(1)
            .and_then(|n| self.first_index.checked_add(n))
    }
}

fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!(
        "{SEGMENT_PREFIX}{first_index:0SEGMENT_INDEX_DIGITS$}{SEGMENT_SUFFIX}"
    ))
}

/// The index in a segment's file name; `None` if the name is not a segment's, `Some(Err)`
/// if it looks like one but does not parse.
fn parse_segment_name(name: &str) -> Option<Result<u64, ()>> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_INDEX_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Err(()));
    }
    Some(digits.parse::<u64>().map_err(|_| ()))
}

/// A failed write to the log. Reaches openraft inside a [`StorageError`].
#[derive(Debug, thiserror::Error)]
enum LogError {
    #[error(
        "entry {found} does not follow the log, which ends at index {last} (it would leave a hole or overwrite)"
    )]
    NotNext { last: u64, found: u64 },
    #[error("entry {index} encodes to {len_bytes} bytes, more than record_bytes_max ({max_bytes})")]
    TooLarge {
        index: u64,
        len_bytes: u64,
        max_bytes: u32,
    },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },
    #[error("purging up to index {upto} would leave a hole before the first entry, index {first}")]
    PurgeHole { upto: u64, first: u64 },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the raft log refuses writes since an earlier failure left its files in doubt: {0}")]
    Broken(String),
}

impl LogError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        LogError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    fn into_storage(self, subject: ErrorSubject<u64>, verb: ErrorVerb) -> StorageError {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }

    /// The same failure as an `io::Error`, for openraft's flush callback.
    fn to_io(&self) -> io::Error {
        let kind = match self {
            LogError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self.to_string())
    }
}

/// The Raft log: segments on a [`Disk`], entries since the last purge in memory.
///
/// Open it with [`LogStore::open`]; openraft then drives it through
/// [`RaftLogStorage`]. Every method does its I/O synchronously: an append has reached
/// the disk when it returns.
pub struct LogStore {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    config: LogConfig,
    entries: Entries,
    /// Oldest first. Every one holds at least one record.
    segments: Vec<Segment>,
    vote: Option<Vote>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
    /// Set when a failed write left the files in a state this store no longer knows; it
    /// then refuses every write (openraft stops on the first storage error anyway).
    broken: Option<String>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("segments", &self.segments.len())
            .field("vote", &self.vote)
            .field("last_purged", &self.last_purged)
            .field("committed", &self.committed)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// A reader of the log's entries, for openraft's replication tasks. Cheap to clone; it
/// sees every append, truncation and purge of its [`LogStore`].
#[derive(Clone)]
pub struct LogReader {
    entries: Entries,
}

impl Debug for LogReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogReader").finish_non_exhaustive()
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(entries_in(&self.entries, range))
    }
}

/// Copies the entries in `range`, which may be empty or inverted.
fn entries_in(entries: &Mutex<BTreeMap<u64, Entry>>, range: impl RangeBounds<u64>) -> Vec<Entry> {
    // `BTreeMap::range` panics on an inverted range: turn the bounds into a half-open
    // `start..end` first, `end: None` meaning unbounded.
    let start = match range.start_bound() {
        Bound::Included(&start) => Some(start),
        Bound::Excluded(&start) => start.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let end = match range.end_bound() {
        Bound::Included(&end) => end.checked_add(1),
        Bound::Excluded(&end) => Some(end),
        Bound::Unbounded => None,
    };
    let Some(start) = start else {
        return Vec::new();
    };
    let map = lock(entries);
    match end {
        Some(end) if end <= start => Vec::new(),
        Some(end) => map
            .range(start..end)
            .map(|(_, entry)| entry.clone())
            .collect(),
        None => map.range(start..).map(|(_, entry)| entry.clone()).collect(),
    }
}

/// What reading one segment found.
#[derive(Debug)]
struct Scan {
    /// Each record's offset and entry.
    records: Vec<(u64, Entry)>,
    /// The length of the intact records.
    valid_len: usize,
    /// Why the rest of the file is a torn tail, if there is a rest.
    torn: Option<Damage>,
}

/// Reads a segment's records. The last segment may end in a torn tail (see the module
/// documentation); anything else wrong is the offset and what it is.
fn scan_segment(
    bytes: &[u8],
    record_bytes_max: u32,
    is_last: bool,
) -> Result<Scan, (u64, Corruption)> {
    let mut records = Vec::new();
    let mut offset = 0usize;
    loop {
        let rest = bytes.get(offset..).unwrap_or_default();
        match record::read(rest, record_bytes_max) {
            Ok(None) => {
                return Ok(Scan {
                    records,
                    valid_len: offset,
                    torn: None,
                });
            }
            Ok(Some((payload, len))) => {
                let entry = record::decode_payload::<Entry>(payload)
                    .map_err(|detail| (as_u64(offset.saturating_add(HEADER_LEN)), detail))?;
                records.push((as_u64(offset), entry));
                offset = offset.saturating_add(len);
            }
            Err(damage) if is_last && is_torn_tail(damage, rest) => {
                return Ok(Scan {
                    records,
                    valid_len: offset,
                    torn: Some(damage),
                });
            }
            Err(damage) => return Err((as_u64(offset), damage.corruption(record_bytes_max))),
        }
    }
}

/// Whether damage at the start of `rest`, the rest of the last segment, is what a crash in
/// the middle of an append leaves.
fn is_torn_tail(damage: Damage, rest: &[u8]) -> bool {
    let trailing_zeros = rest.iter().rev().take_while(|&&byte| byte == 0).count();
    let zero_fill_from = rest.len().saturating_sub(trailing_zeros);
    match damage {
        Damage::ZeroFill | Damage::ShortHeader { .. } | Damage::ShortPayload { .. } => true,
        // The file ends in zero fill that begins inside the header.
        Damage::HeaderChecksum => trailing_zeros > 0 && zero_fill_from < HEADER_LEN,
        // The last record, or followed only by zero fill.
        Damage::PayloadChecksum { record_len } => zero_fill_from <= record_len,
        Damage::BadMagic { .. } | Damage::TooLarge { .. } => false,
    }
}

/// Reads a small file of the log; a missing file is `None`.
fn read_small<T: DeserializeOwned>(disk: &dyn Disk, path: &Path) -> Result<Option<T>, OpenError> {
    let Some(bytes) = disk
        .read(path)
        .map_err(|e| OpenError::io("read", path, e))?
    else {
        return Ok(None);
    };
    record::decode_file(&bytes)
        .map(Some)
        .map_err(|(offset, detail)| OpenError::corrupt(path, offset, detail))
}

impl LogStore {
    /// Opens the log in `dir`, creating the directory if needed, and recovers its state:
    /// every entry after the last purged one, the vote, the last purged and last committed
    /// log ids. Cuts away a torn tail (with a warning); refuses to open a log with any
    /// other damage (see the module documentation).
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: PathBuf,
        config: LogConfig,
    ) -> Result<LogStore, OpenError> {
        disk.create_dir_all(&dir)
            .map_err(|e| OpenError::io("create directory", &dir, e))?;
        let vote = read_small::<Vote>(&*disk, &dir.join(VOTE_FILE))?;
        let last_purged = read_small::<LogId>(&*disk, &dir.join(PURGED_FILE))?;
        let committed_path = dir.join(COMMITTED_FILE);
        let committed = match read_small::<Option<LogId>>(&*disk, &committed_path) {
            Ok(committed) => committed.flatten(),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the unreadable committed log id: it is only a hint");
                None
            }
        };

        let files = disk
            .list(&dir)
            .map_err(|e| OpenError::io("list", &dir, e))?;
        let mut named = Vec::new();
        for path in files {
            let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            if LEFTOVER_TEMPORARIES.contains(&name) {
                disk.remove(&path)
                    .map_err(|e| OpenError::io("remove", &path, e))?;
                continue;
            }
            match parse_segment_name(name) {
                Some(Ok(index)) => named.push((index, path)),
                Some(Err(())) => return Err(OpenError::corrupt(&path, 0, Corruption::BadName)),
                None => {}
            }
        }
        named.sort_by_key(|(index, _)| *index);

        let mut store = LogStore {
            disk,
            dir,
            config,
            entries: Arc::new(Mutex::new(BTreeMap::new())),
            segments: Vec::new(),
            vote,
            last_purged,
            committed,
            broken: None,
        };
        store.recover_segments(named)?;
        Ok(store)
    }

    /// Reads the segments, oldest first, into `self.segments` and the entries after the
    /// last purged one into memory. Only once every segment has been checked does it
    /// change any file: it cuts away a torn tail, removes an empty last segment, and
    /// finishes a purge a crash interrupted.
    fn recover_segments(&mut self, named: Vec<(u64, PathBuf)>) -> Result<(), OpenError> {
        let purged_index = self.last_purged.map(|id| id.index);
        let count = named.len();
        // The index the next record must have, once there has been one.
        let mut expected: Option<u64> = None;
        let mut seen_any = false;
        let mut entries = BTreeMap::new();
        // Repairs to the last segment, made once everything has been checked.
        let mut torn_tail: Option<(PathBuf, usize)> = None;
        let mut empty_last: Option<PathBuf> = None;
        for (position, (named_index, path)) in named.into_iter().enumerate() {
            let is_last = position.saturating_add(1) == count;
            let bytes = self
                .disk
                .read(&path)
                .map_err(|e| OpenError::io("read", &path, e))?
                .unwrap_or_default();
            let scan = scan_segment(&bytes, self.config.record_bytes_max, is_last)
                .map_err(|(offset, detail)| OpenError::corrupt(&path, offset, detail))?;
            if let Some(damage) = scan.torn {
                tracing::warn!(
                    file = %path.display(),
                    offset = scan.valid_len,
                    dropped_bytes = bytes.len().saturating_sub(scan.valid_len),
                    damage = ?damage,
                    "cutting away the torn tail of the raft log, left by a crash during an append"
                );
                torn_tail = Some((path.clone(), scan.valid_len));
            }
            if scan.records.is_empty() {
                if !is_last {
                    return Err(OpenError::corrupt(&path, 0, Corruption::EmptySegment));
                }
                // A crash right after the segment was created: nothing in it was ever
                // acknowledged.
                tracing::warn!(file = %path.display(), "removing an empty last raft log segment");
                empty_last = Some(path);
                continue;
            }

            let mut offsets = Vec::with_capacity(scan.records.len());
            for (offset, entry) in scan.records {
                let index = entry.log_id.index;
                if offsets.is_empty() && index != named_index {
                    return Err(OpenError::corrupt(
                        &path,
                        offset,
                        Corruption::NameMismatch {
                            named: named_index,
                            found: index,
                        },
                    ));
                }
                if seen_any && expected != Some(index) {
                    return Err(OpenError::corrupt(
                        &path,
                        offset,
                        Corruption::IndexGap {
                            expected: expected.unwrap_or(u64::MAX),
                            found: index,
                        },
                    ));
                }
                seen_any = true;
                expected = index.checked_add(1);
                offsets.push(offset);
                if purged_index.is_none_or(|purged| index > purged) {
                    entries.insert(index, entry);
                }
            }
            self.segments.push(Segment {
                first_index: named_index,
                path,
                len_bytes: as_u64(scan.valid_len),
                offsets,
            });
        }

        // Segments holding nothing but purged entries: a crash came between writing
        // `purged` and deleting them. The first one kept must hold the entry right after
        // the purged one, or entries are missing.
        let covered = match purged_index {
            Some(purged) => {
                let covered = self
                    .segments
                    .iter()
                    .take_while(|segment| segment.last_index().is_some_and(|last| last <= purged))
                    .count();
                if let Some(first) = self.segments.get(covered) {
                    let wanted = purged.saturating_add(1);
                    if first.first_index > wanted {
                        return Err(OpenError::corrupt(
                            &first.path,
                            0,
                            Corruption::IndexGap {
                                expected: wanted,
                                found: first.first_index,
                            },
                        ));
                    }
                }
                covered
            }
            None => 0,
        };

        // Everything checked: repair.
        if let Some((path, valid_len)) = torn_tail {
            self.disk
                .truncate(&path, as_u64(valid_len))
                .map_err(|e| OpenError::io("truncate", &path, e))?;
        }
        let mut removed = false;
        if let Some(path) = empty_last {
            self.disk
                .remove(&path)
                .map_err(|e| OpenError::io("remove", &path, e))?;
            removed = true;
        }
        for segment in self.segments.drain(..covered) {
            self.disk
                .remove(&segment.path)
                .map_err(|e| OpenError::io("remove", &segment.path, e))?;
            removed = true;
        }
        if removed {
            self.disk
                .sync_dir(&self.dir)
                .map_err(|e| OpenError::io("sync", &self.dir, e))?;
        }
        *lock(&self.entries) = entries;
        Ok(())
    }

    fn check_usable(&self) -> Result<(), LogError> {
        match &self.broken {
            Some(reason) => Err(LogError::Broken(reason.clone())),
            None => Ok(()),
        }
    }

    /// The index of the last entry, or of the last purged one if there is no entry.
    pub fn last_index(&self) -> Option<u64> {
        let last_entry = lock(&self.entries)
            .last_key_value()
            .map(|(&index, _)| index);
        last_entry.or(self.last_purged.map(|id| id.index))
    }

    /// Writes entries that must follow the log, and makes them durable.
    fn write_entries(&mut self, batch: &[Entry]) -> Result<(), LogError> {
        self.check_usable()?;
        // Raft never leaves a hole, nor appends over entries without truncating first:
        // either would be a bug upstream that this log refuses to make durable.
        let mut last = self.last_index();
        let mut records = Vec::with_capacity(batch.len());
        for entry in batch {
            let index = entry.log_id.index;
            if let Some(last) = last
                && last.checked_add(1) != Some(index)
            {
                return Err(LogError::NotNext { last, found: index });
            }
            last = Some(index);
            let payload = postcard::to_allocvec(entry).map_err(|source| LogError::Encode {
                what: "a log entry",
                source,
            })?;
            let too_large = LogError::TooLarge {
                index,
                len_bytes: as_u64(payload.len()),
                max_bytes: self.config.record_bytes_max,
            };
            let fits =
                u32::try_from(payload.len()).is_ok_and(|len| len <= self.config.record_bytes_max);
            if !fits {
                return Err(too_large);
            }
            let mut bytes = Vec::new();
            record::encode(&payload, &mut bytes).map_err(|record::PayloadTooLarge| too_large)?;
            records.push((index, bytes));
        }

        // Place the records: into the last segment, or new ones.
        let segments_before = self.segments.len();
        let last_before = self.segments.last().map(|s| (s.len_bytes, s.offsets.len()));
        let mut chunks: Vec<(usize, Vec<u8>)> = Vec::new();
        for (index, bytes) in records {
            let len = as_u64(bytes.len());
            let rotate = match self.segments.last() {
                None => true,
                Some(segment) => {
                    segment.len_bytes.saturating_add(len) > self.config.segment_bytes_max
                }
            };
            if rotate {
                self.segments.push(Segment {
                    first_index: index,
                    path: segment_path(&self.dir, index),
                    len_bytes: 0,
                    offsets: Vec::new(),
                });
            }
            let position = self.segments.len().saturating_sub(1);
            let Some(segment) = self.segments.last_mut() else {
                continue; // unreachable: a segment was pushed above if there was none
            };
            segment.offsets.push(segment.len_bytes);
            segment.len_bytes = segment.len_bytes.saturating_add(len);
            match chunks.last_mut() {
                Some((chunk_position, chunk)) if *chunk_position == position => {
                    chunk.extend_from_slice(&bytes)
                }
                _ => chunks.push((position, bytes)),
            }
        }

        if let Err(e) = self.write_chunks(&chunks, segments_before) {
            self.roll_back(segments_before, last_before, &e);
            return Err(e);
        }
        Ok(())
    }

    /// Appends each chunk to its segment and fsyncs it, in order, so a segment is durable
    /// before the next one is created; fsyncs the directory after creating a segment.
    fn write_chunks(
        &self,
        chunks: &[(usize, Vec<u8>)],
        segments_before: usize,
    ) -> Result<(), LogError> {
        for (position, bytes) in chunks {
            let Some(segment) = self.segments.get(*position) else {
                continue; // unreachable: positions come from `self.segments`
            };
            self.disk
                .append(&segment.path, bytes)
                .map_err(|e| LogError::io("append to", &segment.path, e))?;
            self.disk
                .sync(&segment.path)
                .map_err(|e| LogError::io("sync", &segment.path, e))?;
            if *position >= segments_before {
                self.disk
                    .sync_dir(&self.dir)
                    .map_err(|e| LogError::io("sync", &self.dir, e))?;
            }
        }
        Ok(())
    }

    /// Undoes a failed append: removes the segments it created and cuts the one that was
    /// last back to its length. If that fails too, or the failure was an fsync (after
    /// which the file's contents are unknown), the store refuses further writes.
    fn roll_back(
        &mut self,
        segments_before: usize,
        last_before: Option<(u64, usize)>,
        cause: &LogError,
    ) {
        let mut doubt = match cause {
            LogError::Io { action: "sync", .. } => Some(cause.to_string()),
            _ => None,
        };
        let created = self.segments.len() > segments_before;
        while self.segments.len() > segments_before {
            let Some(segment) = self.segments.pop() else {
                break;
            };
            if let Err(e) = self.disk.remove(&segment.path) {
                doubt = Some(LogError::io("remove", &segment.path, e).to_string());
            }
        }
        if created && let Err(e) = self.disk.sync_dir(&self.dir) {
            doubt = Some(LogError::io("sync", &self.dir, e).to_string());
        }
        if let (Some((len_bytes, count)), Some(segment)) = (last_before, self.segments.last_mut())
            && segment.len_bytes != len_bytes
        {
            segment.len_bytes = len_bytes;
            segment.offsets.truncate(count);
            if let Err(e) = self.disk.truncate(&segment.path, len_bytes) {
                doubt = Some(LogError::io("truncate", &segment.path, e).to_string());
            }
        }
        if let Some(reason) = doubt {
            tracing::error!(%reason, "the raft log refuses further writes");
            self.broken = Some(reason);
        }
    }

    /// Removes the entries from `since` on: memory first (so no reader sees them again),
    /// then whole segments newest first, then the tail of the segment holding `since`.
    fn truncate_since(&mut self, since: u64) -> Result<(), LogError> {
        self.check_usable()?;
        drop(lock(&self.entries).split_off(&since));
        let result = self.truncate_files(since);
        if let Err(e) = &result {
            self.broken = Some(e.to_string());
        }
        result
    }

    fn truncate_files(&mut self, since: u64) -> Result<(), LogError> {
        while let Some(segment) = self.segments.last() {
            if segment.first_index < since {
                break;
            }
            self.disk
                .remove(&segment.path)
                .map_err(|e| LogError::io("remove", &segment.path, e))?;
            // One directory sync per segment keeps the removals in order: a crash never
            // leaves a later segment without an earlier one.
            self.disk
                .sync_dir(&self.dir)
                .map_err(|e| LogError::io("sync", &self.dir, e))?;
            self.segments.pop();
        }
        if let Some(segment) = self.segments.last_mut() {
            let kept = since
                .checked_sub(segment.first_index)
                .and_then(|kept| usize::try_from(kept).ok());
            if let Some(kept) = kept
                && let Some(&cut) = segment.offsets.get(kept)
            {
                self.disk
                    .truncate(&segment.path, cut)
                    .map_err(|e| LogError::io("truncate", &segment.path, e))?;
                segment.offsets.truncate(kept);
                segment.len_bytes = cut;
            }
        }
        Ok(())
    }

    /// Forgets the entries up to `upto`: records it in `purged` first, then drops them
    /// from memory and deletes the segments holding nothing else.
    fn purge_upto(&mut self, upto: LogId) -> Result<(), LogError> {
        self.check_usable()?;
        if self
            .last_purged
            .is_some_and(|purged| purged.index >= upto.index)
        {
            return Ok(());
        }
        let first = lock(&self.entries)
            .first_key_value()
            .map(|(&index, _)| index);
        if let Some(first) = first
            && upto.index.saturating_add(1) < first
        {
            return Err(LogError::PurgeHole {
                upto: upto.index,
                first,
            });
        }
        let path = self.dir.join(PURGED_FILE);
        let bytes = record::encode_file(&upto).map_err(|source| LogError::Encode {
            what: "the purged log id",
            source,
        })?;
        self.disk
            .write_atomic(&path, &bytes)
            .map_err(|e| LogError::io("write", &path, e))?;
        self.last_purged = Some(upto);
        {
            let mut entries = lock(&self.entries);
            *entries = match upto.index.checked_add(1) {
                Some(next) => entries.split_off(&next),
                None => BTreeMap::new(),
            };
        }
        // Segments whose entries are all purged go; a partly purged one stays whole and
        // its purged entries are skipped when it is read again.
        let mut removed = 0;
        while let Some(segment) = self.segments.get(removed) {
            if segment.last_index().is_none_or(|last| last > upto.index) {
                break;
            }
            if let Err(e) = self.disk.remove(&segment.path) {
                // `purged` is durable: the next open finishes the job.
                let error = LogError::io("remove", &segment.path, e);
                self.segments.drain(..removed);
                return Err(error);
            }
            removed = removed.saturating_add(1);
        }
        self.segments.drain(..removed);
        if removed > 0 {
            self.disk
                .sync_dir(&self.dir)
                .map_err(|e| LogError::io("sync", &self.dir, e))?;
        }
        Ok(())
    }

    fn write_small(
        &self,
        file: &str,
        what: &'static str,
        bytes: Result<Vec<u8>, postcard::Error>,
    ) -> Result<(), LogError> {
        self.check_usable()?;
        let bytes = bytes.map_err(|source| LogError::Encode { what, source })?;
        let path = self.dir.join(file);
        self.disk
            .write_atomic(&path, &bytes)
            .map_err(|e| LogError::io("write", &path, e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(entries_in(&self.entries, range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_entry = lock(&self.entries)
            .last_key_value()
            .map(|(_, entry)| entry.log_id);
        Ok(LogState {
            last_purged_log_id: self.last_purged,
            last_log_id: last_entry.or(self.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            entries: Arc::clone(&self.entries),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_small(VOTE_FILE, "the vote", record::encode_file(vote))
            .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Write))?;
        self.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // The committed id is only a hint that lets a restarted host apply its log at
        // once; an older one is still correct. Writing it (with two fsyncs) on every
        // commit would cost more than the append itself, so it is written every
        // `COMMITTED_WRITE_EVERY_ENTRIES` entries.
        let last = self.committed.map_or(0, |c| c.index);
        let next = committed.map_or(0, |c| c.index);
        if self.committed.is_some()
            && next.saturating_sub(last) < COMMITTED_WRITE_EVERY_ENTRIES
            && next >= last
        {
            return Ok(());
        }
        self.write_small(
            COMMITTED_FILE,
            "the committed log id",
            record::encode_file(&committed),
        )
        .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Write))?;
        self.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        // What was last written: reading it back after a restart gives the same.
        Ok(self.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let batch: Vec<Entry> = entries.into_iter().collect();
        match self.write_entries(&batch) {
            Ok(()) => {
                {
                    let mut map = lock(&self.entries);
                    for entry in batch {
                        map.insert(entry.log_id.index, entry);
                    }
                }
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(e.to_io()));
                Err(e.into_storage(ErrorSubject::Logs, ErrorVerb::Write))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.truncate_since(log_id.index)
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.purge_upto(log_id)
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}

#[cfg(test)]
mod suite;
#[cfg(test)]
mod tests;
