//! Structured fuzzing of the core: an arbitrary sequence of inputs (ticks, committed
//! commands, role changes, messages, executor events, resource samples, failed
//! proposals) into three nodes that share one log, with `check_invariants` after each.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use rota_core::command::{Command, Declare, Finish};
use rota_core::host::{HostId, HostIdentity, ResourceSample};
use rota_core::job::{
    Concurrency, ExecutorSpec, JobName, JobSpec, MissedPolicy, ProcessSpec, Resources,
};
use rota_core::node::{
    Effect, ExecutorEvent, Input, Message, Node, NodeConfig, RaftStatus, ReportStatus,
};
use rota_core::run::{Reason, RunId, RunSpec, Trigger, TriggerKey};
use rota_core::schedule::{Schedule, Tz};
use rota_core::state::{Settings, State};
use rota_core::time::{Mono, Now, Timestamp};

const NODES: usize = 3;
const OPS_MAX: usize = 256;
const START: i64 = 1_767_225_600;

#[derive(Arbitrary, Debug)]
enum Op {
    Tick {
        ms: u16,
    },
    Apply(Cmd),
    Raft {
        node: u8,
        term: u8,
        leader: Option<u8>,
        is_leader: bool,
    },
    Message {
        node: u8,
        from: u8,
        message: Msg,
    },
    Executor {
        node: u8,
        event: Exec,
    },
    Resources {
        node: u8,
        cpu_free: u16,
    },
    Docker {
        node: u8,
        has: bool,
    },
    ProposalFailed {
        node: u8,
        command: Cmd,
    },
}

#[derive(Arbitrary, Debug, Clone)]
enum Cmd {
    Put {
        job: u8,
        schedule: u8,
        concurrency: u8,
        retries: u8,
        replace: bool,
    },
    Delete {
        job: u8,
    },
    Pause {
        job: u8,
    },
    Resume {
        job: u8,
    },
    Declare {
        job: u8,
        minute: u8,
        attempt: u8,
        trigger: u8,
        host: Option<u8>,
        term: u8,
        /// A trigger key out of a few, so that keys repeat.
        key: Option<u8>,
    },
    Started {
        run: u8,
        host: u8,
    },
    Finished {
        run: u8,
        host: Option<u8>,
        code: Option<i8>,
        reason: u8,
    },
    Missed {
        job: u8,
        first: u8,
        span: u8,
        count: u8,
    },
    LeaderStart {
        term: u8,
        leader: u8,
        nonce: u8,
    },
    Settings {
        kept: u8,
    },
    Batch(Vec<Cmd>),
    Stop {
        run: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Msg {
    Dispatch {
        term: u8,
        run: u8,
        job: u8,
        concurrency: u8,
        timeout_s: Option<u8>,
        start_by_min: u8,
        renews: bool,
    },
    Stop {
        term: u8,
        run: u8,
        reason: u8,
    },
    Query {
        term: u8,
        runs: Vec<u8>,
    },
    Heartbeat {
        term: u8,
        renews: bool,
    },
    HeartbeatAck {
        term: u8,
    },
    Report {
        run: u8,
        status: u8,
        code: Option<i8>,
    },
    Ack {
        term: u8,
        run: u8,
        finished: bool,
    },
}

#[derive(Arbitrary, Debug)]
enum Exec {
    Started {
        run: u8,
    },
    Exited {
        run: u8,
        code: Option<i8>,
        reason: Option<u8>,
    },
    LaunchFailed {
        run: u8,
        reason: u8,
    },
    Adopted {
        run: u8,
        job: u8,
    },
}

const SCHEDULES: [&str; 6] = [
    "* * * * *",
    "*/10 * * * * *",
    "@hourly",
    "@every 90s",
    "@manually",
    "0 9 * * 1-5",
];
const REASONS: [Reason; 6] = [
    Reason::ExitCode,
    Reason::HostLost,
    Reason::Timeout,
    Reason::Stopped,
    Reason::LaunchFailed,
    Reason::OomKilled,
];

fn name(job: u8) -> JobName {
    JobName::new(&format!("job-{}", job % 4)).expect("a valid name")
}

fn at(minute: u8) -> Timestamp {
    Timestamp::from_secs(START + i64::from(minute) * 60)
}

fn host(h: u8) -> HostId {
    HostId(u64::from(h % (NODES as u8 + 1)) + 1)
}

fn spec(job: u8, schedule: u8, concurrency: u8, retries: u8) -> JobSpec {
    JobSpec {
        name: name(job),
        schedule: Schedule::parse(SCHEDULES[schedule as usize % SCHEDULES.len()])
            .expect("a valid schedule"),
        timezone: Tz::UTC,
        // One job in four needs Docker, which hosts gain and lose (`Op::Docker`).
        executor: Arc::new(if job % 4 == 3 {
            ExecutorSpec::Docker(
                serde_json::from_str(r#"{"image": "fuzz:1"}"#).expect("a valid docker spec"),
            )
        } else {
            ExecutorSpec::Process(ProcessSpec {
                command: vec!["true".into()],
                env: BTreeMap::new(),
                cwd: None,
            })
        }),
        concurrency: [
            Concurrency::Allow,
            Concurrency::Forbid,
            Concurrency::Replace,
        ][concurrency as usize % 3],
        missed: MissedPolicy::Latest,
        retries: u32::from(retries % 3),
        retry_backoff_s: 1,
        retry_backoff_max_s: 10,
        timeout_s: None,
        starting_deadline_s: 120,
        constraints: BTreeMap::new(),
        resources: Resources::default(),
        paused: false,
    }
}

fn command(cmd: &Cmd, depth: u8) -> Command {
    match cmd {
        Cmd::Put {
            job,
            schedule,
            concurrency,
            retries,
            replace,
        } => Command::PutJob {
            spec: Box::new(spec(*job, *schedule, *concurrency, *retries)),
            replace: *replace,
            at: at(0),
        },
        Cmd::Delete { job } => Command::DeleteJob {
            name: name(*job),
            at: at(1),
        },
        Cmd::Pause { job } => Command::PauseJob {
            name: name(*job),
            at: at(1),
        },
        Cmd::Resume { job } => Command::ResumeJob {
            name: name(*job),
            at: at(2),
        },
        Cmd::Declare {
            job,
            minute,
            attempt,
            trigger,
            host: h,
            term,
            key,
        } => Command::Declare(Declare {
            job: name(*job),
            scheduled_at: at(*minute % 60),
            attempt: u32::from(*attempt % 4),
            trigger: match trigger % 4 {
                0 => Trigger::Schedule,
                1 => Trigger::Retry,
                2 => Trigger::Manual { force: false },
                _ => Trigger::Manual { force: true },
            },
            host: h.map(host),
            term: u64::from(*term % 4),
            at: at(*minute % 60),
            key: key.map(|k| TriggerKey::new(&format!("key-{}", k % 4)).expect("a valid key")),
        }),
        Cmd::Started { run, host: h } => Command::MarkStarted {
            run: RunId(u64::from(*run)),
            host: host(*h),
            started_at: at(3),
        },
        Cmd::Finished {
            run,
            host: h,
            code,
            reason,
        } => Command::MarkFinished(Finish {
            run: RunId(u64::from(*run)),
            host: h.map(host),
            started_at: None,
            finished_at: at(4),
            exit_code: code.map(i32::from),
            reason: (reason % 2 == 0).then(|| REASONS[*reason as usize % REASONS.len()]),
            detail: None,
        }),
        Cmd::Missed {
            job,
            first,
            span,
            count,
        } => Command::RecordMissed {
            job: name(*job),
            first: at(*first % 60),
            last: at((*first % 60).saturating_add(*span % 5)),
            count: u32::from(*count % 6),
            reason: Reason::StartingDeadline,
            at: at(59),
        },
        Cmd::LeaderStart {
            term,
            leader,
            nonce,
        } => Command::LeaderStart {
            term: u64::from(*term % 4),
            leader: host(*leader),
            nonce: u64::from(*nonce),
            at: at(0),
        },
        Cmd::Settings { kept } => Command::SetSettings(Settings {
            runs_kept_per_job_max: u32::from(*kept % 5) + 1,
            ..Settings::default()
        }),
        Cmd::Batch(commands) if depth == 0 => Command::Batch(
            commands
                .iter()
                .take(8)
                .map(|c| command(c, depth + 1))
                .collect(),
        ),
        Cmd::Batch(_) => Command::Batch(Vec::new()),
        Cmd::Stop { run } => Command::StopRun {
            run: RunId(u64::from(*run)),
            at: at(5),
        },
    }
}

fn message(msg: &Msg) -> Message {
    match msg {
        Msg::Dispatch {
            term,
            run,
            job,
            concurrency,
            timeout_s,
            start_by_min,
            renews,
        } => Message::Dispatch {
            term: u64::from(*term % 4),
            run: RunSpec {
                id: RunId(u64::from(*run)),
                job: name(*job),
                scheduled_at: at(0),
                attempt: 1,
                executor: spec(*job, 0, 0, 0).executor,
                timeout_ms: timeout_s.map(|s| u64::from(s) * 100),
                concurrency: [
                    Concurrency::Allow,
                    Concurrency::Forbid,
                    Concurrency::Replace,
                ][*concurrency as usize % 3],
                start_by: at(*start_by_min % 60),
            },
            renews_lease: *renews,
        },
        Msg::Stop { term, run, reason } => Message::Stop {
            term: u64::from(*term % 4),
            run: RunId(u64::from(*run)),
            reason: REASONS[*reason as usize % REASONS.len()],
        },
        Msg::Query { term, runs } => Message::Query {
            term: u64::from(*term % 4),
            runs: runs.iter().take(16).map(|r| RunId(u64::from(*r))).collect(),
        },
        Msg::Heartbeat { term, renews } => Message::Heartbeat {
            term: u64::from(*term % 4),
            renews_lease: *renews,
        },
        Msg::HeartbeatAck { term } => Message::HeartbeatAck {
            term: u64::from(*term % 4),
        },
        Msg::Report { run, status, code } => Message::Report {
            run: RunId(u64::from(*run)),
            status: match status % 4 {
                0 => ReportStatus::Started { at: at(5) },
                1 => ReportStatus::Finished {
                    started_at: Some(at(5)),
                    at: at(6),
                    exit_code: code.map(i32::from),
                    reason: None,
                    detail: None,
                },
                2 => ReportStatus::Starting,
                _ => ReportStatus::Unknown,
            },
        },
        Msg::Ack {
            term,
            run,
            finished,
        } => Message::Ack {
            term: u64::from(*term % 4),
            run: RunId(u64::from(*run)),
            finished: *finished,
        },
    }
}

fn exec(event: &Exec, now: Timestamp) -> ExecutorEvent {
    match event {
        Exec::Started { run } => ExecutorEvent::Started {
            run: RunId(u64::from(*run)),
            at: now,
        },
        Exec::Exited { run, code, reason } => ExecutorEvent::Exited {
            run: RunId(u64::from(*run)),
            at: now,
            started_at: None,
            exit_code: code.map(i32::from),
            reason: reason.map(|r| REASONS[r as usize % REASONS.len()]),
            detail: None,
        },
        Exec::LaunchFailed { run, reason } => ExecutorEvent::LaunchFailed {
            run: RunId(u64::from(*run)),
            at: now,
            reason: REASONS[*reason as usize % REASONS.len()],
            detail: "fuzzed".into(),
        },
        Exec::Adopted { run, job } => ExecutorEvent::Adopted {
            spec: RunSpec {
                id: RunId(u64::from(*run)),
                job: name(*job),
                scheduled_at: at(0),
                attempt: 1,
                executor: spec(*job, 0, 0, 0).executor,
                timeout_ms: Some(1000),
                concurrency: Concurrency::Forbid,
                start_by: at(30),
            },
            started_at: now,
        },
    }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 8, 0, i as u8 + 1)), 7071)
}

struct Cluster {
    nodes: Vec<Node>,
    now: Now,
    index: u64,
    proposals: Vec<Command>,
}

impl Cluster {
    fn new() -> Self {
        let now = Now::new(Mono::from_millis(1), Timestamp::from_secs(START));
        let nodes = (0..NODES)
            .map(|i| {
                let identity = HostIdentity {
                    id: HostId(i as u64 + 1),
                    cluster_addr: addr(i),
                    api_addr: addr(i),
                    boot: 1,
                };
                Node::new(NodeConfig::new(identity), i as u64, now, State::new())
            })
            .collect();
        Cluster {
            nodes,
            now,
            index: 0,
            proposals: Vec::new(),
        }
    }

    fn apply(&mut self, command: &Command) {
        self.index += 1;
        let outcomes: Vec<_> = self
            .nodes
            .iter_mut()
            .map(|n| n.handle_applied(self.now, self.index, command))
            .collect();
        assert!(
            outcomes.windows(2).all(|w| w[0] == w[1]),
            "replicas answered differently: {outcomes:?}"
        );
        self.drain();
    }

    fn drain(&mut self) {
        for node in &mut self.nodes {
            let mut effects = 0usize;
            while let Some(effect) = node.poll_effect() {
                effects += 1;
                assert!(effects < 1_000_000, "effects without end");
                if let Effect::Propose(command) = effect
                    && self.proposals.len() < 64
                {
                    self.proposals.push(command);
                }
            }
        }
    }

    fn check(&self) {
        let first = postcard::to_allocvec(self.nodes[0].state()).expect("a state encodes");
        for node in &self.nodes {
            node.state().check_invariants().expect("invariants hold");
            assert_eq!(
                postcard::to_allocvec(node.state()).expect("a state encodes"),
                first,
                "replicas diverged"
            );
        }
    }
}

/// See the module documentation.
pub fn core_inputs(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut cluster = Cluster::new();
    for _ in 0..OPS_MAX {
        let Ok(op) = Op::arbitrary(&mut u) else { break };
        match op {
            Op::Tick { ms } => {
                cluster.now = cluster.now.advanced(Duration::from_millis(u64::from(ms)));
                for node in &mut cluster.nodes {
                    node.handle(cluster.now, Input::Tick);
                }
                cluster.drain();
                // Commit what leaders proposed, as Raft would.
                for command in std::mem::take(&mut cluster.proposals) {
                    cluster.apply(&command);
                }
            }
            Op::Apply(cmd) => cluster.apply(&command(&cmd, 0)),
            Op::Raft {
                node,
                term,
                leader,
                is_leader,
            } => {
                let i = node as usize % NODES;
                let status = RaftStatus {
                    term: u64::from(term % 4),
                    leader: leader.map(host),
                    is_leader,
                    quorum_acked: is_leader.then_some(cluster.now.mono),
                    voters: (1..=NODES as u64).map(HostId).collect(),
                };
                cluster.nodes[i].handle(cluster.now, Input::Raft(status));
            }
            Op::Message {
                node,
                from,
                message: msg,
            } => {
                let i = node as usize % NODES;
                let from = host(from);
                let input = Input::Message {
                    from,
                    addr: addr(from.0 as usize - 1),
                    message: message(&msg),
                };
                cluster.nodes[i].handle(cluster.now, input);
            }
            Op::Executor { node, event } => {
                let i = node as usize % NODES;
                let event = exec(&event, cluster.now.wall);
                cluster.nodes[i].handle(cluster.now, Input::Executor(event));
            }
            Op::Resources { node, cpu_free } => {
                let sample = ResourceSample {
                    cpu_total_milli: 4000,
                    cpu_free_milli: u32::from(cpu_free) % 4001,
                    memory_total_mb: 8192,
                    memory_free_mb: 6000,
                    disk_total_mb: 100_000,
                    disk_free_mb: 80_000,
                };
                cluster.nodes[node as usize % NODES].handle(cluster.now, Input::Resources(sample));
            }
            Op::Docker { node, has } => {
                cluster.nodes[node as usize % NODES].handle(cluster.now, Input::Docker(has));
            }
            Op::ProposalFailed { node, command: cmd } => {
                cluster.nodes[node as usize % NODES]
                    .handle(cluster.now, Input::ProposalFailed(command(&cmd, 0)));
            }
        }
        cluster.drain();
        cluster.check();
    }
}
