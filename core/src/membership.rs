//! Membership: which hosts are in the cluster, alive or down, and what each has free.
//!
//! SWIM (the `foca` crate, sans-IO itself) runs inside the core. Its timers become the
//! core's timers, its datagrams become gossip effects. Each host spreads a versioned
//! [`HostInfo`] (free resources, tags, Docker) as a foca custom broadcast; a newer
//! version replaces an older one everywhere.

use core::fmt;
use core::net::SocketAddr;
use core::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use core::time::Duration;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use foca::{
    AccumulatingRuntime, BroadcastHandler, Foca, Invalidates, OwnedNotification, PostcardCodec,
    Timer,
};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::host::{HostId, HostIdentity, HostInfo};
use crate::time::Mono;

/// How SWIM probes and how long it suspects before declaring a host down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipConfig {
    /// How often a random member is probed.
    pub probe_period_ms: u64,
    /// How long to wait for a direct probe reply before asking others to probe.
    pub probe_rtt_ms: u64,
    /// How long a suspect member has to refute the suspicion before it is down.
    pub suspect_to_down_ms: u64,
    /// How often a few random members receive our updates unprompted.
    pub gossip_period_ms: u64,
    /// How often we announce ourselves to a random member (heals partitions).
    pub announce_period_ms: u64,
    /// The largest gossip datagram, in bytes.
    pub packet_bytes_max: usize,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            probe_period_ms: 1000,
            probe_rtt_ms: 300,
            suspect_to_down_ms: 3000,
            gossip_period_ms: 200,
            announce_period_ms: 10_000,
            packet_bytes_max: 1400,
        }
    }
}

/// What SWIM says of a host's liveness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Answering probes.
    Alive,
    /// Not answering; others are checking.
    Suspect,
    /// Declared down by the cluster.
    Down,
}

/// A host as this host knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEntry {
    /// Who it is and where.
    pub identity: HostIdentity,
    /// Whether it is up.
    pub liveness: Liveness,
    /// Since when (on this host's clock) it has had this liveness.
    pub since: Mono,
    /// What it last told the cluster about itself.
    pub info: Option<HostInfo>,
    /// The version of `info`.
    pub info_version: u64,
}

/// A change of membership the node reacts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A host came up (or back).
    Up(HostId),
    /// A host was declared down.
    Down(HostId),
    /// A host restarted: same id, higher boot; whatever it ran before may be gone.
    Restarted(HostId),
    /// A host's info changed.
    Info(HostId),
    /// This host was declared down and rejoined under a higher boot.
    Rejoined,
}

/// The most hosts whose info we keep before SWIM shows them to us.
const EARLY_INFO_MAX: usize = 1024;

/// A host's versioned self-description, as gossiped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct HostUpdate {
    id: HostId,
    version: u64,
    info: HostInfo,
}

/// Identifies one version of one host's update, so foca drops older versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct UpdateKey {
    id: HostId,
    version: u64,
}

impl Invalidates for UpdateKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.id == other.id && self.version >= other.version
    }
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable host update: {0}")]
struct UpdateDecodeError(postcard::Error);

/// Decodes custom broadcasts and keeps those that are news; what it keeps is handed to
/// [`Membership`] through a shared inbox, because foca owns its handler.
#[derive(Debug, Default)]
struct UpdateHandler {
    versions: BTreeMap<HostId, u64>,
    inbox: Arc<Mutex<Vec<HostUpdate>>>,
}

impl BroadcastHandler<HostIdentity> for UpdateHandler {
    type Key = UpdateKey;
    type Error = UpdateDecodeError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&HostIdentity>,
    ) -> Result<Option<UpdateKey>, UpdateDecodeError> {
        let update: HostUpdate = postcard::from_bytes(data).map_err(UpdateDecodeError)?;
        if self
            .versions
            .get(&update.id)
            .is_some_and(|v| *v >= update.version)
        {
            return Ok(None);
        }
        self.versions.insert(update.id, update.version);
        let key = UpdateKey {
            id: update.id,
            version: update.version,
        };
        self.inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(update);
        Ok(Some(key))
    }
}

type Swim = Foca<HostIdentity, PostcardCodec, Xoshiro256PlusPlus, UpdateHandler>;

/// The membership layer of one host. See the module documentation.
pub struct Membership {
    me: HostIdentity,
    swim: Swim,
    runtime: AccumulatingRuntime<HostIdentity>,
    inbox: Arc<Mutex<Vec<HostUpdate>>>,
    timers: BTreeMap<(Mono, u64), Timer<HostIdentity>>,
    timer_seq: u64,
    hosts: BTreeMap<HostId, HostEntry>,
    own_seq: u32,
    sends: Vec<(SocketAddr, Vec<u8>)>,
    changes: Vec<Change>,
    /// Info about hosts SWIM has not shown us yet, kept for when it does.
    early_info: BTreeMap<HostId, (u64, HostInfo)>,
    /// Datagrams that did not decode, or were refused, since start.
    pub bad_datagrams: u64,
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership")
            .field("me", &self.me)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Membership for host `me`, with SWIM's randomness drawn from `seed`.
    pub fn new(me: HostIdentity, config: &GossipConfig, seed: u64, now: Mono) -> Self {
        let mut swim_config = foca::Config::new_lan(NonZeroU32::MIN.saturating_add(7));
        swim_config.probe_period = Duration::from_millis(config.probe_period_ms.max(2));
        swim_config.probe_rtt = Duration::from_millis(
            config
                .probe_rtt_ms
                .clamp(1, config.probe_period_ms.max(2) - 1),
        );
        swim_config.suspect_to_down_after = Duration::from_millis(config.suspect_to_down_ms.max(1));
        swim_config.max_transmissions = NonZeroU8::new(8).unwrap_or(NonZeroU8::MIN);
        swim_config.max_packet_size =
            NonZeroUsize::new(config.packet_bytes_max.max(512)).unwrap_or(NonZeroUsize::MIN);
        if let Some(p) = swim_config.periodic_gossip.as_mut() {
            p.frequency = Duration::from_millis(config.gossip_period_ms.max(1));
        }
        if let Some(p) = swim_config.periodic_announce.as_mut() {
            p.frequency = Duration::from_millis(config.announce_period_ms.max(1));
        }
        if let Some(p) = swim_config.periodic_announce_to_down_members.as_mut() {
            p.frequency = Duration::from_millis(config.announce_period_ms.max(1).saturating_mul(3));
        }
        let handler = UpdateHandler::default();
        let inbox = Arc::clone(&handler.inbox);
        let swim = Foca::with_custom_broadcast(
            me,
            swim_config,
            Xoshiro256PlusPlus::seed_from_u64(seed),
            PostcardCodec,
            handler,
        );
        let mut hosts = BTreeMap::new();
        hosts.insert(
            me.id,
            HostEntry {
                identity: me,
                liveness: Liveness::Alive,
                since: now,
                info: None,
                info_version: 0,
            },
        );
        let mut membership = Membership {
            me,
            swim,
            runtime: AccumulatingRuntime::new(),
            inbox,
            timers: BTreeMap::new(),
            timer_seq: 0,
            hosts,
            own_seq: 0,
            sends: Vec::new(),
            changes: Vec::new(),
            early_info: BTreeMap::new(),
            bad_datagrams: 0,
        };
        // Periodic gossip and announcements are timers foca starts when it becomes
        // active; nothing to drain yet, but keep the habit.
        membership.drain(now);
        membership
    }

    /// This host.
    pub fn me(&self) -> &HostIdentity {
        &self.me
    }

    /// Every host known, this one included.
    pub fn hosts(&self) -> &BTreeMap<HostId, HostEntry> {
        &self.hosts
    }

    /// One host.
    pub fn host(&self, id: HostId) -> Option<&HostEntry> {
        self.hosts.get(&id)
    }

    /// Whether `id` is this host or a host SWIM considers alive (not suspect, not down).
    pub fn is_alive(&self, id: HostId) -> bool {
        self.hosts
            .get(&id)
            .is_some_and(|h| h.liveness == Liveness::Alive)
    }

    /// Asks the host at `addr` to let us join its cluster.
    pub fn join(&mut self, now: Mono, addr: SocketAddr) {
        if addr == self.me.cluster_addr {
            return;
        }
        if self
            .swim
            .announce(HostIdentity::seed(addr), &mut self.runtime)
            .is_err()
        {
            self.bad_datagrams += 1;
        }
        self.drain(now);
    }

    /// Feeds one received datagram.
    pub fn handle_datagram(&mut self, now: Mono, bytes: &[u8]) {
        if self.swim.handle_data(bytes, &mut self.runtime).is_err() {
            self.bad_datagrams += 1;
        }
        self.drain(now);
    }

    /// Fires every SWIM timer due by `now`.
    pub fn handle_timers(&mut self, now: Mono) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            // A timer error means foca refused its own stale event; nothing to do.
            let _ = self.swim.handle_timer(timer, &mut self.runtime);
            self.drain(now);
        }
    }

    /// Publishes a new version of this host's info.
    pub fn publish(&mut self, now: Mono, info: HostInfo) {
        self.own_seq = self.own_seq.wrapping_add(1);
        // The boot number leads, so a restarted host's first update beats its last one.
        let version = (self.me.boot << 32) | u64::from(self.own_seq);
        let update = HostUpdate {
            id: self.me.id,
            version,
            info,
        };
        if let Ok(bytes) = postcard::to_allocvec(&update)
            && self.swim.add_broadcast(&bytes).is_err()
        {
            self.bad_datagrams += 1;
        }
        self.drain(now);
    }

    /// Leaves the cluster on a graceful shutdown.
    pub fn leave(&mut self, now: Mono) {
        let _ = self.swim.leave_cluster(&mut self.runtime);
        self.drain(now);
    }

    /// The earliest pending SWIM timer.
    pub fn poll_timeout(&self) -> Option<Mono> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Datagrams to send, in order.
    pub fn take_sends(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        core::mem::take(&mut self.sends)
    }

    /// Membership changes since the last call, in order.
    pub fn take_changes(&mut self) -> Vec<Change> {
        core::mem::take(&mut self.changes)
    }

    /// The liveness SWIM reports for each member right now (suspects included).
    pub fn swim_liveness(&self, id: HostId) -> Option<Liveness> {
        if id == self.me.id {
            return Some(Liveness::Alive);
        }
        self.swim
            .iter_membership_state()
            .find(|m| m.id().id == id)
            .map(|m| match m.state() {
                foca::State::Alive => Liveness::Alive,
                foca::State::Suspect => Liveness::Suspect,
                foca::State::Down => Liveness::Down,
            })
    }

    fn drain(&mut self, now: Mono) {
        while let Some((to, bytes)) = self.runtime.to_send() {
            self.sends.push((to.cluster_addr, bytes.to_vec()));
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let at = now + after;
            self.timer_seq += 1;
            self.timers.insert((at, self.timer_seq), timer);
        }
        while let Some(note) = self.runtime.to_notify() {
            self.notice(now, note);
        }
        let updates =
            core::mem::take(&mut *self.inbox.lock().unwrap_or_else(PoisonError::into_inner));
        for update in updates {
            self.accept_update(update);
        }
    }

    fn notice(&mut self, now: Mono, note: OwnedNotification<HostIdentity>) {
        match note {
            OwnedNotification::MemberUp(identity) => self.set(now, identity, Liveness::Alive),
            OwnedNotification::MemberDown(identity) => self.set(now, identity, Liveness::Down),
            OwnedNotification::Rename(_, identity) => {
                let liveness = self
                    .hosts
                    .get(&identity.id)
                    .map_or(Liveness::Alive, |h| h.liveness);
                self.set(now, identity, liveness);
            }
            OwnedNotification::Rejoin(identity) => {
                self.me = identity;
                if let Some(entry) = self.hosts.get_mut(&identity.id) {
                    entry.identity = identity;
                }
                self.changes.push(Change::Rejoined);
            }
            OwnedNotification::Active | OwnedNotification::Idle | OwnedNotification::Defunct => {}
        }
    }

    fn set(&mut self, now: Mono, identity: HostIdentity, liveness: Liveness) {
        if identity.id == self.me.id {
            return;
        }
        let early = self.early_info.remove(&identity.id);
        let entry = self.hosts.entry(identity.id).or_insert_with(|| {
            let (info_version, info) = early.map_or((0, None), |(v, info)| (v, Some(info)));
            HostEntry {
                identity,
                liveness,
                since: now,
                info,
                info_version,
            }
        });
        let restarted = entry.identity.boot < identity.boot;
        let was = entry.liveness;
        if entry.identity != identity {
            entry.identity = identity;
        }
        if restarted {
            self.changes.push(Change::Restarted(identity.id));
        }
        if was != liveness || restarted {
            entry.liveness = liveness;
            entry.since = now;
        }
        match liveness {
            Liveness::Alive => self.changes.push(Change::Up(identity.id)),
            Liveness::Down => self.changes.push(Change::Down(identity.id)),
            Liveness::Suspect => {}
        }
    }

    fn accept_update(&mut self, update: HostUpdate) {
        let Some(entry) = self.hosts.get_mut(&update.id) else {
            let newer = self
                .early_info
                .get(&update.id)
                .is_none_or(|(v, _)| *v < update.version);
            // Bounded: one entry per host id, and only while SWIM has not shown the host.
            if newer && self.early_info.len() < EARLY_INFO_MAX {
                self.early_info
                    .insert(update.id, (update.version, update.info));
            }
            return;
        };
        if entry.info_version >= update.version && entry.info.is_some() {
            return;
        }
        entry.info = Some(update.info);
        entry.info_version = update.version;
        self.changes.push(Change::Info(update.id));
    }
}
