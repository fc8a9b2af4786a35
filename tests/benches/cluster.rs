//! Cluster benchmarks of real `rota` processes on loopback (release build), printing a
//! table each:
//!
//! ```text
//! cargo bench -p rota-tests --bench cluster -- failover      # kill -9 the leader, 10 tries
//! cargo bench -p rota-tests --bench cluster -- throughput    # runs/s held for 60 s
//! cargo bench -p rota-tests --bench cluster -- memory        # RSS of a voter with 100,000 jobs
//! ```
//! `ROTA_BENCH_TRIES`, `ROTA_BENCH_RATES` (comma-separated runs/s), `ROTA_BENCH_SECONDS`
//! and `ROTA_BENCH_JOBS` change the sizes.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rota_tests::{Agent, AgentOptions, Cluster, process_job, wait_until};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = which.is_empty();
    let wants = |name: &str| all || which.iter().any(|w| w == name);
    if wants("failover") {
        failover();
    }
    if wants("throughput") {
        throughput();
    }
    if wants("memory") {
        memory();
    }
}

/// Lines `scheduled started` (seconds since the epoch) written by the runs.
fn starts(path: &Path) -> Vec<(f64, f64)> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect()
}

fn failover() {
    let tries: usize = env_or("ROTA_BENCH_TRIES", 10);
    let mut ready = Vec::new();
    let mut first_run = Vec::new();
    for t in 0..tries {
        let mut cluster = Cluster::start(3, &AgentOptions::default());
        let truth = cluster.dir.path().join("starts.log");
        // Each run writes its fire time and its start time.
        let script = format!(
            "echo $(date -d \"$ROTA_SCHEDULED_AT\" +%s) $(date +%s.%N) >> {}",
            truth.display()
        );
        let job = process_job("tick", "* * * * * *", &script, "");
        assert_eq!(
            cluster
                .api(0)
                .follow("POST", "/v1/jobs", Some(&job))
                .unwrap()
                .status,
            201
        );
        wait_until(Duration::from_secs(30), "runs", || {
            (starts(&truth).len() >= 3).then_some(())
        });
        let leader = cluster.leader();
        let old = cluster.agents[leader].status().unwrap()["id"].as_u64();
        let killed = now_secs();
        let clock = Instant::now();
        cluster.agents[leader].kill();
        let survivor = (leader + 1) % 3;
        wait_until(Duration::from_secs(30), "a new leader", || {
            let s = cluster.agents[survivor].status()?;
            (s["leader_id"].as_u64().is_some() && s["leader_id"].as_u64() != old).then_some(())
        });
        ready.push(clock.elapsed().as_secs_f64());
        // The first run of a fire due after the kill: the new leader declared it.
        let started = wait_until(
            Duration::from_secs(30),
            "a run under the new leader",
            || {
                starts(&truth)
                    .into_iter()
                    .filter(|(fire, _)| *fire > killed)
                    .map(|(_, s)| s)
                    .reduce(f64::min)
            },
        );
        first_run.push(started - killed);
        eprintln!(
            "try {t}: new leader after {:.3} s, first run after {:.3} s",
            ready[t],
            started - killed
        );
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (ready_median, ready_worst) = stats(&mut ready);
    let (run_median, run_worst) = stats(&mut first_run);
    println!(
        "\nleader failover on loopback, {tries} tries (kill -9 of the leader; jobs due every second)"
    );
    println!("| measure | median | worst |");
    println!("|---|---|---|");
    println!(
        "| kill to a new leader known | {:.3} s | {:.3} s |",
        ready_median, ready_worst
    );
    println!(
        "| kill to the first run started by the new leader | {:.3} s | {:.3} s |",
        run_median, run_worst
    );
}

fn throughput() {
    let rates: Vec<usize> = std::env::var("ROTA_BENCH_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 250, 500, 1000]);
    let seconds: u64 = env_or("ROTA_BENCH_SECONDS", 60);
    println!(
        "\nsustained scheduling, 3 hosts on loopback, process executor running `true`, {seconds} s per rate"
    );
    println!(
        "| target runs/s | started runs/s | succeeded | failed | p50 lateness | p99 lateness | max lateness |"
    );
    println!("|---|---|---|---|---|---|---|");
    for rate in rates {
        let cluster = Cluster::start(3, &AgentOptions::default());
        // `rate` jobs firing every second.
        let created = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for worker in 0..8 {
                let api = cluster.api(cluster.leader());
                let created = Arc::clone(&created);
                scope.spawn(move || {
                    for i in (worker..rate).step_by(8) {
                        let job = process_job(
                            &format!("j{i}"),
                            "* * * * * *",
                            "true",
                            r#", "starting_deadline_s": 5"#,
                        );
                        let status = api.follow("POST", "/v1/jobs", Some(&job)).unwrap().status;
                        assert_eq!(status, 201);
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        // Warm up, then measure a window of `seconds`.
        std::thread::sleep(Duration::from_secs(5));
        let from = now_secs();
        std::thread::sleep(Duration::from_secs(seconds));
        let to = now_secs();
        let api = cluster.api(cluster.leader());
        for i in 0..rate {
            api.follow("POST", &format!("/v1/jobs/j{i}/pause"), None)
                .unwrap();
        }
        std::thread::sleep(Duration::from_secs(3));
        let mut lateness = Vec::new();
        let (mut succeeded, mut failed) = (0usize, 0usize);
        for i in 0..rate {
            let runs = api.get(&format!("/v1/jobs/j{i}/runs?limit=1000"));
            for run in runs.body.as_array().into_iter().flatten() {
                let scheduled = parse_rfc3339(run["scheduled_at"].as_str().unwrap_or(""));
                if scheduled < from || scheduled >= to {
                    continue;
                }
                match run["state"].as_str() {
                    Some("succeeded") => succeeded += 1,
                    _ => failed += 1,
                }
                if let Some(started) = run["started_at"].as_str() {
                    lateness.push(parse_rfc3339(started) - scheduled);
                }
            }
        }
        lateness.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            lateness
                .get(((lateness.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(f64::NAN)
                * 1000.0
        };
        println!(
            "| {rate} | {:.0} | {succeeded} | {failed} | {:.0} ms | {:.0} ms | {:.0} ms |",
            lateness.len() as f64 / (to - from),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
        drop(cluster);
    }
}

/// Seconds since the epoch of an RFC 3339 UTC instant (`...Z`, optional fraction).
fn parse_rfc3339(text: &str) -> f64 {
    let Some(date) = text.get(..10) else {
        return f64::NAN;
    };
    let parts: Vec<i64> = date.split('-').filter_map(|p| p.parse().ok()).collect();
    let time = text.get(11..).unwrap_or("").trim_end_matches('Z');
    let mut hms = time.split(':');
    let (h, m, s): (f64, f64, f64) = (
        hms.next().and_then(|v| v.parse().ok()).unwrap_or(0.0),
        hms.next().and_then(|v| v.parse().ok()).unwrap_or(0.0),
        hms.next().and_then(|v| v.parse().ok()).unwrap_or(0.0),
    );
    if parts.len() != 3 {
        return f64::NAN;
    }
    let (y, mo, d) = (parts[0], parts[1], parts[2]);
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days as f64 * 86_400.0 + h * 3600.0 + m * 60.0 + s
}

fn memory() {
    let jobs: usize = env_or("ROTA_BENCH_JOBS", 100_000);
    let root = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        root.path(),
        &[],
        &AgentOptions {
            config_toml: "[raft]\nsnapshot_every_entries = 20000\n".into(),
            ..AgentOptions::default()
        },
    );
    wait_until(Duration::from_secs(30), "the agent to lead", || {
        agent
            .status()
            .filter(|s| s["is_leader"] == true)
            .map(|_| ())
    });
    let before = agent.rss_kib().unwrap_or(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for worker in 0..16 {
            let api = agent.api();
            scope.spawn(move || {
                for i in (worker..jobs).step_by(16) {
                    // Mixed schedules that do not fire during the measurement.
                    let schedule = match i % 4 {
                        0 => format!("{} {} 1 1 *", i % 60, i % 24),
                        1 => "@yearly".to_owned(),
                        2 => "@manually".to_owned(),
                        _ => format!("0 {} {} 6 *", i % 60, i % 24),
                    };
                    let job = process_job(&format!("job-{i}"), &schedule, "echo hello", "");
                    let status = api.follow("POST", "/v1/jobs", Some(&job)).unwrap().status;
                    assert_eq!(status, 201, "job {i}");
                }
            });
        }
    });
    let elapsed = started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let after = agent.rss_kib().unwrap_or(0);
    println!(
        "\nresident memory of a one-voter cluster holding {jobs} jobs (created through the API)"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| RSS before the jobs | {:.1} MiB |",
        before as f64 / 1024.0
    );
    println!(
        "| RSS with {jobs} jobs | {:.1} MiB |",
        after as f64 / 1024.0
    );
    println!(
        "| per job | {:.0} bytes |",
        (after.saturating_sub(before) * 1024) as f64 / jobs as f64
    );
    println!(
        "| job creation rate (16 clients) | {:.0} jobs/s |",
        jobs as f64 / elapsed.as_secs_f64()
    );
}
