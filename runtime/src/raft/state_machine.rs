//! Raft's state machine is the core's `State`, owned by the node in the daemon's event
//! loop. This adapter hands committed entries to that loop and waits for their outcomes,
//! and asks it for the state's bytes when Raft wants a snapshot. It keeps only what Raft
//! itself needs: the last applied log id and the membership.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError,
};
use rota_core::command::{Command, Outcome};
use rota_core::state::State;
use tokio::sync::{mpsc, oneshot};

use super::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::storage::snapshot::SnapshotStore;

/// What the state machine asks of the event loop that owns the node.
#[derive(Debug)]
pub enum ToNode {
    /// Apply these committed commands (log index, command) in order; answer each outcome.
    Apply {
        /// The commands.
        entries: Vec<(u64, Command)>,
        /// Where to answer.
        reply: oneshot::Sender<Vec<Outcome>>,
    },
    /// Answer the state's snapshot bytes (postcard).
    Snapshot {
        /// Where to answer.
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// Replace the state with one from a snapshot.
    Install {
        /// The state.
        state: Box<State>,
        /// Answered once installed.
        reply: oneshot::Sender<()>,
    },
}

/// The adapter. See the module documentation.
#[derive(Debug)]
pub struct StateMachine {
    node: mpsc::Sender<ToNode>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshots: Arc<SnapshotStore>,
}

fn node_gone() -> StorageError {
    let e = std::io::Error::other("the daemon's event loop has stopped");
    StorageError::IO {
        source: StorageIOError::new(
            ErrorSubject::StateMachine,
            ErrorVerb::Write,
            AnyError::new(&e),
        ),
    }
}

impl StateMachine {
    /// An adapter feeding `node`, starting from the snapshot it recovered (if any).
    pub fn new(
        node: mpsc::Sender<ToNode>,
        snapshots: Arc<SnapshotStore>,
        recovered: Option<&SnapshotMeta>,
    ) -> Self {
        let (last_applied, membership) = match recovered {
            Some(meta) => (meta.last_log_id, meta.last_membership.clone()),
            None => (None, StoredMembership::default()),
        };
        StateMachine {
            node,
            last_applied,
            membership,
            snapshots,
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> ToNode,
    ) -> Result<T, StorageError> {
        let (reply, answer) = oneshot::channel();
        self.node.send(make(reply)).await.map_err(|_| node_gone())?;
        answer.await.map_err(|_| node_gone())
    }
}

/// Builds a snapshot from the state's bytes taken when Raft asked.
#[derive(Debug)]
pub struct SnapshotBuilder {
    bytes: Vec<u8>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshots: Arc<SnapshotStore>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}", id.leader_id.term, id.index),
            None => "0-0".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        self.snapshots
            .save(&meta, &self.bytes)
            .map_err(|e| StorageError::IO {
                source: StorageIOError::write_snapshot(Some(meta.signature()), &e),
            })?;
        tracing::info!(
            last_log = ?self.last_applied,
            bytes = self.bytes.len(),
            "snapshot taken"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(std::mem::take(&mut self.bytes))),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut outcomes = Vec::new();
        let mut commands = Vec::new();
        // Positions in `outcomes` that wait for the node's answers, in order.
        let mut slots = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Normal(command) => {
                    slots.push(outcomes.len());
                    outcomes.push(Outcome::Done);
                    commands.push((entry.log_id.index, command));
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    outcomes.push(Outcome::Done);
                }
                EntryPayload::Blank => outcomes.push(Outcome::Done),
            }
        }
        if !commands.is_empty() {
            let answers = self
                .ask(|reply| ToNode::Apply {
                    entries: commands,
                    reply,
                })
                .await?;
            for (slot, answer) in slots.into_iter().zip(answers) {
                outcomes[slot] = answer;
            }
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Taken now, between two applies, so the bytes match `last_applied` exactly.
        let bytes = self
            .ask(|reply| ToNode::Snapshot { reply })
            .await
            .unwrap_or_default();
        SnapshotBuilder {
            bytes,
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            snapshots: Arc::clone(&self.snapshots),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let state: State = postcard::from_bytes(&bytes).map_err(|e| StorageError::IO {
            source: StorageIOError::read_snapshot(Some(meta.signature()), &e),
        })?;
        state.check_invariants().map_err(|e| StorageError::IO {
            source: StorageIOError::read_snapshot(Some(meta.signature()), &e),
        })?;
        self.snapshots
            .save(meta, &bytes)
            .map_err(|e| StorageError::IO {
                source: StorageIOError::write_snapshot(Some(meta.signature()), &e),
            })?;
        self.ask(|reply| ToNode::Install {
            state: Box::new(state),
            reply,
        })
        .await?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        // Read from disk each time: snapshots are rare, and the file is the truth.
        let latest = self.snapshots.load_latest().map_err(|e| StorageError::IO {
            source: StorageIOError::read_snapshot(None, &e),
        })?;
        Ok(latest.map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
