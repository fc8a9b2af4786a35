//! Flat-file Raft storage: the log ([`log::LogStore`]) and snapshots
//! ([`snapshot::SnapshotStore`]), both over the [`Disk`](crate::io::Disk) trait so the
//! simulator can supply a disk that loses unsynced writes.
//!
//! Both refuse to start on a damaged file rather than guess: a Raft member that silently
//! forgets an entry it acknowledged can make the cluster lose a committed write. The one
//! damage they repair is a torn tail, the last record of the log cut short by a crash in
//! the middle of an append that was never acknowledged.

pub mod log;
mod record;
pub mod snapshot;

use std::path::{Path, PathBuf};

pub use log::{LogConfig, LogReader, LogStore};
pub use snapshot::SnapshotStore;

/// Why the Raft storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The disk refused an operation.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "list", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The disk's error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds something this code did not write, or a record that was acknowledged
    /// and has since been damaged.
    #[error(
        "raft {} file {} is corrupt at byte {offset}: {detail}; refusing to start rather than \
         lose committed entries (move the data directory aside to start afresh)",
        kind_of(file),
        file.display()
    )]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Where in the file the damage starts.
        offset: u64,
        /// What is wrong there.
        detail: Corruption,
    },
}

/// What is wrong with a corrupt file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// A record does not start with the record marker.
    #[error("no record marker where a record should start (found byte {found:#04x})")]
    BadMagic {
        /// The byte found instead.
        found: u8,
    },
    /// A record header's checksum does not match it.
    #[error("record header checksum mismatch")]
    HeaderChecksum,
    /// A record's payload checksum does not match it.
    #[error("payload checksum mismatch")]
    PayloadChecksum,
    /// A snapshot file's checksum does not match it.
    #[error("checksum mismatch")]
    Checksum,
    /// A record claims a payload larger than the configured bound.
    #[error("record of {len_bytes} bytes is larger than record_bytes_max ({max_bytes})")]
    RecordTooLarge {
        /// The length in the header.
        len_bytes: u64,
        /// The configured bound.
        max_bytes: u64,
    },
    /// A file ends inside a record, and it is not the tail of the log, where a crash in
    /// the middle of an append could explain it.
    #[error("file ends inside a record ({missing_bytes} bytes missing)")]
    Truncated {
        /// How many bytes are missing, at least.
        missing_bytes: u64,
    },
    /// A record's checksums match but its payload does not decode.
    #[error("payload does not decode: {reason}")]
    Undecodable {
        /// The decoder's complaint.
        reason: String,
    },
    /// A log segment holds no record, but later segments exist.
    #[error("segment is empty but later segments exist")]
    EmptySegment,
    /// A segment's name does not match the index of its first entry.
    #[error("segment is named for index {named} but starts with index {found}")]
    NameMismatch {
        /// The index in the file name.
        named: u64,
        /// The index of its first entry.
        found: u64,
    },
    /// Log indexes are not consecutive: entries are missing or repeated.
    #[error("expected log index {expected}, found {found}")]
    IndexGap {
        /// The index that should come next.
        expected: u64,
        /// The index found.
        found: u64,
    },
    /// A file name has the shape of a storage file but does not parse.
    #[error("unexpected file name")]
    BadName,
    /// A snapshot's header or lengths do not add up.
    #[error("{0}")]
    BadSnapshot(&'static str),
}

/// How an error message names a file: a snapshot or a log file (segments, vote, purged).
fn kind_of(file: &Path) -> &'static str {
    let is_snapshot = file
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with(snapshot::FILE_PREFIX));
    if is_snapshot { "snapshot" } else { "log" }
}

impl OpenError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        OpenError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    fn corrupt(file: &Path, offset: u64, detail: Corruption) -> Self {
        OpenError::Corrupt {
            file: file.to_path_buf(),
            offset,
            detail,
        }
    }
}

/// A length in bytes as a file offset. `usize` is at most 64 bits on every target Rust
/// supports, so this never loses anything.
fn as_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}
