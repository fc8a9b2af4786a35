//! Memory per job: the heap a `State`, and a leader `Node`, take for 100,000 jobs of the
//! mixed workload (see `workload/mod.rs`), without runs and with every job's history
//! full (`runs_kept_per_job_max` ended runs).
//!
//! A counting `#[global_allocator]` would need `unsafe impl GlobalAlloc`, and the
//! workspace forbids unsafe code (`unsafe_code = "forbid"`, which no target can lower).
//! So each case is built in a fresh child process (this same binary, told the case by
//! `ROTA_MEMORY_CASE`), and measured by how much its resident anonymous memory
//! (`RssAnon` in `/proc/self/status`) grew: what the heap really takes, the allocator's
//! headers and rounding included, plus whatever the build left free but resident. For
//! exact live bytes, run one case under `valgrind --tool=dhat`: the child leaks what it
//! built on purpose, so dhat's "At t-end" is the case's live heap.
//!
//! Run with `cargo bench -p rota-core --bench memory`.

/// The daemon's allocator (see `runtime/src/main.rs`), so that this measures what it does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::Command as Process;

#[allow(
    dead_code,
    reason = "the workload is shared with the scheduling benchmark, which uses all of it"
)]
mod workload;

use workload::{JOBS, Log};

const CASE_VAR: &str = "ROTA_MEMORY_CASE";
const JOBS_VAR: &str = "ROTA_MEMORY_JOBS";

/// The memory per job the issue allows.
const GOAL_BYTES_PER_JOB: u64 = 2048;

/// What a case builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// A `State` holding the jobs, without runs.
    State,
    /// A ready leader `Node` holding them: the state, the due queue and the plans.
    Leader,
    /// A `State` whose every job has a full history of ended runs.
    StateHistory,
    /// A ready leader `Node` over that state.
    LeaderHistory,
}

impl Case {
    const ALL: [Case; 4] = [
        Case::State,
        Case::Leader,
        Case::StateHistory,
        Case::LeaderHistory,
    ];

    fn key(self) -> &'static str {
        match self {
            Case::State => "state",
            Case::Leader => "leader",
            Case::StateHistory => "state-history",
            Case::LeaderHistory => "leader-history",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Case::State => "(a) State, no runs",
            Case::Leader => "(b) leader Node, no runs",
            Case::StateHistory => "(c) State, full history",
            Case::LeaderHistory => "(c') leader Node, full history",
        }
    }

    fn from_key(key: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|c| c.key() == key)
    }
}

/// This process's resident anonymous memory, in bytes.
fn rss_anon_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status")
        .expect("this benchmark reads /proc/self/status (Linux only)");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("/proc/self/status has RssAnon");
    kib * 1024
}

/// Builds `case` with `jobs` jobs and prints how many bytes it grew the process by.
fn child(case: Case, jobs: usize) {
    // Time zones and the like are set up lazily; let one job do that first.
    let mut warm = Log::new();
    warm.put_jobs(1_000);
    drop(warm);
    let before = rss_anon_bytes();
    let mut log = Log::new();
    log.put_jobs(jobs);
    if matches!(case, Case::StateHistory | Case::LeaderHistory) {
        log.fill_history();
    }
    let runs = log.state.runs().len();
    let kept = if matches!(case, Case::Leader | Case::LeaderHistory) {
        let (node, _) = workload::ready_leader(log);
        let after = rss_anon_bytes();
        std::mem::forget(node);
        after
    } else {
        let after = rss_anon_bytes();
        std::mem::forget(log);
        after
    };
    println!("{} {runs}", kept.saturating_sub(before));
}

fn main() {
    if let Ok(key) = std::env::var(CASE_VAR) {
        let case = Case::from_key(&key).unwrap_or_else(|| panic!("unknown case {key:?}"));
        let jobs = std::env::var(JOBS_VAR)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(JOBS);
        child(case, jobs);
        return;
    }
    let exe = std::env::current_exe().expect("the benchmark's own path");
    println!("memory per job ({JOBS} jobs; resident anonymous memory grown, per job)");
    println!(
        "{:<32} {:>9} {:>13} {:>10} {:>8}",
        "case", "runs", "bytes", "bytes/job", "<2 KiB"
    );
    let mut per_job = Vec::new();
    for case in Case::ALL {
        let output = Process::new(&exe)
            .env(CASE_VAR, case.key())
            .env(JOBS_VAR, JOBS.to_string())
            .output()
            .expect("the benchmark runs itself");
        assert!(
            output.status.success(),
            "case {}: {}",
            case.key(),
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        let (Some(Some(bytes)), Some(Some(runs))) = (fields.next(), fields.next()) else {
            panic!("case {}: unexpected output {text:?}", case.key());
        };
        let job_bytes = bytes / JOBS as u64;
        per_job.push((case, job_bytes, runs));
        println!(
            "{:<32} {runs:>9} {bytes:>13} {job_bytes:>10} {:>8}",
            case.describe(),
            if job_bytes < GOAL_BYTES_PER_JOB {
                "yes"
            } else {
                "NO"
            }
        );
    }
    let bytes_of = |wanted: Case| {
        per_job
            .iter()
            .find(|(case, _, _)| *case == wanted)
            .map(|(_, bytes, runs)| (*bytes, *runs))
            .unwrap_or_default()
    };
    let (empty, _) = bytes_of(Case::State);
    let (full, runs) = bytes_of(Case::StateHistory);
    if let Some(per_run) = (full.saturating_sub(empty) * JOBS as u64).checked_div(runs) {
        println!("one ended run in the history: about {per_run} bytes");
    }
}
