//! The HTTP API end to end, against real three-host clusters: every endpoint and its
//! shapes, the leader redirect, run output followed live, every refused request (and
//! that it changes nothing), `503` while there is no leader and `429` at the request
//! limit.

use std::io::Read as _;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rota_tests::{Agent, AgentOptions, Api, Cluster, FAST_TIMING, process_job, wait_until};
use serde_json::Value;

/// A job that fires only when started by hand.
fn manual_job(name: &str, script: &str) -> String {
    process_job(name, "@manually", script, "")
}

/// The index of the agent whose host id is `id`.
fn agent_with_id(cluster: &Cluster, id: u64) -> usize {
    wait_until(Duration::from_secs(10), "the agent with that id", || {
        cluster
            .agents
            .iter()
            .position(|a| a.status().is_some_and(|s| s["id"].as_u64() == Some(id)))
    })
}

/// Starts a run of `job` by hand and answers its id and the index of the agent it was
/// placed on.
fn start_run(cluster: &Cluster, job: &str) -> (u64, usize) {
    let started = cluster
        .api(0)
        .follow("POST", &format!("/v1/jobs/{job}/run"), None)
        .unwrap();
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.body["id"].as_u64().expect("a run id");
    let host = wait_until(Duration::from_secs(10), "the run to be placed", || {
        cluster.api(0).get(&format!("/v1/runs/{id}")).body["host"].as_u64()
    });
    (id, agent_with_id(cluster, host))
}

/// What a streamed body delivered: each chunk with when it came, then `None` at its end.
type Chunks = mpsc::Receiver<Option<(Instant, String)>>;

/// Opens `url` and reads its body on a thread, chunk by chunk, as it arrives.
fn open_stream(url: &str) -> (u16, Chunks) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let response = agent.get(url).call().unwrap();
    let status = response.status().as_u16();
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
    (status, rx)
}

/// The job list, as the leader has it.
fn job_list(api: &Api) -> String {
    let answer = api.follow("GET", "/v1/jobs", None).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.text
}

#[test]
fn every_endpoint_answers_with_its_shape_and_writes_go_to_the_leader() {
    let cluster = Cluster::start(3, &AgentOptions::default());
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let statuses: Vec<Value> = cluster.agents.iter().map(|a| a.status().unwrap()).collect();
    let leader_id = statuses[leader]["id"].as_u64().unwrap();
    let leader_api = cluster.agents[leader].api_addr.to_string();

    // Status: this host, and the leader as it knows it.
    for (agent, status) in cluster.agents.iter().zip(&statuses) {
        assert!(status["id"].is_u64(), "{status}");
        assert_eq!(status["api_addr"], agent.api_addr.to_string(), "{status}");
        assert_eq!(
            status["cluster_addr"],
            agent.cluster_addr.to_string(),
            "{status}"
        );
        assert!(status["role"].is_string(), "{status}");
        assert_eq!(status["is_leader"], status["id"] == leader_id, "{status}");
        // The cluster was started once its leader had taken over.
        assert_eq!(
            status["leader_ready"],
            status["id"] == leader_id,
            "{status}"
        );
        assert_eq!(status["leader_id"], leader_id, "{status}");
        assert_eq!(status["leader_api"], leader_api.as_str(), "{status}");
        assert!(status["term"].as_u64().unwrap() >= 1, "{status}");
        assert_eq!(status["cluster_size"], 3, "{status}");
    }

    // A write sent to a follower is redirected to the same path and query on the
    // leader; a client that follows it gets the job created.
    let job = process_job(
        "nightly",
        "30 4 * * *",
        "echo nightly",
        r#", "timezone": "Europe/Berlin""#,
    );
    let raw = cluster
        .api(follower)
        .request("POST", "/v1/jobs?source=test", Some(&job))
        .unwrap();
    assert_eq!(raw.status, 302, "{}", raw.text);
    assert_eq!(
        raw.location.as_deref(),
        Some(format!("http://{leader_api}/v1/jobs?source=test").as_str())
    );
    let created = cluster
        .api(follower)
        .follow("POST", "/v1/jobs?source=test", Some(&job))
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["name"], "nightly");
    assert_eq!(created.body["timezone"], "Europe/Berlin");
    assert_eq!(created.body["paused"], false);
    // Consistent reads go to the leader too; stale ones are answered where they land.
    let raw = cluster
        .api(follower)
        .request("GET", "/v1/jobs/nightly", None)
        .unwrap();
    assert_eq!(raw.status, 302, "{}", raw.text);
    wait_until(
        Duration::from_secs(5),
        "the follower's replica to hold the job",
        || {
            let stale = cluster
                .api(follower)
                .request("GET", "/v1/jobs/nightly?stale=true", None)
                .unwrap();
            (stale.status == 200).then_some(())
        },
    );
    let stale = cluster
        .api(follower)
        .request("GET", "/v1/jobs?stale=true", None)
        .unwrap();
    assert_eq!(stale.status, 200, "{}", stale.text);
    assert_eq!(stale.body[0]["name"], "nightly", "{}", stale.text);

    // Members: every host, alive voters with their free fractions.
    let members = wait_until(
        Duration::from_secs(15),
        "three alive voters with free resources",
        || {
            let answer = cluster.api(follower).get("/v1/members");
            assert_eq!(answer.status, 200, "{}", answer.text);
            let members = answer.body.as_array()?.clone();
            let ready = members.len() == 3
                && members
                    .iter()
                    .all(|m| m["state"] == "alive" && m["role"] == "voter" && m["free"].is_array());
            ready.then_some(members)
        },
    );
    for member in &members {
        assert!(member["id"].is_u64(), "{member}");
        assert!(member["tags"].is_object(), "{member}");
        assert!(
            cluster
                .agents
                .iter()
                .any(|a| member["api_addr"] == a.api_addr.to_string()
                    && member["cluster_addr"] == a.cluster_addr.to_string()),
            "{member}"
        );
        let free = member["free"].as_array().unwrap();
        assert_eq!(free.len(), 3, "{member}");
        assert!(
            free.iter()
                .all(|f| f.as_f64().is_some_and(|f| (0.0..=1.0).contains(&f))),
            "{member}"
        );
    }

    // List and get.
    let api = cluster.api(follower);
    let list = api.get("/v1/jobs");
    assert_eq!(list.status, 200);
    assert_eq!(list.body.as_array().unwrap().len(), 1, "{}", list.text);
    let got = api.get("/v1/jobs/nightly");
    assert_eq!(got.status, 200);
    assert_eq!(got.body, created.body);

    // PUT creates, then replaces.
    let first = process_job("weekly", "0 3 * * 1", "echo a", "");
    let put = api.follow("PUT", "/v1/jobs/weekly", Some(&first)).unwrap();
    assert_eq!(put.status, 201, "{}", put.text);
    let second = process_job("weekly", "0 5 * * 2", "echo b", "");
    let put = api.follow("PUT", "/v1/jobs/weekly", Some(&second)).unwrap();
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(api.get("/v1/jobs/weekly").body["schedule"], "0 5 * * 2");
    assert_eq!(api.get("/v1/jobs").body.as_array().unwrap().len(), 2);

    // Pause and resume.
    let paused = api.follow("POST", "/v1/jobs/weekly/pause", None).unwrap();
    assert_eq!(paused.status, 200, "{}", paused.text);
    assert_eq!(paused.body["paused"], true);
    assert_eq!(api.get("/v1/jobs/weekly").body["paused"], true);
    let resumed = api.follow("POST", "/v1/jobs/weekly/resume", None).unwrap();
    assert_eq!(resumed.status, 200, "{}", resumed.text);
    assert_eq!(resumed.body["paused"], false);
    assert_eq!(api.get("/v1/jobs/weekly").body["paused"], false);

    // Next fire times, in UTC and in the job's zone.
    let next = api.get("/v1/jobs/nightly/next?count=3");
    assert_eq!(next.status, 200, "{}", next.text);
    let fires = next.body.as_array().unwrap();
    assert_eq!(fires.len(), 3, "{}", next.text);
    let utc: Vec<&str> = fires.iter().map(|f| f["utc"].as_str().unwrap()).collect();
    assert!(utc.windows(2).all(|w| w[0] < w[1]), "{utc:?}");
    for fire in fires {
        let (utc, local) = (
            fire["utc"].as_str().unwrap(),
            fire["local"].as_str().unwrap(),
        );
        assert!(utc.ends_with('Z'), "{fire}");
        assert!(local.contains("T04:30:00"), "{fire}");
        // Winter: +01:00 and 03:30Z; summer: +02:00 and 02:30Z.
        assert!(
            (local.ends_with("+01:00") && utc.contains("T03:30:00"))
                || (local.ends_with("+02:00") && utc.contains("T02:30:00")),
            "{fire}"
        );
    }

    // A run started by hand: 202 with its id, then in the job's history and on its own.
    let (id, _) = start_run(&cluster, "nightly");
    let run = wait_until(Duration::from_secs(20), "the run to succeed", || {
        let run = api.get(&format!("/v1/runs/{id}"));
        (run.body["state"] == "succeeded").then_some(run.body)
    });
    assert_eq!(run["id"], id, "{run}");
    assert_eq!(run["job"], "nightly", "{run}");
    assert!(run["host"].is_u64(), "{run}");
    for time in ["scheduled_at", "started_at", "finished_at"] {
        let text = run[time]
            .as_str()
            .unwrap_or_else(|| panic!("{time}: {run}"));
        assert!(
            text.len() >= 20 && text.ends_with('Z') && &text[10..11] == "T",
            "{time}: {run}"
        );
    }
    assert!(run["started_at"].as_str() <= run["finished_at"].as_str());
    assert_eq!(run["exit_code"], 0, "{run}");
    assert!(run["reason"].is_null(), "{run}");
    assert!(run["attempt"].is_u64(), "{run}");
    let runs = api.get("/v1/jobs/nightly/runs?limit=5");
    assert_eq!(runs.status, 200, "{}", runs.text);
    assert!(
        runs.body.as_array().unwrap().contains(&run),
        "{}",
        runs.text
    );

    // Delete: 204, then gone.
    let deleted = api.follow("DELETE", "/v1/jobs/weekly", None).unwrap();
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_eq!(api.get("/v1/jobs/weekly").status, 404);
    assert_eq!(api.get("/v1/jobs").body.as_array().unwrap().len(), 1);

    // Output, followed live from the host that runs it.
    let talk = manual_job("talk", "echo one; sleep 3; echo two");
    assert_eq!(
        api.follow("POST", "/v1/jobs", Some(&talk)).unwrap().status,
        201
    );
    let (id, ran_on) = start_run(&cluster, "talk");
    let path = format!("/v1/runs/{id}/output?follow=true");
    let opened = Instant::now();
    let (status, chunks) = open_stream(&format!("{}{path}", cluster.api(ran_on).base));
    assert_eq!(status, 200);
    let mut text = String::new();
    let mut one_at = None;
    let ended_at = loop {
        let chunk = chunks
            .recv_timeout(Duration::from_secs(15))
            .expect("the stream to deliver or end within 15 s");
        match chunk {
            Some((at, chunk)) => {
                text.push_str(&chunk);
                if one_at.is_none() && text.contains("one") {
                    one_at = Some(at);
                    // The run is still going while its first line is delivered.
                    assert!(!text.contains("two"), "{text:?}");
                    let state = api.get(&format!("/v1/runs/{id}?stale=true")).body["state"].clone();
                    assert!(
                        state == "running" || state == "declared",
                        "the run is still going: {state}"
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
        "`one` came {:?} after opening, the end {:?} after it",
        one_at.duration_since(opened),
        ended_at.duration_since(one_at)
    );
    // The run is over when the stream ends.
    let state = api.get(&format!("/v1/runs/{id}")).body["state"].clone();
    assert!(state == "succeeded" || state == "running", "{state}");
    // Any other host sends the client to the one that ran it.
    let other = (ran_on + 1) % 3;
    let raw = cluster.api(other).request("GET", &path, None).unwrap();
    assert_eq!(raw.status, 302, "{}", raw.text);
    assert_eq!(
        raw.location,
        Some(format!("{}{path}", cluster.api(ran_on).base))
    );
    let whole = cluster.api(other).get(&format!("/v1/runs/{id}/output"));
    assert_eq!((whole.status, whole.text.as_str()), (200, "one\ntwo\n"));
}

/// Sends a request that must be refused with `status`, naming `field` when given, and
/// checks that the job list did not change.
#[track_caller]
fn refused(
    api: &Api,
    (method, path, body): (&str, &str, Option<&str>),
    status: u16,
    field: Option<&str>,
    jobs_before: &str,
) -> Value {
    let answer = api.follow(method, path, body).unwrap();
    assert_eq!(answer.status, status, "{method} {path}: {}", answer.text);
    assert!(
        answer.body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{method} {path}: an error message: {}",
        answer.text
    );
    if let Some(field) = field {
        assert_eq!(
            answer.body["field"], field,
            "{method} {path}: {}",
            answer.text
        );
    }
    assert_eq!(
        job_list(api),
        jobs_before,
        "{method} {path} changed the jobs"
    );
    answer.body
}

#[test]
fn bad_requests_are_refused_with_what_to_fix_and_change_nothing() {
    let cluster = Cluster::start(3, &AgentOptions::default());
    let leader = cluster.leader();
    let api = cluster.api((leader + 1) % 3);
    let keep = process_job("keep", "0 * * * *", "echo keep", "");
    assert_eq!(
        api.follow("POST", "/v1/jobs", Some(&keep)).unwrap().status,
        201
    );
    let before = job_list(&api);

    // Malformed JSON: no field, or the path where it broke.
    let body = refused(
        &api,
        ("POST", "/v1/jobs", Some(r#"{"name": "x", "#)),
        400,
        None,
        &before,
    );
    assert!(
        body["field"].is_null() || body["field"].is_string(),
        "{body}"
    );
    refused(
        &api,
        ("POST", "/v1/jobs", Some("[1, 2]")),
        400,
        None,
        &before,
    );
    refused(&api, ("POST", "/v1/jobs", Some("")), 400, None, &before);
    // Unknown fields, at the top and inside the executor.
    let body = refused(
        &api,
        (
            "POST",
            "/v1/jobs",
            Some(&process_job("x", "@daily", "true", r#", "colour": "red""#)),
        ),
        400,
        Some("colour"),
        &before,
    );
    assert!(body["error"].as_str().unwrap().contains("colour"), "{body}");
    refused(
        &api,
        (
            "POST",
            "/v1/jobs",
            Some(
                r#"{"name": "x", "schedule": "@daily", "executor": {"process": {"command": ["true"], "shell": true}}}"#,
            ),
        ),
        400,
        Some("executor.process.shell"),
        &before,
    );
    // Missing required field.
    refused(
        &api,
        (
            "POST",
            "/v1/jobs",
            Some(r#"{"name": "x", "schedule": "@daily"}"#),
        ),
        400,
        None,
        &before,
    );
    // Invalid name, schedule, zone, resources.
    refused(
        &api,
        (
            "POST",
            "/v1/jobs",
            Some(&process_job("Bad Name!", "@daily", "true", "")),
        ),
        400,
        Some("name"),
        &before,
    );
    let body = refused(
        &api,
        (
            "POST",
            "/v1/jobs",
            Some(&process_job("x", "61 * * * *", "true", "")),
        ),
        400,
        Some("schedule"),
        &before,
    );
    assert!(body["error"].as_str().unwrap().contains("minute"), "{body}");
    refused(
        &api,
        (
            "POST",
            "/v1/jobs",
            Some(&process_job(
                "x",
                "@daily",
                "true",
                r#", "timezone": "Mars/Olympus""#,
            )),
        ),
        400,
        Some("timezone"),
        &before,
    );
    let body = refused(
        &api,
        (
            "POST",
            "/v1/jobs",
            Some(&process_job(
                "x",
                "@daily",
                "true",
                r#", "resources": {"cpus": -1}"#,
            )),
        ),
        400,
        Some("resources.cpus"),
        &before,
    );
    assert!(body["error"].as_str().unwrap().contains("cpus"), "{body}");
    refused(
        &api,
        (
            "POST",
            "/v1/jobs",
            Some(
                r#"{"name": "x", "schedule": "@daily", "executor": {"process": {"command": []}}}"#,
            ),
        ),
        400,
        Some("executor.process.command"),
        &before,
    );
    // The body names another job than the path.
    refused(
        &api,
        (
            "PUT",
            "/v1/jobs/keep",
            Some(&process_job("other", "@daily", "true", "")),
        ),
        400,
        Some("name"),
        &before,
    );
    refused(
        &api,
        (
            "PUT",
            "/v1/jobs/Bad",
            Some(&process_job("bad", "@daily", "true", "")),
        ),
        400,
        Some("name"),
        &before,
    );
    // Unknown job.
    for (method, path) in [
        ("GET", "/v1/jobs/nope"),
        ("DELETE", "/v1/jobs/nope"),
        ("POST", "/v1/jobs/nope/pause"),
        ("POST", "/v1/jobs/nope/resume"),
        ("POST", "/v1/jobs/nope/run"),
        ("GET", "/v1/jobs/nope/next"),
        ("GET", "/v1/jobs/nope/runs"),
        ("GET", "/v1/runs/987654321"),
        ("GET", "/v1/runs/987654321/output"),
    ] {
        refused(&api, (method, path, None), 404, None, &before);
    }
    // Creating over an existing name; the job is unchanged.
    let job_before = api.get("/v1/jobs/keep").text;
    refused(
        &api,
        (
            "POST",
            "/v1/jobs",
            Some(&process_job("keep", "@daily", "echo changed", "")),
        ),
        409,
        None,
        &before,
    );
    assert_eq!(api.get("/v1/jobs/keep").text, job_before);
    // A body over the limit.
    let huge = process_job("huge", "@daily", &"x".repeat(2 * 1024 * 1024), "");
    let leader_api = cluster.api(leader);
    refused(
        &leader_api,
        ("POST", "/v1/jobs", Some(&huge)),
        413,
        None,
        &before,
    );
    refused(
        &leader_api,
        ("PUT", "/v1/jobs/huge", Some(&huge)),
        413,
        None,
        &before,
    );
    // Bad query values.
    for (path, field) in [
        ("/v1/jobs/keep/next?count=0", "count"),
        ("/v1/jobs/keep/next?count=abc", "count"),
        ("/v1/jobs/keep/next?count=100000", "count"),
        ("/v1/jobs/keep/runs?limit=-1", "limit"),
        ("/v1/jobs/keep/runs?limit=", "limit"),
        ("/v1/runs/abc", "id"),
    ] {
        refused(&api, ("GET", path, None), 400, Some(field), &before);
    }
    refused(
        &api,
        ("POST", "/v1/runs/abc/stop", None),
        400,
        Some("id"),
        &before,
    );
    refused(
        &api,
        ("POST", "/v1/runs/99999/stop", None),
        404,
        None,
        &before,
    );
    // Unknown endpoints and wrong methods.
    for path in [
        "/v1/nope",
        "/nope",
        "/",
        "/v1/jobs/keep/explode",
        "/v2/jobs",
    ] {
        refused(&api, ("GET", path, None), 404, None, &before);
    }
    for (method, path) in [
        ("PATCH", "/v1/jobs/keep"),
        ("DELETE", "/v1/jobs"),
        ("GET", "/v1/jobs/keep/pause"),
        ("GET", "/v1/jobs/keep/run"),
        ("POST", "/v1/jobs/keep/next"),
        ("POST", "/v1/status"),
        ("DELETE", "/v1/members"),
        ("POST", "/v1/runs/1"),
        ("GET", "/v1/runs/1/stop"),
    ] {
        refused(&api, (method, path, Some("{}")), 405, None, &before);
    }
    // A request to run a job now with a key that is not one: nothing runs.
    for key in ["", "has space", &"k".repeat(129)] {
        let answer = api
            .follow_with_headers(
                "POST",
                "/v1/jobs/keep/run",
                None,
                &[("idempotency-key", key)],
            )
            .unwrap();
        assert_eq!(answer.status, 400, "key {key:?}: {}", answer.text);
        assert_eq!(answer.body["field"], "Idempotency-Key", "{}", answer.text);
    }
    let runs = api.get("/v1/jobs/keep/runs").body;
    let manual = runs.as_array().map(|runs| {
        runs.iter()
            .filter(|run| run["trigger"] != "schedule")
            .count()
    });
    assert_eq!(manual, Some(0), "a refused request made a run: {runs}");
    assert_eq!(api.get("/v1/jobs/keep").text, job_before);
}

/// Kills every agent but `keep`, then checks that writes to it are refused with `503`
/// within a bound, never left hanging.
fn lone_host_refuses_writes(mut cluster: Cluster, keep: usize) {
    let api = cluster.api(keep);
    let job = manual_job("before", "true");
    assert_eq!(
        api.follow("POST", "/v1/jobs", Some(&job)).unwrap().status,
        201
    );
    wait_until(Duration::from_secs(5), "the job on the kept host", || {
        let stale = api
            .request("GET", "/v1/jobs/before?stale=true", None)
            .ok()?;
        (stale.status == 200).then_some(())
    });
    for (i, agent) in cluster.agents.iter_mut().enumerate() {
        if i != keep {
            agent.kill();
        }
    }
    let killed = Instant::now();
    let mut n = 0;
    let refused = wait_until(Duration::from_secs(30), "a 503 from the lone host", || {
        n += 1;
        let sent = Instant::now();
        let job = manual_job(&format!("during-{n}"), "true");
        let answer = api.request("POST", "/v1/jobs", Some(&job));
        let took = sent.elapsed();
        let answer = answer.unwrap_or_else(|e| panic!("no answer after {took:?}: {e}"));
        assert!(
            took < Duration::from_secs(5),
            "the write took {took:?}: {answer:?}"
        );
        assert!(
            [302, 503].contains(&answer.status),
            "{} {}",
            answer.status,
            answer.text
        );
        (answer.status == 503).then_some(answer)
    });
    eprintln!("503 {:?} after the kill", killed.elapsed());
    assert_eq!(refused.retry_after.as_deref(), Some("1"), "{refused:?}");
    assert!(refused.body["error"].is_string(), "{}", refused.text);
    // It keeps answering so, quickly, for writes and consistent reads alike.
    for (method, path, body) in [
        ("POST", "/v1/jobs", Some(job.as_str())),
        ("DELETE", "/v1/jobs/before", None),
        ("POST", "/v1/jobs/before/run", None),
        ("GET", "/v1/jobs", None),
    ] {
        let sent = Instant::now();
        let answer = api.request(method, path, body).unwrap();
        assert!(sent.elapsed() < Duration::from_secs(5), "{method} {path}");
        assert_eq!(answer.status, 503, "{method} {path}: {}", answer.text);
        assert!(answer.retry_after.is_some(), "{method} {path}");
    }
    // Stale reads and its own status are still answered.
    let stale = api.request("GET", "/v1/jobs?stale=true", None).unwrap();
    assert_eq!(stale.status, 200, "{}", stale.text);
    assert_eq!(stale.body[0]["name"], "before", "{}", stale.text);
    assert_eq!(api.request("GET", "/v1/status", None).unwrap().status, 200);
}

fn fast() -> AgentOptions {
    AgentOptions {
        config_toml: FAST_TIMING.to_owned(),
        ..AgentOptions::default()
    }
}

#[test]
fn a_lone_leader_answers_503_not_a_hang() {
    let cluster = Cluster::start(3, &fast());
    let leader = cluster.leader();
    lone_host_refuses_writes(cluster, leader);
}

#[test]
fn a_lone_follower_answers_503_not_a_redirect_to_a_dead_leader() {
    let cluster = Cluster::start(3, &fast());
    let follower = (cluster.leader() + 1) % 3;
    lone_host_refuses_writes(cluster, follower);
}

#[test]
fn requests_over_the_concurrency_limit_get_429_and_the_host_recovers() {
    let options = AgentOptions {
        config_toml: "[limits]\napi_requests_concurrent_max = 2\n".to_owned(),
        ..AgentOptions::default()
    };
    let cluster = Cluster::start(3, &options);
    let job = manual_job("slow", "echo started; sleep 6; echo done");
    assert_eq!(
        cluster
            .api(0)
            .follow("POST", "/v1/jobs", Some(&job))
            .unwrap()
            .status,
        201
    );
    let (id, ran_on) = start_run(&cluster, "slow");
    let host: &Agent = &cluster.agents[ran_on];
    let url = format!("{}/v1/runs/{id}/output?follow=true", host.api().base);
    // Two followers hold both slots while they stream.
    let streams: Vec<Chunks> = (0..2)
        .map(|_| {
            let (status, chunks) = open_stream(&url);
            assert_eq!(status, 200);
            let first = chunks.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(first.is_some_and(|(_, text)| text.starts_with("started")));
            chunks
        })
        .collect();
    for path in ["/v1/status", "/v1/jobs?stale=true", "/v1/members"] {
        let answer = host.api().request("GET", path, None).unwrap();
        assert_eq!(answer.status, 429, "{path}: {}", answer.text);
        assert_eq!(answer.retry_after.as_deref(), Some("1"));
        assert!(answer.body["error"].is_string(), "{}", answer.text);
    }
    // The other hosts have their own limits.
    let other = (ran_on + 1) % 3;
    assert_eq!(cluster.agents[other].status().unwrap()["cluster_size"], 3);
    // Once the streams end with the run, the host serves again.
    for chunks in streams {
        let mut text = String::new();
        while let Some((_, chunk)) = chunks.recv_timeout(Duration::from_secs(15)).unwrap() {
            text.push_str(&chunk);
        }
        assert!(text.ends_with("done\n"), "{text:?}");
    }
    wait_until(Duration::from_secs(5), "the host to serve again", || {
        host.status()
    });
    let run = host.api().get(&format!("/v1/runs/{id}"));
    assert_eq!(run.status, 200, "{}", run.text);
}
