use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use openraft::storage::RaftLogStorageExt;
use openraft::{EntryPayload, Membership};
use proptest::prelude::*;
use rota_core::command::Command;
use rota_core::state::Settings;

use super::*;
use crate::io::FsDisk;

fn log_id(term: u64, index: u64) -> LogId {
    openraft::testing::log_id(term, 0, index)
}

/// An entry of each payload kind in turn, so every kind goes through the files.
fn entry(term: u64, index: u64) -> Entry {
    let payload = match index % 3 {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Normal(Command::SetSettings(Settings {
            jobs_max: index,
            ..Settings::default()
        })),
        _ => EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1, 2, index])], None)),
    };
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    indexes.map(|index| entry(term, index)).collect()
}

/// A few records per segment.
fn small() -> LogConfig {
    LogConfig {
        segment_bytes_max: 200,
        record_bytes_max: 1024,
    }
}

fn open(dir: &Path, config: LogConfig) -> Result<LogStore, OpenError> {
    LogStore::open(Arc::new(FsDisk), dir.to_path_buf(), config)
}

async fn all(store: &mut LogStore) -> Vec<Entry> {
    store.try_get_log_entries(..).await.unwrap()
}

async fn state(store: &mut LogStore) -> (Option<LogId>, Option<LogId>) {
    let state = store.get_log_state().await.unwrap();
    (state.last_purged_log_id, state.last_log_id)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    FsDisk
        .list(dir)
        .unwrap()
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect()
}

fn segment_names(dir: &Path) -> Vec<String> {
    segment_files(dir)
        .iter()
        .map(|path| path.file_name().unwrap().to_str().unwrap().to_owned())
        .collect()
}

fn read(path: &Path) -> Vec<u8> {
    FsDisk.read(path).unwrap().unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    FsDisk.write_atomic(path, bytes).unwrap();
}

/// The offset of each record in a segment's bytes.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        offsets.push(offset);
        let (_, len) = record::read(&bytes[offset..], u32::MAX).unwrap().unwrap();
        offset += len;
    }
    offsets
}

#[tokio::test]
async fn reopening_restores_entries_vote_purged_and_committed() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(3, 1);
    {
        let mut store = open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(state(&mut store).await, (None, None));
        assert_eq!(store.read_vote().await.unwrap(), None);
        store.blocking_append(entries(1, 0..=9)).await.unwrap();
        store.blocking_append(entries(2, 10..=19)).await.unwrap();
        store.save_vote(&vote).await.unwrap();
        store.purge(log_id(1, 4)).await.unwrap();
        store.save_committed(Some(log_id(2, 15))).await.unwrap();
    }
    let mut store = open(dir.path(), LogConfig::default()).unwrap();
    let mut expected = entries(1, 5..=9);
    expected.extend(entries(2, 10..=19));
    assert_eq!(all(&mut store).await, expected);
    assert_eq!(store.read_vote().await.unwrap(), Some(vote));
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(2, 15)));
    assert_eq!(
        state(&mut store).await,
        (Some(log_id(1, 4)), Some(log_id(2, 19)))
    );

    // And it carries on from there.
    store.blocking_append(entries(2, 20..=21)).await.unwrap();
    let mut reader = store.get_log_reader().await;
    assert_eq!(
        reader.try_get_log_entries(19..).await.unwrap(),
        entries(2, 19..=21)
    );
}

#[tokio::test]
async fn an_unreadable_committed_hint_is_read_as_none() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path(), LogConfig::default()).unwrap();
        store.blocking_append(entries(1, 0..=2)).await.unwrap();
        store.save_committed(Some(log_id(1, 2))).await.unwrap();
    }
    let path = dir.path().join(COMMITTED_FILE);
    let mut bytes = read(&path);
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    write(&path, &bytes);
    let mut store = open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(store.read_committed().await.unwrap(), None);
    assert_eq!(all(&mut store).await, entries(1, 0..=2));
}

#[tokio::test]
async fn a_damaged_vote_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path(), LogConfig::default()).unwrap();
        store.save_vote(&Vote::new(2, 1)).await.unwrap();
    }
    let path = dir.path().join(VOTE_FILE);
    let mut bytes = read(&path);
    bytes.truncate(bytes.len() - 1);
    write(&path, &bytes);
    let error = open(dir.path(), LogConfig::default()).unwrap_err();
    assert!(
        matches!(&error, OpenError::Corrupt { file, .. } if *file == path),
        "{error}"
    );
}

#[tokio::test]
async fn a_torn_tail_is_cut_away_and_appending_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path(), LogConfig::default()).unwrap();
        store.blocking_append(entries(1, 0..=5)).await.unwrap();
    }
    let [path] = &segment_files(dir.path())[..] else {
        panic!("one segment expected")
    };
    let whole = read(path);
    let last_record = *record_offsets(&whole).last().unwrap();

    // Cut inside the header, just after it, and inside the payload of the last record.
    for cut in [last_record + 1, last_record + HEADER_LEN, whole.len() - 1] {
        write(path, &whole[..cut]);
        let mut store = open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(all(&mut store).await, entries(1, 0..=4), "cut at {cut}");
        assert_eq!(
            read(path).len(),
            last_record,
            "the torn bytes are gone from the file"
        );

        // Appending continues right after the last intact record, and survives a reopen.
        store.blocking_append(entries(2, 5..=6)).await.unwrap();
        drop(store);
        let mut store = open(dir.path(), LogConfig::default()).unwrap();
        let mut expected = entries(1, 0..=4);
        expected.extend(entries(2, 5..=6));
        assert_eq!(all(&mut store).await, expected, "cut at {cut}");
    }
}

#[tokio::test]
async fn zero_fill_and_a_bad_last_checksum_are_torn_tails() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path(), LogConfig::default()).unwrap();
        store.blocking_append(entries(1, 0..=3)).await.unwrap();
    }
    let [path] = &segment_files(dir.path())[..] else {
        panic!("one segment expected")
    };
    let whole = read(path);
    let last_record = *record_offsets(&whole).last().unwrap();

    // Zeros after the last record: everything is kept.
    let mut zero_filled = whole.clone();
    zero_filled.extend_from_slice(&[0; 100]);
    write(path, &zero_filled);
    let mut store = open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(all(&mut store).await, entries(1, 0..=3));
    assert_eq!(read(path), whole);
    drop(store);

    // The last record's payload damaged, then zeros: the last record goes.
    for zeros in [0, 50] {
        let mut damaged = whole.clone();
        damaged[last_record + HEADER_LEN + 1] ^= 0x40;
        damaged.extend(std::iter::repeat_n(0, zeros));
        write(path, &damaged);
        let mut store = open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(all(&mut store).await, entries(1, 0..=2), "{zeros} zeros");
        assert_eq!(read(path).len(), last_record);
        store.blocking_append(entries(1, 3..=3)).await.unwrap();
    }

    // Zero fill that begins inside the last header.
    let mut damaged = whole.clone();
    damaged.truncate(last_record + 5);
    damaged.extend_from_slice(&[0; 40]);
    write(path, &damaged);
    let mut store = open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(all(&mut store).await, entries(1, 0..=2));
}

#[tokio::test]
async fn a_flipped_byte_in_an_earlier_record_is_corruption_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path(), LogConfig::default()).unwrap();
        store.blocking_append(entries(1, 0..=5)).await.unwrap();
    }
    let [path] = &segment_files(dir.path())[..] else {
        panic!("one segment expected")
    };
    let whole = read(path);
    let second = record_offsets(&whole)[1];
    let mut damaged = whole.clone();
    damaged[second + HEADER_LEN + 2] ^= 0x01;
    write(path, &damaged);

    let error = open(dir.path(), LogConfig::default()).unwrap_err();
    let OpenError::Corrupt {
        file,
        offset,
        detail,
    } = &error
    else {
        panic!("{error}")
    };
    assert_eq!(
        (file, *offset, detail),
        (path, second as u64, &Corruption::PayloadChecksum)
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "raft log file {} is corrupt at byte {second}: payload checksum mismatch;",
            path.display()
        )),
        "{message}"
    );
    assert!(
        message.contains("move the data directory aside"),
        "{message}"
    );
    // Nothing was "repaired": the file is as it was.
    assert_eq!(read(path), damaged);
}

#[tokio::test]
async fn a_damaged_length_in_the_middle_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path(), LogConfig::default()).unwrap();
        store.blocking_append(entries(1, 0..=5)).await.unwrap();
    }
    let [path] = &segment_files(dir.path())[..] else {
        panic!("one segment expected")
    };
    let whole = read(path);
    let third = record_offsets(&whole)[2];

    // A length pointing past the end of the file, as a torn tail would look were the
    // header not checked.
    let mut damaged = whole.clone();
    damaged[third + 3] = 0x7f;
    write(path, &damaged);
    let error = open(dir.path(), LogConfig::default()).unwrap_err();
    assert!(
        matches!(&error, OpenError::Corrupt { offset, detail: Corruption::HeaderChecksum, .. } if *offset == third as u64),
        "{error}"
    );

    // Even a length whose header checksum was made to match is caught: the payload it
    // frames does not match its checksum, and more records follow.
    let mut damaged = whole.clone();
    damaged[third + 1] = damaged[third + 1].wrapping_sub(1);
    let header_crc = crc32fast::hash(&damaged[third..third + 9]);
    damaged[third + 9..third + 13].copy_from_slice(&header_crc.to_le_bytes());
    write(path, &damaged);
    let error = open(dir.path(), LogConfig::default()).unwrap_err();
    assert!(
        matches!(&error, OpenError::Corrupt { offset, detail: Corruption::PayloadChecksum, .. } if *offset == third as u64),
        "{error}"
    );
}

#[tokio::test]
async fn segments_rotate_and_truncate_and_purge_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), small()).unwrap();
    store.blocking_append(entries(1, 0..=9)).await.unwrap();
    for index in 10..=29 {
        store.blocking_append([entry(1, index)]).await.unwrap();
    }
    let names = segment_names(dir.path());
    assert!(names.len() >= 4, "{names:?}");
    assert_eq!(names[0], "log-00000000000000000000.seg");
    for path in segment_files(dir.path()) {
        assert!(read(&path).len() <= 200, "{}", path.display());
    }

    // Truncate in the middle of a segment: later segments go, that one is cut.
    store.truncate(log_id(1, 17)).await.unwrap();
    assert_eq!(all(&mut store).await, entries(1, 0..=16));
    let last = segment_files(dir.path()).pop().unwrap();
    let first_in_last: u64 = last.file_name().unwrap().to_str().unwrap()[4..24]
        .parse()
        .unwrap();
    assert!(first_in_last <= 16);
    drop(store);
    let mut store = open(dir.path(), small()).unwrap();
    assert_eq!(all(&mut store).await, entries(1, 0..=16));

    // Truncate exactly at a segment's first entry: that segment goes entirely.
    store.truncate(log_id(1, first_in_last)).await.unwrap();
    assert!(!last.exists());
    assert_eq!(all(&mut store).await, entries(1, 0..=first_in_last - 1));
    store
        .blocking_append(entries(2, first_in_last..=25))
        .await
        .unwrap();
    let mut expected = entries(1, 0..=first_in_last - 1);
    expected.extend(entries(2, first_in_last..=25));
    assert_eq!(all(&mut store).await, expected);

    // Purge in the middle of a segment: whole segments before it go, that one stays.
    store.purge(log_id(1, 12)).await.unwrap();
    let names = segment_names(dir.path());
    let first_kept: u64 = names[0][4..24].parse().unwrap();
    assert!(first_kept <= 13 && first_kept > 5, "{names:?}");
    assert_eq!(all(&mut store).await, expected[13..].to_vec());
    drop(store);
    let mut store = open(dir.path(), small()).unwrap();
    assert_eq!(all(&mut store).await, expected[13..].to_vec());
    assert_eq!(
        state(&mut store).await,
        (Some(log_id(1, 12)), Some(log_id(2, 25)))
    );

    // Purge past the end, as installing a snapshot does: no segment is left, and the log
    // resumes after the purged id.
    store.purge(log_id(3, 40)).await.unwrap();
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(
        state(&mut store).await,
        (Some(log_id(3, 40)), Some(log_id(3, 40)))
    );
    store.blocking_append(entries(3, 41..=44)).await.unwrap();
    drop(store);
    let mut store = open(dir.path(), small()).unwrap();
    assert_eq!(all(&mut store).await, entries(3, 41..=44));
    assert_eq!(
        state(&mut store).await,
        (Some(log_id(3, 40)), Some(log_id(3, 44)))
    );
    assert_eq!(segment_names(dir.path())[0], "log-00000000000000000041.seg");
}

#[tokio::test]
async fn an_interrupted_purge_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path(), small()).unwrap();
        store.blocking_append(entries(1, 0..=20)).await.unwrap();
    }
    let before = segment_files(dir.path());
    // What a crash after writing `purged` and before removing segments leaves.
    write(
        &dir.path().join(PURGED_FILE),
        &record::encode_file(&log_id(1, 15)).unwrap(),
    );
    let mut store = open(dir.path(), small()).unwrap();
    assert_eq!(all(&mut store).await, entries(1, 16..=20));
    let after = segment_files(dir.path());
    assert!(after.len() < before.len());
    assert!(before.ends_with(&after));
}

#[tokio::test]
async fn damage_outside_the_last_segment_is_never_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path(), small()).unwrap();
        store.blocking_append(entries(1, 0..=20)).await.unwrap();
    }
    let files = segment_files(dir.path());
    let first = &files[0];
    let whole = read(first);

    // A torn last segment is not repaired when an earlier one is damaged: nothing is
    // changed before everything has been checked.
    let last = files.last().unwrap();
    let last_whole = read(last);
    write(last, &last_whole[..last_whole.len() - 1]);
    write(first, &whole[..whole.len() - 3]);
    let error = open(dir.path(), small()).unwrap_err();
    assert!(
        matches!(&error, OpenError::Corrupt { file, detail: Corruption::Truncated { .. }, .. } if file == first),
        "{error}"
    );
    assert_eq!(read(last).len(), last_whole.len() - 1);
    write(last, &last_whole);

    let mut zero_filled = whole.clone();
    zero_filled.extend_from_slice(&[0; 8]);
    write(first, &zero_filled);
    assert!(matches!(
        open(dir.path(), small()),
        Err(OpenError::Corrupt { .. })
    ));

    write(first, &[]);
    let error = open(dir.path(), small()).unwrap_err();
    assert!(
        matches!(
            &error,
            OpenError::Corrupt {
                detail: Corruption::EmptySegment,
                ..
            }
        ),
        "{error}"
    );
    write(first, &whole);

    // A missing segment in the middle is a gap.
    let second_bytes = read(&files[1]);
    FsDisk.remove(&files[1]).unwrap();
    let error = open(dir.path(), small()).unwrap_err();
    assert!(
        matches!(&error, OpenError::Corrupt { file, detail: Corruption::IndexGap { .. }, .. } if *file == files[2]),
        "{error}"
    );
    write(&files[1], &second_bytes);

    // A segment named for another index.
    let renamed = dir.path().join("log-00000000000000000001.seg");
    FsDisk.remove(first).unwrap();
    write(&renamed, &whole);
    let error = open(dir.path(), small()).unwrap_err();
    assert!(
        matches!(
            &error,
            OpenError::Corrupt {
                detail: Corruption::NameMismatch { named: 1, found: 0 },
                ..
            }
        ),
        "{error}"
    );
    FsDisk.remove(&renamed).unwrap();

    // A name that is almost a segment's.
    write(first, &whole);
    write(&dir.path().join("log-12.seg"), &whole);
    let error = open(dir.path(), small()).unwrap_err();
    assert!(
        matches!(
            &error,
            OpenError::Corrupt {
                detail: Corruption::BadName,
                ..
            }
        ),
        "{error}"
    );
    FsDisk.remove(&dir.path().join("log-12.seg")).unwrap();

    let mut store = open(dir.path(), small()).unwrap();
    assert_eq!(all(&mut store).await, entries(1, 0..=20));
}

#[tokio::test]
async fn an_empty_last_segment_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path(), small()).unwrap();
        store.blocking_append(entries(1, 0..=3)).await.unwrap();
    }
    let empty = dir.path().join("log-00000000000000000004.seg");
    write(&empty, &[]);
    let mut store = open(dir.path(), small()).unwrap();
    assert!(!empty.exists());
    store.blocking_append(entries(1, 4..=6)).await.unwrap();
    drop(store);
    let mut store = open(dir.path(), small()).unwrap();
    assert_eq!(all(&mut store).await, entries(1, 0..=6));
}

#[tokio::test]
async fn holes_overwrites_and_oversized_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), small()).unwrap();
    store.blocking_append(entries(1, 3..=5)).await.unwrap();

    let hole = store.blocking_append(entries(1, 7..=7)).await.unwrap_err();
    assert!(
        hole.to_string()
            .contains("entry 7 does not follow the log, which ends at index 5"),
        "{hole}"
    );
    assert!(store.blocking_append(entries(1, 5..=6)).await.is_err());
    assert!(
        store
            .blocking_append([entry(1, 6), entry(1, 8)])
            .await
            .is_err()
    );
    assert!(
        store.purge(log_id(1, 1)).await.is_err(),
        "a purge that would leave 2 missing"
    );

    let mut huge = entry(1, 6);
    huge.payload = EntryPayload::Membership(Membership::new(vec![(0..1000).collect()], None));
    let refused = store.blocking_append([huge]).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("more than record_bytes_max (1024)"),
        "{refused}"
    );

    // None of it reached the disk.
    assert_eq!(all(&mut store).await, entries(1, 3..=5));
    store.blocking_append(entries(1, 6..=6)).await.unwrap();
    drop(store);
    let mut store = open(dir.path(), small()).unwrap();
    assert_eq!(all(&mut store).await, entries(1, 3..=6));

    // A record larger than a (newly lowered) bound is corruption on read.
    drop(store);
    let config = LogConfig {
        record_bytes_max: 8,
        ..small()
    };
    let error = open(dir.path(), config).unwrap_err();
    assert!(
        matches!(
            &error,
            OpenError::Corrupt {
                detail: Corruption::RecordTooLarge { .. },
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn readers_see_appends_truncations_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), small()).unwrap();
    let mut reader = store.get_log_reader().await;
    store.blocking_append(entries(1, 0..=9)).await.unwrap();
    assert_eq!(
        reader.try_get_log_entries(2..5).await.unwrap(),
        entries(1, 2..=4)
    );
    assert_eq!(
        reader.try_get_log_entries(8..=20).await.unwrap(),
        entries(1, 8..=9)
    );
    #[allow(clippy::reversed_empty_ranges)]
    let inverted = reader.try_get_log_entries(5..2).await.unwrap();
    assert!(inverted.is_empty());
    assert!(reader.try_get_log_entries(5..5).await.unwrap().is_empty());
    assert!(
        reader
            .try_get_log_entries((Bound::Excluded(u64::MAX), Bound::Unbounded))
            .await
            .unwrap()
            .is_empty()
    );
    store.truncate(log_id(1, 6)).await.unwrap();
    store.purge(log_id(1, 2)).await.unwrap();
    assert_eq!(
        reader.try_get_log_entries(..).await.unwrap(),
        entries(1, 3..=5)
    );
}

/// An in-memory disk whose appends can be made to fail after writing half their bytes.
#[derive(Default)]
struct MemDisk {
    files: Mutex<BTreeMap<PathBuf, Vec<u8>>>,
    fail_appends: AtomicBool,
}

impl MemDisk {
    fn files(&self) -> MutexGuard<'_, BTreeMap<PathBuf, Vec<u8>>> {
        self.files.lock().unwrap()
    }
}

impl Disk for MemDisk {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        Ok(self.files().get(path).cloned())
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.files().insert(path.to_path_buf(), bytes.to_vec());
        Ok(())
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut files = self.files();
        let file = files.entry(path.to_path_buf()).or_default();
        if self.fail_appends.load(Ordering::SeqCst) {
            file.extend_from_slice(&bytes[..bytes.len() / 2]);
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        file.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        if let Some(file) = self.files().get_mut(path) {
            file.truncate(usize::try_from(len).unwrap());
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.files().remove(path);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(self
            .files()
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn create_dir_all(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }

    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_append_is_reported_and_rolled_back() {
    let disk = Arc::new(MemDisk::default());
    let dir = PathBuf::from("/raft");
    let mut store = LogStore::open(disk.clone(), dir.clone(), small()).unwrap();
    store.blocking_append(entries(1, 0..=4)).await.unwrap();
    let before = disk.files().clone();

    disk.fail_appends.store(true, Ordering::SeqCst);
    let error = store.blocking_append(entries(1, 5..=12)).await.unwrap_err();
    assert!(error.to_string().contains("disk full"), "{error}");
    assert_eq!(
        *disk.files(),
        before,
        "the half-written records and new segments are gone"
    );
    assert_eq!(all(&mut store).await, entries(1, 0..=4));

    // The disk has room again: the log carries on, and reopens whole.
    disk.fail_appends.store(false, Ordering::SeqCst);
    store.blocking_append(entries(1, 5..=12)).await.unwrap();
    drop(store);
    let mut store = LogStore::open(disk, dir, small()).unwrap();
    assert_eq!(all(&mut store).await, entries(1, 0..=12));
}

/// The bytes of a valid multi-segment log in a [`MemDisk`].
fn valid_log() -> BTreeMap<PathBuf, Vec<u8>> {
    let disk = Arc::new(MemDisk::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut store = LogStore::open(disk.clone(), PathBuf::from("/raft"), small()).unwrap();
        store.blocking_append(entries(1, 0..=12)).await.unwrap();
        store.save_vote(&Vote::new(1, 1)).await.unwrap();
        store.purge(log_id(1, 1)).await.unwrap();
    });
    disk.files().clone()
}

#[derive(Debug, Clone)]
enum Mutation {
    Overwrite { at: usize, bytes: Vec<u8> },
    Append(Vec<u8>),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever happens to the bytes of any file of the log, `open` answers, and what it
    /// answers with is a contiguous log.
    #[test]
    fn damaged_files_never_panic_open(file in any::<usize>(), mutations in proptest::collection::vec(mutation(), 1..4)) {
        let mut files = valid_log();
        let paths: Vec<PathBuf> = files.keys().cloned().collect();
        let path = &paths[file % paths.len()];
        let bytes = files.get_mut(path).unwrap();
        for mutation in mutations {
            match mutation {
                Mutation::Overwrite { at, bytes: new } => {
                    let at = if bytes.is_empty() { 0 } else { at % bytes.len() };
                    for (offset, byte) in new.into_iter().enumerate() {
                        match bytes.get_mut(at + offset) {
                            Some(old) => *old = byte,
                            None => bytes.push(byte),
                        }
                    }
                }
                Mutation::Append(new) => bytes.extend_from_slice(&new),
                Mutation::Truncate(len) => bytes.truncate(len % (bytes.len() + 1)),
            }
        }
        let disk = Arc::new(MemDisk { files: Mutex::new(files), fail_appends: AtomicBool::new(false) });
        if let Ok(mut store) = LogStore::open(disk, PathBuf::from("/raft"), small()) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let found = runtime.block_on(all(&mut store));
            for pair in found.windows(2) {
                prop_assert_eq!(pair[0].log_id.index + 1, pair[1].log_id.index);
            }
            // An intact record is never lost to a tail repair unless it was at the tail.
            if let Some(first) = found.first() {
                prop_assert_eq!(first.log_id.index, 2);
            }
        }
    }
}
