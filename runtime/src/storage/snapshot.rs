//! Snapshots in flat files: the newest one a member built or received, checksummed.
//!
//! Each snapshot is one file, `snapshot-<term>-<index>.bin`, named after the last log id
//! it includes (`0-0` for a snapshot of nothing), written atomically:
//!
//! ```text
//! offset       size      field
//! 0            8         magic, "ROTASNP1"
//! 8            4         meta length in bytes, u32 little-endian
//! 12           8         data length in bytes, u64 little-endian
//! 20           meta_len  the postcard of the SnapshotMeta
//! 20+meta_len  data_len  the snapshot data
//! end-4        4         CRC32 of every byte before it, little-endian
//! ```
//!
//! Saving one removes every other: openraft wants the snapshot just saved to be the
//! current one. Loading takes the newest by index and refuses a damaged one rather than
//! fall back to an older one, which would silently roll the state machine back.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Corruption, OpenError, as_u64};
use crate::io::Disk;
use crate::raft::types::SnapshotMeta;

/// The start of every snapshot file's name.
pub(crate) const FILE_PREFIX: &str = "snapshot-";
const FILE_SUFFIX: &str = ".bin";
/// What an atomic write interrupted by a crash leaves behind (see
/// [`Disk::write_atomic`]).
const TEMPORARY_SUFFIX: &str = ".tmp";
const MAGIC: [u8; 8] = *b"ROTASNP1";
const HEADER_LEN: usize = 20;
const CHECKSUM_LEN: usize = 4;

/// The snapshots of one member, in one directory of a [`Disk`].
#[derive(Clone)]
pub struct SnapshotStore {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
}

impl fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SnapshotStore {
    /// Snapshots in `dir`, which is created on the first save.
    pub fn new(disk: Arc<dyn Disk>, dir: PathBuf) -> SnapshotStore {
        SnapshotStore { disk, dir }
    }

    /// Saves a snapshot durably, then removes every other snapshot file.
    pub fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        let bytes = encode(meta, data)?;
        self.disk.create_dir_all(&self.dir)?;
        let path = self.dir.join(file_name(meta));
        self.disk.write_atomic(&path, &bytes)?;
        let mut removed = false;
        for other in self.disk.list(&self.dir)? {
            if other != path && name_of(&other).is_some_and(|name| parse_name(name).is_some()) {
                self.disk.remove(&other)?;
                removed = true;
            }
        }
        if removed {
            self.disk.sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The newest snapshot, by the index of its last log id, or none. Removes what
    /// interrupted saves left behind. A damaged newest snapshot is an error, never a
    /// reason to load an older one.
    pub fn load_latest(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, OpenError> {
        let files = self
            .disk
            .list(&self.dir)
            .map_err(|e| OpenError::io("list", &self.dir, e))?;
        let mut newest: Option<((u64, u64), PathBuf)> = None;
        for path in files {
            let Some(name) = name_of(&path) else { continue };
            if name.starts_with(FILE_PREFIX) && name.ends_with(TEMPORARY_SUFFIX) {
                self.disk
                    .remove(&path)
                    .map_err(|e| OpenError::io("remove", &path, e))?;
                continue;
            }
            let Some(parsed) = parse_name(name) else {
                continue;
            };
            let Ok((term, index)) = parsed else {
                return Err(OpenError::corrupt(&path, 0, Corruption::BadName));
            };
            if newest.as_ref().is_none_or(|(key, _)| (index, term) > *key) {
                newest = Some(((index, term), path));
            }
        }
        let Some(((index, term), path)) = newest else {
            return Ok(None);
        };
        let bytes = self
            .disk
            .read(&path)
            .map_err(|e| OpenError::io("read", &path, e))?
            .ok_or_else(|| OpenError::io("read", &path, io::ErrorKind::NotFound.into()))?;
        let (meta, data) =
            decode(&bytes).map_err(|(offset, detail)| OpenError::corrupt(&path, offset, detail))?;
        if name_key(&meta) != (term, index) {
            return Err(OpenError::corrupt(
                &path,
                as_u64(HEADER_LEN),
                Corruption::BadSnapshot("its metadata names another log id than its file name"),
            ));
        }
        Ok(Some((meta, data)))
    }
}

fn name_of(path: &Path) -> Option<&str> {
    path.file_name().and_then(|name| name.to_str())
}

/// The term and index a snapshot's file is named after.
fn name_key(meta: &SnapshotMeta) -> (u64, u64) {
    meta.last_log_id
        .map_or((0, 0), |id| (id.leader_id.term, id.index))
}

fn file_name(meta: &SnapshotMeta) -> String {
    let (term, index) = name_key(meta);
    format!("{FILE_PREFIX}{term}-{index}{FILE_SUFFIX}")
}

/// The term and index in a snapshot's file name; `None` if the name is not a snapshot's,
/// `Some(Err)` if it looks like one but does not parse.
fn parse_name(name: &str) -> Option<Result<(u64, u64), ()>> {
    let rest = name.strip_prefix(FILE_PREFIX)?.strip_suffix(FILE_SUFFIX)?;
    let number = |digits: &str| -> Result<u64, ()> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        digits.parse().map_err(|_| ())
    };
    let parsed = rest
        .split_once('-')
        .ok_or(())
        .and_then(|(term, index)| Ok((number(term)?, number(index)?)));
    Some(parsed)
}

fn encode(meta: &SnapshotMeta, data: &[u8]) -> io::Result<Vec<u8>> {
    let meta = postcard::to_allocvec(meta).map_err(io::Error::other)?;
    let meta_len = u32::try_from(meta.len())
        .map_err(|_| io::Error::other("snapshot metadata larger than 4 GiB"))?;
    let mut bytes = Vec::with_capacity(
        HEADER_LEN
            .saturating_add(meta.len())
            .saturating_add(data.len())
            .saturating_add(CHECKSUM_LEN),
    );
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&meta_len.to_le_bytes());
    bytes.extend_from_slice(&as_u64(data.len()).to_le_bytes());
    bytes.extend_from_slice(&meta);
    bytes.extend_from_slice(data);
    let checksum = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    Ok(bytes)
}

/// Reads a snapshot file; errors are the offset of the damage and what it is.
fn decode(bytes: &[u8]) -> Result<(SnapshotMeta, Vec<u8>), (u64, Corruption)> {
    let bad = |offset: usize, what: &'static str| (as_u64(offset), Corruption::BadSnapshot(what));
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(bad(0, "not a rota snapshot file"));
    }
    let Some(body_len) = bytes
        .len()
        .checked_sub(CHECKSUM_LEN)
        .filter(|&len| len >= HEADER_LEN)
    else {
        return Err(bad(bytes.len(), "file too short for a snapshot"));
    };
    let (body, checksum) = bytes.split_at(body_len);
    let mut word = [0u8; CHECKSUM_LEN];
    word.copy_from_slice(checksum);
    if crc32fast::hash(body) != u32::from_le_bytes(word) {
        return Err((as_u64(body_len), Corruption::Checksum));
    }
    let mut meta_len = [0u8; 4];
    meta_len.copy_from_slice(body.get(8..12).unwrap_or(&[0; 4]));
    let mut data_len = [0u8; 8];
    data_len.copy_from_slice(body.get(12..20).unwrap_or(&[0; 8]));
    let meta_len = usize::try_from(u32::from_le_bytes(meta_len)).ok();
    let data_len = usize::try_from(u64::from_le_bytes(data_len)).ok();
    let meta_end = meta_len.and_then(|len| HEADER_LEN.checked_add(len));
    let data_end = meta_end
        .zip(data_len)
        .and_then(|(start, len)| start.checked_add(len));
    let (Some(meta_end), Some(data_end)) = (meta_end, data_end) else {
        return Err(bad(8, "lengths do not match the file size"));
    };
    if data_end != body_len {
        return Err(bad(8, "lengths do not match the file size"));
    }
    let meta = body.get(HEADER_LEN..meta_end).unwrap_or_default();
    let data = body.get(meta_end..data_end).unwrap_or_default();
    let meta = super::record::decode_payload::<SnapshotMeta>(meta)
        .map_err(|detail| (as_u64(HEADER_LEN), detail))?;
    Ok((meta, data.to_vec()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::{Membership, StoredMembership};

    use super::*;
    use crate::io::FsDisk;
    use crate::raft::types::{LogId, Peer};

    fn log_id(term: u64, index: u64) -> LogId {
        openraft::testing::log_id(term, 0, index)
    }

    fn meta(term: u64, index: u64) -> SnapshotMeta {
        let membership = Membership::new(vec![BTreeSet::from([1, 2])], None);
        let membership: Membership<u64, Peer> = membership;
        SnapshotMeta {
            last_log_id: Some(log_id(term, index)),
            last_membership: StoredMembership::new(Some(log_id(1, 1)), membership),
            snapshot_id: format!("{term}-{index}-x"),
        }
    }

    fn store(dir: &Path) -> SnapshotStore {
        SnapshotStore::new(Arc::new(FsDisk), dir.to_path_buf())
    }

    fn names(dir: &Path) -> Vec<String> {
        FsDisk
            .list(dir)
            .unwrap()
            .iter()
            .map(|path| name_of(path).unwrap().to_owned())
            .collect()
    }

    #[test]
    fn nothing_saved_loads_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(store(dir.path()).load_latest().unwrap().is_none());
        assert!(
            store(&dir.path().join("missing"))
                .load_latest()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_saved_snapshot_loads_back_and_replaces_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = store(dir.path());
        snapshots.save(&meta(1, 5), b"five").unwrap();
        assert_eq!(
            snapshots.load_latest().unwrap(),
            Some((meta(1, 5), b"five".to_vec()))
        );

        snapshots.save(&meta(2, 12), b"twelve").unwrap();
        assert_eq!(
            snapshots.load_latest().unwrap(),
            Some((meta(2, 12), b"twelve".to_vec()))
        );
        assert_eq!(names(dir.path()), vec!["snapshot-2-12.bin"]);

        let empty = SnapshotMeta::default();
        snapshots.save(&empty, b"").unwrap();
        assert_eq!(snapshots.load_latest().unwrap(), Some((empty, Vec::new())));
        assert_eq!(names(dir.path()), vec!["snapshot-0-0.bin"]);
    }

    #[test]
    fn the_newest_by_index_wins_and_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // Written directly, as a crash between saving and removing would leave them.
        FsDisk
            .write_atomic(
                &dir.path().join("snapshot-3-9.bin"),
                &encode(&meta(3, 9), b"nine").unwrap(),
            )
            .unwrap();
        FsDisk
            .write_atomic(
                &dir.path().join("snapshot-2-10.bin"),
                &encode(&meta(2, 10), b"ten").unwrap(),
            )
            .unwrap();
        FsDisk
            .append(
                &dir.path().join("snapshot-4-11.bin.tmp"),
                b"half a snapshot",
            )
            .unwrap();
        FsDisk
            .append(&dir.path().join("unrelated"), b"kept")
            .unwrap();
        let loaded = store(dir.path()).load_latest().unwrap();
        assert_eq!(loaded, Some((meta(2, 10), b"ten".to_vec())));
        assert_eq!(
            names(dir.path()),
            vec!["snapshot-2-10.bin", "snapshot-3-9.bin", "unrelated"]
        );
    }

    #[test]
    fn a_damaged_newest_snapshot_is_refused_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        FsDisk
            .write_atomic(
                &dir.path().join("snapshot-1-5.bin"),
                &encode(&meta(1, 5), b"five").unwrap(),
            )
            .unwrap();
        let path = dir.path().join("snapshot-2-12.bin");
        let mut bytes = encode(&meta(2, 12), b"twelve").unwrap();
        let at = bytes.len() - 6;
        bytes[at] ^= 0x20;
        FsDisk.write_atomic(&path, &bytes).unwrap();

        let error = store(dir.path()).load_latest().unwrap_err();
        assert!(
            matches!(&error, OpenError::Corrupt { file, detail: Corruption::Checksum, .. } if *file == path)
        );
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("raft snapshot file"), "{message}");
    }

    #[test]
    fn a_snapshot_named_for_another_log_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        FsDisk
            .write_atomic(
                &dir.path().join("snapshot-1-6.bin"),
                &encode(&meta(1, 5), b"five").unwrap(),
            )
            .unwrap();
        assert!(matches!(
            store(dir.path()).load_latest(),
            Err(OpenError::Corrupt {
                detail: Corruption::BadSnapshot(_),
                ..
            })
        ));
        FsDisk.remove(&dir.path().join("snapshot-1-6.bin")).unwrap();
        FsDisk
            .append(&dir.path().join("snapshot-x-6.bin"), b"")
            .unwrap();
        assert!(matches!(
            store(dir.path()).load_latest(),
            Err(OpenError::Corrupt {
                detail: Corruption::BadName,
                ..
            })
        ));
    }

    #[test]
    fn every_truncation_and_byte_flip_is_refused() {
        let bytes = encode(&meta(1, 5), b"some data").unwrap();
        assert!(decode(&bytes).is_ok());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x01;
            assert!(decode(&flipped).is_err(), "flipped byte {at}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = decode(&with_magic);
        }
    }
}
