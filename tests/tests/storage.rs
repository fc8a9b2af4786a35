//! The Raft log on disk: a torn tail is recovered, a corrupt record refuses to start.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use rota_tests::{Agent, AgentOptions, process_job, wait_until};

fn segment(agent: &Agent) -> PathBuf {
    let dir = agent.data_dir.join("raft").join("log");
    fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max()
        .expect("a log segment")
}

/// A one-host cluster holding `jobs` jobs, stopped gracefully.
fn stopped_agent(root: &std::path::Path, jobs: usize) -> Agent {
    let mut agent = Agent::start(root, &[], &AgentOptions::default());
    wait_until(Duration::from_secs(30), "the agent to lead", || {
        agent
            .status()
            .filter(|s| s["leader_ready"] == true)
            .map(|_| ())
    });
    for i in 0..jobs {
        let job = process_job(&format!("job-{i}"), "@hourly", "true", "");
        assert_eq!(
            agent
                .api()
                .follow("POST", "/v1/jobs", Some(&job))
                .unwrap()
                .status,
            201
        );
    }
    agent.terminate(Duration::from_secs(10));
    agent
}

fn job_names(agent: &Agent) -> Vec<String> {
    let jobs = agent.api().get("/v1/jobs");
    jobs.body
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_log_with_a_torn_tail_recovers_with_its_complete_records() {
    let root = tempfile::tempdir().unwrap();
    let mut agent = stopped_agent(root.path(), 3);
    // A last write cut short, as a crash in the middle of an append leaves it.
    let path = segment(&agent);
    let bytes = fs::read(&path).unwrap();
    let extra = b"\xa7\x00\x10\x00\x00partial";
    fs::write(&path, [bytes.as_slice(), extra].concat()).unwrap();
    agent.restart();
    let names = wait_until(
        Duration::from_secs(30),
        "the agent to serve its jobs",
        || {
            agent.status().filter(|s| s["is_leader"] == true)?;
            let names = job_names(&agent);
            (names.len() == 3).then_some(names)
        },
    );
    assert_eq!(names, ["job-0", "job-1", "job-2"]);
    let log = fs::read_to_string(agent.log_path()).unwrap();
    assert!(
        log.contains("torn"),
        "a warning names the truncation:\n{log}"
    );
    // Writing continues after the truncated tail.
    let job = process_job("after", "@hourly", "true", "");
    assert_eq!(
        agent
            .api()
            .follow("POST", "/v1/jobs", Some(&job))
            .unwrap()
            .status,
        201
    );
}

#[test]
fn a_log_with_a_flipped_byte_refuses_to_start_and_says_where() {
    let root = tempfile::tempdir().unwrap();
    let agent = stopped_agent(root.path(), 3);
    let path = segment(&agent);
    let mut bytes = fs::read(&path).unwrap();
    // Inside the first record's payload, far from the tail.
    bytes[20] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let (code, output) = agent.run_foreground(Duration::from_secs(20));
    assert_ne!(code, Some(0), "it must not start: {output}");
    assert!(code.is_some(), "it must exit, not hang: {output}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        output.contains(name) && output.contains("corrupt"),
        "the error names the file:\n{output}"
    );
    assert!(
        output.contains("byte"),
        "the error names the offset:\n{output}"
    );
}
