//! Who a host is, and what it tells the cluster about itself.

use core::fmt;
use core::net::SocketAddr;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A host's identity in the cluster, stable across restarts (kept in its data directory).
/// It is also the host's Raft node id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HostId(pub u64);

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host#{}", self.0)
    }
}

/// A host as membership (SWIM) knows it: which id, at which addresses, since which boot.
///
/// Its membership address is the cluster address, so a host can join through a peer
/// whose id it does not know yet, and a restarted host (a higher `boot`) replaces its
/// earlier self.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostIdentity {
    /// The host's id.
    pub id: HostId,
    /// Where cluster RPC (TCP) and gossip (UDP) reach it.
    pub cluster_addr: SocketAddr,
    /// Where its HTTP API listens.
    pub api_addr: SocketAddr,
    /// How many times the host has started; a restart raises it.
    pub boot: u64,
}

impl HostIdentity {
    /// A stand-in for a peer known only by its address, used to ask it to let us join.
    pub fn seed(cluster_addr: SocketAddr) -> Self {
        HostIdentity {
            id: HostId(0),
            cluster_addr,
            api_addr: cluster_addr,
            boot: 0,
        }
    }
}

impl foca::Identity for HostIdentity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        // A host wrongly declared down comes back at once under a higher boot number.
        Some(HostIdentity {
            boot: self.boot.saturating_add(1),
            ..*self
        })
    }

    fn addr(&self) -> SocketAddr {
        self.cluster_addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.boot, self.id) > (adversary.boot, adversary.id)
    }
}

/// One reading of a host's capacity and free resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSample {
    /// CPU capacity, in thousandths of a core.
    pub cpu_total_milli: u32,
    /// CPU not in use, in thousandths of a core.
    pub cpu_free_milli: u32,
    /// Memory capacity, in MiB.
    pub memory_total_mb: u64,
    /// Memory available, in MiB.
    pub memory_free_mb: u64,
    /// Disk capacity of the data directory's file system, in MiB.
    pub disk_total_mb: u64,
    /// Disk available there, in MiB.
    pub disk_free_mb: u64,
}

impl ResourceSample {
    /// Free CPU, memory and disk as fractions of capacity (each between 0 and 1; a
    /// resource with no capacity counts as fully used).
    pub fn free_fractions(&self) -> [f64; 3] {
        [
            fraction(
                u64::from(self.cpu_free_milli),
                u64::from(self.cpu_total_milli),
            ),
            fraction(self.memory_free_mb, self.memory_total_mb),
            fraction(self.disk_free_mb, self.disk_total_mb),
        ]
    }

    /// Whether every field is consistent (free never above total).
    pub fn is_consistent(&self) -> bool {
        self.cpu_free_milli <= self.cpu_total_milli
            && self.memory_free_mb <= self.memory_total_mb
            && self.disk_free_mb <= self.disk_total_mb
    }
}

fn fraction(free: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (free.min(total) as f64) / (total as f64)
    }
}

/// What a host spreads about itself by gossip, versioned so newer replaces older.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Its latest resource sample.
    pub resources: ResourceSample,
    /// Its tags, which job constraints match against.
    pub tags: BTreeMap<String, String>,
    /// Whether it has a working Docker engine.
    pub docker: bool,
}

/// The bound on a host's tags: how many, in all bytes (they travel in gossip packets).
pub const HOST_TAGS_BYTES_MAX: usize = 512;
