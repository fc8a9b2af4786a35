//! What one seed decides: the cluster, the jobs, the operator's writes and the faults.

use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rota_core::time::Timestamp;
use serde::Serialize;

/// The wall-clock instant every simulation starts at (2026-03-01T00:00:00Z).
pub const EPOCH: Timestamp = Timestamp::from_secs(1_772_323_200);

/// A fault, as planned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Fault {
    /// Cut the leader off from every other host, both ways.
    IsolateLeader { for_ms: u64 },
    /// The leader's messages to the others are lost; theirs reach it.
    LeaderCannotSend { for_ms: u64 },
    /// The others' messages to the leader are lost; its messages reach them.
    LeaderCannotHear { for_ms: u64 },
    /// Cut two hosts apart, both ways.
    Partition { a: usize, b: usize, for_ms: u64 },
    /// A host's links lose a share of messages.
    Lossy {
        host: usize,
        rate_percent: u32,
        for_ms: u64,
    },
    /// A host's links are slow.
    Slow {
        host: usize,
        latency_ms: u64,
        for_ms: u64,
    },
    /// Crash the leader; restart it after a while.
    CrashLeader { down_ms: u64 },
    /// Crash a host; restart it after a while.
    CrashHost { host: usize, down_ms: u64 },
    /// Crash a host for good.
    LoseHost { host: usize },
    /// Crash the next host told to start a run, before it starts it.
    CrashBeforeStart,
    /// Crash the next host that starts a run, right after, before it reports it.
    CrashAfterStart,
    /// Crash the leader when it is next told to start a run it placed on itself: after
    /// the run's declaration committed, before it started.
    CrashLeaderBeforeStart,
    /// Step the leader's wall clock.
    LeaderClockStep { ms: i64 },
    /// Step a host's wall clock.
    ClockStep { host: usize, ms: i64 },
    /// Skew a host's wall clock.
    ClockSkew { host: usize, ppm: i64 },
    /// Fail a host's next disk writes.
    DiskFailure { host: usize, writes: u32 },
}

/// One job of the workload, as the operator writes it.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedJob {
    /// Its name.
    pub name: String,
    /// The JSON the operator posts.
    pub json: String,
    /// Whether the operator triggers it by hand (a `@manually` job).
    pub manual: bool,
}

/// An operator's write during the run.
#[derive(Debug, Clone, Serialize)]
pub enum Write {
    /// Pause a job, then resume it after a while.
    PauseResume { job: usize, for_ms: u64 },
    /// Run a job now.
    Trigger { job: usize },
    /// Create another job.
    Create { job: PlannedJob },
    /// Stop the job's newest active run, if it has one when the operator looks; with
    /// `crash_host`, its host crashes when told to stop it, before it does.
    Stop { job: usize, crash_host: bool },
}

/// Everything a seed decides.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// How many hosts.
    pub hosts: usize,
    /// How many of them vote.
    pub voters: u32,
    /// The jobs created at the start.
    pub jobs: Vec<PlannedJob>,
    /// Writes during the run, at their time.
    pub writes: Vec<(u64, Write)>,
    /// Faults, at their time (milliseconds since the start).
    pub faults: Vec<(u64, Fault)>,
    /// When the last fault heals.
    pub heal_ms: u64,
    /// When the run ends: a quiet period after healing, for liveness.
    pub end_ms: u64,
}

fn process(name: &str, schedule: &str, extra: &str, env: &str) -> String {
    format!(
        r#"{{"name": "{name}", "schedule": "{schedule}", "executor": {{"process": {{"command": ["sim"], "env": {{{env}}}}}}}{extra}}}"#
    )
}

impl Plan {
    /// The plan for `seed`.
    pub fn from_seed(seed: u64) -> Plan {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let hosts = rng.random_range(3..=7usize);
        let voters = if hosts >= 5 && rng.random_bool(0.5) {
            5
        } else {
            3
        };
        let job_count = rng.random_range(4..=7usize);
        let mut jobs = Vec::new();
        for i in 0..job_count {
            jobs.push(random_job(&mut rng, &format!("j{i}")));
        }
        // A job everyone can rely on: seconds-granular, short, forbidding overlap.
        jobs.push(PlannedJob {
            name: "steady".into(),
            json: process(
                "steady",
                "*/2 * * * * *",
                r#", "concurrency": "forbid", "starting_deadline_s": 10"#,
                r#""SIM_MS_MIN": "300", "SIM_MS_MAX": "2500""#,
            ),
            manual: false,
        });

        let start_ms = 15_000u64;
        let window_ms = rng.random_range(50_000..=80_000u64);
        let heal_ms = start_ms + window_ms;
        let end_ms = heal_ms + 60_000;
        let mut faults = Vec::new();
        let count = rng.random_range(3..=7usize);
        let mut lost = 0usize;
        let mut t = start_ms;
        for _ in 0..count {
            let gap = window_ms / count as u64;
            let at = t + rng.random_range(0..gap / 2);
            t += gap;
            let span = |rng: &mut Xoshiro256PlusPlus| {
                rng.random_range(3_000..=12_000u64)
                    .min(heal_ms.saturating_sub(at + 500))
            };
            let host = rng.random_range(0..hosts);
            let fault = match rng.random_range(0..14u32) {
                0 => Fault::IsolateLeader {
                    for_ms: span(&mut rng),
                },
                1 => Fault::LeaderCannotSend {
                    for_ms: span(&mut rng),
                },
                2 => Fault::LeaderCannotHear {
                    for_ms: span(&mut rng),
                },
                3 => {
                    let b = (host + 1 + rng.random_range(0..hosts - 1)) % hosts;
                    Fault::Partition {
                        a: host,
                        b,
                        for_ms: span(&mut rng),
                    }
                }
                4 => Fault::Lossy {
                    host,
                    rate_percent: rng.random_range(10..=60),
                    for_ms: span(&mut rng),
                },
                5 => Fault::Slow {
                    host,
                    latency_ms: rng.random_range(50..=400),
                    for_ms: span(&mut rng),
                },
                6 | 7 => Fault::CrashLeader {
                    down_ms: span(&mut rng),
                },
                8 => Fault::CrashHost {
                    host,
                    down_ms: span(&mut rng),
                },
                // Lose a host for good only while a majority of voters survives for sure.
                9 if lost == 0 && host != 0 && hosts as u32 > voters => {
                    lost += 1;
                    Fault::LoseHost { host }
                }
                9 | 10 => Fault::CrashBeforeStart,
                11 => Fault::CrashAfterStart,
                12 => {
                    if rng.random_bool(0.5) {
                        let ms = rng.random_range(-20_000..=20_000i64);
                        Fault::ClockStep {
                            host,
                            ms: if ms == 0 { 5000 } else { ms },
                        }
                    } else {
                        Fault::ClockSkew {
                            host,
                            ppm: rng.random_range(-5_000..=5_000i64),
                        }
                    }
                }
                _ => Fault::DiskFailure {
                    host,
                    writes: rng.random_range(1..=3),
                },
            };
            faults.push((at, fault));
        }

        let mut writes = Vec::new();
        for _ in 0..rng.random_range(2..=5usize) {
            let at = rng.random_range(start_ms..heal_ms);
            let job = rng.random_range(0..jobs.len());
            let write = match rng.random_range(0..3u32) {
                0 => Write::PauseResume {
                    job,
                    for_ms: rng.random_range(3_000..=15_000),
                },
                1 => Write::Trigger { job },
                _ => Write::Create {
                    job: random_job(&mut rng, &format!("late{at}")),
                },
            };
            writes.push((at, write));
        }
        // Requests to stop a run come from a generator of their own, so that the other
        // draws of a seed stay what they were.
        let mut stops = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5709_0000_5709_0000);
        // And whether the host crashes as it is told to stop, from another, so that the
        // stops drawn stay what they were.
        let mut crashes = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5709_c4a5_5709_c4a5);
        for _ in 0..stops.random_range(0..=2usize) {
            let at = stops.random_range(start_ms..heal_ms);
            let job = stops.random_range(0..jobs.len());
            let crash_host = crashes.random_bool(0.3);
            writes.push((at, Write::Stop { job, crash_host }));
        }
        writes.sort_by_key(|(at, _)| *at);

        Plan {
            seed,
            hosts,
            voters,
            jobs,
            writes,
            faults,
            heal_ms,
            end_ms,
        }
    }

    /// The whole run.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.end_ms)
    }
}

fn random_job(rng: &mut Xoshiro256PlusPlus, name: &str) -> PlannedJob {
    let schedule = match rng.random_range(0..6u32) {
        0 => format!("*/{} * * * * *", rng.random_range(1..=5)),
        1 => format!("{} * * * * *", rng.random_range(0..60)),
        2 => format!("@every {}s", rng.random_range(2..=9)),
        3 => format!(
            "@at {}",
            EPOCH + Duration::from_secs(rng.random_range(20..=90))
        ),
        4 => "@manually".to_owned(),
        _ => format!("*/{} * * * * *", rng.random_range(3..=10)),
    };
    let manual = schedule == "@manually";
    let concurrency = ["allow", "forbid", "replace"][rng.random_range(0..3usize)];
    let missed = ["latest", "skip", "all"][rng.random_range(0..3usize)];
    let retries = if rng.random_bool(0.3) {
        rng.random_range(1..=2u32)
    } else {
        0
    };
    let deadline = rng.random_range(3..=30u32);
    let long = rng.random_bool(0.3);
    let (lo, hi) = if long { (2_000, 8_000) } else { (50, 900) };
    let failing = rng.random_bool(0.15);
    let hang = rng.random_bool(0.08);
    let mut env = format!(r#""SIM_MS_MIN": "{lo}", "SIM_MS_MAX": "{hi}""#);
    if failing {
        env.push_str(r#", "SIM_EXIT": "3""#);
    }
    let mut extra = format!(
        r#", "concurrency": "{concurrency}", "missed": "{missed}", "retries": {retries}, "retry_backoff_s": 1, "starting_deadline_s": {deadline}"#
    );
    if hang {
        env.push_str(r#", "SIM_HANG": "1""#);
        extra.push_str(r#", "timeout_s": 4"#);
    }
    PlannedJob {
        name: name.to_owned(),
        json: process(name, &schedule, &extra, &env),
        manual,
    }
}
