//! Failures of whole hosts: the leader killed with SIGKILL, a host restarted, a host
//! lost for good. The ground truth of what ran is a file every run appends to.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use rota_tests::{AgentOptions, Cluster, FAST_TIMING, never_within, process_job, wait_until};
use serde_json::Value;

fn truth_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn fast() -> AgentOptions {
    AgentOptions {
        config_toml: FAST_TIMING.to_owned(),
        ..AgentOptions::default()
    }
}

fn runs(cluster: &Cluster, from: usize, job: &str) -> Vec<Value> {
    let answer = cluster
        .api(from)
        .get(&format!("/v1/jobs/{job}/runs?limit=1000"));
    answer.body.as_array().cloned().unwrap_or_default()
}

#[test]
fn killing_the_leader_loses_no_fire_and_runs_none_twice() {
    let mut cluster = Cluster::start(3, &fast());
    let truth = cluster.dir.path().join("truth.log");
    let script = format!(
        "echo \"$ROTA_SCHEDULED_AT $ROTA_ATTEMPT\" >> {}",
        truth.display()
    );
    let job = process_job(
        "tick",
        "* * * * * *",
        &script,
        r#", "starting_deadline_s": 30"#,
    );
    assert_eq!(
        cluster
            .api(0)
            .follow("POST", "/v1/jobs", Some(&job))
            .unwrap()
            .status,
        201
    );
    wait_until(Duration::from_secs(30), "five runs", || {
        (truth_lines(&truth).len() >= 5).then_some(())
    });

    let leader = cluster.leader();
    let other = (leader + 1) % 3;
    let killed_at = Instant::now();
    let seen_before = truth_lines(&truth).len();
    cluster.agents[leader].kill();
    // The first run started under the new leader.
    wait_until(
        Duration::from_secs(30),
        "a run under the new leader",
        || {
            let new_leader =
                cluster.agents.iter().enumerate().any(|(i, a)| {
                    i != leader && a.status().is_some_and(|s| s["is_leader"] == true)
                });
            (new_leader && truth_lines(&truth).len() > seen_before + 1).then_some(())
        },
    );
    let failover = killed_at.elapsed();
    eprintln!("failover: first run under the new leader {failover:?} after the kill");
    std::thread::sleep(Duration::from_secs(8));

    // Ground truth: no fire ran twice.
    let lines = truth_lines(&truth);
    let unique: BTreeSet<&String> = lines.iter().collect();
    assert_eq!(unique.len(), lines.len(), "a fire ran twice: {lines:#?}");

    // Every fire since the job began ran, or was recorded with a reason.
    let history = runs(&cluster, other, "tick");
    let mut recorded: BTreeMap<String, String> = BTreeMap::new();
    for run in &history {
        if let Some(reason) = run["reason"].as_str() {
            recorded.insert(
                run["scheduled_at"].as_str().unwrap().to_owned(),
                reason.to_owned(),
            );
        }
        if let (Some(first), Some(last)) =
            (run["scheduled_at"].as_str(), run["missed_until"].as_str())
        {
            recorded.insert(format!("{first}..{last}"), "missed".into());
        }
    }
    let ran: BTreeSet<String> = lines
        .iter()
        .filter_map(|l| l.split(' ').next().map(str::to_owned))
        .collect();
    let first = ran.iter().next().unwrap().clone();
    let last = ran.iter().next_back().unwrap().clone();
    let mut t = chrono_like(&first);
    let end = chrono_like(&last);
    let mut unaccounted = Vec::new();
    while t <= end {
        let stamp = format_secs(t);
        let in_range = recorded.keys().any(|k| {
            k.split_once("..")
                .is_some_and(|(a, b)| a <= stamp.as_str() && stamp.as_str() <= b)
        });
        if !ran.contains(&stamp) && !recorded.contains_key(&stamp) && !in_range {
            unaccounted.push(stamp);
        }
        t += 1;
    }
    assert!(
        unaccounted.is_empty(),
        "fires neither run nor recorded: {unaccounted:?}; recorded {recorded:?}"
    );
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
}

/// Seconds since the epoch of an RFC 3339 UTC instant like 2026-11-27T02:50:40Z.
fn chrono_like(text: &str) -> i64 {
    let date: Vec<i64> = text[..10].split('-').map(|p| p.parse().unwrap()).collect();
    let time: Vec<i64> = text[11..19]
        .split(':')
        .map(|p| p.parse().unwrap())
        .collect();
    days_from_civil(date[0], date[1], date[2]) * 86_400 + time[0] * 3600 + time[1] * 60 + time[2]
}

fn format_secs(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

// Howard Hinnant's date algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[test]
fn a_restarted_host_recovers_its_state_and_rejoins() {
    let mut cluster = Cluster::start(3, &fast());
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    for i in 0..5 {
        let job = process_job(&format!("job-{i}"), "@hourly", "true", "");
        assert_eq!(
            cluster
                .api(leader)
                .follow("POST", "/v1/jobs", Some(&job))
                .unwrap()
                .status,
            201
        );
    }
    let before = cluster.agents[follower].status().unwrap()["applied_index"]
        .as_u64()
        .unwrap();
    cluster.agents[follower].kill();
    // Written while it is down.
    let job = process_job("while-down", "@hourly", "true", "");
    assert_eq!(
        cluster
            .api(leader)
            .follow("POST", "/v1/jobs", Some(&job))
            .unwrap()
            .status,
        201
    );
    cluster.agents[follower].restart();
    let status = wait_until(
        Duration::from_secs(30),
        "the restarted host to catch up",
        || {
            // Refused while the host starts up.
            let jobs = cluster.agents[follower]
                .api()
                .follow("GET", "/v1/jobs?stale=true", None)
                .ok()?;
            let names: Vec<&str> = jobs
                .body
                .as_array()?
                .iter()
                .filter_map(|j| j["name"].as_str())
                .collect();
            // Asked after the jobs, so that it is at least as fresh as they are.
            let status = cluster.agents[follower].status()?;
            (names.len() == 6 && names.contains(&"while-down")).then_some(status)
        },
    );
    assert!(status["applied_index"].as_u64().unwrap() > before);
    assert_eq!(status["voters"], 3);
    let log = fs::read_to_string(cluster.agents[follower].log_path()).unwrap();
    assert!(
        log.matches("rota agent started").count() >= 2,
        "it really restarted"
    );
}

/// A long manual run of job `long` (one retry allowed) running on some host of a fresh
/// three-host cluster: the cluster, the run's id, its host's id and that host's index.
fn a_long_run() -> (Cluster, u64, u64, usize) {
    let cluster = Cluster::start(3, &fast());
    let job = process_job(
        "long",
        "@manually",
        "sleep 120",
        r#", "retries": 1, "retry_backoff_s": 1"#,
    );
    assert_eq!(
        cluster
            .api(0)
            .follow("POST", "/v1/jobs", Some(&job))
            .unwrap()
            .status,
        201
    );
    let id = cluster
        .api(0)
        .follow("POST", "/v1/jobs/long/run", None)
        .unwrap()
        .body["id"]
        .as_u64()
        .unwrap();
    let run = wait_until(Duration::from_secs(20), "the run to start", || {
        let run = cluster.api(0).get(&format!("/v1/runs/{id}")).body;
        (run["state"] == "running").then_some(run)
    });
    let host = run["host"].as_u64().unwrap();
    let victim = cluster
        .agents
        .iter()
        .position(|a| a.status().is_some_and(|s| s["id"].as_u64() == Some(host)))
        .unwrap();
    (cluster, id, host, victim)
}

/// Ends host `victim` for good: its daemon, then its supervisor and the supervisor's
/// commands (a host lost for good takes its runs with it).
fn lose_host(cluster: &mut Cluster, victim: usize) {
    cluster.agents[victim].kill();
    cluster.agents[victim].kill_supervisors();
}

/// Run `id` as host `from` sees it once it has ended (following redirects, and waiting
/// out a change of leader).
fn ended_run(cluster: &Cluster, from: usize, id: u64) -> Value {
    wait_until(
        Duration::from_secs(60),
        "the run to be recorded ended",
        || {
            // The lost host may have been the leader: until the witness learns of its
            // successor, the read is redirected to the dead host and refused.
            let run = cluster
                .api(from)
                .follow("GET", &format!("/v1/runs/{id}"), None)
                .ok()?
                .body;
            (run["state"] == "failed").then_some(run)
        },
    )
}

#[test]
fn a_host_lost_for_good_has_its_runs_recorded_and_retried_elsewhere() {
    let (mut cluster, id, host, victim) = a_long_run();
    let witness = (victim + 1) % 3;
    lose_host(&mut cluster, victim);
    let lost = ended_run(&cluster, witness, id);
    assert_eq!(lost["reason"], "host-lost", "{lost}");
    let retry = wait_until(
        Duration::from_secs(60),
        "the retry to run elsewhere",
        || {
            runs(&cluster, witness, "long")
                .into_iter()
                .find(|r| r["attempt"] == 2 && r["state"] == "running")
        },
    );
    assert_ne!(retry["host"].as_u64(), Some(host));
    assert_eq!(retry["scheduled_at"], lost["scheduled_at"]);
}

#[test]
fn a_run_asked_to_stop_whose_host_is_lost_first_is_not_tried_again() {
    let (mut cluster, id, _, victim) = a_long_run();
    let witness = (victim + 1) % 3;
    // The host's daemon dies first, so the request to stop reaches nobody.
    cluster.agents[victim].kill();
    let asked = wait_until(
        Duration::from_secs(30),
        "the request to stop to be committed",
        || {
            let answer = cluster
                .api(witness)
                .follow("POST", &format!("/v1/runs/{id}/stop"), None)
                .ok()?;
            (answer.status == 202).then_some(answer.body)
        },
    );
    assert_eq!(asked["stopping"], "stopped", "{asked}");
    lose_host(&mut cluster, victim);
    let lost = ended_run(&cluster, witness, id);
    assert_eq!(lost["reason"], "host-lost", "{lost}");
    assert!(
        lost["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("not tried again: it had been asked to stop")),
        "{lost}"
    );
    // The job allows a retry a second after the failure: watched for 5 s (the leader
    // plans retries on every tick), none comes.
    never_within(Duration::from_secs(5), "a retry of the stopped run", || {
        let retries: Vec<Value> = runs(&cluster, witness, "long")
            .into_iter()
            .filter(|r| r["attempt"] != 1)
            .collect();
        (!retries.is_empty()).then_some(retries)
    });
}
