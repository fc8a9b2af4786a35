//! Raft's types for rota: the log entry is a core [`Command`], the response its
//! [`Outcome`], node ids are host ids.

use std::io::Cursor;

use rota_core::command::{Command, Outcome};
use serde::{Deserialize, Serialize};

use super::runtime::SeededRuntime;

/// Where a Raft member can be reached, as its membership configuration records it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Cluster RPC (`host:port`).
    pub cluster_addr: String,
    /// The HTTP API (`host:port`).
    pub api_addr: String,
}

openraft::declare_raft_types!(
    /// rota's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = u64,
        Node = Peer,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = SeededRuntime,
);

/// A Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<u64>;
/// A storage error.
pub type StorageError = openraft::StorageError<u64>;
/// A membership as stored.
pub type StoredMembership = openraft::StoredMembership<u64, Peer>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, Peer>;
/// A snapshot.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// A vote.
pub type Vote = openraft::Vote<u64>;
