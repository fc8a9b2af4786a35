//! The process executor with real processes: the `rota` binary as the supervisor, and
//! `sh` commands as jobs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use rota_core::host::HostId;
use rota_core::job::{Concurrency, ExecutorSpec, JobName, ProcessSpec};
use rota_core::node::ExecutorEvent;
use rota_core::run::{Reason, RunId, RunSpec};
use rota_core::time::Timestamp;
use runtime::executor::Executor;
use runtime::executor::process::{ProcessConfig, ProcessExecutor, default_supervisor};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// How long any one event may take to come.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

const HOST: HostId = HostId(7);

fn config(runs_dir: &Path) -> ProcessConfig {
    ProcessConfig {
        supervisor: vec![
            OsString::from(env!("CARGO_BIN_EXE_rota")),
            OsString::from("__supervise"),
        ],
        poll_interval_ms: 20,
        stop_grace_ms: 5_000,
        ..ProcessConfig::new(runs_dir.to_path_buf())
    }
}

/// The same, with the supervisor's own binary instead of `rota __supervise`.
fn own_supervisor_config(runs_dir: &Path) -> ProcessConfig {
    ProcessConfig {
        supervisor: vec![OsString::from(env!("CARGO_BIN_EXE_rota-supervisor"))],
        ..config(runs_dir)
    }
}

fn spec(id: u64, command: &[&str], env: &[(&str, &str)]) -> RunSpec {
    RunSpec {
        id: RunId(id),
        job: JobName::new("backup").unwrap(),
        scheduled_at: Timestamp::from_secs(1_700_000_000),
        attempt: 2,
        executor: std::sync::Arc::new(ExecutorSpec::Process(ProcessSpec {
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            cwd: None,
        })),
        timeout_ms: None,
        concurrency: Concurrency::Allow,
        start_by: Timestamp::from_secs(1_800_000_000),
    }
}

fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

async fn next_event(events: &mut UnboundedReceiver<ExecutorEvent>) -> ExecutorEvent {
    tokio::time::timeout(EVENT_TIMEOUT, events.recv())
        .await
        .expect("no executor event in time")
        .expect("the executor's event channel closed")
}

/// Waits for `run`'s end, checking that it started first; returns the `Exited` fields.
async fn started_then_exited(
    events: &mut UnboundedReceiver<ExecutorEvent>,
    run: RunId,
) -> (Option<i32>, Option<Reason>, Option<String>) {
    match next_event(events).await {
        ExecutorEvent::Started { run: r, .. } if r == run => {}
        other => panic!("expected Started of {run:?}, got {other:?}"),
    }
    match next_event(events).await {
        ExecutorEvent::Exited {
            run: r,
            started_at,
            exit_code,
            reason,
            detail,
            ..
        } if r == run => {
            assert!(started_at.is_some());
            (exit_code, reason, detail)
        }
        other => panic!("expected Exited of {run:?}, got {other:?}"),
    }
}

fn output(executor: &ProcessExecutor, run: RunId) -> String {
    let path = executor.output_path(run).expect("the run has a directory");
    String::from_utf8(std::fs::read(path).expect("output is readable")).unwrap()
}

#[tokio::test]
async fn a_run_reports_its_start_exit_code_output_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut events) = unbounded_channel();
    let executor = ProcessExecutor::new(config(dir.path()), HOST, tx).unwrap();
    let script = "echo out; echo err >&2; \
        echo \"job=$ROTA_JOB run=$ROTA_RUN_ID at=$ROTA_SCHEDULED_AT attempt=$ROTA_ATTEMPT host=$ROTA_HOST\"; \
        echo \"greeting=$GREETING leak=${CARGO_MANIFEST_DIR:-none} path=${PATH:+set}\"; \
        echo \"cwd=$(pwd)\"; exit 3";
    executor.start(spec(1, &sh(script), &[("GREETING", "hello there")]));

    let (code, reason, _) = started_then_exited(&mut events, RunId(1)).await;
    assert_eq!(code, Some(3));
    assert_eq!(reason, None);
    let output = output(&executor, RunId(1));
    let run_dir = executor.config().runs_dir.join("1");
    assert_eq!(
        output,
        format!(
            "out\nerr\njob=backup run=1 at=2023-11-14T22:13:20Z attempt=2 host=7\n\
             greeting=hello there leak=none path=set\ncwd={}\n",
            run_dir.display()
        )
    );
}

#[tokio::test]
async fn starting_a_run_twice_runs_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let count = outside.path().join("count");
    let (tx, mut events) = unbounded_channel();
    let executor = ProcessExecutor::new(config(dir.path()), HOST, tx).unwrap();
    let script = format!("echo ran >> '{}'", count.display());
    let run = spec(2, &sh(&script), &[]);
    executor.start(run.clone());
    executor.start(run.clone());

    // The second start may repeat `Started`; the run ends once.
    let mut exits = 0;
    while exits == 0 {
        match next_event(&mut events).await {
            ExecutorEvent::Started { run, .. } => assert_eq!(run, RunId(2)),
            ExecutorEvent::Exited { run, exit_code, .. } => {
                assert_eq!((run, exit_code), (RunId(2), Some(0)));
                exits += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Once it has ended, a start reports the end again and runs nothing.
    executor.start(run);
    match next_event(&mut events).await {
        ExecutorEvent::Exited { run, exit_code, .. } => {
            assert_eq!((run, exit_code), (RunId(2), Some(0)));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(events.try_recv().is_err());
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "ran\n");
}

#[tokio::test]
async fn a_missing_program_fails_to_launch_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut events) = unbounded_channel();
    let executor = ProcessExecutor::new(config(dir.path()), HOST, tx).unwrap();
    executor.start(spec(3, &["rota-no-such-program", "--flag"], &[]));
    match next_event(&mut events).await {
        ExecutorEvent::LaunchFailed {
            run,
            reason,
            detail,
            ..
        } => {
            assert_eq!(run, RunId(3));
            assert_eq!(reason, Reason::LaunchFailed);
            assert!(detail.contains("rota-no-such-program"), "{detail}");
            assert!(detail.contains("No such file"), "{detail}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn output_beyond_the_bound_is_cut_with_a_marker() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut events) = unbounded_channel();
    let config = ProcessConfig {
        output_bytes_max: 1000,
        ..config(dir.path())
    };
    let executor = ProcessExecutor::new(config, HOST, tx).unwrap();
    // Far more than a pipe holds: the command must not block on it.
    executor.start(spec(
        4,
        &sh("yes 'a line of output' | head -n 20000; exit 0"),
        &[],
    ));

    let (code, _, _) = started_then_exited(&mut events, RunId(4)).await;
    assert_eq!(code, Some(0));
    let output = output(&executor, RunId(4));
    let expected: String = "a line of output\n".repeat(100)[..1000].to_owned()
        + "\n[rota: output truncated after 1000 bytes]\n";
    assert_eq!(output, expected);
}

#[tokio::test]
async fn a_stopped_run_ends_with_the_stop_reason_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut events) = unbounded_channel();
    let executor = ProcessExecutor::new(config(dir.path()), HOST, tx).unwrap();
    executor.start(spec(5, &["sleep", "30"], &[]));
    match next_event(&mut events).await {
        ExecutorEvent::Started { run, .. } => assert_eq!(run, RunId(5)),
        other => panic!("unexpected {other:?}"),
    }
    let asked = tokio::time::Instant::now();
    executor.stop(RunId(5), Reason::Stopped);
    // Stopping what is not running does nothing.
    executor.stop(RunId(99), Reason::Stopped);
    match next_event(&mut events).await {
        ExecutorEvent::Exited {
            run,
            exit_code,
            reason,
            detail,
            ..
        } => {
            assert_eq!(run, RunId(5));
            assert_eq!(exit_code, None);
            assert_eq!(reason, Some(Reason::Stopped));
            assert_eq!(detail.as_deref(), Some("killed by SIGTERM"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(asked.elapsed() < Duration::from_millis(5_000));
}

#[tokio::test]
async fn a_run_ignoring_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut events) = unbounded_channel();
    let config = ProcessConfig {
        stop_grace_ms: 300,
        ..config(dir.path())
    };
    let executor = ProcessExecutor::new(config, HOST, tx).unwrap();
    executor.start(spec(6, &sh("trap '' TERM; touch trapped; sleep 30"), &[]));
    match next_event(&mut events).await {
        ExecutorEvent::Started { run, .. } => assert_eq!(run, RunId(6)),
        other => panic!("unexpected {other:?}"),
    }
    // A stop before the shell has set its trap would end it with `SIGTERM`.
    let trapped = dir.path().join("6").join("trapped");
    until("the shell ignores SIGTERM", || trapped.exists()).await;
    let asked = tokio::time::Instant::now();
    executor.stop(RunId(6), Reason::Timeout);
    match next_event(&mut events).await {
        ExecutorEvent::Exited {
            run,
            exit_code,
            reason,
            detail,
            ..
        } => {
            assert_eq!(run, RunId(6));
            assert_eq!(exit_code, None);
            assert_eq!(reason, Some(Reason::Timeout));
            assert_eq!(detail.as_deref(), Some("killed by SIGKILL"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let took = asked.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(5_000), "{took:?}");
}

/// A script that runs until `release` exists, then exits with `code`. It also ends when
/// the directory of `release` is removed, so that a failed test leaves nothing running.
fn held(release: &Path, code: i32) -> String {
    let outside = release.parent().expect("release is in a directory");
    format!(
        "while [ ! -e '{}' ] && [ -d '{}' ]; do sleep 0.02; done; exit {code}",
        release.display(),
        outside.display()
    )
}

#[tokio::test]
async fn the_supervisor_binary_runs_a_job_as_the_subcommand_does() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut events) = unbounded_channel();
    let executor = ProcessExecutor::new(own_supervisor_config(dir.path()), HOST, tx).unwrap();
    executor.start(spec(50, &sh("echo run $ROTA_RUN_ID; exit 3"), &[]));
    let (exit_code, reason, _) = started_then_exited(&mut events, RunId(50)).await;
    assert_eq!((exit_code, reason), (Some(3), None));
    assert_eq!(output(&executor, RunId(50)), "run 50\n");
}

#[test]
fn the_supervisor_binary_is_preferred_where_it_is_installed() {
    let bin = tempfile::tempdir().unwrap();
    let rota = bin.path().join("rota");
    std::fs::write(&rota, "").unwrap();
    assert_eq!(
        default_supervisor(&rota),
        [rota.clone().into_os_string(), OsString::from("__supervise")]
    );
    let own = bin.path().join("rota-supervisor");
    std::fs::write(&own, "").unwrap();
    assert_eq!(default_supervisor(&rota), [own.into_os_string()]);
}

#[test]
fn runs_survive_a_restart_of_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let release_a = outside.path().join("release-a");
    let release_b = outside.path().join("release-b");
    let script_a = held(&release_a, 7);
    let script_b = held(&release_b, 5);
    let spec_a = spec(10, &sh(&script_a), &[]);

    // The first daemon starts two runs, then dies without stopping them.
    {
        let tokio = tokio::runtime::Runtime::new().unwrap();
        tokio.block_on(async {
            let (tx, mut events) = unbounded_channel();
            let executor = ProcessExecutor::new(config(dir.path()), HOST, tx).unwrap();
            executor.start(spec_a.clone());
            executor.start(spec(11, &sh(&script_b), &[]));
            let mut started = Vec::new();
            while started.len() < 2 {
                match next_event(&mut events).await {
                    ExecutorEvent::Started { run, .. } => started.push(run),
                    other => panic!("unexpected {other:?}"),
                }
            }
            drop(executor);
        });
        tokio.shutdown_background();
    }

    // Run 11 ends while no daemon watches.
    std::fs::write(&release_b, "").unwrap();
    let status_b = dir.path().join("11").join("status.jsonl");
    let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
    while !std::fs::read_to_string(&status_b).is_ok_and(|s| s.contains("finished_at")) {
        assert!(std::time::Instant::now() < deadline, "run 11 never ended");
        std::thread::sleep(Duration::from_millis(10));
    }

    // The next daemon finds both, though it starts supervisors the other way
    // (`rota-supervisor <dir>` rather than `rota __supervise <dir>`).
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let (tx, mut events) = unbounded_channel();
        let executor = ProcessExecutor::new(own_supervisor_config(dir.path()), HOST, tx).unwrap();
        let recovered = executor.recover().await;
        assert_eq!(recovered.len(), 2, "{recovered:?}");
        assert!(
            recovered.iter().any(|e| matches!(
                e,
                ExecutorEvent::Exited {
                    run: RunId(11),
                    exit_code: Some(5),
                    started_at: Some(_),
                    reason: None,
                    ..
                }
            )),
            "{recovered:?}"
        );
        assert!(
            recovered.iter().any(|e| matches!(
                e,
                ExecutorEvent::Adopted { spec, .. } if *spec == spec_a
            )),
            "{recovered:?}"
        );
        // The adopted run is watched to its end.
        std::fs::write(&release_a, "").unwrap();
        match next_event(&mut events).await {
            ExecutorEvent::Exited {
                run,
                exit_code,
                started_at,
                ..
            } => {
                assert_eq!((run, exit_code), (RunId(10), Some(7)));
                assert!(started_at.is_some());
            }
            other => panic!("unexpected {other:?}"),
        }
        // A start of a run found on disk starts nothing.
        executor.start(spec_a.clone());
        match next_event(&mut events).await {
            ExecutorEvent::Exited { run, exit_code, .. } => {
                assert_eq!((run, exit_code), (RunId(10), Some(7)));
            }
            other => panic!("unexpected {other:?}"),
        }
    });
}

#[tokio::test]
async fn a_run_whose_supervisor_died_is_reported_host_lost() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("12");
    std::fs::create_dir_all(&run_dir).unwrap();
    // A supervisor that recorded the start, then vanished (pid 0 is never a process).
    std::fs::write(
        run_dir.join("status.json"),
        r#"{"pid": 0, "child_pid": 0, "started_at": 1700000000000}"#,
    )
    .unwrap();
    // The daemon wrote the spec before it started the supervisor.
    let spec_file = serde_json::json!({"host": HOST, "output_bytes_max": 1024, "spec": spec(12, &["true"], &[])});
    std::fs::write(run_dir.join("spec.json"), spec_file.to_string()).unwrap();
    let (tx, _events) = unbounded_channel();
    let executor = ProcessExecutor::new(config(dir.path()), HOST, tx).unwrap();
    let recovered = executor.recover().await;
    match recovered.as_slice() {
        [
            ExecutorEvent::Exited {
                run,
                exit_code,
                reason,
                detail,
                ..
            },
        ] => {
            assert_eq!(
                (*run, *exit_code, *reason),
                (RunId(12), None, Some(Reason::HostLost))
            );
            assert_eq!(
                detail.as_deref(),
                Some("the run's supervisor died with the host")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// An executor keeping at most `kept` run directories in `dir`, and its events.
fn keeping(dir: &Path, kept: usize) -> (ProcessExecutor, UnboundedReceiver<ExecutorEvent>) {
    let (tx, events) = unbounded_channel();
    let config = ProcessConfig {
        runs_kept_max: kept,
        ..config(dir)
    };
    (ProcessExecutor::new(config, HOST, tx).unwrap(), events)
}

/// Runs `true` as each of the runs `ids`, one after the other, to its end.
async fn run_true(
    executor: &ProcessExecutor,
    events: &mut UnboundedReceiver<ExecutorEvent>,
    ids: std::ops::Range<u64>,
) {
    for id in ids {
        executor.start(spec(id, &["true"], &[]));
        started_then_exited(events, RunId(id)).await;
    }
}

#[tokio::test]
async fn old_run_directories_are_removed_beyond_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (executor, mut events) = keeping(dir.path(), 2);
    run_true(&executor, &mut events, 20..24).await;
    executor.recover().await;
    // Each ended run prunes in the background too, so the bound may be reached a moment
    // after `recover` returns; it is never passed below.
    until_run_dirs(dir.path(), &["22", "23"]).await;
}

#[tokio::test]
async fn a_silent_run_has_no_output_file_and_any_run_directory_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (executor, mut events) = keeping(dir.path(), 1);
    executor.start(spec(30, &sh("echo out"), &[]));
    started_then_exited(&mut events, RunId(30)).await;
    assert_eq!(output(&executor, RunId(30)), "out\n");
    run_true(&executor, &mut events, 31..32).await;
    let silent = executor
        .output_path(RunId(31))
        .expect("the run has a directory");
    assert!(!silent.exists(), "{} was made", silent.display());
    // A file that is not among those every run has, as an older supervisor left.
    std::fs::write(dir.path().join("31").join("supervisor.log"), "old").unwrap();
    run_true(&executor, &mut events, 32..33).await;
    until_run_dirs(dir.path(), &["32"]).await;
}

/// The run directories in `dir`, sorted.
fn run_dirs(dir: &Path) -> Vec<String> {
    let mut left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    left
}

/// Waits until exactly `want` run directories are left in `dir`.
async fn until_run_dirs(dir: &Path, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = run_dirs(dir);
        assert!(left.len() >= want.len(), "pruned below the bound: {left:?}");
        if left == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {left:?} after 10 s, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn directories_found_at_recovery_and_new_ones_count_towards_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (roomy, mut events) = keeping(dir.path(), 10);
    run_true(&roomy, &mut events, 40..44).await;
    drop(roomy);
    assert_eq!(run_dirs(dir.path()), ["40", "41", "42", "43"]);

    // A later daemon with a smaller bound: what it finds counts, and so does each run
    // it starts, without another listing.
    let (tight, mut events) = keeping(dir.path(), 3);
    let found = tight.recover().await;
    assert_eq!(
        found.len(),
        4,
        "every ended run is reported again: {found:?}"
    );
    until_run_dirs(dir.path(), &["41", "42", "43"]).await;
    run_true(&tight, &mut events, 44..46).await;
    until_run_dirs(dir.path(), &["43", "44", "45"]).await;
}

#[tokio::test]
async fn a_supervisor_that_fails_at_once_fails_the_launch() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut events) = unbounded_channel();
    let config = ProcessConfig {
        supervisor: vec![
            OsString::from("sh"),
            OsString::from("-c"),
            OsString::from("echo no such subcommand >&2; exit 2"),
            OsString::from("sh"),
        ],
        ..config(dir.path())
    };
    let executor = ProcessExecutor::new(config, HOST, tx).unwrap();
    executor.start(spec(30, &["true"], &[]));
    match next_event(&mut events).await {
        ExecutorEvent::LaunchFailed {
            run,
            reason,
            detail,
            ..
        } => {
            assert_eq!((run, reason), (RunId(30), Reason::LaunchFailed));
            assert!(detail.contains("before it started the command"), "{detail}");
            assert!(detail.contains("no such subcommand"), "{detail}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The process id of the supervisor that took `run`, from its status.
fn supervisor_of(runs_dir: &Path, run: u64) -> u32 {
    let first = &status_lines(runs_dir, run)[0];
    u32::try_from(first["pid"].as_u64().expect("a pid")).unwrap()
}

/// The lines of the run's `status.jsonl`, at least one.
fn status_lines(runs_dir: &Path, run: u64) -> Vec<serde_json::Value> {
    let status = std::fs::read_to_string(runs_dir.join(run.to_string()).join("status.jsonl"))
        .expect("the run has a status");
    let lines: Vec<serde_json::Value> = status
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(!lines.is_empty(), "a status line");
    lines
}

/// Whether process `pid` exists (and is not a zombie).
fn exists(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Waits until process `pid` is gone.
async fn until_gone(pid: u32) {
    until(&format!("process {pid} still there"), || !exists(pid)).await;
}

/// Waits until `done`, failing with `what` after [`EVENT_TIMEOUT`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn runs_share_one_supervisor_that_tells_the_daemon_of_each_end() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let (tx, mut events) = unbounded_channel();
    // Polls too rare to see any end within the test: ends come from the supervisor's
    // word.
    let config = ProcessConfig {
        poll_interval_ms: 600_000,
        ..config(dir.path())
    };
    let executor = ProcessExecutor::new(config, HOST, tx).unwrap();
    let runs_dir = executor.config().runs_dir.clone();
    let scripts: Vec<String> = (0..3)
        .map(|i| held(&outside.path().join(format!("release-{i}")), 10 + i))
        .collect();
    for (i, script) in scripts.iter().enumerate() {
        executor.start(spec(60 + i as u64, &sh(script), &[]));
    }
    let mut started = Vec::new();
    while started.len() < 3 {
        match next_event(&mut events).await {
            ExecutorEvent::Started { run, .. } => started.push(run),
            other => panic!("unexpected {other:?}"),
        }
    }
    for i in 0..3 {
        std::fs::write(outside.path().join(format!("release-{i}")), "").unwrap();
        match next_event(&mut events).await {
            ExecutorEvent::Exited { run, exit_code, .. } => {
                assert_eq!((run, exit_code), (RunId(60 + i), Some(10 + i as i32)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let pid = supervisor_of(&runs_dir, 60);
    assert_eq!(supervisor_of(&runs_dir, 61), pid);
    assert_eq!(supervisor_of(&runs_dir, 62), pid);
    assert!(exists(pid), "the supervisor lives on for the next run");
}

#[tokio::test]
async fn many_runs_at_once_share_the_supervisors_few_threads_and_all_end_recorded() {
    const RUNS: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let release = outside.path().join("release");
    let (tx, mut events) = unbounded_channel();
    let executor = ProcessExecutor::new(config(dir.path()), HOST, tx).unwrap();
    let runs_dir = executor.config().runs_dir.clone();
    for id in 100..100 + RUNS {
        let code = i32::try_from(id % 7).unwrap();
        let script = format!("echo run $ROTA_RUN_ID; {}", held(&release, code));
        executor.start(spec(id, &sh(&script), &[]));
    }
    let mut started = 0;
    while started < RUNS {
        match next_event(&mut events).await {
            ExecutorEvent::Started { .. } => started += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Every command runs at once, and the supervisor has no thread for any of them.
    let supervisor = supervisor_of(&runs_dir, 100);
    let threads = std::fs::read_dir(format!("/proc/{supervisor}/task"))
        .unwrap()
        .count();
    assert!(threads <= 3, "the supervisor has {threads} threads");
    // Released together, the ends come to the recorder together.
    std::fs::write(&release, "").unwrap();
    let mut ended = std::collections::BTreeSet::new();
    while ended.len() < usize::try_from(RUNS).unwrap() {
        match next_event(&mut events).await {
            ExecutorEvent::Exited { run, exit_code, .. } => {
                assert_eq!(exit_code, Some(i32::try_from(run.0 % 7).unwrap()), "{run}");
                assert_eq!(output(&executor, run), format!("run {}\n", run.0));
                let last = status_lines(&runs_dir, run.0).pop().unwrap();
                assert_eq!(last["exit_code"], run.0 % 7, "{last}");
                assert_eq!(last["pid"], supervisor, "{last}");
                assert!(ended.insert(run), "{run} ended twice");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_command_killed_by_a_signal_without_a_name_is_reported_by_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut events) = unbounded_channel();
    let executor = ProcessExecutor::new(config(dir.path()), HOST, tx).unwrap();
    // Signal 40 is a real-time signal, which kills by default and has no name.
    executor.start(spec(140, &sh("kill -s 40 $$; sleep 5"), &[]));
    let (exit_code, reason, detail) = started_then_exited(&mut events, RunId(140)).await;
    assert_eq!((exit_code, reason), (None, None));
    assert_eq!(detail.as_deref(), Some("killed by signal 40"));
}

#[test]
fn the_supervisor_exits_with_success_only_if_it_recorded_every_end() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let supervise = |requests: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rota-supervisor"))
            .arg(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(requests.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap())
    };
    // Its input closed with no run asked for: nothing left unrecorded.
    assert_eq!(supervise(""), (true, String::new()));
    // A run without a directory: its end cannot be written, and the daemon is told so.
    assert_eq!(supervise("7\n"), (false, "7 lost\n".to_owned()));
}

/// A run held until released, started by a fresh executor.
struct Held {
    /// The executor, until the test drops it.
    executor: Option<ProcessExecutor>,
    events: UnboundedReceiver<ExecutorEvent>,
    runs_dir: std::path::PathBuf,
    release: std::path::PathBuf,
    /// The supervisor that took the run.
    supervisor: u32,
    _dirs: [tempfile::TempDir; 2],
}

impl Held {
    /// Starts run `id` held, and waits for its start.
    async fn start(id: u64) -> Held {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let release = dirs[1].path().join("release");
        let (tx, mut events) = unbounded_channel();
        let executor = ProcessExecutor::new(config(dirs[0].path()), HOST, tx).unwrap();
        let runs_dir = executor.config().runs_dir.clone();
        executor.start(spec(id, &sh(&held(&release, 0)), &[]));
        match next_event(&mut events).await {
            ExecutorEvent::Started { run, .. } if run == RunId(id) => {}
            other => panic!("expected the start of run {id}, got {other:?}"),
        }
        let supervisor = supervisor_of(&runs_dir, id);
        Held {
            executor: Some(executor),
            events,
            runs_dir,
            release,
            supervisor,
            _dirs: dirs,
        }
    }

    fn release(&self) {
        std::fs::write(&self.release, "").unwrap();
    }
}

#[tokio::test]
async fn the_supervisor_outlives_the_daemon_until_its_runs_have_ended() {
    let mut held = Held::start(80).await;
    drop(held.executor.take());
    // Its input is closed now; it takes no more runs but finishes this one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        exists(held.supervisor),
        "the supervisor left with its run still executing"
    );
    held.release();
    until_gone(held.supervisor).await;
    let status = std::fs::read_to_string(held.runs_dir.join("80").join("status.jsonl")).unwrap();
    assert!(
        status.lines().last().unwrap().contains(r#""exit_code":0"#),
        "{status}"
    );
}

#[tokio::test]
async fn a_supervisor_that_dies_fails_its_runs_and_another_takes_the_next() {
    let mut held = Held::start(90).await;
    let dead = held.supervisor;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(dead).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    match next_event(&mut held.events).await {
        ExecutorEvent::Exited {
            run,
            reason,
            detail,
            ..
        } => {
            assert_eq!((run, reason), (RunId(90), Some(Reason::HostLost)));
            let detail = detail.unwrap_or_default();
            assert!(detail.contains("SIGKILL"), "{detail}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The command is left running, as it is when its host dies; end it.
    held.release();

    let executor = held.executor.as_ref().unwrap();
    executor.start(spec(91, &["true"], &[]));
    let (code, reason, _) = started_then_exited(&mut held.events, RunId(91)).await;
    assert_eq!((code, reason), (Some(0), None));
    let next = supervisor_of(&held.runs_dir, 91);
    assert_ne!(next, dead);
    assert!(exists(next));
}

#[tokio::test]
async fn a_command_found_in_the_path_keeps_its_name_as_argument_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut events) = unbounded_channel();
    let executor = ProcessExecutor::new(config(dir.path()), HOST, tx).unwrap();
    executor.start(spec(95, &["cat", "/proc/self/cmdline"], &[]));
    let (code, _, _) = started_then_exited(&mut events, RunId(95)).await;
    assert_eq!(code, Some(0));
    assert_eq!(output(&executor, RunId(95)), "cat\0/proc/self/cmdline\0");
}

#[tokio::test]
async fn a_script_without_an_interpreter_line_is_run_by_the_shell() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // No `#!` line: the kernel refuses to execute it, and `execvp` hands it to `sh`.
    let script = bin.join("greet");
    std::fs::write(&script, "echo \"hello $1 from $0 as $ROTA_JOB\"\nexit 4\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let (tx, mut events) = unbounded_channel();
    let executor = ProcessExecutor::new(config(dir.path()), HOST, tx).unwrap();
    executor.start(spec(96, &["greet", "there"], &[("PATH", &path)]));
    let (code, reason, detail) = started_then_exited(&mut events, RunId(96)).await;
    assert_eq!((code, reason, detail), (Some(4), None, None));
    assert_eq!(
        output(&executor, RunId(96)),
        format!("hello there from {} as backup\n", script.display())
    );
}

#[tokio::test]
async fn output_held_open_after_the_command_exits_is_let_go_of() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut events) = unbounded_channel();
    let executor = ProcessExecutor::new(config(dir.path()), HOST, tx).unwrap();
    // The command leaves a process behind that keeps writing to its output; once the
    // supervisor lets go of the pipe, a write fails and that process says so in `let-go`.
    let let_go = dir.path().join("let-go");
    let script = format!(
        "trap '' PIPE; \
         (while [ -d {dir} ] && echo tick; do sleep 0.1; done; touch {let_go}) & \
         echo started",
        dir = dir.path().display(),
        let_go = let_go.display()
    );
    executor.start(spec(97, &sh(&script), &[]));
    let (code, _, _) = started_then_exited(&mut events, RunId(97)).await;
    assert_eq!(code, Some(0));
    until(
        "the process left behind could still write to the output",
        || let_go.exists(),
    )
    .await;
    let output = output(&executor, RunId(97));
    assert!(
        output.starts_with("started\n") || output.starts_with("tick\n"),
        "{output}"
    );
    assert!(output.contains("tick\n"), "{output}");
}

#[tokio::test]
async fn a_run_whose_directory_is_removed_under_it_ends_host_lost_and_its_command_killed() {
    let mut held = Held::start(98).await;
    let status = status_lines(&held.runs_dir, 98);
    let last = status.last().expect("a status line");
    let command = u32::try_from(last["child_pid"].as_u64().expect("a started command")).unwrap();
    assert!(exists(command));
    std::fs::remove_dir_all(held.runs_dir.join("98")).unwrap();
    match next_event(&mut held.events).await {
        ExecutorEvent::Exited {
            run,
            started_at,
            exit_code,
            reason,
            detail,
            ..
        } => {
            assert_eq!(run, RunId(98));
            assert!(started_at.is_some());
            assert_eq!((exit_code, reason), (None, Some(Reason::HostLost)));
            let detail = detail.unwrap_or_default();
            assert!(detail.contains("was removed"), "{detail}");
            assert!(detail.contains("killed"), "{detail}");
        }
        other => panic!("expected the end of run 98, got {other:?}"),
    }
    // Killed, so that no retry overlaps it: never released.
    until_gone(command).await;
    assert!(!held.release.exists());
}
