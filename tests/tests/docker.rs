//! The Docker executor against the real engine of this machine: through one-host
//! clusters of real `rota agent` processes, and directly where that is simpler (a run
//! started twice). The image is built here from local files ([`docker_test_image`]),
//! since no registry can be assumed.
//!
//! Where no engine answers, each test says so (`SKIPPED: no Docker engine`) and passes,
//! unless `ROTA_REQUIRE_DOCKER=1`. Every test runs its own cluster name and removes its
//! containers at its end, passing or failing.

use std::io::Read as _;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rota_core::host::HostId;
use rota_core::job::{Concurrency, DockerSpec, ExecutorSpec, JobName, PullPolicy};
use rota_core::node::ExecutorEvent;
use rota_core::run::{RunId, RunSpec};
use rota_core::time::Timestamp;
use rota_tests::{
    AgentOptions, Api, Cluster, DockerCleanup, docker, docker_containers, docker_job,
    docker_or_skip, docker_test_image, process_job, unique_cluster_name, wait_until,
};
use runtime::executor::Executor;
use runtime::executor::docker::{
    DockerExecutor, DockerExecutorConfig, Engine, EngineConfig, container_name,
};
use serde_json::Value;

/// A one-host cluster named `cluster`, with a short stop grace period.
fn one_host(cluster: &str, extra_toml: &str) -> Cluster {
    Cluster::start(
        1,
        &AgentOptions {
            config_toml: format!(
                "cluster_name = \"{cluster}\"\n{extra_toml}\n[limits]\nstop_grace_ms = 1000\n"
            ),
            voters: 1,
            ..AgentOptions::default()
        },
    )
}

/// Creates `job` (JSON) through `api`.
fn create(api: &Api, job: &str) {
    let created = api.follow("POST", "/v1/jobs", Some(job)).unwrap();
    assert_eq!(created.status, 201, "{}", created.text);
}

/// Starts a run of `job` by hand; its id.
fn start_run(api: &Api, job: &str) -> u64 {
    let started = api
        .follow("POST", &format!("/v1/jobs/{job}/run"), None)
        .unwrap();
    assert_eq!(started.status, 202, "{}", started.text);
    started.body["id"].as_u64().expect("a run id")
}

/// Waits until run `id` has ended; its view.
fn ended(api: &Api, id: u64, timeout: Duration) -> Value {
    wait_until(timeout, &format!("run {id} to end"), || {
        // A restarted agent may not answer yet.
        let run = api
            .follow("GET", &format!("/v1/runs/{id}"), None)
            .ok()?
            .body;
        let state = run["state"].as_str().unwrap_or("");
        (!["declared", "running", ""].contains(&state)).then_some(run)
    })
}

/// Waits until run `id` is running.
fn running(api: &Api, id: u64) {
    wait_until(Duration::from_secs(30), &format!("run {id} to run"), || {
        (api.get(&format!("/v1/runs/{id}")).body["state"] == "running").then_some(())
    });
}

/// The engine's view of the container of run `id` of `cluster`.
fn inspect(cluster: &str, id: u64) -> Value {
    let text = docker(&["inspect", &container_name(cluster, RunId(id))]).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()[0].clone()
}

/// Waits until the container of run `id` is gone (removed once finished).
fn removed(cluster: &str, id: u64) {
    wait_until(
        Duration::from_secs(20),
        "the finished container to be removed",
        || {
            docker_containers(&format!("rota.run={id}"))
                .into_iter()
                .all(|c| {
                    docker(&[
                        "inspect",
                        "-f",
                        "{{index .Config.Labels \"rota.cluster\"}}",
                        &c,
                    ])
                    .map_or(true, |owner| owner != cluster)
                })
                .then_some(())
        },
    );
}

#[test]
fn a_docker_job_runs_prints_and_its_exit_code_is_the_runs() {
    if !docker_or_skip("a_docker_job_runs_prints_and_its_exit_code_is_the_runs") {
        return;
    }
    let image = docker_test_image();
    let name = unique_cluster_name("runs");
    let _cleanup = DockerCleanup(name.clone());
    let cluster = one_host(&name, "");
    let api = cluster.api(0);

    create(
        &api,
        &docker_job(
            "hello",
            image,
            "echo hello from $ROTA_JOB run $ROTA_RUN_ID attempt $ROTA_ATTEMPT; echo to stderr >&2; echo $GREETING",
            r#", "env": {"GREETING": "hi there"}"#,
            "",
        ),
    );
    let id = start_run(&api, "hello");
    let run = ended(&api, id, Duration::from_secs(60));
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["exit_code"], 0, "{run}");
    assert!(run["started_at"].is_string(), "{run}");
    let output = api.get(&format!("/v1/runs/{id}/output"));
    assert_eq!(output.status, 200);
    // The engine keeps stdout and stderr apart: their lines keep their order within
    // each stream, not across.
    let mut lines: Vec<&str> = output.text.lines().collect();
    assert!(output.text.ends_with('\n'), "{:?}", output.text);
    lines.retain(|l| *l != "to stderr");
    assert_eq!(
        lines,
        [
            format!("hello from hello run {id} attempt 1").as_str(),
            "hi there"
        ],
        "{:?}",
        output.text
    );
    assert!(output.text.contains("to stderr\n"), "{:?}", output.text);
    // Removed once finished; its output stays.
    removed(&name, id);
    assert_eq!(api.get(&format!("/v1/runs/{id}/output")).text, output.text);

    create(
        &api,
        &docker_job("three", image, "echo failing; exit 3", "", ""),
    );
    let id = start_run(&api, "three");
    let run = ended(&api, id, Duration::from_secs(60));
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["exit_code"], 3, "{run}");
    assert_eq!(api.get(&format!("/v1/runs/{id}/output")).text, "failing\n");
    removed(&name, id);
}

#[test]
fn a_running_container_has_its_limits_and_is_stopped_at_its_timeout() {
    if !docker_or_skip("a_running_container_has_its_limits_and_is_stopped_at_its_timeout") {
        return;
    }
    let image = docker_test_image();
    let name = unique_cluster_name("limits");
    let _cleanup = DockerCleanup(name.clone());
    let cluster = one_host(&name, "");
    let api = cluster.api(0);
    create(
        &api,
        &docker_job(
            "limited",
            image,
            "echo started; sleep 60",
            r#", "cpus": 0.5, "memory_mb": 64, "pids_max": 50"#,
            r#", "timeout_s": 4"#,
        ),
    );
    let id = start_run(&api, "limited");
    running(&api, id);
    let container = inspect(&name, id);
    let host = &container["HostConfig"];
    assert_eq!(host["NanoCpus"], 500_000_000, "{host}");
    assert_eq!(host["Memory"], 64 * 1024 * 1024, "{host}");
    assert_eq!(host["MemorySwap"], 64 * 1024 * 1024, "{host}");
    assert_eq!(host["PidsLimit"], 50, "{host}");
    assert_eq!(host["NetworkMode"], "none", "{host}");
    let labels = &container["Config"]["Labels"];
    assert_eq!(labels["rota.cluster"], name.as_str(), "{labels}");
    assert_eq!(labels["rota.job"], "limited", "{labels}");
    assert_eq!(labels["rota.run"], id.to_string(), "{labels}");
    assert_eq!(labels["rota.attempt"], "1", "{labels}");
    assert!(labels["rota.host"].is_string(), "{labels}");
    assert!(labels["rota.scheduled_at"].is_string(), "{labels}");
    let spec: Value = serde_json::from_str(labels["rota.spec"].as_str().unwrap()).unwrap();
    assert_eq!(spec["id"], id, "{spec}");
    let env = container["Config"]["Env"].to_string();
    assert!(env.contains(&format!("ROTA_RUN_ID={id}")), "{env}");

    // The timeout stops it (its shell ignores SIGTERM: killed after the grace period).
    let started = Instant::now();
    let run = ended(&api, id, Duration::from_secs(30));
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["reason"], "timeout", "{run}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped only after {:?}",
        started.elapsed()
    );
    assert_eq!(api.get(&format!("/v1/runs/{id}/output")).text, "started\n");
    removed(&name, id);
}

#[test]
fn a_container_over_its_memory_limit_is_recorded_oom_killed() {
    if !docker_or_skip("a_container_over_its_memory_limit_is_recorded_oom_killed") {
        return;
    }
    let image = docker_test_image();
    let name = unique_cluster_name("oom");
    let _cleanup = DockerCleanup(name.clone());
    let cluster = one_host(&name, "");
    let api = cluster.api(0);
    // A string that doubles until it no longer fits in 16 MiB.
    create(
        &api,
        &docker_job(
            "hungry",
            image,
            "x=a; while true; do x=\"$x$x\"; done",
            r#", "memory_mb": 16"#,
            "",
        ),
    );
    let id = start_run(&api, "hungry");
    let run = ended(&api, id, Duration::from_secs(60));
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["reason"], "oom-killed", "{run}");
    assert!(
        run["detail"].as_str().unwrap_or("").contains("16 MiB"),
        "{run}"
    );
    removed(&name, id);
}

#[test]
fn a_missing_image_fails_fast_naming_the_image() {
    if !docker_or_skip("a_missing_image_fails_fast_naming_the_image") {
        return;
    }
    let name = unique_cluster_name("missing");
    let _cleanup = DockerCleanup(name.clone());
    let cluster = one_host(&name, "");
    let api = cluster.api(0);
    let image = "rota-test-missing-image:404";
    for (job, pull) in [("never", "never"), ("if-missing", "if-missing")] {
        create(
            &api,
            &docker_job(job, image, "true", &format!(r#", "pull": "{pull}""#), ""),
        );
        let asked = Instant::now();
        let id = start_run(&api, job);
        let run = ended(&api, id, Duration::from_secs(60));
        let took = asked.elapsed();
        assert_eq!(run["state"], "failed", "{run}");
        assert_eq!(run["reason"], "image-unavailable", "{run}");
        assert!(
            run["detail"].as_str().unwrap_or("").contains(image),
            "the detail names the image: {run}"
        );
        assert!(took < Duration::from_secs(15), "{pull}: took {took:?}");
        eprintln!(
            "pull {pull}: image-unavailable after {took:?}: {}",
            run["detail"]
        );
        removed(&name, id);
    }
}

/// Opens `url` and reads its body on a thread, chunk by chunk as it arrives; `None`
/// marks its end.
fn open_stream(url: &str) -> mpsc::Receiver<Option<(Instant, String)>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent.get(url).call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut reader = response.into_body().into_reader();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if tx.send(Some((Instant::now(), chunk))).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(None);
    });
    rx
}

#[test]
fn live_output_streams_from_a_running_container() {
    if !docker_or_skip("live_output_streams_from_a_running_container") {
        return;
    }
    let image = docker_test_image();
    let name = unique_cluster_name("follow");
    let _cleanup = DockerCleanup(name.clone());
    let cluster = one_host(&name, "");
    let api = cluster.api(0);
    create(
        &api,
        &docker_job("talk", image, "echo one; sleep 3; echo two >&2", "", ""),
    );
    let id = start_run(&api, "talk");
    let chunks = open_stream(&format!("{}/v1/runs/{id}/output?follow=true", api.base));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut text = String::new();
    let mut one_at = None;
    let ended_at = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match chunks
            .recv_timeout(left)
            .expect("the stream delivers or ends in time")
        {
            Some((at, chunk)) => {
                text.push_str(&chunk);
                if one_at.is_none() && text.contains("one") {
                    one_at = Some(at);
                    assert!(!text.contains("two"), "{text:?}");
                    let state = api.get(&format!("/v1/runs/{id}")).body["state"].clone();
                    assert!(
                        state == "running" || state == "declared",
                        "the run still runs while its first line is delivered: {state}"
                    );
                }
            }
            None => break Instant::now(),
        }
    };
    let one_at = one_at.expect("`one` was delivered");
    assert_eq!(text, "one\ntwo\n");
    assert!(
        ended_at.duration_since(one_at) >= Duration::from_secs(2),
        "`one` came only {:?} before the end",
        ended_at.duration_since(one_at)
    );
    let run = ended(&api, id, Duration::from_secs(30));
    assert_eq!(run["state"], "succeeded", "{run}");
    removed(&name, id);
    assert_eq!(api.get(&format!("/v1/runs/{id}/output")).text, "one\ntwo\n");
}

#[test]
fn a_killed_daemon_recovers_its_containers_outcomes() {
    if !docker_or_skip("a_killed_daemon_recovers_its_containers_outcomes") {
        return;
    }
    let image = docker_test_image();
    let name = unique_cluster_name("restart");
    let _cleanup = DockerCleanup(name.clone());
    let mut cluster = one_host(&name, "");
    let api = cluster.api(0);
    // One ends while the daemon is down; the other still runs when it is back.
    create(
        &api,
        &docker_job("short", image, "echo short; sleep 2; exit 5", "", ""),
    );
    create(
        &api,
        &docker_job(
            "long",
            image,
            "echo long; sleep 12; echo done; exit 4",
            "",
            "",
        ),
    );
    let short = start_run(&api, "short");
    let long = start_run(&api, "long");
    running(&api, short);
    running(&api, long);

    cluster.agents[0].kill();
    // The containers live on without their daemon; the short one ends meanwhile.
    let short_container = container_name(&name, RunId(short));
    wait_until(
        Duration::from_secs(30),
        "the short container to end",
        || {
            (docker(&["inspect", "-f", "{{.State.Status}}", &short_container]).as_deref()
                == Ok("exited"))
            .then_some(())
        },
    );
    let long_container = container_name(&name, RunId(long));
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &long_container]).as_deref(),
        Ok("running")
    );
    cluster.agents[0].restart();
    let api = cluster.api(0);

    let run = ended(&api, short, Duration::from_secs(60));
    assert_eq!(
        (run["state"].as_str(), run["exit_code"].as_i64()),
        (Some("failed"), Some(5)),
        "{run}"
    );
    assert_eq!(api.get(&format!("/v1/runs/{short}/output")).text, "short\n");
    let run = ended(&api, long, Duration::from_secs(60));
    assert_eq!(
        (run["state"].as_str(), run["exit_code"].as_i64()),
        (Some("failed"), Some(4)),
        "{run}"
    );
    assert_eq!(
        api.get(&format!("/v1/runs/{long}/output")).text,
        "long\ndone\n"
    );
    removed(&name, short);
    removed(&name, long);
    assert!(docker_containers(&format!("rota.cluster={name}")).is_empty());
}

#[test]
fn a_host_without_docker_runs_process_jobs_and_is_given_no_docker_jobs() {
    // Needs no engine: the socket named does not exist.
    let name = unique_cluster_name("nodocker");
    let cluster = one_host(&name, "[docker]\nsocket = \"/nonexistent/docker.sock\"\n");
    let api = cluster.api(0);
    create(
        &api,
        &docker_job("boxed", "rota-test-busybox:1", "true", "", ""),
    );
    let id = start_run(&api, "boxed");
    let run = ended(&api, id, Duration::from_secs(30));
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["reason"], "no-capacity", "{run}");
    create(&api, &process_job("plain", "@manually", "echo plain", ""));
    let id = start_run(&api, "plain");
    let run = ended(&api, id, Duration::from_secs(30));
    assert_eq!(run["state"], "succeeded", "{run}");
    let log = std::fs::read_to_string(cluster.agents[0].log_path()).unwrap();
    assert!(
        log.contains("no Docker engine answers") && log.contains("/nonexistent/docker.sock"),
        "the warning at start-up: {log}"
    );
}

#[test]
fn an_engine_that_answers_after_start_up_is_used_and_one_that_stops_is_given_up() {
    if !docker_or_skip(
        "an_engine_that_answers_after_start_up_is_used_and_one_that_stops_is_given_up",
    ) {
        return;
    }
    let image = docker_test_image();
    let name = unique_cluster_name("late");
    let _cleanup = DockerCleanup(name.clone());
    // The configured socket is a link to the real one, made and removed by the test:
    // an engine started after the agent, then stopped.
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("docker.sock");
    let cluster = one_host(
        &name,
        &format!(
            "[docker]\nsocket = \"{}\"\nprobe_interval_ms = 200\n",
            socket.display()
        ),
    );
    let api = cluster.api(0);
    let advertised = |api: &Api| api.get("/v1/members").body[0]["docker"].as_bool();
    let log = || std::fs::read_to_string(cluster.agents[0].log_path()).unwrap();
    let no_capacity = |api: &Api| {
        let id = start_run(api, "boxed");
        let run = ended(api, id, Duration::from_secs(30));
        assert_eq!(run["state"], "failed", "{run}");
        assert_eq!(run["reason"], "no-capacity", "{run}");
    };

    assert_eq!(advertised(&api), Some(false));
    create(&api, &docker_job("boxed", image, "echo boxed", "", ""));
    no_capacity(&api);

    std::os::unix::fs::symlink("/var/run/docker.sock", &socket).unwrap();
    wait_until(
        Duration::from_secs(20),
        "the host to advertise the engine it found",
        || (advertised(&api) == Some(true)).then_some(()),
    );
    assert!(
        log().contains("Docker engine found after start-up"),
        "{}",
        log()
    );
    let id = start_run(&api, "boxed");
    let run = ended(&api, id, Duration::from_secs(60));
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(api.get(&format!("/v1/runs/{id}/output")).text, "boxed\n");

    std::fs::remove_file(&socket).unwrap();
    wait_until(
        Duration::from_secs(20),
        "the host to give up the engine that stopped",
        || (advertised(&api) == Some(false)).then_some(()),
    );
    assert!(
        log().contains("the Docker engine stopped answering"),
        "{}",
        log()
    );
    no_capacity(&api);

    // Back again: the same executor, used again.
    std::os::unix::fs::symlink("/var/run/docker.sock", &socket).unwrap();
    wait_until(
        Duration::from_secs(20),
        "the host to advertise the engine again",
        || (advertised(&api) == Some(true)).then_some(()),
    );
    assert!(
        log().contains("the Docker engine answers again"),
        "{}",
        log()
    );
    let id = start_run(&api, "boxed");
    assert_eq!(
        ended(&api, id, Duration::from_secs(60))["state"],
        "succeeded"
    );
}

/// A docker run's spec, for the executor itself.
fn docker_run(id: u64, image: &str, script: &str) -> RunSpec {
    RunSpec {
        id: RunId(id),
        job: JobName::new("direct").unwrap(),
        scheduled_at: Timestamp::from_secs(1_700_000_000),
        attempt: 1,
        executor: Arc::new(ExecutorSpec::Docker(DockerSpec {
            image: image.to_owned(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: Default::default(),
            cpus: None,
            memory_mb: None,
            pids_max: None,
            network: None,
            pull: PullPolicy::Never,
        })),
        timeout_ms: None,
        concurrency: Concurrency::Allow,
        start_by: Timestamp::from_secs(4_000_000_000),
    }
}

/// A docker executor for `cluster` and host 1, keeping its runs in `runs_dir`.
async fn executor(
    cluster: &str,
    runs_dir: &std::path::Path,
) -> (
    DockerExecutor,
    tokio::sync::mpsc::UnboundedReceiver<ExecutorEvent>,
) {
    let engine = Engine::connect(EngineConfig {
        socket: "/var/run/docker.sock".into(),
        request_timeout_ms: 30_000,
        pull_timeout_ms: 60_000,
        stop_grace_ms: 1000,
    })
    .await
    .expect("the engine answers");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let config = DockerExecutorConfig::new(runs_dir.to_path_buf(), cluster);
    let executor = DockerExecutor::new(config, engine, HostId(1), tx).unwrap();
    (executor, rx)
}

/// The next event, within 60 s.
async fn next(events: &mut tokio::sync::mpsc::UnboundedReceiver<ExecutorEvent>) -> ExecutorEvent {
    tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .expect("an event within 60 s")
        .expect("the executor lives")
}

#[test]
fn the_same_run_started_twice_starts_one_container() {
    if !docker_or_skip("the_same_run_started_twice_starts_one_container") {
        return;
    }
    let image = docker_test_image();
    let name = unique_cluster_name("twice");
    let _cleanup = DockerCleanup(name.clone());
    let dir = tempfile::tempdir().unwrap();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let (first, mut events) = executor(&name, &dir.path().join("a")).await;
        let spec = docker_run(7, image, "echo once; sleep 3");
        // Twice at once, as a repeated dispatch would.
        first.start(spec.clone());
        first.start(spec.clone());
        let ExecutorEvent::Started { run, at } = next(&mut events).await else {
            panic!("started first");
        };
        assert_eq!(run, RunId(7));
        first.start(spec.clone());
        assert_eq!(next(&mut events).await, ExecutorEvent::Started { run, at });

        // A daemon that knows nothing of the run (another run directory: its memory is
        // lost) is refused a second container by the engine, and reports the first.
        let (second, mut second_events) = executor(&name, &dir.path().join("b")).await;
        second.start(spec.clone());
        let ExecutorEvent::Started { run: again, .. } = next(&mut second_events).await else {
            panic!("the second executor reports the first container's start");
        };
        assert_eq!(again, RunId(7));
        let containers = docker_containers(&format!("rota.cluster={name}"));
        assert_eq!(containers.len(), 1, "{containers:?}");
        drop(second);

        // Its end; then it is removed.
        let ExecutorEvent::Exited { exit_code, .. } = next(&mut events).await else {
            panic!("exited");
        };
        assert_eq!(exit_code, Some(0));
        let out = std::fs::read_to_string(dir.path().join("a/7/output")).unwrap();
        assert_eq!(out, "once\n");
        // Started again after its end: it reports the end, and starts nothing.
        first.start(spec.clone());
        assert!(matches!(
            next(&mut events).await,
            ExecutorEvent::Exited { .. }
        ));
    });
    wait_until(
        Duration::from_secs(20),
        "the container to be removed",
        || {
            docker_containers(&format!("rota.cluster={name}"))
                .is_empty()
                .then_some(())
        },
    );
}

#[test]
fn an_executor_restarted_adopts_its_running_container() {
    if !docker_or_skip("an_executor_restarted_adopts_its_running_container") {
        return;
    }
    let image = docker_test_image();
    let name = unique_cluster_name("adopt");
    let _cleanup = DockerCleanup(name.clone());
    let dir = tempfile::tempdir().unwrap();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let (first, mut events) = executor(&name, dir.path()).await;
        let spec = docker_run(11, image, "echo before; sleep 4; echo after; exit 2");
        first.start(spec.clone());
        let ExecutorEvent::Started { at, .. } = next(&mut events).await else {
            panic!("started");
        };
        let out = dir.path().join("11/output");
        wait_until(Duration::from_secs(10), "the first line", || {
            (std::fs::read_to_string(&out).unwrap_or_default() == "before\n").then_some(())
        });
        // The daemon dies: its watch with it, not the container.
        drop(first);
        drop(events);
        let (second, mut events) = executor(&name, dir.path()).await;
        let recovered = second.recover().await;
        assert_eq!(recovered.len(), 1, "{recovered:?}");
        let ExecutorEvent::Adopted {
            spec: adopted,
            started_at,
        } = &recovered[0]
        else {
            panic!("adopted: {recovered:?}");
        };
        assert_eq!(adopted, &spec);
        // The engine's start time, to the millisecond (the first report used the
        // daemon's clock just after the engine's start).
        assert!(
            started_at.as_millis() <= at.as_millis(),
            "{started_at} {at}"
        );
        let ExecutorEvent::Exited {
            exit_code,
            started_at: Some(_),
            ..
        } = next(&mut events).await
        else {
            panic!("exited");
        };
        assert_eq!(exit_code, Some(2));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "before\nafter\n");
    });
}
