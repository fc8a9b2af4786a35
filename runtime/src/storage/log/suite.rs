//! openraft's own storage test suite, run against [`LogStore`] on real files, with a
//! minimal state machine that exists only for the suite.
//!
//! One suite test cannot pass by design: `get_initial_state_membership_from_log_and_sm`
//! appends index 1 after the log was purged up to index 2 (and later index 3 right after
//! index 1). openraft never does either: its storage contract says "there must not be a
//! hole in logs", and it never appends an entry it has purged. This log refuses both
//! rather than make durable a log it would then refuse to open. Every other test of the
//! suite runs here; that one is run too and must fail with exactly that refusal.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use rota_core::command::Outcome;
use tempfile::TempDir;

use super::*;
use crate::io::FsDisk;
use crate::raft::types::{Snapshot, SnapshotMeta, StoredMembership};
use crate::storage::SnapshotStore;

/// What the suite's state machine remembers: the last applied log id and membership.
type Applied = (Option<LogId>, StoredMembership);

/// The smallest state machine the suite accepts. Its snapshots go through
/// [`SnapshotStore`], so the suite's snapshot transfer exercises that too.
#[derive(Debug, Clone)]
struct SuiteStateMachine {
    applied: Arc<Mutex<Applied>>,
    snapshots: SnapshotStore,
    built: Arc<Mutex<u64>>,
}

fn snapshot_error(
    meta: Option<&SnapshotMeta>,
    e: &(impl std::error::Error + 'static),
) -> StorageError {
    StorageIOError::write_snapshot(meta.map(|meta| meta.signature()), AnyError::new(e)).into()
}

impl SuiteStateMachine {
    fn applied(&self) -> Applied {
        self.applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SuiteStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (last, membership) = self.applied();
        let data = postcard::to_allocvec(&(last, membership.clone()))
            .map_err(|e| snapshot_error(None, &e))?;
        let built = {
            let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
            *built = built.saturating_add(1);
            *built
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id: format!("suite-{built}"),
        };
        self.snapshots
            .save(&meta, &data)
            .map_err(|e| snapshot_error(Some(&meta), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for SuiteStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<Applied, StorageError> {
        Ok(self.applied())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        let mut outcomes = Vec::new();
        for entry in entries {
            applied.0 = Some(entry.log_id);
            if let EntryPayload::Membership(membership) = entry.payload {
                applied.1 = StoredMembership::new(Some(entry.log_id), membership);
            }
            outcomes.push(Outcome::Done);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let applied: Applied =
            postcard::from_bytes(&data).map_err(|e| snapshot_error(Some(meta), &e))?;
        self.snapshots
            .save(meta, &data)
            .map_err(|e| snapshot_error(Some(meta), &e))?;
        *self.applied.lock().unwrap_or_else(PoisonError::into_inner) = applied;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let loaded = self
            .snapshots
            .load_latest()
            .map_err(|e| snapshot_error(None, &e))?;
        Ok(loaded.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Opens a fresh log and state machine in a temporary directory.
struct Builder {
    config: LogConfig,
}

impl StoreBuilder<TypeConfig, LogStore, SuiteStateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, SuiteStateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let disk: Arc<dyn Disk> = Arc::new(FsDisk);
        let log = LogStore::open(Arc::clone(&disk), dir.path().join("log"), self.config)
            .map_err(|e| StorageIOError::read(AnyError::new(&e)))?;
        let state_machine = SuiteStateMachine {
            applied: Arc::default(),
            snapshots: SnapshotStore::new(disk, dir.path().join("snapshots")),
            built: Arc::default(),
        };
        Ok((dir, log, state_machine))
    }
}

type S = Suite<TypeConfig, LogStore, SuiteStateMachine, Builder, TempDir>;

/// Runs one suite test on a fresh store, in a fresh tokio runtime, as the suite does.
#[allow(
    clippy::result_large_err,
    reason = "the error is openraft's, as the suite returns it"
)]
fn run<F, Fut>(builder: &Builder, name: &str, test: F) -> Result<(), StorageError>
where
    F: FnOnce(LogStore, SuiteStateMachine) -> Fut,
    Fut: Future<Output = Result<(), StorageError>>,
{
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (_dir, log, state_machine) = builder.build().await?;
        tracing::info!(name, "suite test");
        test(log, state_machine).await
    })
}

/// Everything in `Suite::test_store`, with the one test that appends a purged entry
/// expected to fail.
fn run_suite(builder: &Builder) {
    macro_rules! suite_tests {
        ($($test:ident),* $(,)?) => {
            $(
                if let Err(e) = run(builder, stringify!($test), S::$test) {
                    panic!("suite test {} failed: {e}", stringify!($test));
                }
            )*
        };
    }
    suite_tests!(
        last_membership_in_log_initial,
        last_membership_in_log,
        last_membership_in_log_multi_step,
        get_membership_initial,
        get_membership_from_log_and_empty_sm,
        get_membership_from_empty_log_and_sm,
        get_membership_from_log_le_sm_last_applied,
        get_membership_from_log_gt_sm_last_applied_1,
        get_membership_from_log_gt_sm_last_applied_2,
        get_initial_state_without_init,
        get_initial_state_with_state,
        get_initial_state_last_log_gt_sm,
        get_initial_state_last_log_lt_sm,
        get_initial_state_log_ids,
        get_initial_state_re_apply_committed,
        save_vote,
        get_log_entries,
        limited_get_log_entries,
        try_get_log_entry,
        initial_logs,
        get_log_state,
        get_log_id,
        last_id_in_log,
        last_applied_state,
        purge_logs_upto_0,
        purge_logs_upto_5,
        purge_logs_upto_20,
        delete_logs_since_11,
        delete_logs_since_0,
        append_to_log,
        snapshot_meta,
        apply_single,
        apply_multiple,
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if let Err(e) = runtime.block_on(S::transfer_snapshot(builder)) {
        panic!("suite test transfer_snapshot failed: {e}");
    }

    // The one test that appends over purged entries: refused, and for that reason only.
    let refused = run(
        builder,
        "get_initial_state_membership_from_log_and_sm",
        S::get_initial_state_membership_from_log_and_sm,
    )
    .expect_err("a hole in the log must be refused");
    assert!(
        refused
            .to_string()
            .contains("entry 1 does not follow the log, which ends at index 2"),
        "{refused}"
    );
}

#[test]
fn openraft_suite_passes_with_default_segments() {
    run_suite(&Builder {
        config: LogConfig::default(),
    });
}

#[test]
fn openraft_suite_passes_with_a_segment_per_few_entries() {
    run_suite(&Builder {
        config: LogConfig {
            segment_bytes_max: 128,
            record_bytes_max: 4096,
        },
    });
}
