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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LivenessLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: &'static str,
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
    /// Hosts gossip knows: alive, suspect, down.
    pub hosts: [usize; 3],
    /// Runs this host is executing, or whose end it has not had acknowledged yet.
    pub runs_here: usize,
    /// This host's free fractions of CPU, memory and disk, as it last advertised them.
    pub free: Option<[f64; 3]>,
    /// Whether this host advertises a Docker engine.
    pub docker: bool,
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
        self.counting(node, index, command, Node::state, |node| {
            node.handle_applied(now, index, command)
        })
    }

    /// Applies `command` to `target` with `apply`, and counts what it changed in the
    /// state `state` reads from `target`.
    fn counting<T>(
        &self,
        target: &mut T,
        index: u64,
        command: &Command,
        state: fn(&T) -> &State,
        apply: impl FnOnce(&mut T) -> Outcome,
    ) -> Outcome {
        if index <= self.counted_after.load(Ordering::Relaxed) {
            return apply(target);
        }
        let mut reported = Vec::new();
        runs_reported(command, &mut reported);
        let before: Vec<(RunId, Option<Seen>)> = reported
            .into_iter()
            .map(|run| (run, state(target).run(run).map(Seen::of)))
            .collect();
        let outcome = apply(target);
        let state = state(target);
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
        let hosts = Family::<LivenessLabels, Gauge>::default();
        for (state, n) in ["alive", "suspect", "down"].into_iter().zip(standing.hosts) {
            hosts
                .get_or_create(&LivenessLabels { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        now.register(
            "hosts",
            "Hosts gossip knows, by liveness (alive, suspect, down)",
            hosts,
        );
        now.register(
            "host_runs",
            "Runs this host is executing, or whose end the leader has not acknowledged yet",
            count(standing.runs_here),
        );
        let free = Family::<ResourceLabels, Gauge<f64, AtomicU64>>::default();
        if let Some(fractions) = standing.free {
            for (resource, fraction) in ["cpu", "memory", "disk"].into_iter().zip(fractions) {
                free.get_or_create(&ResourceLabels { resource })
                    .set(fraction);
            }
        }
        now.register(
            "host_free_ratio",
            "This host's free share of CPU, memory and disk, as it advertises them; placement needs 0.25 of each",
            free,
        );
        now.register(
            "host_docker",
            "1 when this host advertises a Docker engine",
            gauge(u64::from(standing.docker)),
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

#[cfg(test)]
mod tests {
    use rota_core::command::{Declare, Finish};
    use rota_core::host::HostId;
    use rota_core::job::{JobName, JobSpec};
    use rota_core::time::Timestamp;

    use super::*;

    const H1: HostId = HostId(1);

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).expect("a test time")
    }

    fn declare(scheduled_at: &str, host: Option<HostId>) -> Command {
        Command::Declare(Declare {
            job: JobName::new("a").expect("a job name"),
            scheduled_at: at(scheduled_at),
            attempt: 1,
            trigger: Trigger::Schedule,
            host,
            term: 1,
            at: at(scheduled_at),
            key: None,
        })
    }

    /// Applies `commands` from index `from` on, through the counters.
    fn apply_all(
        metrics: &Metrics,
        state: &mut State,
        from: u64,
        commands: &[Command],
    ) -> Vec<Outcome> {
        (from..)
            .zip(commands)
            .map(|(index, command)| {
                metrics.counting(state, index, command, |s| s, |s| s.apply(index, command))
            })
            .collect()
    }

    /// The value of the sample named exactly `name` (with its labels).
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    fn a_state(metrics: &Metrics) -> State {
        let mut state = State::new();
        let spec: JobSpec = serde_json::from_str(
            r#"{"name": "a", "schedule": "* * * * *", "executor": {"process": {"command": ["true"]}}}"#,
        )
        .expect("a job");
        let outcomes = apply_all(
            metrics,
            &mut state,
            1,
            &[
                Command::LeaderStart {
                    nonce: 0,
                    term: 1,
                    leader: H1,
                    at: at("2026-01-01T00:00:00Z"),
                },
                Command::PutJob {
                    spec: Box::new(spec),
                    replace: false,
                    at: at("2026-01-01T00:00:00Z"),
                },
            ],
        );
        assert_eq!(outcomes[1], Outcome::JobCreated);
        state
    }

    #[test]
    fn runs_are_counted_once_as_they_start_end_or_are_recorded_without_running() {
        let metrics = Metrics::new();
        let mut state = a_state(&metrics);
        let outcomes = apply_all(
            &metrics,
            &mut state,
            3,
            &[declare("2026-01-01T00:01:00Z", Some(H1))],
        );
        let Outcome::Declared { run } = outcomes[0] else {
            panic!("{outcomes:?}")
        };
        let started = Command::MarkStarted {
            run,
            host: H1,
            started_at: at("2026-01-01T00:01:00.030Z"),
        };
        let finish = |exit_code| {
            Command::MarkFinished(Finish {
                run,
                host: Some(H1),
                started_at: Some(at("2026-01-01T00:01:00.030Z")),
                finished_at: at("2026-01-01T00:01:01Z"),
                exit_code: Some(exit_code),
                reason: None,
                detail: None,
            })
        };
        apply_all(
            &metrics,
            &mut state,
            4,
            &[
                started.clone(),
                // Reported again: counted once.
                started,
                Command::Batch(vec![finish(0), declare("2026-01-01T00:02:00Z", None)]),
                // Ended already: refused, not counted.
                finish(3),
                Command::RecordMissed {
                    job: JobName::new("a").expect("a job name"),
                    first: at("2026-01-01T00:03:00Z"),
                    last: at("2026-01-01T00:12:00Z"),
                    count: 10,
                    reason: Reason::StartingDeadline,
                    at: at("2026-01-01T00:20:00Z"),
                },
            ],
        );
        let text = metrics.render(&Standing::default());
        let expect = [
            (r#"rota_runs_declared_total{trigger="schedule"}"#, 1.0),
            (r#"rota_runs_started_total{trigger="schedule"}"#, 1.0),
            (r#"rota_runs_ended_total{state="succeeded",reason=""}"#, 1.0),
            (
                r#"rota_fires_not_run_total{state="failed",reason="no-capacity"}"#,
                1.0,
            ),
            (
                r#"rota_fires_not_run_total{state="missed",reason="starting-deadline"}"#,
                10.0,
            ),
            ("rota_run_start_lateness_seconds_count", 1.0),
            (r#"rota_run_start_lateness_seconds_bucket{le="0.025"}"#, 0.0),
            (r#"rota_run_start_lateness_seconds_bucket{le="0.05"}"#, 1.0),
        ];
        for (name, value) in expect {
            assert_eq!(sample(&text, name), Some(value), "{name} in\n{text}");
        }
        assert_eq!(
            sample(
                &text,
                r#"rota_runs_ended_total{state="failed",reason="exit-code"}"#
            ),
            None,
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn entries_the_log_held_at_start_are_applied_but_not_counted() {
        let metrics = Metrics::new();
        metrics.count_after(3);
        let mut state = a_state(&metrics);
        let outcomes = apply_all(
            &metrics,
            &mut state,
            3,
            &[
                declare("2026-01-01T00:01:00Z", Some(H1)),
                declare("2026-01-01T00:02:00Z", Some(H1)),
            ],
        );
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Outcome::Declared { .. })),
            "{outcomes:?}"
        );
        let text = metrics.render(&Standing::default());
        assert_eq!(
            sample(&text, r#"rota_runs_declared_total{trigger="schedule"}"#),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn how_the_host_stands_is_shown_with_its_role() {
        let text = Metrics::new().render(&Standing {
            role: Some(Role::Follower),
            term: 7,
            jobs: 3,
            rpc_frames_refused: 2,
            hosts: [2, 1, 0],
            runs_here: 4,
            free: Some([0.5, 0.75, 0.875]),
            docker: true,
            ..Standing::default()
        });
        for (name, value) in [
            (r#"rota_hosts{state="alive"}"#, 2.0),
            (r#"rota_hosts{state="suspect"}"#, 1.0),
            (r#"rota_hosts{state="down"}"#, 0.0),
            ("rota_host_runs", 4.0),
            (r#"rota_host_free_ratio{resource="cpu"}"#, 0.5),
            (r#"rota_host_free_ratio{resource="disk"}"#, 0.875),
            ("rota_host_docker", 1.0),
            (r#"rota_role{role="follower"}"#, 1.0),
            ("rota_raft_term", 7.0),
            ("rota_jobs", 3.0),
            ("rota_leader_ready", 0.0),
            ("rota_rpc_frames_refused_total", 2.0),
        ] {
            assert_eq!(sample(&text, name), Some(value), "{name} in\n{text}");
        }
        assert_eq!(sample(&text, r#"rota_role{role="leader"}"#), None, "{text}");
    }
}
