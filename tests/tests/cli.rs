//! The `rota` command-line client end to end: real `rota` processes run as a person or a
//! script would, against real three-host clusters, always through a follower so that
//! every write and consistent read goes through the redirect to the leader.

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rota_tests::{AgentOptions, Cluster, process_job, rota_binary, wait_until};
use serde_json::Value;

/// The longest any one client command may take before the test calls it hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What one client command did.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// Panics, showing everything, unless the command exited 0.
    fn ok(self) -> Outcome {
        assert_eq!(self.code, Some(0), "{self:#?}");
        self
    }

    /// Standard output as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }

    /// The table row whose first column is `key`, split into columns.
    fn row(&self, key: &str) -> Vec<String> {
        self.stdout
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .find(|cols| cols.first().map(String::as_str) == Some(key))
            .unwrap_or_else(|| panic!("no row `{key}`: {self:#?}"))
    }
}

/// A client command talking to `api` through `ROTA_API`.
fn client(api: &str, args: &[&str]) -> Command {
    let mut command = Command::new(rota_binary());
    command
        .args(args)
        .env("ROTA_API", api)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `rota args…` against `api` and waits for it, at most [`COMMAND_TIMEOUT`].
fn rota(api: &str, args: &[&str]) -> Outcome {
    finish(client(api, args).spawn().expect("rota starts"))
}

/// Waits for a client command, reading its output meanwhile so that a full pipe
/// cannot stall it.
fn finish(mut child: Child) -> Outcome {
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for rota") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rota did not finish within {COMMAND_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// A three-host cluster and the API address of one of its followers.
fn cluster_and_follower() -> (Cluster, String, String) {
    let cluster = Cluster::start(3, &AgentOptions::default());
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let follower_api = format!("http://{}", cluster.agents[follower].api_addr);
    let leader_addr = cluster.agents[leader].api_addr.to_string();
    (cluster, follower_api, leader_addr)
}

fn write(dir: &Path, file: &str, text: &str) -> String {
    let path = dir.join(file);
    std::fs::write(&path, text).expect("job file");
    path.display().to_string()
}

#[test]
fn status_members_and_the_whole_life_of_a_job_through_a_follower() {
    let (cluster, api, leader_addr) = cluster_and_follower();

    // Status: `key  value` lines for people, the API's JSON for scripts.
    let status = rota(&api, &["status"]).ok();
    assert_eq!(status.row("role"), ["role", "follower"]);
    assert_eq!(status.row("is_leader"), ["is_leader", "false"]);
    assert_eq!(
        status.row("leader_api"),
        ["leader_api", leader_addr.as_str()]
    );
    assert_eq!(status.row("cluster_size"), ["cluster_size", "3"]);
    let status = rota(&api, &["status", "--output", "json"]).ok().json();
    assert_eq!(status["leader_api"], leader_addr.as_str(), "{status}");
    assert_eq!(status["voters"], 3, "{status}");

    // Members: one row per host, every one a voter, and the same as JSON.
    let members = rota(&api, &["members"]).ok();
    assert!(members.stdout.starts_with("ID  "), "{members:#?}");
    for agent in &cluster.agents {
        let row = members
            .stdout
            .lines()
            .find(|l| l.contains(&agent.api_addr.to_string()))
            .unwrap_or_else(|| panic!("no row for {}: {members:#?}", agent.api_addr));
        assert!(row.contains("voter"), "{row}");
    }
    let members = rota(&api, &["-o", "json", "members"]).ok().json();
    assert_eq!(members.as_array().map(Vec::len), Some(3), "{members}");

    // Apply a JSON file, then the same file again (a replace), then a TOML file.
    let dir = tempfile::tempdir().unwrap();
    let one = write(
        dir.path(),
        "one.json",
        &process_job("one", "0 3 * * *", "echo one", ""),
    );
    assert_eq!(
        rota(&api, &["job", "apply", "-f", &one]).ok().stdout,
        "created one\n"
    );
    assert_eq!(
        rota(&api, &["job", "apply", "-f", &one]).ok().stdout,
        "updated one\n"
    );
    let two = write(
        dir.path(),
        "two.toml",
        "name = \"two\"\nschedule = \"@manually\"\ntimezone = \"Europe/Paris\"\n\
         [executor.process]\ncommand = [\"sh\", \"-c\", \"echo two\"]\n",
    );
    assert_eq!(
        rota(&api, &["job", "apply", "-f", &two]).ok().stdout,
        "created two\n"
    );

    // A directory: every .json and .toml file in name order; the bad one is reported
    // with its file and field, the others are applied, and the command fails.
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    write(
        &jobs,
        "a.json",
        &process_job("three", "@daily", "echo three", ""),
    );
    let bad = write(
        &jobs,
        "b-bad.json",
        &process_job("bad", "@daily", "true", r#", "timezone": "Mars/Olympus""#),
    );
    write(
        &jobs,
        "c.toml",
        "name = \"four\"\nschedule = \"@every 1h\"\n[executor.process]\ncommand = [\"true\"]\n",
    );
    write(&jobs, "notes.txt", "not a job");
    let applied = rota(&api, &["job", "apply", "-f", &jobs.display().to_string()]);
    assert_eq!(applied.code, Some(1), "{applied:#?}");
    assert_eq!(
        applied.stdout, "created three\ncreated four\n",
        "{applied:#?}"
    );
    assert!(
        applied.stderr.contains(&format!("{bad}: ")) && applied.stderr.contains("(field timezone)"),
        "{applied:#?}"
    );
    assert!(
        applied.stderr.contains("1 of 3 job files were not applied"),
        "{applied:#?}"
    );

    // List, get, next.
    let list = rota(&api, &["job", "ls"]).ok();
    assert!(list.stdout.starts_with("NAME "), "{list:#?}");
    assert_eq!(list.row("two")[1], "@manually");
    assert_eq!(list.stdout.lines().count(), 5, "{list:#?}");
    let names: Vec<Value> = rota(&api, &["job", "ls", "-o", "json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].clone())
        .collect();
    assert_eq!(names, ["four", "one", "three", "two"]);
    let spec = rota(&api, &["job", "get", "two"]).ok().json();
    assert_eq!(spec["timezone"], "Europe/Paris", "{spec}");
    assert_eq!(
        spec["executor"]["process"]["command"][2], "echo two",
        "{spec}"
    );
    let next = rota(&api, &["job", "next", "one", "--count", "3"]).ok();
    let fires: Vec<&str> = next.stdout.lines().skip(1).collect();
    assert_eq!(fires.len(), 3, "{next:#?}");
    assert!(fires.iter().all(|l| l.contains("T03:00:00Z")), "{next:#?}");
    let next = rota(&api, &["-o", "json", "job", "next", "one"])
        .ok()
        .json();
    assert_eq!(next.as_array().map(Vec::len), Some(5), "{next}");

    // Pause and resume.
    assert_eq!(
        rota(&api, &["job", "pause", "one"]).ok().stdout,
        "paused one\n"
    );
    assert!(
        rota(&api, &["job", "ls"])
            .ok()
            .row("one")
            .contains(&"paused".to_owned())
    );
    let resumed = rota(&api, &["job", "resume", "one", "-o", "json"])
        .ok()
        .json();
    assert_eq!(resumed["paused"], false, "{resumed}");
    assert!(
        rota(&api, &["job", "ls"])
            .ok()
            .row("one")
            .contains(&"active".to_owned())
    );

    // Remove; the job is gone and asking for it says so.
    assert_eq!(
        rota(&api, &["job", "rm", "four"]).ok().stdout,
        "deleted four\n"
    );
    let gone = rota(&api, &["job", "get", "four"]);
    assert_eq!(gone.code, Some(1), "{gone:#?}");
    assert!(
        gone.stderr
            .starts_with("rota: 404 Not Found: no job named `four`"),
        "{gone:#?}"
    );
}

#[test]
fn a_run_is_waited_for_listed_and_its_output_printed_and_followed() {
    let (cluster, api, _) = cluster_and_follower();
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    write(
        &jobs,
        "exit3.json",
        &process_job("exit3", "@manually", "echo first; echo second; exit 3", ""),
    );
    write(
        &jobs,
        "slow.json",
        &process_job("slow", "@manually", "echo begin; sleep 2; echo end", ""),
    );
    rota(&api, &["job", "apply", "-f", &jobs.display().to_string()]).ok();

    // `--wait` streams the output and exits with the run's exit code.
    let waited = rota(&api, &["job", "run", "exit3", "--wait"]);
    assert_eq!(waited.code, Some(3), "{waited:#?}");
    assert_eq!(waited.stdout, "first\nsecond\n", "{waited:#?}");
    let id: u64 = waited
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("run ")?.parse().ok())
        .unwrap_or_else(|| panic!("no `run ID` line: {waited:#?}"));
    assert!(
        waited.stderr.contains(&format!("run {id} failed (exit 3")),
        "{waited:#?}"
    );

    // It is listed, and its output can be printed again.
    let runs = rota(&api, &["runs", "exit3"]).ok();
    let row = runs.row(&id.to_string());
    assert_eq!(row[1], "failed", "{runs:#?}");
    assert!(row.contains(&"3".to_owned()), "{runs:#?}");
    let runs = rota(&api, &["runs", "exit3", "--limit", "1", "-o", "json"])
        .ok()
        .json();
    assert_eq!(runs[0]["id"], id, "{runs}");
    assert_eq!(runs[0]["exit_code"], 3, "{runs}");
    assert_eq!(
        rota(&api, &["logs", &id.to_string()]).ok().stdout,
        "first\nsecond\n"
    );

    // A request sent again with its key answers the run it made, and makes no other.
    let keyed = |key: &str| {
        rota(&api, &["job", "run", "exit3", "--key", key, "-o", "json"])
            .ok()
            .json()
    };
    let first = keyed("retry-1");
    let again = keyed("retry-1");
    assert_eq!(first["id"], again["id"], "{first} then {again}");
    assert_eq!(again["replayed"], true, "{again}");
    assert!(first["replayed"].is_null(), "{first}");
    let other = keyed("retry-2");
    assert_ne!(other["id"], first["id"], "{other}");
    let made = rota(&api, &["runs", "exit3", "-o", "json"]).ok().json();
    let ids: Vec<&Value> = made
        .as_array()
        .unwrap_or_else(|| panic!("{made}"))
        .iter()
        .map(|run| &run["id"])
        .collect();
    assert_eq!(ids.len(), 3, "one run by --wait and two by keys: {made}");
    // A key that is not one is refused before anything is sent.
    let bad = rota(&api, &["job", "run", "exit3", "--key", "has space"]);
    assert_ne!(bad.code, Some(0), "{bad:#?}");
    assert!(bad.stderr.contains("--key"), "{bad:#?}");

    // Following a running run shows its first line while it still runs.
    let started = rota(&api, &["job", "run", "slow", "-o", "json"])
        .ok()
        .json();
    let id = started["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("{started}"));
    wait_until(Duration::from_secs(20), "the slow run to start", || {
        let run = cluster.api(0).get(&format!("/v1/runs/{id}"));
        (run.body["state"] == "running").then_some(())
    });
    let mut follower = client(&api, &["logs", &id.to_string(), "-f"])
        .spawn()
        .expect("rota starts");
    let mut stdout = follower.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
            if tx.send((Instant::now(), chunk)).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    let mut first_line_at = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text.contains("end\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        let (at, chunk) = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("the followed output stopped at {text:?}: {e}"));
        text.push_str(&chunk);
        if text.contains("begin\n") && first_line_at.is_none() {
            assert!(!text.contains("end"), "both lines came at once: {text:?}");
            first_line_at = Some(at);
            // The job is still sleeping between its two lines.
            assert!(
                follower.try_wait().unwrap().is_none(),
                "`logs -f` ended after the first line"
            );
        }
    }
    assert_eq!(text, "begin\nend\n");
    let first_line_at = first_line_at.expect("the first line came");
    assert!(
        first_line_at.elapsed() >= Duration::from_millis(1000),
        "the first line came only {:?} before the last",
        first_line_at.elapsed()
    );
    let followed = finish(follower);
    assert_eq!(followed.code, Some(0), "{followed:#?}");
    reader.join().expect("the reader ends with the stream");
}

#[test]
fn a_running_run_is_stopped_on_request_and_ends_stopped() {
    let (_cluster, api, _) = cluster_and_follower();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "long.json",
        &process_job(
            "long",
            "@manually",
            "echo started; sleep 60; echo never",
            r#", "retries": 2, "retry_backoff_s": 1"#,
        ),
    );
    rota(&api, &["job", "apply", "-f", &file]).ok();
    let start = || -> u64 {
        let run = rota(&api, &["job", "run", "long", "-o", "json"])
            .ok()
            .json();
        let id = run["id"].as_u64().unwrap_or_else(|| panic!("{run}"));
        wait_until(
            Duration::from_secs(30),
            &format!("run {id} to print that it started"),
            || (rota(&api, &["logs", &id.to_string()]).stdout == "started\n").then_some(()),
        );
        id
    };
    let view = |id: u64| {
        let runs = rota(&api, &["runs", "long", "-o", "json"]).ok().json();
        runs.as_array()
            .and_then(|runs| runs.iter().find(|r| r["id"] == id).cloned())
            .unwrap_or_else(|| panic!("no run {id}: {runs}"))
    };

    // Asked, not waited for: the run is still running, and says it is being stopped.
    let first = start();
    let asked = rota(&api, &["stop", &first.to_string(), "-o", "json"])
        .ok()
        .json();
    assert_eq!(asked["id"], first, "{asked}");
    assert_eq!(asked["stopping"], "stopped", "{asked}");
    let ended = wait_until(
        Duration::from_secs(30),
        &format!("run {first} to end"),
        || {
            let run = view(first);
            (run["state"] == "failed").then_some(run)
        },
    );
    assert_eq!(ended["reason"], "stopped", "{ended}");
    assert!(ended["stopping"].is_null(), "{ended}");

    // Waited for: it ends long before its command would have, without its last line.
    let second = start();
    let asked_at = Instant::now();
    let stopped = rota(&api, &["stop", &second.to_string(), "--wait"]).ok();
    assert!(
        stopped
            .stdout
            .starts_with(&format!("run {second} failed (")),
        "{stopped:#?}"
    );
    assert!(stopped.stdout.contains("stopped"), "{stopped:#?}");
    assert!(
        asked_at.elapsed() < Duration::from_secs(30),
        "stopped after {:?}",
        asked_at.elapsed()
    );
    assert_eq!(view(second)["reason"], "stopped");
    assert_eq!(
        rota(&api, &["logs", &second.to_string()]).ok().stdout,
        "started\n"
    );

    // A run that has ended, or that does not exist, is refused, naming it.
    let again = rota(&api, &["stop", &second.to_string()]);
    assert_eq!(again.code, Some(1), "{again:#?}");
    assert!(
        again
            .stderr
            .contains(&format!("run {second} has already ended")),
        "{again:#?}"
    );
    let unknown = rota(&api, &["stop", "999999"]);
    assert_eq!(unknown.code, Some(1), "{unknown:#?}");
    assert!(unknown.stderr.contains("no run 999999"), "{unknown:#?}");
}

#[test]
fn no_agent_is_a_clear_error_and_a_bad_command_line_a_usage_error() {
    let refused = rota(
        "http://127.0.0.1:7070",
        &["--api", "http://127.0.0.1:1", "status"],
    );
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    assert!(
        refused.stderr.starts_with(
            "rota: cannot reach the rota API at http://127.0.0.1:1 (connection refused); \
             is an agent running? set --api or ROTA_API"
        ),
        "{refused:#?}"
    );
    assert_eq!(refused.stdout, "");
    let from_env = rota("http://127.0.0.1:1", &["job", "ls"]);
    assert_eq!(from_env.code, Some(1), "{from_env:#?}");
    assert!(
        from_env
            .stderr
            .contains("cannot reach the rota API at http://127.0.0.1:1"),
        "{from_env:#?}"
    );
    let usage = rota("http://127.0.0.1:1", &["job", "get", "Not/A/Name"]);
    assert_eq!(usage.code, Some(2), "{usage:#?}");
    let usage = rota("http://127.0.0.1:1", &["job", "frobnicate"]);
    assert_eq!(usage.code, Some(2), "{usage:#?}");
}
