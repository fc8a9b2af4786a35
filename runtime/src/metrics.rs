//! Metrics in the Prometheus (OpenMetrics) text format, served by every host at
//! `GET /metrics`.
//!
//! Two kinds:
//! - **What the replicated state went through**, counted as this host applies committed
//!   entries: runs declared, started, ended (by state and reason), fires recorded
//!   without running (by state and reason), and how late runs started. Every voter
//!   applies the same entries, so every voter counts the same; a worker holds no log and
//!   counts nothing. A host counts only the entries appended to its log after it started,
//!   so a restart does not count again what its log already held.
//! - **How things stand**, read from the node when scraped: role, term, applied index,
//!   jobs, active runs, hosts known, and what the cluster RPC and gossip refused.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rota_core::command::{Command, Outcome};
use rota_core::node::{Node, Role};
use rota_core::run::{Reason, Run, RunId, RunState, Trigger};
use rota_core::state::State;
use rota_core::time::Now;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Start lateness buckets, in seconds: from what a healthy cluster shows (milliseconds)
/// to what a lost leader or a full host costs (tens of seconds).
const LATENESS_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    state: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

/// What the counters compare of a run before and after an entry applies.
#[derive(Clone, Copy, Debug)]
struct Seen {
    started: bool,
    active: bool,
}

impl Seen {
    fn of(run: &Run) -> Seen {
        Seen {
            started: run.started_at.is_some(),
            active: run.state.is_active(),
        }
    }
}

/// This host's metrics. See the module documentation.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Entries up to this log index were in the log at start: not counted.
    counted_after: AtomicU64,
    declared: Family<TriggerLabels, Counter>,
    started: Family<TriggerLabels, Counter>,
    ended: Family<EndLabels, Counter>,
    not_run: Family<EndLabels, Counter>,
    lateness: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// How things stand on this host, read when scraped.
#[derive(Clone, Debug, Default)]
pub struct Standing {
    /// Leader, follower or worker.
    pub role: Option<Role>,
    /// Whether it leads and has taken over (accepts writes).
    pub leader_ready: bool,
    /// The Raft term.
    pub term: u64,
    /// The last entry applied here.
    pub applied_index: u64,
    /// Jobs in the state.
    pub jobs: usize,
    /// Runs declared or running, cluster-wide.
    pub active_runs: usize,
    /// Hosts gossip knows, alive or not.
    pub hosts_known: usize,
    /// Raft voters.
    pub voters: usize,
    /// Cluster RPC frames refused since start.
    pub rpc_frames_refused: u64,
    /// Cluster RPC connections refused since start.
    pub rpc_connections_refused: u64,
    /// Gossip datagrams that did not decode, since start.
    pub gossip_datagrams_refused: u64,
}

impl Metrics {
    /// Metrics with every counter at zero, counting every entry applied.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rota");
        let declared = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "runs_declared",
            "Runs declared on a host, by what made them (schedule, manual, retry)",
            declared.clone(),
        );
        let started = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "runs_started",
            "Runs their host reported started, by what made them",
            started.clone(),
        );
        let ended = Family::<EndLabels, Counter>::default();
        registry.register(
            "runs_ended",
            "Runs that ended, by state (succeeded, failed) and reason",
            ended.clone(),
        );
        let not_run = Family::<EndLabels, Counter>::default();
        registry.register(
            "fires_not_run",
            "Fire times recorded without a run, by state (missed, skipped, failed) and reason",
            not_run.clone(),
        );
        let lateness = Histogram::new(LATENESS_BUCKETS);
        registry.register(
            "run_start_lateness_seconds",
            "How long after its scheduled time a run's first attempt started",
            lateness.clone(),
        );
        Metrics {
            registry,
            counted_after: AtomicU64::new(0),
            declared,
            started,
            ended,
            not_run,
            lateness,
        }
    }

    /// Counts only the entries after log index `index`: those up to it were in the log
    /// at start, and may have been counted before a restart.
    pub fn count_after(&self, index: u64) {
        self.counted_after.store(index, Ordering::Relaxed);
    }

    /// Applies `command`, committed at log index `index`, to `node`, and counts what it
    /// changed.
    pub fn apply(&self, node: &mut Node, now: Now, index: u64, command: &Command) -> Outcome {
        if index <= self.counted_after.load(Ordering::Relaxed) {
            return node.handle_applied(now, index, command);
        }
        let mut reported = Vec::new();
        runs_reported(command, &mut reported);
        let before: Vec<(RunId, Option<Seen>)> = reported
            .into_iter()
            .map(|run| (run, node.state().run(run).map(Seen::of)))
            .collect();
        let outcome = node.handle_applied(now, index, command);
        let state = node.state();
        for (id, was) in before {
            if let Some(run) = state.run(id) {
                self.count_run(run, was);
            }
        }
        self.count_outcome(command, state, &outcome);
        outcome
    }

    /// Counts a run's start and end, if the entry brought them.
    fn count_run(&self, run: &Run, was: Option<Seen>) {
        let now = Seen::of(run);
        let trigger = TriggerLabels {
            trigger: trigger_name(run.trigger),
        };
        if now.started && !was.is_some_and(|w| w.started) {
            self.started.get_or_create(&trigger).inc();
            if let (1, Some(started_at)) = (run.attempt, run.started_at) {
                let late = started_at.saturating_since(run.scheduled_at);
                self.lateness.observe(late.as_secs_f64());
            }
        }
        if !now.active && was.is_some_and(|w| w.active) {
            self.ended
                .get_or_create(&EndLabels {
                    state: state_name(run.state),
                    reason: run.reason.map_or("", Reason::as_str),
                })
                .inc();
        }
    }

    /// Counts the runs an entry declared and the fires it recorded without a run.
    fn count_outcome(&self, command: &Command, state: &State, outcome: &Outcome) {
        match (command, outcome) {
            (Command::Batch(commands), Outcome::Batch(outcomes)) => {
                for (command, outcome) in commands.iter().zip(outcomes) {
                    self.count_outcome(command, state, outcome);
                }
            }
            (_, Outcome::Declared { run }) => {
                if let Some(run) = state.run(*run) {
                    self.declared
                        .get_or_create(&TriggerLabels {
                            trigger: trigger_name(run.trigger),
                        })
                        .inc();
                }
            }
            (
                _,
                Outcome::Recorded {
                    run,
                    state: run_state,
                    reason,
                },
            ) => {
                // A record of missed fires stands for `missed_count` of them.
                let fires = state.run(*run).map_or(1, |r| r.missed_count.max(1));
                self.not_run
                    .get_or_create(&EndLabels {
                        state: state_name(*run_state),
                        reason: reason.as_str(),
                    })
                    .inc_by(u64::from(fires));
            }
            _ => {}
        }
    }

    /// The metrics as OpenMetrics text: the counters, then how things stand.
    pub fn render(&self, standing: &Standing) -> String {
        let mut now = Registry::with_prefix("rota");
        let role = Family::<RoleLabels, Gauge>::default();
        if let Some(r) = standing.role {
            role.get_or_create(&RoleLabels { role: role_name(r) })
                .set(1);
        }
        now.register(
            "role",
            "1 for this host's role: leader, follower (a voter) or worker",
            role,
        );
        let gauge = |n: u64| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
        let count = |n: usize| gauge(u64::try_from(n).unwrap_or(u64::MAX));
        now.register(
            "leader_ready",
            "1 on a leader that has taken over and accepts writes",
            gauge(u64::from(standing.leader_ready)),
        );
        now.register("raft_term", "The Raft term", gauge(standing.term));
        now.register(
            "raft_applied_index",
            "The last Raft entry applied here",
            gauge(standing.applied_index),
        );
        now.register("raft_voters", "Raft voters", count(standing.voters));
        now.register(
            "hosts_known",
            "Hosts gossip knows, alive or not",
            count(standing.hosts_known),
        );
        now.register("jobs", "Jobs in the replicated state", count(standing.jobs));
        now.register(
            "runs_active",
            "Runs declared or running, cluster-wide",
            count(standing.active_runs),
        );
        now.register(
            "rpc_frames_refused",
            "Cluster RPC frames refused since start (too large, or undecodable)",
            ConstCounter::new(standing.rpc_frames_refused),
        );
        now.register(
            "rpc_connections_refused",
            "Cluster RPC connections refused since start (too many open)",
            ConstCounter::new(standing.rpc_connections_refused),
        );
        now.register(
            "gossip_datagrams_refused",
            "Gossip datagrams that did not decode, since start",
            ConstCounter::new(standing.gossip_datagrams_refused),
        );
        let mut text = String::new();
        // Writing to a `String` cannot fail.
        let _ = encode_registry(&mut text, &self.registry);
        let _ = encode_registry(&mut text, &now);
        let _ = encode_eof(&mut text);
        text
    }
}

/// The runs whose host reported on them in `command`: the only ones an entry can start
/// or end.
fn runs_reported(command: &Command, runs: &mut Vec<RunId>) {
    match command {
        Command::MarkStarted { run, .. } => runs.push(*run),
        Command::MarkFinished(finish) => runs.push(finish.run),
        Command::Batch(commands) => {
            for command in commands {
                runs_reported(command, runs);
            }
        }
        _ => {}
    }
}

fn trigger_name(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Schedule => "schedule",
        Trigger::Manual { .. } => "manual",
        Trigger::Retry => "retry",
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Worker => "worker",
    }
}

fn state_name(state: RunState) -> &'static str {
    match state {
        RunState::Declared => "declared",
        RunState::Running => "running",
        RunState::Succeeded => "succeeded",
        RunState::Failed => "failed",
        RunState::Missed => "missed",
        RunState::Skipped => "skipped",
    }
}
