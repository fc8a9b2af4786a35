//! `GET /metrics` end to end, on a real three-host cluster: every host answers for
//! itself in the Prometheus text format, every voter counts the same runs, and a
//! restarted host does not count again what its log held.

use std::time::Duration;

use rota_tests::{AgentOptions, Api, Cluster, process_job, wait_until};

/// The value of the sample named exactly `sample` (with its labels) in `text`.
fn sample(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

/// This host's metrics, not redirected.
fn scrape(api: &Api) -> String {
    let answer = api.request("GET", "/metrics", None).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.text.ends_with("# EOF\n"), "{}", answer.text);
    answer.text
}

/// Starts a run of `job` by hand through `api` (following a redirect).
fn run_now(api: &Api, job: &str) {
    let answer = api
        .follow("POST", &format!("/v1/jobs/{job}/run"), None)
        .unwrap();
    assert!(
        answer.status == 202 || answer.status == 200,
        "{}",
        answer.text
    );
}

/// Waits until every host in `hosts` shows each of `expected` (sample, value).
fn wait_for_counts(cluster: &Cluster, hosts: &[usize], expected: &[(&str, f64)]) {
    wait_until(
        Duration::from_secs(30),
        "the hosts to count the runs",
        || {
            hosts
                .iter()
                .all(|&i| {
                    let text = scrape(&cluster.api(i));
                    expected
                        .iter()
                        .all(|(name, value)| sample(&text, name) == Some(*value))
                })
                .then_some(())
        },
    );
}

const SUCCEEDED: &str = r#"rota_runs_ended_total{state="succeeded",reason=""}"#;
const EXIT_CODE: &str = r#"rota_runs_ended_total{state="failed",reason="exit-code"}"#;
const STARTED: &str = r#"rota_runs_started_total{trigger="manual"}"#;
const DECLARED: &str = r#"rota_runs_declared_total{trigger="manual"}"#;
const NO_CAPACITY: &str = r#"rota_fires_not_run_total{state="failed",reason="no-capacity"}"#;
const LATENESS_COUNT: &str = "rota_run_start_lateness_seconds_count";

#[test]
fn every_host_counts_runs_and_shows_how_it_stands_in_prometheus_text() {
    let mut cluster = Cluster::start(3, &AgentOptions::default());
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let api = cluster.api(follower);
    for job in [
        process_job("ok", "@manually", "echo fine", ""),
        process_job("bad", "@manually", "exit 3", ""),
        process_job(
            "nowhere",
            "@manually",
            "echo never",
            r#", "constraints": {"zone": "nowhere"}"#,
        ),
    ] {
        let answer = api.follow("POST", "/v1/jobs", Some(&job)).unwrap();
        assert_eq!(answer.status, 201, "{}", answer.text);
    }
    for job in ["ok", "bad", "nowhere"] {
        run_now(&api, job);
    }

    // Every voter applies the same entries, so every voter counts the same.
    wait_for_counts(
        &cluster,
        &[0, 1, 2],
        &[
            ("rota_runs_deleted_total", 0.0),
            (DECLARED, 2.0),
            (STARTED, 2.0),
            (SUCCEEDED, 1.0),
            (EXIT_CODE, 1.0),
            (NO_CAPACITY, 1.0),
            (LATENESS_COUNT, 2.0),
            ("rota_jobs", 3.0),
            ("rota_runs_active", 0.0),
            ("rota_raft_voters", 3.0),
            (r#"rota_hosts{state="alive"}"#, 3.0),
            (r#"rota_hosts{state="down"}"#, 0.0),
            ("rota_host_runs", 0.0),
        ],
    );

    // How each host stands: exactly one leader, all in one term.
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let texts: Vec<String> = (0..3).map(|i| scrape(&cluster.api(i))).collect();
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(
            sample(text, r#"rota_role{role="leader"}"#),
            Some(if i == leader { 1.0 } else { 0.0 }),
            "{text}"
        );
        assert_eq!(
            sample(text, r#"rota_role{role="follower"}"#),
            Some(if i == leader { 0.0 } else { 1.0 }),
            "{text}"
        );
        assert_eq!(
            sample(text, "rota_leader_ready"),
            Some(if i == leader { 1.0 } else { 0.0 }),
            "{text}"
        );
        assert_eq!(
            sample(text, "rota_raft_term"),
            sample(&texts[leader], "rota_raft_term"),
            "{text}"
        );
        assert_eq!(sample(text, "rota_rpc_frames_refused_total"), Some(0.0));
        for resource in ["cpu", "memory", "disk"] {
            let free = sample(
                text,
                &format!("rota_host_free_ratio{{resource=\"{resource}\"}}"),
            );
            assert!(free.is_some_and(|f| (0.0..=1.0).contains(&f)), "{text}");
        }
        // Both runs started well within a minute of being asked for.
        assert_eq!(
            sample(text, r#"rota_run_start_lateness_seconds_bucket{le="60.0"}"#),
            Some(2.0),
            "{text}"
        );
    }
    let post = cluster
        .api(follower)
        .request("POST", "/metrics", None)
        .unwrap();
    assert_eq!(post.status, 405, "{}", post.text);

    // A restarted host does not count again the entries its log already held: it
    // starts from zero and counts only what comes after.
    cluster.agents[follower].restart();
    let leader_applied = wait_until(Duration::from_secs(10), "the leader's index", || {
        sample(&scrape(&cluster.api(leader)), "rota_raft_applied_index")
    });
    wait_until(
        Duration::from_secs(30),
        "the restarted host to catch up",
        || {
            let text = cluster
                .api(follower)
                .request("GET", "/metrics", None)
                .ok()?
                .text;
            (sample(&text, "rota_raft_applied_index")? >= leader_applied).then_some(())
        },
    );
    let text = scrape(&cluster.api(follower));
    assert_eq!(sample(&text, SUCCEEDED), None, "{text}");
    assert_eq!(sample(&text, EXIT_CODE), None, "{text}");
    assert_eq!(sample(&text, LATENESS_COUNT), Some(0.0), "{text}");
    run_now(&cluster.api(leader), "ok");
    wait_for_counts(&cluster, &[follower], &[(SUCCEEDED, 1.0), (STARTED, 1.0)]);
    wait_for_counts(&cluster, &[leader], &[(SUCCEEDED, 2.0), (STARTED, 3.0)]);
}
