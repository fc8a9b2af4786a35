//! Metrics in the Prometheus (OpenMetrics) text format, served by every host at
//! `GET /metrics`.
//!
//! Two kinds:
//! - **What the replicated state went through**, counted as this host applies committed
//!   entries: runs declared, started, ended (by state and reason), fires recorded
//!   without running (by state and reason), active runs dropped with their job, and how
//!   late runs started. Each command is counted against the state just before and just
//!   after it, so a batch that reports a run twice, or prunes it, still counts it once.
//!   Every voter applies the same entries, so every voter counts the same; a worker
//!   holds no log and counts nothing. A host counts only the entries appended to its log
//!   after it started, so a restart does not count again what its log already held. (So
//!   it also never counts entries of an uncommitted tail it held at start that a new
//!   leader then replaced: a restarted host may count a few runs fewer, never twice.)
//! - **How things stand**, read from the node when scraped: role, term, applied index,
//!   jobs, active runs, hosts by liveness, this host's runs and free resources, and what
//!   the cluster RPC and gossip refused.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rota_core::command::{Command, Finish, Outcome};
use rota_core::node::{ApplyWatch, Node, Role};
use rota_core::run::{Reason, Run, RunState, Trigger};
use rota_core::state::State;
use rota_core::time::Now;

use crate::api::views::StatusView;

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

/// What the counters compare of a run before and after a command applies.
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
    counted_after: u64,
    declared: Family<TriggerLabels, Counter>,
    started: Family<TriggerLabels, Counter>,
    ended: Family<EndLabels, Counter>,
    not_run: Family<EndLabels, Counter>,
    deleted: Counter,
    lateness: Histogram,
}

/// How things stand on this host, read when scraped.
#[derive(Debug)]
pub struct Standing {
    /// The host as `GET /v1/status` shows it.
    pub status: StatusView,
    /// Hosts gossip knows: alive, suspect, down.
    pub hosts: [usize; 3],
    /// Runs this host is executing, or whose end it has not had acknowledged yet.
    pub runs_here: usize,
    /// This host's free fractions of CPU, memory and disk, as it last advertised them.
    pub free: Option<[f64; 3]>,
    /// Whether this host advertises a Docker engine.
    pub docker: bool,
}

impl Metrics {
    /// Metrics with every counter at zero, counting only the entries after log index
    /// `index`: those up to it were in the log at start, and may have been counted
    /// before a restart.
    pub fn counting_after(index: u64) -> Metrics {
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
        let deleted = Counter::default();
        registry.register(
            "runs_deleted",
            "Active runs dropped from the state with their job (their hosts stop them)",
            deleted.clone(),
        );
        let lateness = Histogram::new(LATENESS_BUCKETS);
        registry.register(
            "run_start_lateness_seconds",
            "How long after its scheduled time a run's first attempt started",
            lateness.clone(),
        );
        Metrics {
            registry,
            counted_after: index,
            declared,
            started,
            ended,
            not_run,
            deleted,
            lateness,
        }
    }

    /// Applies `command`, committed at log index `index`, to `node`, and counts what it
    /// changed.
    pub fn apply(&self, node: &mut Node, now: Now, index: u64, command: &Command) -> Outcome {
        if index <= self.counted_after {
            return node.handle_applied(now, index, command);
        }
        node.handle_applied_watched(now, index, command, &mut Counting::new(self))
    }
}

/// Counts one entry's commands as they apply, each against the state just before and
/// just after it, so that a run reported twice in one batch counts once, and a run a
/// later command of the batch removes (pruning the job's oldest ended runs) is still
/// seen as it ended.
struct Counting<'a> {
    metrics: &'a Metrics,
    /// What the command about to apply may change: its run as it was, or the active
    /// runs of the job it deletes.
    before: Before,
}

enum Before {
    Nothing,
    Run(Option<Seen>),
    ActiveRuns(usize),
}

impl<'a> Counting<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        Counting {
            metrics,
            before: Before::Nothing,
        }
    }
}

impl ApplyWatch for Counting<'_> {
    fn before(&mut self, state: &State, command: &Command) {
        self.before = match command {
            Command::MarkStarted { run, .. } | Command::MarkFinished(Finish { run, .. }) => {
                Before::Run(state.run(*run).map(Seen::of))
            }
            Command::DeleteJob { name, .. } => {
                Before::ActiveRuns(state.job(name).map_or(0, |job| job.active.len()))
            }
            _ => Before::Nothing,
        };
    }

    fn after(&mut self, state: &State, command: &Command, outcome: &Outcome) {
        let metrics = self.metrics;
        match (
            std::mem::replace(&mut self.before, Before::Nothing),
            command,
            outcome,
        ) {
            (_, _, Outcome::Rejected(_)) => {}
            (
                Before::Run(was),
                Command::MarkStarted { run, .. } | Command::MarkFinished(Finish { run, .. }),
                _,
            ) => {
                if let Some(run) = state.run(*run) {
                    metrics.count_run(run, was);
                }
            }
            (Before::ActiveRuns(n), Command::DeleteJob { .. }, _) => {
                metrics.deleted.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
            }
            (_, _, Outcome::Declared { run }) => {
                if let Some(run) = state.run(*run) {
                    metrics
                        .declared
                        .get_or_create(&TriggerLabels {
                            trigger: trigger_name(run.trigger),
                        })
                        .inc();
                }
            }
            (
                _,
                command,
                Outcome::Recorded {
                    state: run_state,
                    reason,
                    ..
                },
            ) => {
                // A record of missed fires stands for all of them.
                let fires = match command {
                    Command::RecordMissed { count, .. } => (*count).max(1),
                    _ => 1,
                };
                metrics
                    .not_run
                    .get_or_create(&EndLabels {
                        state: state_name(*run_state),
                        reason: reason.as_str(),
                    })
                    .inc_by(u64::from(fires));
            }
            _ => {}
        }
    }
}

impl Metrics {
    /// Counts a run's start and end, if the command brought them.
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

    /// The metrics as OpenMetrics text: the counters, then how things stand.
    pub fn render(&self, standing: &Standing) -> String {
        let status = &standing.status;
        let mut now = Registry::with_prefix("rota");
        let role = Family::<RoleLabels, Gauge>::default();
        for r in [Role::Leader, Role::Follower, Role::Worker] {
            role.get_or_create(&RoleLabels { role: role_name(r) })
                .set(i64::from(r == status.role));
        }
        now.register(
            "role",
            "1 for this host's role (leader, follower, i.e. a voter, or worker), 0 for the others",
            role,
        );
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let gauges = [
            (
                "leader_ready",
                "1 on a leader that has taken over and accepts writes",
                u64::from(status.leader_ready),
            ),
            ("raft_term", "The Raft term", status.term),
            (
                "raft_applied_index",
                "The last Raft entry applied here",
                status.applied_index,
            ),
            ("raft_voters", "Raft voters", count(status.voters)),
            (
                "host_runs",
                "Runs this host is executing, or whose end the leader has not acknowledged yet",
                count(standing.runs_here),
            ),
            (
                "host_docker",
                "1 when this host advertises a Docker engine",
                u64::from(standing.docker),
            ),
            ("jobs", "Jobs in the replicated state", count(status.jobs)),
            (
                "runs_active",
                "Runs declared or running, cluster-wide",
                count(status.active_runs),
            ),
        ];
        for (name, help, value) in gauges {
            let value = i64::try_from(value).unwrap_or(i64::MAX);
            now.register(name, help, ConstGauge::new(value));
        }
        let counters = [
            (
                "rpc_frames_refused",
                "Cluster RPC frames refused since start (too large, or undecodable)",
                status.rpc_frames_refused,
            ),
            (
                "rpc_connections_refused",
                "Cluster RPC connections refused since start (too many open)",
                status.rpc_connections_refused,
            ),
            (
                "gossip_datagrams_refused",
                "Gossip datagrams that did not decode, since start",
                status.gossip_datagrams_refused,
            ),
        ];
        for (name, help, value) in counters {
            now.register(name, help, ConstCounter::new(value));
        }
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
        let mut text = String::new();
        // Writing to a `String` cannot fail.
        let _ = encode_registry(&mut text, &self.registry);
        let _ = encode_registry(&mut text, &now);
        let _ = encode_eof(&mut text);
        text
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
    use rota_core::command::Declare;
    use rota_core::host::{HostId, HostIdentity};
    use rota_core::job::{JobName, JobSpec};
    use rota_core::node::NodeConfig;
    use rota_core::run::RunId;
    use rota_core::state::Settings;
    use rota_core::time::{Mono, Timestamp};

    use super::*;

    const H1: HostId = HostId(1);

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).expect("a test time")
    }

    fn job() -> JobName {
        JobName::new("a").expect("a job name")
    }

    fn declare(scheduled_at: &str, host: Option<HostId>) -> Command {
        Command::Declare(Declare {
            job: job(),
            scheduled_at: at(scheduled_at),
            attempt: 1,
            trigger: Trigger::Schedule,
            host,
            term: 1,
            at: at(scheduled_at),
            key: None,
        })
    }

    fn started(run: RunId, at_: &str) -> Command {
        Command::MarkStarted {
            run,
            host: H1,
            started_at: at(at_),
        }
    }

    fn finished(run: RunId, exit_code: i32) -> Command {
        Command::MarkFinished(Finish {
            run,
            host: Some(H1),
            started_at: None,
            finished_at: at("2026-01-01T00:10:00Z"),
            exit_code: Some(exit_code),
            reason: None,
            detail: None,
        })
    }

    /// A follower's node with job `a`, keeping `kept` ended runs per job, its entries
    /// counted by `metrics`.
    struct Fixture {
        node: Node,
        metrics: Metrics,
        index: u64,
    }

    impl Fixture {
        fn new(metrics: Metrics, kept: u32) -> Fixture {
            let identity = HostIdentity {
                id: H1,
                cluster_addr: "127.0.0.1:7071".parse().expect("an address"),
                api_addr: "127.0.0.1:7070".parse().expect("an address"),
                boot: 1,
            };
            let now = Now::new(Mono::ZERO, at("2026-01-01T00:00:00Z"));
            let node = Node::new(NodeConfig::new(identity), 1, now, State::new());
            let mut fixture = Fixture {
                node,
                metrics,
                index: 0,
            };
            let spec: JobSpec = serde_json::from_str(
                r#"{"name": "a", "schedule": "* * * * *", "executor": {"process": {"command": ["true"]}}}"#,
            )
            .expect("a job");
            let settings = Settings {
                runs_kept_per_job_max: kept,
                ..fixture.node.state().settings().clone()
            };
            fixture.apply(Command::LeaderStart {
                nonce: 0,
                term: 1,
                leader: HostId(2),
                at: at("2026-01-01T00:00:00Z"),
            });
            fixture.apply(Command::SetSettings(settings));
            let created = fixture.apply(Command::PutJob {
                spec: Box::new(spec),
                replace: false,
                at: at("2026-01-01T00:00:00Z"),
            });
            assert_eq!(created, Outcome::JobCreated);
            fixture
        }

        /// Applies `command` as the next entry.
        fn apply(&mut self, command: Command) -> Outcome {
            self.index += 1;
            let now = Now::new(Mono::from_millis(self.index), at("2026-01-01T00:20:00Z"));
            self.metrics
                .apply(&mut self.node, now, self.index, &command)
        }

        /// Declares a run of `a` on this host at `scheduled_at`.
        fn declared(&mut self, scheduled_at: &str) -> RunId {
            match self.apply(declare(scheduled_at, Some(H1))) {
                Outcome::Declared { run } => run,
                outcome => panic!("{outcome:?}"),
            }
        }

        fn sample(&self, name: &str) -> Option<f64> {
            sample(&self.metrics.render(&standing(Role::Follower)), name)
        }
    }

    /// A host in `role` with nothing else to show.
    fn standing(role: Role) -> Standing {
        Standing {
            status: StatusView {
                id: 1,
                api_addr: "127.0.0.1:7070".into(),
                cluster_addr: "127.0.0.1:7071".into(),
                role,
                is_leader: role == Role::Leader,
                leader_ready: false,
                leader_id: None,
                leader_api: None,
                term: 0,
                cluster_size: 0,
                voters: 0,
                applied_index: 0,
                jobs: 0,
                active_runs: 0,
                rpc_frames_refused: 0,
                rpc_connections_refused: 0,
                gossip_datagrams_refused: 0,
            },
            hosts: [0; 3],
            runs_here: 0,
            free: None,
            docker: false,
        }
    }

    /// The value of the sample named exactly `name` (with its labels).
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    const SUCCEEDED: &str = r#"rota_runs_ended_total{state="succeeded",reason=""}"#;
    const EXIT_CODE: &str = r#"rota_runs_ended_total{state="failed",reason="exit-code"}"#;
    const STARTED: &str = r#"rota_runs_started_total{trigger="schedule"}"#;

    #[test]
    fn runs_are_counted_once_as_they_start_end_or_are_recorded_without_running() {
        let mut f = Fixture::new(Metrics::counting_after(0), 100);
        let run = f.declared("2026-01-01T00:01:00Z");
        f.apply(started(run, "2026-01-01T00:01:00.030Z"));
        // Reported again, alone and twice in one batch: counted once.
        f.apply(started(run, "2026-01-01T00:01:00.030Z"));
        f.apply(Command::Batch(vec![
            finished(run, 0),
            declare("2026-01-01T00:02:00Z", None),
        ]));
        // Ended already: refused, not counted.
        assert!(matches!(f.apply(finished(run, 3)), Outcome::Rejected(_)));
        f.apply(Command::RecordMissed {
            job: job(),
            first: at("2026-01-01T00:03:00Z"),
            last: at("2026-01-01T00:12:00Z"),
            count: 10,
            reason: Reason::StartingDeadline,
            at: at("2026-01-01T00:20:00Z"),
        });
        let expect = [
            (r#"rota_runs_declared_total{trigger="schedule"}"#, 1.0),
            (STARTED, 1.0),
            (SUCCEEDED, 1.0),
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
            assert_eq!(f.sample(name), Some(value), "{name}");
        }
        assert_eq!(f.sample(EXIT_CODE), None);
        let text = f.metrics.render(&standing(Role::Follower));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_run_reported_twice_or_pruned_within_one_batch_is_counted_once() {
        // One ended run kept per job: each record pruned the one before.
        let mut f = Fixture::new(Metrics::counting_after(0), 1);
        let first = f.declared("2026-01-01T00:01:00Z");
        let second = f.declared("2026-01-01T00:02:00Z");
        f.apply(Command::Batch(vec![
            started(first, "2026-01-01T00:01:00.010Z"),
            started(first, "2026-01-01T00:01:00.010Z"),
            finished(first, 0),
            finished(second, 3),
            declare("2026-01-01T00:03:00Z", None),
        ]));
        // The batch pruned both runs before it ended.
        assert!(f.node.state().run(first).is_none());
        assert!(f.node.state().run(second).is_none());
        assert_eq!(f.sample(STARTED), Some(1.0));
        assert_eq!(f.sample(SUCCEEDED), Some(1.0));
        assert_eq!(f.sample(EXIT_CODE), Some(1.0));
        assert_eq!(f.sample("rota_run_start_lateness_seconds_count"), Some(1.0));
    }

    #[test]
    fn active_runs_deleted_with_their_job_are_counted() {
        let mut f = Fixture::new(Metrics::counting_after(0), 100);
        f.declared("2026-01-01T00:01:00Z");
        f.declared("2026-01-01T00:02:00Z");
        f.apply(Command::DeleteJob {
            name: job(),
            at: at("2026-01-01T00:03:00Z"),
        });
        assert_eq!(f.sample("rota_runs_deleted_total"), Some(2.0));
    }

    #[test]
    fn entries_the_log_held_at_start_are_applied_but_not_counted() {
        // The fixture's three entries and the first declaration were in the log.
        let mut f = Fixture::new(Metrics::counting_after(4), 100);
        f.declared("2026-01-01T00:01:00Z");
        f.declared("2026-01-01T00:02:00Z");
        assert_eq!(
            f.sample(r#"rota_runs_declared_total{trigger="schedule"}"#),
            Some(1.0)
        );
    }

    #[test]
    fn how_the_host_stands_is_shown_with_its_role() {
        let mut host = standing(Role::Follower);
        host.status.term = 7;
        host.status.jobs = 3;
        host.status.rpc_frames_refused = 2;
        host.hosts = [2, 1, 0];
        host.runs_here = 4;
        host.free = Some([0.5, 0.75, 0.875]);
        host.docker = true;
        let text = Metrics::counting_after(0).render(&host);
        for (name, value) in [
            (r#"rota_role{role="follower"}"#, 1.0),
            (r#"rota_role{role="leader"}"#, 0.0),
            (r#"rota_role{role="worker"}"#, 0.0),
            (r#"rota_hosts{state="alive"}"#, 2.0),
            (r#"rota_hosts{state="suspect"}"#, 1.0),
            (r#"rota_hosts{state="down"}"#, 0.0),
            ("rota_host_runs", 4.0),
            (r#"rota_host_free_ratio{resource="cpu"}"#, 0.5),
            (r#"rota_host_free_ratio{resource="disk"}"#, 0.875),
            ("rota_host_docker", 1.0),
            ("rota_raft_term", 7.0),
            ("rota_jobs", 3.0),
            ("rota_leader_ready", 0.0),
            ("rota_rpc_frames_refused_total", 2.0),
        ] {
            assert_eq!(sample(&text, name), Some(value), "{name} in\n{text}");
        }
    }
}
