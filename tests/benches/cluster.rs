//! Cluster benchmarks of real `rota` processes on loopback (release build), printing a
//! table each:
//!
//! ```text
//! cargo bench -p rota-tests --bench cluster -- failover      # kill -9 the leader, 10 tries
//! cargo bench -p rota-tests --bench cluster -- throughput    # runs/s held for 60 s
//! cargo bench -p rota-tests --bench cluster -- memory        # RSS of a voter with 100,000 jobs
//! cargo bench -p rota-tests --bench cluster -- docker        # container start: rota against `docker run`
//! cargo bench -p rota-tests --bench cluster -- command       # the CPU of `true` alone, without rota
//! ```
//! `ROTA_BENCH_TRIES`, `ROTA_BENCH_RATES` (comma-separated runs/s), `ROTA_BENCH_SECONDS`,
//! `ROTA_BENCH_JOBS` and `ROTA_BENCH_RUNS` change the sizes.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rota_tests::{Agent, AgentOptions, Cluster, process_job, process_job_argv, wait_until};

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
    if wants("docker") {
        docker_start();
    }
    if wants("command") {
        command_alone();
    }
}

/// The CPU time of `true` itself, started one at a time by this process with no rota
/// involved: the floor under the throughput bench, whose runs all run `true`.
fn command_alone() {
    let runs: u32 = env_or("ROTA_BENCH_RUNS", 3_000);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let ticks_per_sec: f64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    let (children_before, own_before) = cpu_secs(ticks_per_sec);
    let started = Instant::now();
    for _ in 0..runs {
        let status = std::process::Command::new("true")
            .status()
            .expect("`true` starts");
        assert!(status.success());
    }
    let wall = started.elapsed().as_secs_f64();
    let (children_after, own_after) = cpu_secs(ticks_per_sec);
    let per_run_ms = |secs: f64| secs * 1_000.0 / f64::from(runs);
    let command_ms = per_run_ms(children_after - children_before);
    println!("\n`true` started {runs} times, one at a time, without rota");
    println!(
        "| runs/s, one at a time | CPU of `true` per run | CPU of the starter per run | `true` alone at 1,000 runs/s |"
    );
    println!("|---|---|---|---|");
    println!(
        "| {:.0} | {command_ms:.3} ms | {:.3} ms | {:.0} % of {cores} cores |",
        f64::from(runs) / wall,
        per_run_ms(own_after - own_before),
        // At 1,000 runs/s, the runs' milliseconds of CPU per second, against the cores'.
        command_ms / cores as f64 * 100.0
    );
}

/// The CPU time, in seconds, of this process's reaped children and of itself, from
/// `/proc/self/stat` (`cutime` + `cstime`, `utime` + `stime`).
fn cpu_secs(ticks_per_sec: f64) -> (f64, f64) {
    let stat = fs::read_to_string("/proc/self/stat").expect("/proc/self/stat is readable");
    // After the command name in parentheses, the fields start at the third.
    let fields: Vec<f64> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let (utime, stime, cutime, cstime) = (fields[11], fields[12], fields[13], fields[14]);
    (
        (cutime + cstime) / ticks_per_sec,
        (utime + stime) / ticks_per_sec,
    )
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
    // `burst` (the default): every job is `* * * * * *`, so all of a second's runs fire
    // at the same instant. `spread`: every job is `@every 1s`, which counts from the
    // millisecond the job was created, so the runs fire spread over the second.
    let spread = match std::env::var("ROTA_BENCH_FIRES").as_deref() {
        Ok("spread") => true,
        Ok("burst") | Err(_) => false,
        Ok(other) => panic!("ROTA_BENCH_FIRES must be `burst` or `spread`, not {other:?}"),
    };
    let schedule = if spread { "@every 1s" } else { "* * * * * *" };
    println!(
        "\nsustained scheduling, 3 hosts on loopback, process executor running `true`, {seconds} s per rate, jobs `{schedule}`"
    );
    println!(
        "| target runs/s | started runs/s | succeeded | failed | p50 lateness | p99 lateness | max lateness |"
    );
    println!("|---|---|---|---|---|---|---|");
    for rate in rates {
        let cluster = Cluster::start(3, &AgentOptions::default());
        // `rate` jobs firing every second.
        let created = Arc::new(AtomicUsize::new(0));
        let creating = Instant::now();
        std::thread::scope(|scope| {
            for worker in 0..8 {
                let api = cluster.api(cluster.leader());
                let created = Arc::clone(&created);
                scope.spawn(move || {
                    for i in (worker..rate).step_by(8) {
                        if spread {
                            // Job `i` is created (and so fires) `i / rate` of a second
                            // after the first.
                            let at = creating + Duration::from_secs(1) * i as u32 / rate as u32;
                            std::thread::sleep(at.saturating_duration_since(Instant::now()));
                        }
                        let job = process_job_argv(
                            &format!("j{i}"),
                            schedule,
                            &["true"],
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
        // Of the lateness, the part before the leader declared the run.
        let mut declaring = Vec::new();
        let mut why_failed: BTreeMap<String, usize> = BTreeMap::new();
        let (mut succeeded, mut failed) = (0usize, 0usize);
        let mut unread = 0usize;
        for i in 0..rate {
            let runs = api.get(&format!("/v1/jobs/j{i}/runs?limit=1000"));
            if runs.status != 200 {
                unread += 1;
                if unread == 1 {
                    eprintln!("runs of j{i}: {} {}", runs.status, runs.body);
                }
            }
            for run in runs.body.as_array().into_iter().flatten() {
                let scheduled = parse_rfc3339(run["scheduled_at"].as_str().unwrap_or(""));
                if scheduled < from || scheduled >= to {
                    continue;
                }
                match run["state"].as_str() {
                    Some("succeeded") => succeeded += 1,
                    state => {
                        failed += 1;
                        let reason = run["reason"].as_str().unwrap_or("no reason");
                        *why_failed
                            .entry(format!("{} ({reason})", state.unwrap_or("no state")))
                            .or_default() += 1;
                    }
                }
                if let Some(started) = run["started_at"].as_str() {
                    lateness.push(parse_rfc3339(started) - scheduled);
                }
                if let Some(declared) = run["declared_at"].as_str() {
                    declaring.push(parse_rfc3339(declared) - scheduled);
                }
            }
        }
        lateness.sort_by(f64::total_cmp);
        declaring.sort_by(f64::total_cmp);
        // The `p` quantile of sorted seconds, in milliseconds.
        let quantile = |sorted: &[f64], p: f64| {
            sorted
                .get(((sorted.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(f64::NAN)
                * 1000.0
        };
        let pct = |p: f64| quantile(&lateness, p);
        if unread > 0 {
            eprintln!("the runs of {unread} of {rate} jobs could not be read");
        }
        println!(
            "| {rate} | {:.0} | {succeeded} | {failed} | {:.0} ms | {:.0} ms | {:.0} ms |",
            lateness.len() as f64 / (to - from),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
        eprintln!(
            "  at {rate} runs/s, scheduled to declared: p50 {:.0} ms, p99 {:.0} ms; not succeeded: {why_failed:?}",
            quantile(&declaring, 0.5),
            quantile(&declaring, 0.99),
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
                        _ => format!("{} {} {} 6 *", i % 60, i % 24, 1 + i % 28),
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

/// One HTTP request to the Docker engine's API on its Unix socket (a connection of its
/// own, as bollard makes): the status code of the answer.
fn engine_request(method: &str, path: &str, body: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let mut socket = std::os::unix::net::UnixStream::connect("/var/run/docker.sock")
        .expect("the engine's socket");
    write!(
        socket,
        "{method} /v1.41{path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("a request");
    let mut answer = String::new();
    socket.read_to_string(&mut answer).expect("an answer");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Runs `docker <args>` and answers how long it took; panics if it failed.
fn timed_docker(args: &[&str]) -> f64 {
    let started = Instant::now();
    let out = std::process::Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the docker command runs");
    let took = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// The time from rota's decision to start a run to its container running, against the
/// engine alone driven from the shell, measured side by side (alternating) in one run:
///
/// - the engine's API alone: `POST /containers/create` then `POST /containers/{id}/start`
///   over the engine's socket from this process, until the start is answered (the
///   least any client can do);
/// - `docker run -d`: the docker CLI from its spawn until it returns, which it does once
///   the engine has created and started the container (no pull: the image is local);
/// - rota, to running: the Docker executor's `start(spec)` (the core's `StartRun`
///   effect) until its `Started` event: its run directory is prepared, the container
///   created (with rota's labels and limits) and started;
/// - `docker run --rm`: the CLI until the container has run `true`, exited and been
///   removed;
/// - rota, to ended: `start(spec)` until the `Exited` event: the container has run
///   `true` and exited, its output is copied and its end recorded (its removal
///   follows).
///
/// Every container runs `true` from the same local image with the same network (`none`)
/// and PID limit (256).
fn docker_start() {
    use rota_core::host::HostId;
    use rota_core::job::{Concurrency, DockerSpec, ExecutorSpec, JobName, PullPolicy};
    use rota_core::node::ExecutorEvent;
    use rota_core::run::{RunId, RunSpec};
    use rota_core::time::Timestamp;
    use runtime::executor::Executor;
    use runtime::executor::docker::{DockerExecutor, DockerExecutorConfig, Engine, EngineConfig};

    if !rota_tests::docker_or_skip("bench docker") {
        return;
    }
    let image = rota_tests::docker_test_image();
    let tries: usize = env_or("ROTA_BENCH_TRIES", 20);
    let cluster = rota_tests::unique_cluster_name("bench");
    let _cleanup = rota_tests::DockerCleanup(cluster.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let tokio = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (executor, mut events) = tokio.block_on(async {
        let engine = Engine::connect(EngineConfig {
            socket: "/var/run/docker.sock".into(),
            request_timeout_ms: 30_000,
            pull_timeout_ms: 60_000,
            stop_grace_ms: 1000,
        })
        .await
        .expect("the engine answers");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let config = DockerExecutorConfig::new(dir.path().to_path_buf(), cluster.clone());
        let executor = DockerExecutor::new(config, engine, HostId(1), tx).expect("the executor");
        (executor, rx)
    });
    let label = format!("rota.cluster={cluster}");
    let (mut cli_running, mut cli_ended, mut rota_running, mut rota_ended) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut api_running = Vec::new();
    // One untimed round of each first: caches warm, the executor's first connection.
    for t in 0..=tries {
        let name = format!("rota-bench-{cluster}-{t}");
        let detached = timed_docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            &label,
            "--network",
            "none",
            "--pids-limit",
            "256",
            image,
            "true",
        ]);
        timed_docker(&["rm", "-f", &name]);
        let body = format!(
            r#"{{"Image": "{image}", "Cmd": ["true"], "Labels": {{"rota.cluster": "{cluster}"}}, "HostConfig": {{"NetworkMode": "none", "PidsLimit": 256}}}}"#
        );
        let started = Instant::now();
        assert_eq!(
            engine_request("POST", &format!("/containers/create?name={name}"), &body),
            201
        );
        assert_eq!(
            engine_request("POST", &format!("/containers/{name}/start"), ""),
            204
        );
        let direct = started.elapsed().as_secs_f64();
        timed_docker(&["rm", "-f", &name]);
        let removed = timed_docker(&[
            "run",
            "--rm",
            "--label",
            &label,
            "--network",
            "none",
            "--pids-limit",
            "256",
            image,
            "true",
        ]);
        let spec = RunSpec {
            id: RunId(t as u64 + 1),
            job: JobName::new("bench").expect("a name"),
            scheduled_at: Timestamp::from_secs(1_700_000_000),
            attempt: 1,
            executor: Arc::new(ExecutorSpec::Docker(DockerSpec {
                image: image.to_owned(),
                command: vec!["true".into()],
                env: Default::default(),
                cpus: None,
                memory_mb: None,
                pids_max: None,
                network: None,
                pull: PullPolicy::IfMissing,
            })),
            timeout_ms: None,
            concurrency: Concurrency::Allow,
            start_by: Timestamp::from_secs(4_000_000_000),
        };
        let (to_running, to_ended) = tokio.block_on(async {
            let started = Instant::now();
            executor.start(spec);
            let mut running = None;
            loop {
                let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
                    .await
                    .expect("an event within 60 s")
                    .expect("the executor lives");
                match event {
                    ExecutorEvent::Started { .. } => {
                        running = Some(started.elapsed().as_secs_f64());
                    }
                    ExecutorEvent::Exited { .. } => {
                        break (
                            running.expect("started before it ended"),
                            started.elapsed().as_secs_f64(),
                        );
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        });
        // Its removal follows its end: wait for it, so that it does not overlap the next
        // measurement.
        let container = runtime::executor::docker::container_name(&cluster, RunId(t as u64 + 1));
        wait_until(Duration::from_secs(30), "the container's removal", || {
            rota_tests::docker(&["inspect", &container])
                .is_err()
                .then_some(())
        });
        eprintln!(
            "try {t}: API {direct:.3} s, docker run -d {detached:.3} s, rota to running {to_running:.3} s; docker run --rm {removed:.3} s, rota to ended {to_ended:.3} s"
        );
        if t == 0 {
            continue;
        }
        api_running.push(direct);
        cli_running.push(detached);
        cli_ended.push(removed);
        rota_running.push(to_running);
        rota_ended.push(to_ended);
    }
    let cli_alone = {
        let mut v: Vec<f64> = (0..tries).map(|_| timed_docker(&["--version"])).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(&mut cli_running), median(&mut rota_running));
    let (c, d) = (median(&mut cli_ended), median(&mut rota_ended));
    let e = median(&mut api_running);
    println!(
        "\ncontainer start, rota's Docker executor against the docker CLI, {tries} alternating tries (local image, `true`)"
    );
    println!(
        "| measure | engine API alone | docker CLI | rota | rota against the CLI | rota against the API |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| to running: create + start / `docker run -d` / `start` to `Started` | {:.1} ms | {:.1} ms | {:.1} ms | {:+.1} % | {:+.1} % |",
        e * 1000.0,
        a * 1000.0,
        b * 1000.0,
        (b - a) / a * 100.0,
        (b - e) / e * 100.0
    );
    println!(
        "| to ended: `docker run --rm` / `start` to `Exited` | | {:.1} ms | {:.1} ms | {:+.1} % | |",
        c * 1000.0,
        d * 1000.0,
        (d - c) / c * 100.0
    );
    println!(
        "| the CLI's own start-up (`docker --version`) | | {:.1} ms | | | |",
        cli_alone * 1000.0
    );
}
