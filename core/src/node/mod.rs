//! The node: one cluster member's whole logic, as data in and data out.
//!
//! # Using a `Node`
//! A `Node` never reads a clock, a socket or a file. The runtime drives it with three
//! verbs, in this order, forever:
//! 1. `handle(now, input)` (or [`Node::handle_applied`] for a committed Raft entry,
//!    which answers the entry's [`Outcome`]) for every arrival: a tick, a datagram, a
//!    message from a host, an executor event, a Raft role change;
//! 2. `poll_effect()` until it answers `None`, performing each [`Effect`] (send, propose,
//!    start or stop a run, log an event);
//! 3. `poll_timeout()`, the monotonic instant at which to hand it `Input::Tick` next.
//!
//! Getters (`state`, `members`, `role`, ...) read without changing anything; the API
//! answers from them. [`Node::plan_trigger`] builds the command for a manual run.
//!
//! # Two hats
//! Every host is a worker: it starts the runs it is dispatched, enforces their timeouts
//! and its lease, and reports until acknowledged ([`worker`]). The Raft leader is also
//! the scheduler: it declares due runs, places and dispatches them, and reconciles what
//! it inherited ([`leader`]). Messages between hosts, the leader's to itself included,
//! are [`Message`]s.

mod due;
mod leader;
mod worker;

use core::net::SocketAddr;
use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::{Command, Outcome};
use crate::host::{HostId, HostIdentity, HostInfo, ResourceSample};
use crate::membership::{Change, GossipConfig, HostEntry, Liveness, Membership};
use crate::run::{Reason, RunId, RunSpec, RunState};
use crate::state::{Settings, State};
use crate::time::{Mono, Now, Timestamp};

pub use leader::{Planned, TriggerError};
pub use worker::{LocalRun, LocalStatus, RunLimits};

use leader::Leader;
use worker::Worker;

/// Timings of the node's protocols. Every value names its unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// How often the node does its housekeeping (deadlines, retries, leases).
    pub housekeeping_ms: u64,
    /// How often the leader tells every live host it is still the leader.
    pub heartbeat_interval_ms: u64,
    /// A host that has not heard from a leader this long stops its runs of `forbid` and
    /// `replace` jobs.
    pub lease_ms: u64,
    /// What the leader adds to the lease before it treats a lost host's runs as ended:
    /// at least the longest a message can take to arrive (the transport's message
    /// time-to-live plus its call timeout), plus clock-rate differences.
    pub lease_margin_ms: u64,
    /// How long the leader waits for a host to report a dispatched run started before it
    /// asks again.
    pub dispatch_timeout_ms: u64,
    /// A host the leader has not heard from this long is fenced: the leader stops renewing
    /// its lease, and settles its runs once the lease has surely expired.
    pub unreachable_after_ms: u64,
    /// How often a host resends a report the leader has not acknowledged.
    pub report_retry_ms: u64,
    /// How often the leader asks hosts about their running runs.
    pub reconcile_interval_ms: u64,
    /// The most two hosts' wall clocks may disagree; the leader waits this long past a
    /// run's start deadline before it records the dispatch lost.
    pub clock_skew_max_ms: u64,
    /// How long a run that was stopped (timeout, lease) may take to exit before the host
    /// asks the executor again.
    pub stop_retry_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            housekeeping_ms: 100,
            heartbeat_interval_ms: 1000,
            lease_ms: 10_000,
            lease_margin_ms: 8000,
            dispatch_timeout_ms: 2000,
            unreachable_after_ms: 5000,
            report_retry_ms: 1000,
            reconcile_interval_ms: 10_000,
            clock_skew_max_ms: 1000,
            stop_retry_ms: 5000,
        }
    }
}

/// Bounds on the node's work and memory. Every value names its unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The most schedule steps (fire times computed) the leader does in one tick; the
    /// rest waits for the next, which comes at once.
    pub plan_steps_per_tick_max: usize,
    /// The most commands in one proposal.
    pub proposal_commands_max: usize,
    /// The most missed fires a job with missed policy `all` runs after an outage.
    pub catch_up_runs_max: u32,
    /// The most fires one missed record stands for.
    pub missed_range_fires_max: u32,
    /// How many ended runs a host remembers, to answer a repeated dispatch with the
    /// outcome instead of running it again.
    pub ended_runs_remembered_max: usize,
    /// The most run ids in one query message.
    pub query_runs_max: usize,
    /// The most effects waiting to be drained before the node stops producing optional
    /// ones (gossip); a runtime that drains after every call never comes near it.
    pub effects_queued_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            plan_steps_per_tick_max: 50_000,
            proposal_commands_max: 1000,
            catch_up_runs_max: 100,
            missed_range_fires_max: 1_000_000,
            ended_runs_remembered_max: 10_000,
            query_runs_max: 1000,
            effects_queued_max: 100_000,
        }
    }
}

/// Everything a node is told at construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// Who this host is.
    pub identity: HostIdentity,
    /// Its tags, which job constraints match against.
    pub tags: BTreeMap<String, String>,
    /// Whether it has a working Docker engine.
    pub docker: bool,
    /// SWIM's timings.
    pub gossip: GossipConfig,
    /// The node's protocol timings.
    pub timing: Timing,
    /// The node's bounds.
    pub limits: Limits,
    /// The cluster-wide settings a leader establishes when they differ.
    pub settings: Settings,
}

impl NodeConfig {
    /// Defaults for host `identity`.
    pub fn new(identity: HostIdentity) -> Self {
        NodeConfig {
            identity,
            tags: BTreeMap::new(),
            docker: false,
            gossip: GossipConfig::default(),
            timing: Timing::default(),
            limits: Limits::default(),
            settings: Settings::default(),
        }
    }
}

/// What Raft says about leadership, as the runtime reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// The current term.
    pub term: u64,
    /// The current leader, if one is known.
    pub leader: Option<HostId>,
    /// Whether this host is the leader.
    pub is_leader: bool,
    /// As leader: when a quorum last acknowledged us (this host's clock).
    pub quorum_acked: Option<Mono>,
    /// The hosts that vote in Raft.
    pub voters: Vec<HostId>,
}

/// What the local executor reports about a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutorEvent {
    /// A run found still executing when the daemon started (it outlived a restart of
    /// the daemon); the host takes it back as if it had just been dispatched and started.
    Adopted {
        /// The run, as it was dispatched.
        spec: RunSpec,
        /// When it started.
        started_at: Timestamp,
    },
    /// The run's command is executing.
    Started {
        /// The run.
        run: RunId,
        /// When it started.
        at: Timestamp,
    },
    /// The run's command ended.
    Exited {
        /// The run.
        run: RunId,
        /// When it ended.
        at: Timestamp,
        /// When it started, if the executor knows (it reports this for runs it found
        /// after a restart of the daemon).
        started_at: Option<Timestamp>,
        /// Its exit code, when it exited by itself.
        exit_code: Option<i32>,
        /// Why it failed, when the executor knows better than the exit code
        /// (`oom-killed`, `stopped`).
        reason: Option<Reason>,
        /// A human-readable detail.
        detail: Option<String>,
    },
    /// The run could not be started.
    LaunchFailed {
        /// The run.
        run: RunId,
        /// When.
        at: Timestamp,
        /// Why (`launch-failed`, `image-unavailable`).
        reason: Reason,
        /// What went wrong, for the operator.
        detail: String,
    },
}

/// Everything that can reach a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Time has passed.
    Tick,
    /// A gossip datagram.
    Gossip(Vec<u8>),
    /// Raft's view of leadership changed (or its quorum acknowledged the leader again).
    Raft(RaftStatus),
    /// A message from another host (or from this one).
    Message {
        /// The sender.
        from: HostId,
        /// The sender's cluster address, for replies when gossip does not know it yet.
        addr: SocketAddr,
        /// The message.
        message: Message,
    },
    /// The local executor reports.
    Executor(ExecutorEvent),
    /// A fresh resource sample of this host.
    Resources(ResourceSample),
    /// Whether this host's Docker engine answers, when that changed after the node was
    /// made: an engine started after the host, or one that stopped answering. The
    /// cluster learns it with the host's next gossip, and places docker runs by it.
    Docker(bool),
    /// Join the cluster through the host at this address.
    Join(SocketAddr),
    /// A proposal failed (this host is no longer leader, or Raft refused it).
    ProposalFailed(Command),
    /// This host is shutting down: leave the cluster gracefully.
    Leave,
}

/// A report of what became of a run on its host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportStatus {
    /// It is running.
    Started {
        /// Since when.
        at: Timestamp,
    },
    /// It ended.
    Finished {
        /// When it started, if it did.
        started_at: Option<Timestamp>,
        /// When it ended.
        at: Timestamp,
        /// Its exit code, when it exited by itself.
        exit_code: Option<i32>,
        /// Why it failed.
        reason: Option<Reason>,
        /// A detail.
        detail: Option<String>,
    },
    /// The host has it and is starting it.
    Starting,
    /// The host has no record of the run.
    Unknown,
}

/// A message between hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Leader to host: start this run (once; a repeat is answered with a report).
    Dispatch {
        /// The leader's term.
        term: u64,
        /// The run.
        run: RunSpec,
        /// Whether this dispatch renews the host's lease, as a heartbeat would: a host
        /// that has just started must not stop a run it was just given for want of a
        /// heartbeat it has not had time to receive.
        renews_lease: bool,
    },
    /// Leader to host: stop this run.
    Stop {
        /// The leader's term.
        term: u64,
        /// The run.
        run: RunId,
        /// Why.
        reason: Reason,
    },
    /// Leader to host: report on these runs.
    Query {
        /// The leader's term.
        term: u64,
        /// The runs.
        runs: Vec<RunId>,
    },
    /// Leader to host: I am still the leader. It renews the host's lease unless the
    /// leader has fenced the host; then it only asks whether the host is reachable.
    Heartbeat {
        /// The leader's term.
        term: u64,
        /// Whether it renews the host's lease.
        renews_lease: bool,
    },
    /// Host to leader: I heard your heartbeat.
    HeartbeatAck {
        /// The heartbeat's term.
        term: u64,
    },
    /// Host to leader: what became of a run.
    Report {
        /// The run.
        run: RunId,
        /// Its status.
        status: ReportStatus,
    },
    /// Leader to host: your report is committed.
    Ack {
        /// The leader's term.
        term: u64,
        /// The run.
        run: RunId,
        /// Whether the run's end is committed (the host may forget it).
        finished: bool,
    },
}

impl Message {
    /// The leader term a leader's message carries.
    pub fn term(&self) -> Option<u64> {
        match self {
            Message::Dispatch { term, .. }
            | Message::Stop { term, .. }
            | Message::Query { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::Ack { term, .. } => Some(*term),
            Message::Report { .. } | Message::HeartbeatAck { .. } => None,
        }
    }
}

/// Something the node tells the operator about (logs and metrics are built from these),
/// and the coverage marks the simulator counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Raft made this host leader; it declares nothing until its first entry applies.
    BecameLeader {
        /// The term.
        term: u64,
    },
    /// This host's first entry as leader applied: it reconciled what it inherited and
    /// now schedules.
    LeaderReady {
        /// The term.
        term: u64,
        /// In-flight runs it inherited.
        inherited_runs: usize,
    },
    /// This host is no longer leader.
    LostLeadership {
        /// The term it led.
        term: u64,
    },
    /// A run was declared.
    Declared {
        /// The run.
        run: RunId,
        /// Where.
        host: HostId,
        /// Its fire time.
        scheduled_at: Timestamp,
    },
    /// A fire was recorded without running (skipped, missed, or no capacity).
    Recorded {
        /// The record.
        run: RunId,
        /// Skipped, missed or failed.
        state: RunState,
        /// Why.
        reason: Reason,
    },
    /// A run ended (as committed).
    Ended {
        /// The run.
        run: RunId,
        /// Succeeded or failed.
        state: RunState,
        /// Why it failed.
        reason: Option<Reason>,
    },
    /// The leader sent a dispatch again because the host did not report in time.
    DispatchRetried {
        /// The run.
        run: RunId,
        /// How many times it has now been sent by this leader.
        attempt: u32,
    },
    /// The leader dispatched an inherited declared run again after a leader change.
    InheritedDispatch {
        /// The run.
        run: RunId,
    },
    /// A host was declared down.
    HostDown {
        /// The host.
        host: HostId,
    },
    /// A host came up.
    HostUp {
        /// The host.
        host: HostId,
    },
    /// A host restarted.
    HostRestarted {
        /// The host.
        host: HostId,
    },
    /// The leader recorded a lost host's runs as `host-lost`.
    HostLost {
        /// The host.
        host: HostId,
        /// How many runs.
        runs: usize,
    },
    /// A message from a deposed leader was refused.
    StaleLeaderRefused {
        /// Who sent it.
        from: HostId,
        /// Its term.
        term: u64,
        /// The term this host knows.
        known: u64,
    },
    /// A host received a dispatch for a run it already has, and did not start it again.
    DuplicateDispatch {
        /// The run.
        run: RunId,
    },
    /// A host refused a dispatch that arrived after the run's start deadline.
    DispatchExpired {
        /// The run.
        run: RunId,
    },
    /// A host stopped a run because its lease expired.
    LeaseExpired {
        /// The run.
        run: RunId,
    },
    /// A host stopped a run for its timeout.
    TimedOut {
        /// The run.
        run: RunId,
    },
    /// A proposal failed.
    ProposalFailed {
        /// How many commands it held.
        commands: usize,
    },
    /// A command was rejected when applied.
    Rejected {
        /// The command's kind.
        kind: String,
        /// Why.
        why: String,
    },
}

impl Event {
    /// A short kebab-case name of the event's kind (for counters and coverage marks).
    pub fn name(&self) -> &'static str {
        match self {
            Event::BecameLeader { .. } => "became-leader",
            Event::LeaderReady { .. } => "leader-ready",
            Event::LostLeadership { .. } => "lost-leadership",
            Event::Declared { .. } => "declared",
            Event::Recorded { .. } => "recorded",
            Event::Ended { .. } => "ended",
            Event::DispatchRetried { .. } => "dispatch-retried",
            Event::InheritedDispatch { .. } => "inherited-dispatch",
            Event::HostDown { .. } => "host-down",
            Event::HostUp { .. } => "host-up",
            Event::HostRestarted { .. } => "host-restarted",
            Event::HostLost { .. } => "host-lost",
            Event::StaleLeaderRefused { .. } => "stale-leader-refused",
            Event::DuplicateDispatch { .. } => "duplicate-dispatch",
            Event::DispatchExpired { .. } => "dispatch-expired",
            Event::LeaseExpired { .. } => "lease-expired",
            Event::TimedOut { .. } => "timed-out",
            Event::ProposalFailed { .. } => "proposal-failed",
            Event::Rejected { .. } => "rejected",
        }
    }
}

/// Something the runtime must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send a gossip datagram.
    Gossip {
        /// The peer's cluster address.
        to: SocketAddr,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// Send a message to a host.
    Send {
        /// The host.
        to: HostId,
        /// Its cluster address.
        addr: SocketAddr,
        /// The message.
        message: Message,
    },
    /// Append a command to the Raft log (as leader); report failure with
    /// [`Input::ProposalFailed`].
    Propose(Command),
    /// Start a run on this host (once: the executor refuses a second start of one run).
    StartRun(RunSpec),
    /// Stop a run on this host; the executor then reports it exited.
    StopRun {
        /// The run.
        run: RunId,
        /// Why.
        reason: Reason,
    },
    /// Tell the operator.
    Event(Event),
}

/// Which hat this host wears, as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The Raft leader, scheduling.
    Leader,
    /// A Raft voter following the leader.
    Follower,
    /// A host outside Raft that only runs jobs.
    Worker,
}

/// A host as the members API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberView {
    /// Its id.
    pub id: HostId,
    /// Its cluster address.
    pub cluster_addr: SocketAddr,
    /// Its API address.
    pub api_addr: SocketAddr,
    /// Alive, suspect or down.
    pub state: Liveness,
    /// Voter or worker.
    pub role: &'static str,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Whether it has Docker.
    pub docker: bool,
    /// Its free CPU, memory and disk fractions, from its last sample.
    pub free: Option<[f64; 3]>,
    /// Its last sample.
    pub resources: Option<ResourceSample>,
}

/// Sees each command of an applied entry apply, for what the runtime records of it
/// (metrics). It observes only: it cannot change what applies.
pub trait ApplyWatch {
    /// Just before `command` applies to `state`.
    fn before(&mut self, state: &State, command: &Command) {
        let _ = (state, command);
    }
    /// Just after `command` applied to `state`, answering `outcome`.
    fn after(&mut self, state: &State, command: &Command, outcome: &Outcome) {
        let _ = (state, command, outcome);
    }
}

/// Watches nothing.
impl ApplyWatch for () {}

/// One cluster member's logic. See the module documentation for how to drive it.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    now: Now,
    state: State,
    membership: Membership,
    raft: RaftStatus,
    leader: Option<Leader>,
    worker: Worker,
    /// Messages this host sent to itself, handled before the call returns.
    loopback: VecDeque<Message>,
    /// Where hosts that messaged us are, when gossip has not shown them yet.
    peers: BTreeMap<HostId, SocketAddr>,
    /// The addresses this host was asked to join through; while it knows no live peer
    /// it asks them again, so that a host started before its seed still joins.
    seeds: Vec<SocketAddr>,
    next_rejoin: Mono,
    /// How many times this host has become leader since it started.
    leaderships: u64,
    /// This host's latest resource sample, published again with any other change of
    /// what it tells the cluster about itself.
    sample: ResourceSample,
    effects: VecDeque<Effect>,
}

impl Node {
    /// A node for the host in `config`, with its randomness drawn from `seed`, starting
    /// at `now` with the replicated `state` it recovered (empty on a first start).
    pub fn new(config: NodeConfig, seed: u64, now: Now, state: State) -> Self {
        let membership = Membership::new(config.identity, &config.gossip, seed, now.mono);
        let worker = Worker::new(&config, now);
        let mut node = Node {
            config,
            now,
            state,
            membership,
            raft: RaftStatus::default(),
            leader: None,
            worker,
            loopback: VecDeque::new(),
            peers: BTreeMap::new(),
            seeds: Vec::new(),
            next_rejoin: now.mono,
            leaderships: 0,
            sample: ResourceSample::default(),
            effects: VecDeque::new(),
        };
        node.publish_info(ResourceSample::default());
        node.drain_membership();
        node
    }

    // ----- getters -----

    /// This host.
    pub fn identity(&self) -> &HostIdentity {
        self.membership.me()
    }

    /// The replicated state as applied here.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Raft's latest view of leadership.
    pub fn raft(&self) -> &RaftStatus {
        &self.raft
    }

    /// This host's hat.
    pub fn role(&self) -> Role {
        if self.raft.is_leader {
            Role::Leader
        } else if self.raft.voters.contains(&self.identity().id) {
            Role::Follower
        } else {
            Role::Worker
        }
    }

    /// Whether this host is the leader, has applied its first entry, so that its state
    /// is current and it schedules, and has its settings in force (such as the most
    /// jobs), so that a write it takes is judged by them.
    pub fn is_ready_leader(&self) -> bool {
        self.leader.as_ref().is_some_and(Leader::is_ready)
            && self.state.settings() == &self.config.settings
    }

    /// The leader as this host knows it: its id, term and API address.
    pub fn known_leader(&self) -> Option<(HostId, u64, Option<SocketAddr>)> {
        let (id, term) = self.worker.leader()?;
        let api = self.membership.host(id).map(|h| h.identity.api_addr);
        Some((id, term, api))
    }

    /// Every host membership knows, as the API shows them.
    pub fn members(&self) -> Vec<MemberView> {
        self.membership
            .hosts()
            .values()
            .map(|h| MemberView {
                id: h.identity.id,
                cluster_addr: h.identity.cluster_addr,
                api_addr: h.identity.api_addr,
                state: self
                    .membership
                    .swim_liveness(h.identity.id)
                    .unwrap_or(h.liveness),
                role: if self.raft.voters.contains(&h.identity.id) {
                    "voter"
                } else {
                    "worker"
                },
                tags: h.info.as_ref().map(|i| i.tags.clone()).unwrap_or_default(),
                docker: h.info.as_ref().is_some_and(|i| i.docker),
                free: h.info.as_ref().map(|i| i.resources.free_fractions()),
                resources: h.info.as_ref().map(|i| i.resources),
            })
            .collect()
    }

    /// One host as membership knows it.
    pub fn member(&self, id: HostId) -> Option<&HostEntry> {
        self.membership.host(id)
    }

    /// The runs this host is executing or has not had acknowledged yet.
    pub fn local_runs(&self) -> impl Iterator<Item = &LocalRun> {
        self.worker.runs()
    }

    /// Datagrams that did not decode or were refused, since start.
    pub fn bad_datagrams(&self) -> u64 {
        self.membership.bad_datagrams
    }

    // ----- handle_* -----

    /// Feeds one input at `now`.
    pub fn handle(&mut self, now: Now, input: Input) {
        self.now = now;
        match input {
            Input::Tick => {}
            Input::Gossip(bytes) => self.membership.handle_datagram(now.mono, &bytes),
            Input::Raft(status) => self.on_raft(status),
            Input::Message {
                from,
                addr,
                message,
            } => {
                self.remember_peer(from, addr);
                self.on_message(from, message);
            }
            Input::Executor(event) => self.worker.on_executor(now, event, &mut self.effects),
            Input::Resources(sample) => self.publish_info(sample),
            Input::Docker(has) => {
                if has != self.config.docker {
                    self.config.docker = has;
                    self.publish_info(self.sample);
                }
            }
            Input::Join(addr) => {
                if !self.seeds.contains(&addr) && self.seeds.len() < SEEDS_MAX {
                    self.seeds.push(addr);
                }
                self.membership.join(now.mono, addr);
            }
            Input::ProposalFailed(command) => {
                self.emit(Event::ProposalFailed {
                    commands: command.len(),
                });
                if let Some(leader) = self.leader.as_mut() {
                    leader.on_proposal_failed(&self.state, &command);
                }
            }
            Input::Leave => self.membership.leave(now.mono),
        }
        self.run_timers();
    }

    /// Applies one committed Raft entry and answers its outcome.
    pub fn handle_applied(&mut self, now: Now, index: u64, command: &Command) -> Outcome {
        self.handle_applied_watched(now, index, command, &mut ())
    }

    /// As [`Node::handle_applied`], showing `watch` the state just before and just after
    /// each command (each command of a batch in turn).
    pub fn handle_applied_watched(
        &mut self,
        now: Now,
        index: u64,
        command: &Command,
        watch: &mut dyn ApplyWatch,
    ) -> Outcome {
        self.now = now;
        // The leader reacts to each command of a batch as it applies, just as it would
        // to the same commands in entries of their own. It then finds what the command
        // touched still in cache.
        let outcome = match command {
            Command::Batch(commands) => Outcome::Batch(
                commands
                    .iter()
                    .map(|c| self.apply_and_react(index, c, State::apply_in_batch, watch))
                    .collect(),
            ),
            command => self.apply_and_react(index, command, State::apply, watch),
        };
        self.with_leader(|leader, ctx| leader.flush(ctx));
        for (command, outcome) in flatten(command, &outcome) {
            if let Outcome::Rejected(why) = outcome {
                self.emit(Event::Rejected {
                    kind: command.kind().to_owned(),
                    why: why.to_string(),
                });
            }
        }
        self.run_timers();
        outcome
    }

    /// Applies one command with `apply` and lets the leader react to its outcome.
    fn apply_and_react(
        &mut self,
        index: u64,
        command: &Command,
        apply: fn(&mut State, u64, &Command) -> Outcome,
        watch: &mut dyn ApplyWatch,
    ) -> Outcome {
        let before = leader::Before::capture(&self.state, command);
        watch.before(&self.state, command);
        let outcome = apply(&mut self.state, index, command);
        watch.after(&self.state, command, &outcome);
        self.with_leader(|leader, ctx| leader.on_applied(ctx, command, &outcome, before));
        outcome
    }

    /// The command that runs `job` now on the best host, as the leader would declare it.
    /// The runtime proposes it and answers the API with the outcome.
    pub fn plan_trigger(
        &mut self,
        now: Now,
        job: &crate::job::JobName,
        force: bool,
        key: Option<crate::run::TriggerKey>,
    ) -> Result<Planned, TriggerError> {
        self.now = now;
        self.with_leader(|leader, ctx| leader.plan_trigger(ctx, job, force, key))
            .unwrap_or(Err(TriggerError::NotLeader))
    }

    /// Replaces the replicated state with a snapshot's (Raft installed one).
    pub fn install_state(&mut self, now: Now, state: State) {
        self.now = now;
        self.state = state;
        if let Some(leader) = self.leader.as_mut() {
            leader.resync(&self.state);
        }
    }

    // ----- poll_* -----

    /// The next thing the runtime must do.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When to hand the node `Input::Tick` next.
    pub fn poll_timeout(&self) -> Option<Mono> {
        let mut next = self.worker.poll_timeout();
        if !self.seeds.is_empty() {
            next = Some(next.map_or(self.next_rejoin, |n| n.min(self.next_rejoin)));
        }
        if let Some(t) = self.membership.poll_timeout() {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if let Some(leader) = &self.leader
            && let Some(t) = leader.poll_timeout(self.now)
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        next
    }

    // ----- internals -----

    fn emit(&mut self, event: Event) {
        self.effects.push_back(Effect::Event(event));
    }

    /// Runs `f` with the leader hat and what it may see, if this host is leader.
    fn with_leader<T>(
        &mut self,
        f: impl FnOnce(&mut Leader, &mut leader::Ctx<'_>) -> T,
    ) -> Option<T> {
        let leader = self.leader.as_mut()?;
        let mut ctx = leader::Ctx {
            now: self.now,
            state: &self.state,
            membership: &self.membership,
            config: &self.config,
            raft: &self.raft,
            peers: &self.peers,
            effects: &mut self.effects,
            loopback: &mut self.loopback,
        };
        Some(f(leader, &mut ctx))
    }

    fn publish_info(&mut self, sample: ResourceSample) {
        if !sample.is_consistent() {
            return;
        }
        self.sample = sample;
        let info = HostInfo {
            resources: sample,
            tags: self.config.tags.clone(),
            docker: self.config.docker,
        };
        self.membership.publish(self.now.mono, info);
    }

    fn on_raft(&mut self, status: RaftStatus) {
        let me = self.identity().id;
        self.worker.on_raft(self.now, &status, me);
        let term_changed = status.term != self.raft.term;
        let was_leader = self.raft.is_leader;
        self.raft = status;
        if was_leader
            && (!self.raft.is_leader || term_changed)
            && let Some(old) = self.leader.take()
        {
            self.emit(Event::LostLeadership { term: old.term() });
        }
        if self.raft.is_leader && self.leader.is_none() {
            let term = self.raft.term;
            self.emit(Event::BecameLeader { term });
            self.leaderships += 1;
            let nonce = (self.identity().boot << 32) | (self.leaderships & 0xffff_ffff);
            let leader = Leader::new(term, nonce, self.now);
            self.effects
                .push_back(Effect::Propose(leader.start_command(me, self.now)));
            self.leader = Some(leader);
        }
    }

    /// Remembers where a sender can be reached, for hosts gossip has not shown us yet.
    fn remember_peer(&mut self, id: HostId, addr: SocketAddr) {
        if self.membership.host(id).is_some() || id == self.identity().id {
            return;
        }
        if self.peers.len() >= PEERS_REMEMBERED_MAX && !self.peers.contains_key(&id) {
            self.peers.pop_first();
        }
        self.peers.insert(id, addr);
    }

    fn on_message(&mut self, from: HostId, message: Message) {
        self.loopback.push_back(message);
        self.deliver_loopback(from);
    }

    /// Delivers queued messages; messages a host sends itself land here too, and are
    /// delivered in order before the current call returns.
    fn deliver_loopback(&mut self, mut from: HostId) {
        let me = self.identity().id;
        // Each delivery can queue a bounded number of replies, and replies to oneself
        // end at a report or an ack; the bound guards against a bug looping forever.
        let mut budget = 10_000usize;
        while let Some(message) = self.loopback.pop_front() {
            budget -= 1;
            if budget == 0 {
                break;
            }
            match message {
                Message::Report { run, status } => {
                    self.with_leader(|leader, ctx| leader.on_report(ctx, from, run, status));
                }
                Message::HeartbeatAck { term } => {
                    self.with_leader(|leader, ctx| {
                        if term == leader.term() {
                            leader.heard_from(ctx.now, from, ctx.membership);
                        }
                    });
                }
                other => {
                    let out =
                        self.worker
                            .on_leader_message(self.now, from, other, &mut self.effects);
                    for message in out {
                        self.send_to_leader(message);
                    }
                }
            }
            from = me;
        }
    }

    fn send_to_leader(&mut self, message: Message) {
        let Some((leader, _)) = self.worker.leader() else {
            return;
        };
        if leader == self.identity().id {
            self.loopback.push_back(message);
            return;
        }
        let addr = self
            .membership
            .host(leader)
            .map(|entry| entry.identity.cluster_addr)
            .or_else(|| self.peers.get(&leader).copied());
        if let Some(addr) = addr {
            self.effects.push_back(Effect::Send {
                to: leader,
                addr,
                message,
            });
        }
    }

    fn run_timers(&mut self) {
        let now = self.now;
        if now.mono >= self.next_rejoin && !self.seeds.is_empty() {
            self.next_rejoin = now.mono
                + core::time::Duration::from_millis(self.config.gossip.probe_period_ms.max(100));
            let me = self.identity().id;
            let alone = !self
                .membership
                .hosts()
                .values()
                .any(|h| h.identity.id != me && h.liveness == Liveness::Alive);
            if alone {
                for addr in self.seeds.clone() {
                    self.membership.join(now.mono, addr);
                }
            }
        }
        self.membership.handle_timers(now.mono);
        self.drain_membership();
        for message in self.worker.on_tick(now, &mut self.effects) {
            self.send_to_leader(message);
        }
        self.with_leader(|leader, ctx| leader.on_tick(ctx));
        let me = self.identity().id;
        if !self.loopback.is_empty() {
            self.deliver_loopback(me);
        }
    }

    fn drain_membership(&mut self) {
        let limit = self.config.limits.effects_queued_max;
        for (to, bytes) in self.membership.take_sends() {
            // Gossip is the one effect that may be dropped: SWIM tolerates loss.
            if self.effects.len() < limit {
                self.effects.push_back(Effect::Gossip { to, bytes });
            }
        }
        for change in self.membership.take_changes() {
            let event = match change {
                Change::Up(host) => Some(Event::HostUp { host }),
                Change::Down(host) => Some(Event::HostDown { host }),
                Change::Restarted(host) => Some(Event::HostRestarted { host }),
                Change::Info(_) | Change::Rejoined => None,
            };
            if let Some(leader) = self.leader.as_mut() {
                leader.on_membership(self.now, &change, &self.membership);
            }
            if let Some(event) = event {
                self.emit(event);
            }
        }
    }
}

/// Pairs each command of an entry with its outcome (a batch with its members').
pub fn flatten<'a>(command: &'a Command, outcome: &'a Outcome) -> Vec<(&'a Command, &'a Outcome)> {
    match (command, outcome) {
        (Command::Batch(commands), Outcome::Batch(outcomes)) => {
            commands.iter().zip(outcomes.iter()).collect()
        }
        (command, outcome) => vec![(command, outcome)],
    }
}

/// The most seed addresses remembered.
const SEEDS_MAX: usize = 64;

/// The most senders remembered outside gossip.
const PEERS_REMEMBERED_MAX: usize = 1024;

/// Whether a host's liveness lets it take new runs.
fn is_placeable(entry: &HostEntry) -> bool {
    entry.liveness == Liveness::Alive && entry.info.is_some()
}

#[cfg(test)]
mod tests;
