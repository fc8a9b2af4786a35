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
