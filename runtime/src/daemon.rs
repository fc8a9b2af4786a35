//! The daemon: wiring and the event loop.
//!
//! One task owns the core `Node`. It selects over every input (gossip datagrams, core
//! messages from peers, committed Raft entries, Raft's view of leadership, executor
//! events, resource samples, API calls, failed proposals, and the node's own timer),
//! hands each to the node, then performs every effect the node asks for. No scheduling
//! decision is made here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use openraft::{ServerState, SnapshotPolicy};
use rota_core::command::Command;
use rota_core::host::{HostId, HostIdentity};
use rota_core::node::{Effect, Event, ExecutorEvent, Input, Message, Node, NodeConfig, RaftStatus};
use rota_core::state::State;
use rota_core::time::{Mono, Now};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Config;
use crate::executor::{Events, Executor};
use crate::io::{BoxFuture, Io};
use crate::metrics::Metrics;
use crate::raft::Peer;
use crate::raft::network::Network;
use crate::raft::state_machine::{StateMachine, ToNode};
use crate::raft::types::Raft;
use crate::resources::ResourceProbe;
use crate::rpc::{self, Handler, Request, Response, RpcClient, RpcLimits, RpcStats};
use crate::storage::log::{LogConfig, LogStore};
use crate::storage::snapshot::SnapshotStore;

/// A call into the event loop: a closure run with the node, that answers through a
/// channel it captured. The API reads and plans through these.
pub type Call = Box<dyn FnOnce(&mut Node, Now) + Send>;

/// Makes the executor, given this host's id and where to send its events.
pub type MakeExecutor = Box<dyn FnOnce(HostId, Events) -> anyhow::Result<Arc<dyn Executor>> + Send>;

/// What a daemon is built from: its configuration and its ways into the world.
pub struct Parts {
    /// The configuration.
    pub config: Config,
    /// Clock, sockets, files.
    pub io: Io,
    /// Makes the executor, given this host's id and where to send its events.
    pub executor: MakeExecutor,
    /// Reads this host's free resources.
    pub probe: Arc<dyn ResourceProbe>,
    /// Whether this host has a Docker engine.
    pub docker: bool,
    /// Seeds the node's and Raft's randomness.
    pub seed: u64,
    /// Sees every event the node reports (the simulator counts its coverage marks).
    pub on_event: Option<EventHook>,
}

/// A function that sees every event the node reports.
pub type EventHook = Arc<dyn Fn(&Event) + Send + Sync>;

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A running daemon, as the API and the binary see it.
#[derive(Clone)]
pub struct Handle {
    /// This host.
    pub identity: HostIdentity,
    /// The configuration it runs with.
    pub config: Arc<Config>,
    /// Raft.
    pub raft: Raft,
    /// Calls into the event loop.
    calls: mpsc::Sender<Call>,
    /// The executor (for run output).
    pub executor: Arc<dyn Executor>,
    /// Cluster RPC, for handing over leadership.
    pub rpc: Arc<RpcClient>,
    /// What the RPC server refused.
    pub rpc_stats: Arc<RpcStats>,
    /// The clock.
    pub clock: Arc<dyn crate::io::Clock>,
    /// What this host counted.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// The event loop has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the daemon is shutting down")]
pub struct Stopped;

impl Handle {
    /// Runs `f` with the node inside the event loop and answers its result.
    pub async fn with_node<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, Now) -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let (reply, answer) = oneshot::channel();
        let call: Call = Box::new(move |node, now| {
            let _ = reply.send(f(node, now));
        });
        self.calls.send(call).await.map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }

    /// Appends a command to the Raft log through this host (which must be the leader)
    /// and waits until it is committed and applied.
    pub async fn propose(
        &self,
        command: Command,
    ) -> Result<rota_core::command::Outcome, ProposeError> {
        match self.raft.client_write(command).await {
            Ok(response) => Ok(response.data),
            Err(openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::ForwardToLeader(f),
            )) => Err(ProposeError::NotLeader(f.leader_id)),
            Err(e) => Err(ProposeError::Raft(e.to_string())),
        }
    }
}

/// Why a proposal was not committed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// This host is not the leader (the leader, if known).
    #[error("this host is not the leader")]
    NotLeader(Option<u64>),
    /// Raft failed.
    #[error("raft: {0}")]
    Raft(String),
}

/// Reads this host's id and boot count from the data directory (creating them on the
/// first start), so a restarted host keeps its identity and outranks its earlier self.
/// How the data directory encodes the replicated state (the Raft log's entries and the
/// snapshots, in postcard, which names no field): raised by every change to the commands
/// or the state that leaves older files unreadable. Format 1 is every data directory
/// from before the number was kept; format 2 added manual runs' trigger keys; format 3
/// added the request to stop a run (a new command, which a rota of format 2 cannot
/// read, though this one reads format 2's files).
const DATA_FORMAT: u32 = 3;

/// The oldest format this rota reads. A directory in a format from here up to
/// [`DATA_FORMAT`] is marked with [`DATA_FORMAT`] before anything is written to it, so
/// that an older rota refuses it rather than misread what this one writes.
const DATA_FORMAT_OLDEST_READ: u32 = 2;

/// The file in the data directory that holds its [`DATA_FORMAT`].
const DATA_FORMAT_FILE: &str = "format";

/// The file in the data directory that holds the host's id; written at its first start.
const HOST_ID_FILE: &str = "host-id";

/// Refuses a data directory written in another format, with what to do about it, before
/// anything in it is read as state; marks a new one with this format.
fn check_data_format(disk: &dyn crate::io::Disk, data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join(DATA_FORMAT_FILE);
    let found = match disk.read(&path)? {
        Some(bytes) => String::from_utf8_lossy(&bytes)
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|format| *format > 0)
            .with_context(|| {
                format!(
                    "{} does not hold a data format number; restore it or remove the data directory",
                    path.display()
                )
            })?,
        // A host that has started before, from before the format was kept.
        None if disk.read(&data_dir.join(HOST_ID_FILE))?.is_some() => 1,
        None => {
            disk.write_atomic(&path, DATA_FORMAT.to_string().as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            return Ok(());
        }
    };
    anyhow::ensure!(
        (DATA_FORMAT_OLDEST_READ..=DATA_FORMAT).contains(&found),
        "the data directory {} holds rota's state in data format {found}, and this rota reads formats {DATA_FORMAT_OLDEST_READ} to {DATA_FORMAT} only: run the rota that wrote it, or start this host with an empty data directory (every host of a cluster must use the same format)",
        data_dir.display()
    );
    if found != DATA_FORMAT {
        disk.write_atomic(&path, DATA_FORMAT.to_string().as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        tracing::info!(
            from = found,
            to = DATA_FORMAT,
            "marked the data directory with this rota's data format: a rota of the older format no longer reads it"
        );
    }
    Ok(())
}

fn host_identity(io: &Io, config: &Config, seed: u64) -> anyhow::Result<(HostId, u64)> {
    let disk = &io.disk;
    disk.create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    check_data_format(disk.as_ref(), &config.data_dir)?;
    let id_path = config.data_dir.join(HOST_ID_FILE);
    let stored = match disk.read(&id_path)? {
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            Some(
                text.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|id| *id != 0)
                    .with_context(|| {
                        format!(
                            "{} does not hold a host id; restore it or remove the data directory",
                            id_path.display()
                        )
                    })?,
            )
        }
        None => None,
    };
    let id = match (stored, config.host_id) {
        (Some(stored), Some(wanted)) if stored != wanted => anyhow::bail!(
            "config `host_id`: this data directory belongs to host {stored}, not {wanted}; use another data directory or drop the setting"
        ),
        (Some(stored), _) => stored,
        (None, wanted) => {
            let id = wanted.unwrap_or((seed | 1) & 0x7fff_ffff_ffff_ffff);
            disk.write_atomic(&id_path, id.to_string().as_bytes())?;
            id
        }
    };
    let boot_path = config.data_dir.join("boot");
    let boot = match disk.read(&boot_path)? {
        Some(bytes) => {
            String::from_utf8_lossy(&bytes)
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                + 1
        }
        None => 1,
    };
    disk.write_atomic(&boot_path, boot.to_string().as_bytes())?;
    Ok((HostId(id), boot))
}

fn raft_config(config: &Config) -> anyhow::Result<Arc<openraft::Config>> {
    let r = &config.raft;
    let raft = openraft::Config {
        cluster_name: config.cluster_name.clone(),
        heartbeat_interval: r.heartbeat_interval_ms,
        election_timeout_min: r.election_timeout_min_ms,
        election_timeout_max: r.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_every_entries),
        max_in_snapshot_log_to_keep: r.entries_kept_after_snapshot,
        install_snapshot_timeout: config.limits.rpc_timeout_ms.max(1000),
        ..openraft::Config::default()
    };
    Ok(Arc::new(raft.validate().context("raft configuration")?))
}

/// Starts a daemon. It runs until `shutdown` resolves; the returned handle reaches it
/// meanwhile, and the join handle answers how it ended.
pub async fn start(
    parts: Parts,
    shutdown: BoxFuture<'static, ()>,
) -> anyhow::Result<(Handle, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let Parts {
        config,
        io,
        executor,
        probe,
        docker,
        seed,
        on_event,
    } = parts;
    crate::raft::runtime::seed_thread_rng(seed);
    let (id, boot) = host_identity(&io, &config, seed)?;
    let identity = HostIdentity {
        id,
        cluster_addr: config.advertise_addr,
        api_addr: config.advertise_api_addr,
        boot,
    };
    let raft_dir = config.data_dir.join("raft");
    let log = LogStore::open(
        Arc::clone(&io.disk),
        raft_dir.join("log"),
        LogConfig {
            segment_bytes_max: config.raft.segment_bytes_max,
            ..LogConfig::default()
        },
    )?;
    let snapshots = Arc::new(SnapshotStore::new(
        Arc::clone(&io.disk),
        raft_dir.join("snapshots"),
    ));
    // What the log held at start was applied (and counted) before; only later entries
    // are counted.
    let metrics = Arc::new(Metrics::counting_after(log.last_index().unwrap_or(0)));
    let recovered = snapshots.load_latest()?;
    let state = match &recovered {
        Some((meta, bytes)) => {
            let state: State = postcard::from_bytes(bytes).with_context(|| {
                format!(
                    "the snapshot {} does not hold a valid state",
                    meta.snapshot_id
                )
            })?;
            state.check_invariants().with_context(|| {
                format!("the snapshot {} holds a corrupt state", meta.snapshot_id)
            })?;
            state
        }
        None => State::new(),
    };

    let now = io.clock.now();
    let limits = rota_core::node::Limits::default();
    let proposal_commands_max = limits.proposal_commands_max.max(1);
    let node_config = NodeConfig {
        identity,
        tags: config.tags.clone(),
        docker,
        gossip: Default::default(),
        timing: config.timing.clone(),
        limits,
        settings: rota_core::state::Settings {
            runs_kept_per_job_max: config.runs_kept_per_job_max,
            jobs_max: config.jobs_max,
            job_limits: config.job_limits.clone(),
        },
    };
    let node = Node::new(node_config, seed, now, state);

    let (to_node_tx, to_node_rx) = mpsc::channel::<ToNode>(64);
    let state_machine = StateMachine::new(
        to_node_tx,
        Arc::clone(&snapshots),
        recovered.as_ref().map(|(m, _)| m),
    );
    let rpc_limits = RpcLimits {
        frame_bytes_max: config.limits.rpc_frame_bytes_max,
        timeout: Duration::from_millis(config.limits.rpc_timeout_ms),
        connections_max: config.limits.rpc_connections_max,
        connections_per_peer_max: config.limits.rpc_connections_per_peer_max,
    };
    let rpc_client = Arc::new(RpcClient::new(Arc::clone(&io.net), rpc_limits));
    // Raft re-applies committed entries to the state machine while it starts, and the
    // state machine hands them to the node: serve the node meanwhile, before the event
    // loop exists.
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let startup_clock = Arc::clone(&io.clock);
    let startup = tokio::spawn(serve_startup(
        node,
        to_node_rx,
        startup_clock,
        Arc::clone(&metrics),
        started_rx,
    ));
    let raft = Raft::new(
        id.0,
        raft_config(&config)?,
        Network::new(Arc::clone(&rpc_client)),
        log,
        state_machine,
    )
    .await
    .context("starting raft")?;
    let _ = started_tx.send(());
    let (mut node, to_node_rx) = startup.await.context("the start-up task panicked")?;

    // Sockets.
    let rpc_listener = io.net.listen(config.cluster_addr).await.with_context(|| {
        format!(
            "cannot listen for cluster RPC on {} (config `cluster_addr`)",
            config.cluster_addr
        )
    })?;
    let udp = io
        .net
        .bind_udp(config.cluster_addr)
        .await
        .with_context(|| {
            format!(
                "cannot bind the gossip socket on {} (config `cluster_addr`)",
                config.cluster_addr
            )
        })?;
    let (gossip_in_tx, gossip_in) = mpsc::channel::<Vec<u8>>(4096);
    let gossip_out = crate::gossip::spawn(udp, gossip_in_tx);
    let (messages_tx, messages_rx) = mpsc::channel::<(HostId, SocketAddr, Vec<Message>)>(4096);
    let rpc_stats = Arc::new(RpcStats::default());
    let handler = Arc::new(RpcHandler {
        raft: raft.clone(),
        messages: messages_tx,
    });
    tokio::spawn(rpc::serve(
        rpc_listener,
        handler,
        rpc_limits,
        Arc::clone(&rpc_stats),
    ));

    // The executor, and what it found from before a restart.
    let (events_tx, events_rx) = mpsc::unbounded_channel::<ExecutorEvent>();
    let executor = executor(id, events_tx)?;
    let recovered_runs = executor.recover().await;

    if config.bootstrap && !raft.is_initialized().await? {
        let peer = Peer {
            cluster_addr: config.advertise_addr.to_string(),
            api_addr: config.advertise_api_addr.to_string(),
        };
        raft.initialize(BTreeMap::from([(id.0, peer)]))
            .await
            .context("bootstrapping a one-host cluster")?;
        tracing::info!(host = %id, "bootstrapped a new cluster");
    }

    let now = io.clock.now();
    for event in recovered_runs {
        node.handle(now, Input::Executor(event));
    }
    // Rejoin: the configured members, and the voters this host knows from its log.
    let mut seeds: BTreeSet<SocketAddr> = config.join.iter().copied().collect();
    for (_, peer) in raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
    {
        if let Ok(addr) = peer.cluster_addr.parse() {
            seeds.insert(addr);
        }
    }
    for addr in &seeds {
        node.handle(now, Input::Join(*addr));
    }

    let (calls_tx, calls_rx) = mpsc::channel::<Call>(1024);
    let (raft_status_tx, raft_status_rx) = watch::channel(RaftStatus::default());
    let (fatal_tx, fatal_rx) = oneshot::channel::<String>();
    spawn_raft_watcher(
        raft.clone(),
        Arc::clone(&io.clock),
        raft_status_tx,
        id,
        fatal_tx,
    );
    let (samples_tx, samples_rx) = mpsc::channel(4);
    spawn_sampler(
        probe,
        config.resources.clone(),
        Duration::from_millis(config.resources_interval_ms),
        samples_tx,
    );
    let (proposals_tx, proposals_rx) = mpsc::unbounded_channel::<Command>();
    let (failed_tx, failed_rx) = mpsc::unbounded_channel::<Command>();
    spawn_proposer(raft.clone(), proposals_rx, failed_tx, proposal_commands_max);

    let handle = Handle {
        identity,
        config: Arc::new(config.clone()),
        raft: raft.clone(),
        calls: calls_tx,
        executor: Arc::clone(&executor),
        rpc: Arc::clone(&rpc_client),
        rpc_stats,
        clock: Arc::clone(&io.clock),
        metrics: Arc::clone(&metrics),
    };
    let event_loop = EventLoop {
        node,
        io: io.clone(),
        config: config.clone(),
        raft: raft.clone(),
        executor,
        rpc: rpc_client,
        gossip_out,
        proposals: proposals_tx,
        peers: HashMap::new(),
        formation: Formation::default(),
        next_formation: now.mono,
        on_event,
        metrics,
    };
    let inputs = Inputs {
        to_node: to_node_rx,
        gossip: gossip_in,
        messages: messages_rx,
        events: events_rx,
        raft_status: raft_status_rx,
        samples: samples_rx,
        calls: calls_rx,
        failed: failed_rx,
        fatal: fatal_rx,
    };
    let api_handle = handle.clone();
    let task = tokio::spawn(async move {
        let result = event_loop.run(inputs, shutdown).await;
        let _ = api_handle.raft.shutdown().await;
        result
    });
    Ok((handle, task))
}

/// Applies committed entries to the node while Raft starts, until told to stop; then
/// hands the node and its channel back.
async fn serve_startup(
    mut node: Node,
    mut requests: mpsc::Receiver<ToNode>,
    clock: Arc<dyn crate::io::Clock>,
    metrics: Arc<Metrics>,
    mut started: oneshot::Receiver<()>,
) -> (Node, mpsc::Receiver<ToNode>) {
    loop {
        tokio::select! {
            biased;
            Some(request) = requests.recv() => answer_raft(&mut node, clock.now(), &metrics, request),
            _ = &mut started => return (node, requests),
        }
    }
}

/// Answers the state machine: applies entries, takes or installs a snapshot.
fn answer_raft(node: &mut Node, now: Now, metrics: &Metrics, request: ToNode) {
    match request {
        ToNode::Apply { entries, reply } => {
            let outcomes = entries
                .iter()
                .map(|(index, command)| metrics.apply(node, now, *index, command))
                .collect();
            let _ = reply.send(outcomes);
        }
        ToNode::Snapshot { reply } => {
            let bytes = postcard::to_allocvec(node.state()).unwrap_or_default();
            let _ = reply.send(bytes);
        }
        ToNode::Install { state, reply } => {
            node.install_state(now, *state);
            let _ = reply.send(());
        }
    }
}

struct RpcHandler {
    raft: Raft,
    messages: mpsc::Sender<(HostId, SocketAddr, Vec<Message>)>,
}

impl Handler for RpcHandler {
    fn handle(&self, _peer: SocketAddr, request: Request) -> BoxFuture<'_, Response> {
        Box::pin(async move {
            match request {
                Request::AppendEntries(r) => {
                    Response::AppendEntries(self.raft.append_entries(r).await)
                }
                Request::Vote(r) => Response::Vote(self.raft.vote(r).await),
                Request::InstallSnapshot(r) => {
                    Response::InstallSnapshot(self.raft.install_snapshot(r).await)
                }
                Request::Messages {
                    from,
                    from_addr,
                    messages,
                } => match self.messages.try_send((from, from_addr, messages)) {
                    Ok(()) => Response::Done,
                    // The node is behind: the sender's core retries what matters.
                    Err(_) => Response::Refused("busy".into()),
                },
                Request::Elect => match self.raft.trigger().elect().await {
                    Ok(()) => Response::Done,
                    Err(e) => Response::Refused(e.to_string()),
                },
            }
        })
    }
}

/// Forwards Raft's view of leadership to the event loop: on every change of term,
/// leader or voters, and every 200 ms for the freshness of the leader's quorum.
fn spawn_raft_watcher(
    raft: Raft,
    clock: Arc<dyn crate::io::Clock>,
    out: watch::Sender<RaftStatus>,
    me: HostId,
    fatal: oneshot::Sender<String>,
) {
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        loop {
            let status = {
                let m = metrics.borrow_and_update();
                // Raft stops for good on a storage error it cannot recover from: the
                // daemon then stops too, so that its supervisor restarts it on the
                // durable state, rather than carry on half alive.
                if let Err(e) = &m.running_state {
                    let _ = fatal.send(e.to_string());
                    return;
                }
                let now = clock.now().mono;
                let voters: Vec<HostId> = m
                    .membership_config
                    .membership()
                    .voter_ids()
                    .map(HostId)
                    .collect();
                let is_leader = m.state == ServerState::Leader;
                // A lone voter is its own quorum.
                let alone = voters.len() == 1 && voters[0] == me;
                let quorum_acked = if is_leader && alone {
                    Some(now)
                } else {
                    m.millis_since_quorum_ack
                        .filter(|_| is_leader)
                        .map(|ms| Mono::from_millis(now.as_millis().saturating_sub(ms)))
                };
                RaftStatus {
                    term: m.current_term,
                    leader: m.current_leader.map(HostId),
                    is_leader,
                    quorum_acked,
                    voters,
                }
            };
            if out.send(status).is_err() {
                return;
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    });
}

fn spawn_sampler(
    probe: Arc<dyn ResourceProbe>,
    overrides: crate::config::ResourcesOverride,
    every: Duration,
    out: mpsc::Sender<rota_core::host::ResourceSample>,
) {
    tokio::spawn(async move {
        loop {
            let sample = overrides.apply(probe.sample());
            if out.send(sample).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// Proposals the proposer has handed to Raft and not yet seen committed, at most. While
/// this many are in flight, commands wait in the queue, and the next proposal takes all
/// of them in one entry: one log write and one fsync on each voter instead of one per
/// command. A lone command still goes at once.
const PROPOSALS_IN_FLIGHT_MAX: usize = 2;

/// The least time between two proposals. A command that comes after a quiet spell goes
/// at once; under load, the commands of each interval go in one entry, so the cluster
/// writes, fsyncs, replicates and applies at most one entry per interval and proposer
/// however many runs it starts. Without it, a commit took about 2 ms on loopback, so
/// few commands queued behind one: 300 runs/s cost 540 entries/s; with it, 500 runs/s
/// cost 90.
const PROPOSAL_INTERVAL_MIN: Duration = Duration::from_millis(10);

/// Proposes the core's commands to Raft in the order the node made them, packing those
/// that queued up while earlier proposals were in flight into one [`Command::Batch`] of
/// at most `commands_max` commands. A proposal that fails goes back to the node whole.
fn spawn_proposer(
    raft: Raft,
    mut proposals: mpsc::UnboundedReceiver<Command>,
    failed: mpsc::UnboundedSender<Command>,
    commands_max: usize,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(PROPOSALS_IN_FLIGHT_MAX));
    tokio::spawn(async move {
        let mut held: Option<Command> = None;
        let mut last_proposed: Option<tokio::time::Instant> = None;
        loop {
            let full = held.is_some();
            let first = match held.take() {
                Some(command) => command,
                None => match proposals.recv().await {
                    Some(command) => command,
                    None => return,
                },
            };
            let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                return;
            };
            // Commands that come while this waits go in the same entry; after a full
            // entry, there are more already.
            if let Some(last) = last_proposed
                && !full
            {
                tokio::time::sleep_until(last + PROPOSAL_INTERVAL_MIN).await;
            }
            last_proposed = Some(tokio::time::Instant::now());
            let (command, rest) = pack(first, || proposals.try_recv().ok(), commands_max);
            held = rest;
            match raft.client_write_ff(command.clone()).await {
                Ok(responder) => {
                    let failed = failed.clone();
                    tokio::spawn(async move {
                        if !matches!(responder.await, Ok(Ok(_))) {
                            let _ = failed.send(command);
                        }
                        drop(permit);
                    });
                }
                Err(_) => {
                    let _ = failed.send(command);
                }
            }
        }
    });
}

/// Packs `first` and the commands `next` yields into one entry of at most
/// `commands_max` commands (more only if `first` alone holds more), the members of a
/// batch one by one, since a batch may not hold a batch. Answers the entry, and the
/// command that did not fit, if `next` yielded one.
fn pack(
    first: Command,
    mut next: impl FnMut() -> Option<Command>,
    commands_max: usize,
) -> (Command, Option<Command>) {
    let mut commands = Vec::new();
    let push = |commands: &mut Vec<Command>, command| match command {
        Command::Batch(members) => commands.extend(members),
        command => commands.push(command),
    };
    push(&mut commands, first);
    let mut rest = None;
    while commands.len() < commands_max {
        let Some(command) = next() else {
            break;
        };
        if commands.len() + command.len() > commands_max {
            rest = Some(command);
            break;
        }
        push(&mut commands, command);
    }
    (Command::batch(commands), rest)
}

struct Inputs {
    to_node: mpsc::Receiver<ToNode>,
    gossip: mpsc::Receiver<Vec<u8>>,
    messages: mpsc::Receiver<(HostId, SocketAddr, Vec<Message>)>,
    events: mpsc::UnboundedReceiver<ExecutorEvent>,
    raft_status: watch::Receiver<RaftStatus>,
    samples: mpsc::Receiver<rota_core::host::ResourceSample>,
    calls: mpsc::Receiver<Call>,
    failed: mpsc::UnboundedReceiver<Command>,
    fatal: oneshot::Receiver<String>,
}

/// Adds hosts to Raft as they appear, up to the configured number of voters.
#[derive(Default)]
struct Formation {
    /// Hosts being added, so that one is not added twice at once.
    adding: Arc<std::sync::Mutex<BTreeSet<u64>>>,
}

struct EventLoop {
    node: Node,
    io: Io,
    config: Config,
    raft: Raft,
    executor: Arc<dyn Executor>,
    rpc: Arc<RpcClient>,
    gossip_out: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    proposals: mpsc::UnboundedSender<Command>,
    peers: HashMap<HostId, mpsc::Sender<(tokio::time::Instant, Message)>>,
    formation: Formation,
    next_formation: Mono,
    on_event: Option<EventHook>,
    metrics: Arc<Metrics>,
}

/// Core messages queued per peer before new ones are dropped (the core retries).
const PEER_QUEUE_MAX: usize = 10_000;
/// The least time between two calls carrying messages to one peer: under load, the
/// messages of each interval (dispatches, reports, acknowledgements) go in one call.
const MESSAGES_INTERVAL_MIN: Duration = Duration::from_millis(10);
/// The most messages sent in one RPC.
const MESSAGES_PER_RPC_MAX: usize = 512;

impl EventLoop {
    async fn run(
        mut self,
        mut inputs: Inputs,
        mut shutdown: BoxFuture<'static, ()>,
    ) -> anyhow::Result<()> {
        let origin = tokio::time::Instant::now();
        let origin_mono = self.io.clock.now().mono;
        loop {
            self.perform();
            let wake = self.node.poll_timeout().map(|at| {
                origin
                    + Duration::from_millis(at.as_millis().saturating_sub(origin_mono.as_millis()))
            });
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => {
                    self.shut_down().await;
                    return Ok(());
                }
                Ok(why) = &mut inputs.fatal => {
                    tracing::error!(error = %why, "raft stopped; stopping the daemon so that it restarts on its durable state");
                    anyhow::bail!("raft stopped: {why}");
                }
                Some(request) = inputs.to_node.recv() => self.on_raft_request(request),
                Some(bytes) = inputs.gossip.recv() => self.handle(Input::Gossip(bytes)),
                Some((from, addr, messages)) = inputs.messages.recv() => {
                    for message in messages {
                        self.handle(Input::Message { from, addr, message });
                    }
                }
                Some(event) = inputs.events.recv() => self.handle(Input::Executor(event)),
                Ok(()) = inputs.raft_status.changed() => {
                    let status = inputs.raft_status.borrow_and_update().clone();
                    self.handle(Input::Raft(status));
                }
                Some(sample) = inputs.samples.recv() => self.handle(Input::Resources(sample)),
                Some(call) = inputs.calls.recv() => {
                    let now = self.io.clock.now();
                    call(&mut self.node, now);
                }
                Some(command) = inputs.failed.recv() => self.handle(Input::ProposalFailed(command)),
                () = sleep => self.handle(Input::Tick),
            }
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.io.clock.now();
        self.node.handle(now, input);
    }

    fn on_raft_request(&mut self, request: ToNode) {
        answer_raft(&mut self.node, self.io.clock.now(), &self.metrics, request);
    }

    /// Performs every effect the node has queued.
    fn perform(&mut self) {
        while let Some(effect) = self.node.poll_effect() {
            match effect {
                Effect::Gossip { to, bytes } => {
                    let _ = self.gossip_out.try_send((to, bytes));
                }
                Effect::Send { to, addr, message } => self.send(to, addr, message),
                Effect::Propose(command) => {
                    let _ = self.proposals.send(command);
                }
                Effect::StartRun(spec) => self.executor.start(spec),
                Effect::StopRun { run, reason } => self.executor.stop(run, reason),
                Effect::Event(event) => {
                    if let Some(hook) = &self.on_event {
                        hook(&event);
                    }
                    log_event(&event);
                }
            }
        }
        let now = self.io.clock.now();
        if now.mono >= self.next_formation {
            self.next_formation = now.mono + Duration::from_secs(1);
            self.form_cluster();
        }
    }

    /// Queues a message for a peer; one task per peer sends them in order, in batches.
    fn send(&mut self, to: HostId, addr: SocketAddr, message: Message) {
        let ttl = Duration::from_millis(self.config.limits.message_ttl_ms);
        let queue = self.peers.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
            let from = self.node.identity().id;
            let from_addr = self.config.advertise_addr;
            tokio::spawn(peer_sender(
                Arc::clone(&self.rpc),
                from,
                from_addr,
                addr,
                ttl,
                rx,
            ));
            tx
        });
        if queue
            .try_send((tokio::time::Instant::now(), message))
            .is_err()
        {
            tracing::debug!(peer = %to, "dropped a message to a peer whose queue is full");
        }
    }

    /// As leader: adds new live hosts to Raft as voters while there are fewer voters
    /// than configured; other hosts stay workers (no Raft log).
    fn form_cluster(&mut self) {
        if !self.node.is_ready_leader() {
            return;
        }
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let learners: BTreeSet<u64> = membership.learner_ids().collect();
        let wanted = self.config.voters as usize;
        if voters.len() >= wanted && learners.is_empty() {
            return;
        }
        let candidates: Vec<(u64, Peer)> = self
            .node
            .members()
            .into_iter()
            .filter(|m| {
                m.state == rota_core::membership::Liveness::Alive && !voters.contains(&m.id.0)
            })
            .map(|m| {
                (
                    m.id.0,
                    Peer {
                        cluster_addr: m.cluster_addr.to_string(),
                        api_addr: m.api_addr.to_string(),
                    },
                )
            })
            .take(wanted.saturating_sub(voters.len()))
            .collect();
        for (id, peer) in candidates {
            {
                let mut adding = self
                    .formation
                    .adding
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !adding.insert(id) {
                    continue;
                }
            }
            let raft = self.raft.clone();
            let adding = Arc::clone(&self.formation.adding);
            tokio::spawn(async move {
                tracing::info!(host = id, "adding a host to raft as a voter");
                let result = async {
                    raft.add_learner(id, peer, true).await?;
                    raft.change_membership(
                        openraft::ChangeMembers::AddVoterIds(BTreeSet::from([id])),
                        false,
                    )
                    .await?;
                    Ok::<
                        _,
                        openraft::error::RaftError<
                            u64,
                            openraft::error::ClientWriteError<u64, Peer>,
                        >,
                    >(())
                }
                .await;
                if let Err(e) = result {
                    tracing::warn!(host = id, error = %e, "could not add a voter; will retry");
                }
                adding
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id);
            });
        }
    }

    /// A graceful stop: hand leadership to another voter, leave gossip, stop Raft.
    async fn shut_down(&mut self) {
        tracing::info!("shutting down");
        if self.node.raft().is_leader {
            let me = self.node.identity().id;
            let successor = self
                .node
                .raft()
                .voters
                .iter()
                .copied()
                .find(|v| *v != me && self.node.member(*v).is_some());
            if let Some(successor) = successor
                && let Some(entry) = self.node.member(successor)
            {
                let addr = entry.identity.cluster_addr;
                let answer = self
                    .rpc
                    .call(addr, &Request::Elect, Some(Duration::from_secs(2)))
                    .await;
                tracing::info!(successor = %successor, ok = answer.is_ok(), "handed leadership over");
                // Give the successor its election before this host stops answering.
                let mut metrics = self.raft.metrics();
                let _ = tokio::time::timeout(Duration::from_secs(3), async {
                    while metrics.borrow().current_leader == Some(me.0) {
                        if metrics.changed().await.is_err() {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        self.handle(Input::Leave);
        self.perform();
        // Let the goodbye datagrams leave.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends a peer's messages in order, in batches. A message that waited longer than
/// `ttl` is dropped instead: the core resends what matters, and the leader relies on a
/// bound on how late a message can arrive (a lease renewed by a stale heartbeat would
/// outlive the leader's count).
async fn peer_sender(
    rpc: Arc<RpcClient>,
    from: HostId,
    from_addr: SocketAddr,
    addr: SocketAddr,
    ttl: Duration,
    mut queue: mpsc::Receiver<(tokio::time::Instant, Message)>,
) {
    // When the last call went, unless it was full (more messages wait already).
    let mut last_sent: Option<tokio::time::Instant> = None;
    while let Some(first) = queue.recv().await {
        // Messages that come while this waits go in the same call.
        if let Some(last) = last_sent {
            tokio::time::sleep_until(last + MESSAGES_INTERVAL_MIN).await;
        }
        let mut messages = Vec::new();
        let mut next = Some(first);
        while let Some((queued, message)) = next {
            if queued.elapsed() <= ttl {
                messages.push(message);
            }
            if messages.len() >= MESSAGES_PER_RPC_MAX {
                break;
            }
            next = queue.try_recv().ok();
        }
        if messages.is_empty() {
            continue;
        }
        last_sent = (messages.len() < MESSAGES_PER_RPC_MAX).then(tokio::time::Instant::now);
        let request = Request::Messages {
            from,
            from_addr,
            messages,
        };
        // Lost messages are the core's business: it resends what it must.
        if let Err(e) = rpc.call(addr, &request, None).await {
            tracing::debug!(peer = %addr, error = %e, "messages not delivered");
        }
    }
}

fn log_event(event: &Event) {
    match event {
        Event::BecameLeader { term } => tracing::info!(term, "became leader"),
        Event::LeaderReady {
            term,
            inherited_runs,
        } => {
            tracing::info!(
                term,
                inherited_runs,
                "leader ready: reconciled inherited runs, scheduling"
            )
        }
        Event::LostLeadership { term } => tracing::info!(term, "no longer leader"),
        Event::HostDown { host } => tracing::warn!(%host, "host declared down"),
        Event::HostUp { host } => tracing::info!(%host, "host up"),
        Event::HostRestarted { host } => tracing::info!(%host, "host restarted"),
        Event::HostLost { host, runs } => {
            tracing::warn!(%host, runs, "host lost: its runs are recorded host-lost")
        }
        Event::StaleLeaderRefused { from, term, known } => {
            tracing::warn!(%from, term, known, "refused a message from a deposed leader")
        }
        Event::LeaseExpired { run } => tracing::warn!(%run, "lease expired: stopped the run"),
        Event::TimedOut { run } => tracing::info!(%run, "run timed out: stopping it"),
        Event::DispatchExpired { run } => {
            tracing::warn!(%run, "refused a dispatch past its start deadline")
        }
        Event::Rejected { kind, why } => tracing::debug!(kind, why, "command rejected"),
        Event::Recorded { run, state, reason } => {
            tracing::info!(%run, ?state, %reason, "fire recorded without running")
        }
        Event::Ended { run, state, reason } => tracing::debug!(%run, ?state, ?reason, "run ended"),
        other => tracing::debug!(event = ?other),
    }
}

/// The directory holding a host's runs.
pub fn runs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("runs")
}

/// Counts refused RPC frames (for the status API).
pub fn bad_frames(handle: &Handle) -> u64 {
    handle.rpc_stats.bad_frames.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use rota_core::job::JobName;
    use rota_core::time::Timestamp;

    use super::*;
    use crate::io::{Disk, FsDisk};

    #[test]
    fn a_data_directory_in_another_format_is_refused_naming_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let format_file = data.join(DATA_FORMAT_FILE);
        // New: marked with this format, and then accepted.
        check_data_format(&FsDisk, data).unwrap();
        let written = FsDisk.read(&format_file).unwrap().unwrap();
        assert_eq!(written, DATA_FORMAT.to_string().as_bytes());
        check_data_format(&FsDisk, data).unwrap();

        // A host that started before formats were kept: format 1.
        FsDisk.remove(&format_file).unwrap();
        FsDisk.write_atomic(&data.join(HOST_ID_FILE), b"7").unwrap();
        let old = check_data_format(&FsDisk, data).unwrap_err().to_string();
        assert!(
            old.contains("data format 1") && old.contains("empty data directory"),
            "{old}"
        );
        assert!(
            FsDisk.read(&format_file).unwrap().is_none(),
            "refused, yet marked"
        );

        // An older format this rota reads: accepted, and marked with this one.
        FsDisk
            .write_atomic(&format_file, DATA_FORMAT_OLDEST_READ.to_string().as_bytes())
            .unwrap();
        check_data_format(&FsDisk, data).unwrap();
        let written = FsDisk.read(&format_file).unwrap().unwrap();
        assert_eq!(written, DATA_FORMAT.to_string().as_bytes());

        // A later format, and a damaged file.
        FsDisk.write_atomic(&format_file, b"9\n").unwrap();
        let later = check_data_format(&FsDisk, data).unwrap_err().to_string();
        assert!(later.contains("data format 9"), "{later}");
        FsDisk.write_atomic(&format_file, b"two").unwrap();
        let damaged = format!("{:#}", check_data_format(&FsDisk, data).unwrap_err());
        assert!(
            damaged.contains("does not hold a data format number"),
            "{damaged}"
        );
    }

    fn pause(name: &str) -> Command {
        Command::PauseJob {
            name: JobName::new(name).expect("a valid name"),
            at: Timestamp::from_millis(0),
        }
    }

    fn names(command: &Command) -> Vec<String> {
        command
            .members()
            .iter()
            .map(|c| match c {
                Command::PauseJob { name, .. } => name.to_string(),
                other => other.kind().to_owned(),
            })
            .collect()
    }

    #[test]
    fn a_lone_command_is_proposed_as_itself() {
        let (entry, rest) = pack(pause("a"), || None, 10);
        assert_eq!(entry, pause("a"));
        assert!(rest.is_none());
    }

    #[test]
    fn queued_commands_go_in_one_flat_batch_in_order_up_to_the_bound() {
        let mut queue: VecDeque<Command> = VecDeque::from([
            Command::Batch(vec![pause("b"), pause("c")]),
            pause("d"),
            Command::Batch(vec![pause("e"), pause("f")]),
            pause("g"),
        ]);
        let (entry, rest) = pack(pause("a"), || queue.pop_front(), 5);
        // The batch that would pass the bound waits whole for the next proposal.
        assert_eq!(names(&entry), ["a", "b", "c", "d"]);
        assert_eq!(
            rest,
            Some(Command::Batch(vec![pause("e"), pause("f")])),
            "the command that did not fit is handed back"
        );
        assert_eq!(
            queue.len(),
            1,
            "nothing is taken past the one that did not fit"
        );
    }

    #[test]
    fn packing_stops_at_the_bound_without_taking_more() {
        let mut queue: VecDeque<Command> = (0..10).map(|i| pause(&format!("j{i}"))).collect();
        let (entry, rest) = pack(pause("a"), || queue.pop_front(), 3);
        assert_eq!(names(&entry), ["a", "j0", "j1"]);
        assert!(rest.is_none());
        assert_eq!(queue.len(), 8);
    }
}
