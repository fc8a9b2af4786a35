//! The workload both benchmarks build: 100,000 jobs of mixed schedules on a cluster of
//! one host, which is the Raft leader and places every run on itself.
//!
//! The jobs are laid out so that at every whole second after [`START`] exactly
//! [`DUE_PER_SECOND`] `@every` jobs are due, and the crontab jobs fire only at seconds
//! 0, 15 and 45 of a minute ([`CRON_SECONDS`]), which the benchmarks step over untimed:
//!
//! | jobs   | schedule                                    | zone                 |
//! |--------|---------------------------------------------|----------------------|
//! | 30,000 | `@every 100s` (300 due each second)         | UTC                  |
//! | 18,000 | `@every 1m` (300 due each second)           | UTC                  |
//! |  8,000 | `@every 40s` (200 due each second)          | UTC                  |
//! |  4,000 | `@every 20s` (200 due each second)          | UTC                  |
//! | 12,000 | `m h * * *`, m and h varied                 | UTC, Berlin, New York|
//! |  4,000 | `*/5 * * * *`                               | UTC, New York        |
//! |  4,000 | `0 9 * * 1-5`                               | New York             |
//! |  4,000 | `0 0 1,15 * 5`                              | UTC                  |
//! |  3,000 | `15 m h * * *` (6 fields, varied m and h)   | UTC, Berlin          |
//! |  3,000 | `45 */10 * * * *` (6 fields)                | UTC                  |
//! |  5,000 | `@hourly`                                   | UTC                  |
//! |  5,000 | `@daily`                                    | Berlin               |
//!
//! An `@every` job of period P counts from its anchor, so anchors spread evenly over one
//! period give each second of the period the same number of due jobs.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rota_core::command::{Command, Declare, Finish, Outcome};
use rota_core::host::{HostId, HostIdentity, ResourceSample};
use rota_core::job::{
    Concurrency, ExecutorSpec, JobName, JobSpec, MissedPolicy, ProcessSpec, Resources,
};
use rota_core::node::{Effect, Input, Node, NodeConfig, RaftStatus};
use rota_core::run::Trigger;
use rota_core::schedule::{Schedule, Tz};
use rota_core::state::State;
use rota_core::time::{Mono, Now, Timestamp};

/// How many jobs the cluster holds (the default `jobs_max`).
pub const JOBS: usize = 100_000;
/// How many `@every` jobs are due at each whole second after [`START`].
pub const DUE_PER_SECOND: usize = 1_000;
/// The seconds of a minute at which crontab jobs fire.
pub const CRON_SECONDS: [i64; 3] = [0, 15, 45];
/// The only host, which leads.
pub const ME: HostId = HostId(1);
/// When the leader takes over: 2026-01-05T12:00:00Z, a Monday.
pub const START: Timestamp = Timestamp::from_secs(1_767_614_400);
/// The term in which the run history is written, before the benchmarked leader's.
const HISTORY_TERM: u64 = 1;
/// The benchmarked leader's term.
pub const TERM: u64 = 2;

/// The `@every` groups: expression, period in seconds, jobs.
const EVERY: [(&str, i64, usize); 4] = [
    ("@every 100s", 100, 30_000),
    ("@every 1m", 60, 18_000),
    ("@every 40s", 40, 8_000),
    ("@every 20s", 20, 4_000),
];

/// One job to create, and when (which is also the anchor of an `@every` schedule).
pub struct NewJob {
    /// The job.
    pub spec: JobSpec,
    /// When it is created.
    pub at: Timestamp,
}

/// The workload's jobs (`count` of them, a multiple of 1,000, in the mix above scaled
/// down alike), in creation order, one at a time so that a caller measuring memory holds
/// no more than one spec that the state does not. Six of every ten are `@every` jobs;
/// the groups are interleaved so that names, and thus map positions, are mixed.
pub fn jobs(count: usize) -> impl Iterator<Item = NewJob> {
    assert!(
        count.is_multiple_of(1_000) && count <= JOBS,
        "the mix is laid out per thousand jobs"
    );
    (0..count).map(move |i| {
        let (tens, unit) = (i / 10, i % 10);
        if unit < 6 {
            every_job(i, tens * 6 + unit, count)
        } else {
            cron_job(i, tens * 4 + unit - 6)
        }
    })
}

/// The `k`th `@every` job (job `i` of `count`).
fn every_job(i: usize, k: usize, count: usize) -> NewJob {
    let mut first = 0usize;
    for (expr, period_s, n) in EVERY {
        let n = n * count / JOBS;
        if k < first + n {
            // Spread anchors evenly over one period, so that each second of the period
            // has n / period_s due jobs, the first of them one second after START.
            let offset_s = ((k - first) as i64 % period_s) + 1;
            let at = START - Duration::from_secs((period_s - offset_s) as u64);
            return NewJob {
                spec: spec(i, expr, Tz::UTC),
                at,
            };
        }
        first += n;
    }
    unreachable!("every index falls in a group")
}

/// The `c`th crontab job (job `i`).
fn cron_job(i: usize, c: usize) -> NewJob {
    let (m, h) = (c * 7 % 60, c * 5 % 24);
    let zone = [Tz::UTC, Tz::Europe__Berlin, Tz::America__New_York][c % 3];
    let (expr, zone) = match c % 40 {
        0..=11 => (format!("{m} {h} * * *"), zone),
        12..=15 => (
            "*/5 * * * *".to_owned(),
            [Tz::UTC, Tz::America__New_York][c % 2],
        ),
        16..=19 => ("0 9 * * 1-5".to_owned(), Tz::America__New_York),
        20..=23 => ("0 0 1,15 * 5".to_owned(), Tz::UTC),
        24..=26 => (
            format!("15 {m} {h} * * *"),
            [Tz::UTC, Tz::Europe__Berlin][c % 2],
        ),
        27..=29 => ("45 */10 * * * *".to_owned(), Tz::UTC),
        30..=34 => ("@hourly".to_owned(), Tz::UTC),
        _ => ("@daily".to_owned(), Tz::Europe__Berlin),
    };
    NewJob {
        spec: spec(i, &expr, zone),
        at: START,
    }
}

/// A realistic process job: a few arguments, sometimes an environment and a directory,
/// mixed policies.
fn spec(i: usize, schedule: &str, timezone: Tz) -> JobSpec {
    let command: Vec<String> = match i % 4 {
        0 => vec![
            "/usr/local/bin/backup".into(),
            "--target".into(),
            format!("s3://backups-{}/db", i % 17),
        ],
        1 => vec![
            "sh".into(),
            "-c".into(),
            "curl -fsS https://status.internal/ping".into(),
        ],
        2 => vec!["/opt/etl/run".into(), "--shard".into(), i.to_string()],
        _ => vec!["python3".into(), "/srv/jobs/report.py".into()],
    };
    let env: BTreeMap<String, String> = if i.is_multiple_of(3) {
        [("REGION", "eu-west-1"), ("LOG_LEVEL", "info")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    } else {
        BTreeMap::new()
    };
    JobSpec {
        name: JobName::new(&format!("team-{:02}.job-{i:06}", i % 40)).expect("a valid name"),
        schedule: Schedule::parse(schedule).expect("a valid schedule"),
        timezone,
        executor: std::sync::Arc::new(ExecutorSpec::Process(ProcessSpec {
            command,
            env,
            cwd: i.is_multiple_of(5).then(|| "/srv/jobs".to_owned()),
        })),
        concurrency: match i % 10 {
            0..=5 => Concurrency::Allow,
            6..=8 => Concurrency::Forbid,
            _ => Concurrency::Replace,
        },
        missed: [MissedPolicy::Latest, MissedPolicy::Skip, MissedPolicy::All][i % 3],
        retries: (i % 4) as u32,
        retry_backoff_s: 10,
        retry_backoff_max_s: 600,
        timeout_s: i.is_multiple_of(2).then_some(3600),
        starting_deadline_s: 300,
        constraints: BTreeMap::new(),
        resources: Resources::default(),
        paused: false,
    }
}

/// A replicated state being built by applying commands, as a follower would.
pub struct Log {
    /// The state.
    pub state: State,
    /// The index of the last entry applied.
    pub index: u64,
}

impl Log {
    /// An empty state whose first leader (of an earlier term than the benchmarked one)
    /// has started.
    pub fn new() -> Self {
        let mut log = Log {
            state: State::new(),
            index: 0,
        };
        log.apply(&Command::LeaderStart {
            nonce: 0,
            term: HISTORY_TERM,
            leader: ME,
            at: START - Duration::from_secs(3600),
        });
        log
    }

    /// Applies one entry, which must not be refused.
    pub fn apply(&mut self, command: &Command) -> Outcome {
        self.index += 1;
        let outcome = self.state.apply(self.index, command);
        assert!(!outcome.is_rejected(), "{command:?}: {outcome:?}");
        outcome
    }

    /// Creates `count` jobs of the workload.
    pub fn put_jobs(&mut self, count: usize) {
        for job in jobs(count) {
            self.apply(&Command::PutJob {
                spec: Box::new(job.spec),
                replace: false,
                at: job.at,
            });
        }
    }

    /// Gives every job a full history (`runs_kept_per_job_max` succeeded runs), as after
    /// a long time of service. The runs are manual ones a few milliseconds after the
    /// job's creation, so the job's next scheduled fire is unchanged.
    pub fn fill_history(&mut self) {
        let kept = self.state.settings().runs_kept_per_job_max;
        let jobs: Vec<(JobName, Timestamp)> = self
            .state
            .jobs()
            .map(|(name, job)| (name.clone(), job.watermark))
            .collect();
        for (name, watermark) in jobs {
            for k in 1..=kept {
                let at = watermark + Duration::from_millis(u64::from(k));
                let outcome = self.apply(&Command::Declare(Declare {
                    job: name.clone(),
                    scheduled_at: at,
                    attempt: 1,
                    trigger: Trigger::Manual { force: true },
                    host: Some(ME),
                    term: HISTORY_TERM,
                    at,
                    key: None,
                }));
                let Outcome::Declared { run } = outcome else {
                    panic!("{name}: {outcome:?}");
                };
                self.apply(&Command::MarkFinished(Finish {
                    run,
                    host: Some(ME),
                    started_at: Some(at),
                    finished_at: at,
                    exit_code: Some(0),
                    reason: None,
                    detail: None,
                }));
            }
        }
    }
}

/// The only host's resources: a big host, so that placement never runs out even when
/// some 20,000 crontab jobs fire at once (a run that asks for nothing is placed as a
/// hundredth of a core and 8 MiB). A host that ran out would record runs as failed
/// `no-capacity`, whose retries would then add to the due runs of later seconds.
pub fn sample() -> ResourceSample {
    ResourceSample {
        cpu_total_milli: 512_000,
        cpu_free_milli: 500_000,
        memory_total_mb: 1 << 20,
        memory_free_mb: 1_000_000,
        disk_total_mb: 1_000_000,
        disk_free_mb: 900_000,
    }
}

/// What Raft tells the only host at `now`: it leads, and its quorum (itself) is fresh.
pub fn raft_status(now: Now) -> RaftStatus {
    RaftStatus {
        term: TERM,
        leader: Some(ME),
        is_leader: true,
        quorum_acked: Some(now.mono),
        voters: vec![ME],
    }
}

/// The present when the leader takes over.
pub fn start() -> Now {
    Now::new(Mono::from_millis(1_000), START)
}

/// A node holding `log`'s state that is the ready leader at [`start`]: Raft made it
/// leader and its `LeaderStart` entry applied. Answers the node and the log index.
pub fn ready_leader(log: Log) -> (Node, u64) {
    let now = start();
    let addr = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), port);
    let identity = HostIdentity {
        id: ME,
        cluster_addr: addr(7071),
        api_addr: addr(7070),
        boot: 1,
    };
    let mut index = log.index;
    let mut node = Node::new(NodeConfig::new(identity), 7, now, log.state);
    node.handle(now, Input::Resources(sample()));
    node.handle(now, Input::Raft(raft_status(now)));
    let mut proposals = Vec::new();
    while let Some(effect) = node.poll_effect() {
        if let Effect::Propose(command) = effect {
            proposals.push(command);
        }
    }
    for command in &proposals {
        index += 1;
        let outcome = node.handle_applied(now, index, command);
        assert!(!outcome.is_rejected(), "{command:?}: {outcome:?}");
    }
    while node.poll_effect().is_some() {}
    assert!(
        node.is_ready_leader(),
        "the node did not become a ready leader"
    );
    (node, index)
}
