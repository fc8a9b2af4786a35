//! A cluster of real `rota agent` processes forms, elects a leader and runs jobs.

use std::time::Duration;

use rota_tests::{AgentOptions, Cluster, process_job, wait_until};

#[test]
fn three_agents_form_a_cluster_and_run_a_job_defined_on_any_of_them() {
    let cluster = Cluster::start(3, &AgentOptions::default());
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    // Defined through a follower: the client follows the redirect to the leader.
    let job = process_job("hello", "@every 2s", "echo hello from $ROTA_HOST", "");
    let created = cluster
        .api(follower)
        .follow("POST", "/v1/jobs", Some(&job))
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.text);
    let run = wait_until(
        Duration::from_secs(30),
        "a run of the job to succeed",
        || {
            let runs = cluster.api(follower).get("/v1/jobs/hello/runs");
            runs.body
                .as_array()?
                .iter()
                .find(|r| r["state"] == "succeeded")
                .cloned()
        },
    );
    let id = run["id"].as_u64().unwrap();
    // The run's record is identical on every voter.
    wait_until(
        Duration::from_secs(10),
        "every voter to hold the same record",
        || {
            let records: Vec<String> = (0..3)
                .map(|i| {
                    cluster
                        .api(i)
                        .get(&format!("/v1/runs/{id}?stale=true"))
                        .text
                })
                .collect();
            (records.iter().all(|r| r == &records[0]) && records[0].contains("succeeded"))
                .then_some(())
        },
    );
    // Its output is kept on the host that ran it and reachable from any host.
    let output = cluster.api(follower).get(&format!("/v1/runs/{id}/output"));
    assert_eq!(output.status, 200);
    assert!(output.text.starts_with("hello from "), "{}", output.text);
}

#[test]
fn a_leader_stopped_with_sigterm_hands_over_and_exits_cleanly() {
    let mut cluster = Cluster::start(3, &AgentOptions::default());
    let leader = cluster.leader();
    let old_id = cluster.agents[leader].status().unwrap()["id"]
        .as_u64()
        .unwrap();
    let stopped = std::time::Instant::now();
    let status = cluster.agents[leader]
        .terminate(Duration::from_secs(15))
        .expect("it exits");
    assert!(status.success(), "a graceful stop exits 0: {status:?}");
    let survivor = (leader + 1) % 3;
    let new_leader = wait_until(Duration::from_secs(10), "a new leader", || {
        let s = cluster.agents[survivor].status()?;
        s["leader_id"].as_u64().filter(|id| *id != old_id)
    });
    eprintln!(
        "handover: leader {new_leader} within {:?} of SIGTERM",
        stopped.elapsed()
    );
    let log = std::fs::read_to_string(cluster.agents[leader].log_path()).unwrap();
    assert!(log.contains("handed leadership over"), "{log}");
}

#[test]
fn a_bad_configuration_is_refused_with_the_name_of_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rota.toml");
    std::fs::write(&config, "voters = 4\n").unwrap();
    let output = std::process::Command::new(rota_tests::rota_binary())
        .args(["agent", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`voters`") && stderr.contains("1, 3, 5 or 7"),
        "{stderr}"
    );
    std::fs::write(&config, "[raft]\nheartbeat_ms = 5\n").unwrap();
    let output = std::process::Command::new(rota_tests::rota_binary())
        .args(["agent", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("heartbeat_ms"));
}
