//! The supervisor: a small process, `rota-supervisor <run dir>` (or `rota __supervise
//! <run dir>`), that starts one run's command, copies its output to the run directory
//! and records how it ended.
//!
//! It runs in a process group of its own, so the daemon can die (even by `kill -9`) and
//! restart while the command keeps running and its end is still recorded. The command
//! gets a process group of its own too: the daemon stops a run by signalling the
//! command's group, never the supervisor's, so the supervisor outlives the command it
//! watches and records the signal that ended it. (This needs no signal handler, which
//! nix only offers through `unsafe`.)
//!
//! The supervisor uses plain threads, no async runtime: it waits for one child and
//! copies one pipe.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rota_core::job::ExecutorSpec;

use super::run_dir::{
    OUTPUT_FILE, SPEC_FILE, STATUS_FILE, SpecFile, Status, StatusLog, read_json, wall_now,
};
use crate::executor::run_env;

/// The `PATH` a command gets when the daemon has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How long the supervisor keeps copying output after the command has exited, for what
/// its background processes (which may hold the pipe open forever) still write.
const OUTPUT_DRAIN_AFTER_EXIT_MS: u64 = 2_000;

/// The size of one read from the output pipe.
const OUTPUT_CHUNK_BYTES: usize = 8 * 1024;

/// Supervises the run whose directory is `run_dir` to its end: the body of the binary
/// `rota-supervisor <run dir>` and of the hidden subcommand `rota __supervise <run dir>`,
/// one of which the daemon's process executor starts once per run.
///
/// The command's environment is clean, not the daemon's: `PATH` (the daemon's, or
/// `/usr/local/bin:/usr/bin:/bin`), `HOME` and `LANG` when the daemon has them, then
/// the job's own `env`, then `ROTA_JOB`, `ROTA_RUN_ID`, `ROTA_SCHEDULED_AT`,
/// `ROTA_ATTEMPT` and `ROTA_HOST`. Its working directory is the job's `cwd` (relative
/// to the run directory), else the run directory. No shell is involved.
///
/// It exits with success once it has recorded the run's end in `status.jsonl` (a failed
/// launch is an end too), with failure if it could not.
pub fn supervise_main(run_dir: &Path) -> ExitCode {
    let mut status = Status {
        pid: std::process::id(),
        ..Status::default()
    };
    // First thing: tell the daemon who we are, so it can tell later whether we live.
    // Not synced: a crash of the machine ends us too, and a status holding only our pid
    // says what no status says, that the command never started.
    let opened =
        StatusLog::create(run_dir).and_then(|mut log| log.record(&status, false).map(|()| log));
    let mut log = match opened {
        Ok(log) => log,
        Err(e) => {
            eprintln!(
                "rota supervisor: cannot write {}: {e}",
                run_dir.join(STATUS_FILE).display()
            );
            return ExitCode::FAILURE;
        }
    };
    let recorded = match supervise(run_dir, &mut status, &mut log) {
        Ok(recorded) => recorded,
        Err(error) => {
            eprintln!("rota supervisor: {error}");
            status.error = Some(error);
            status.finished_at = Some(wall_now());
            log.record(&status, true)
        }
    };
    match recorded {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "rota supervisor: cannot record the end of the run in {}: {e}",
                run_dir.join(STATUS_FILE).display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Starts the command, waits for its end and records it in `log`, returning whether
/// that record was written. An error is why the command could not be started, for the
/// operator; nothing is recorded then.
fn supervise(
    run_dir: &Path,
    status: &mut Status,
    log: &mut StatusLog,
) -> Result<io::Result<()>, String> {
    let order: SpecFile = match read_json(run_dir, SPEC_FILE) {
        Ok(Some(order)) => order,
        Ok(None) => return Err(format!("{} is missing", run_dir.join(SPEC_FILE).display())),
        Err(e) => return Err(format!("cannot read the run's spec: {e}")),
    };
    let output = File::create(run_dir.join(OUTPUT_FILE))
        .map_err(|e| format!("cannot create {}: {e}", run_dir.join(OUTPUT_FILE).display()))?;
    let (mut command, program) = command(run_dir, &order)?;
    // One pipe for both stdout and stderr, so that the output keeps the order in which
    // the command wrote it.
    let (reader, writer) = io::pipe().map_err(|e| format!("cannot create the output pipe: {e}"))?;
    let writer_too = writer
        .try_clone()
        .map_err(|e| format!("cannot create the output pipe: {e}"))?;
    command.stdout(writer).stderr(writer_too);
    let spawned = command.spawn();
    // The command holds our copies of the pipe's write end: drop them, or the copy
    // below would never see the end of the output.
    drop(command);
    let mut child = spawned.map_err(|e| format!("cannot execute `{}`: {e}", program.display()))?;
    status.child_pid = Some(child.id());
    status.started_at = Some(wall_now());
    if let Err(e) = log.record(status, true) {
        // The run goes on; the daemon learns of it at the end.
        eprintln!("rota supervisor: cannot record the start of the run: {e}");
    }

    let (copied, copy_done) = mpsc::channel();
    let bytes_max = order.output_bytes_max;
    thread::spawn(move || {
        if let Err(e) = copy_output(reader, output, bytes_max) {
            eprintln!("rota supervisor: cannot copy the command's output: {e}");
        }
        let _ = copied.send(());
    });

    let end = wait_without_reaping(&mut child);
    if copy_done
        .recv_timeout(Duration::from_millis(OUTPUT_DRAIN_AFTER_EXIT_MS))
        .is_err()
    {
        eprintln!(
            "rota supervisor: processes the command left behind still hold its output \
             open; output after its exit is not kept"
        );
    }
    status.finished_at = Some(wall_now());
    match end {
        Ok(End::Code(code)) => status.exit_code = Some(code),
        Ok(End::Signal(signal)) => status.signal = Some(signal),
        Err(e) => {
            let error = format!("cannot wait for the command: {e}");
            eprintln!("rota supervisor: {error}");
            status.error = Some(error);
        }
    }
    // The final status must be on disk before the command is reaped: until then its
    // process group id cannot be reused, so a daemon that signals the group while the
    // status says the command is running can only reach the command's own processes.
    let recorded = log.record(status, true);
    let _ = child.wait();
    Ok(recorded)
}

/// The command of the run, and the program it executes.
fn command(run_dir: &Path, order: &SpecFile) -> Result<(Command, PathBuf), String> {
    let ExecutorSpec::Process(process) = &*order.spec.executor else {
        return Err("the run is not for the process executor".into());
    };
    let Some((program, args)) = process.command.split_first() else {
        return Err("the job's command is empty".into());
    };
    let cwd = match &process.cwd {
        // `join` keeps an absolute `cwd` as it is.
        Some(cwd) => run_dir.join(cwd),
        None => run_dir.to_path_buf(),
    };
    if !cwd.is_dir() {
        return Err(format!(
            "the working directory {} is not a directory",
            cwd.display()
        ));
    }
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(base_env())
        .envs(&process.env)
        .envs(run_env(&order.spec, order.host))
        .current_dir(cwd)
        .stdin(Stdio::null())
        // Its own process group: the daemon signals it, and everything it started,
        // without signalling the supervisor.
        .process_group(0);
    Ok((command, PathBuf::from(program)))
}

/// The environment every command starts from.
fn base_env() -> Vec<(String, std::ffi::OsString)> {
    let mut env = vec![(
        "PATH".to_owned(),
        std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
    )];
    for name in ["HOME", "LANG"] {
        if let Some(value) = std::env::var_os(name) {
            env.push((name.to_owned(), value));
        }
    }
    env
}

/// How the command ended.
enum End {
    /// It exited with this code.
    Code(i32),
    /// This signal killed it.
    Signal(String),
}

/// Waits for the command to end, leaving it a zombie (its pid and process group id
/// still taken) until the caller reaps it.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn wait_without_reaping(child: &mut Child) -> io::Result<End> {
    use nix::errno::Errno;
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    use nix::unistd::Pid;

    let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
    loop {
        match waitid(
            Id::Pid(Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        ) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(End::Code(code)),
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                return Ok(End::Signal(signal.as_str().to_owned()));
            }
            // Only an end was asked for; anything else is spurious.
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits for the command to end (reaping it: where `waitid` is missing, a daemon's
/// signal may race with the reuse of the process group id).
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn wait_without_reaping(child: &mut Child) -> io::Result<End> {
    use std::os::unix::process::ExitStatusExt;

    let status = child.wait()?;
    match (status.code(), status.signal()) {
        (Some(code), _) => Ok(End::Code(code)),
        (None, Some(signal)) => Ok(End::Signal(
            nix::sys::signal::Signal::try_from(signal)
                .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned()),
        )),
        (None, None) => Err(io::Error::other("the command ended in an unknown way")),
    }
}

/// Copies the command's output from `pipe` to `output`, keeping at most `bytes_max`
/// bytes and then one line saying so. It reads the pipe to its end whatever it keeps,
/// so that the command never blocks on a full pipe or dies of a closed one.
fn copy_output(mut pipe: io::PipeReader, mut output: File, bytes_max: u64) -> io::Result<()> {
    let mut buf = vec![0u8; OUTPUT_CHUNK_BYTES];
    let mut kept: u64 = 0;
    let mut last_byte = b'\n';
    let mut keeping = true;
    let mut write_error = None;
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if !keeping {
            continue;
        }
        let room = usize::try_from(bytes_max.saturating_sub(kept)).unwrap_or(usize::MAX);
        let take = n.min(room);
        let written = output.write_all(&buf[..take]).and_then(|()| {
            if take < n {
                let separator = if take > 0 { buf[take - 1] } else { last_byte };
                let separator = if separator == b'\n' { "" } else { "\n" };
                writeln!(
                    output,
                    "{separator}[rota: output truncated after {bytes_max} bytes]"
                )
            } else {
                Ok(())
            }
        });
        kept = kept.saturating_add(take as u64);
        if take > 0 {
            last_byte = buf[take - 1];
        }
        match written {
            Ok(()) => keeping = take == n,
            Err(e) => {
                // Keep draining the pipe: a full disk must not block the command.
                keeping = false;
                write_error = Some(e);
            }
        }
    }
    match write_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied(input: &[u8], bytes_max: u64) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(OUTPUT_FILE);
        let (reader, mut writer) = io::pipe().unwrap();
        let input = input.to_vec();
        let feeder = thread::spawn(move || writer.write_all(&input).unwrap());
        copy_output(reader, File::create(&path).unwrap(), bytes_max).unwrap();
        feeder.join().unwrap();
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn output_within_the_bound_is_kept_whole() {
        assert_eq!(copied(b"one\ntwo\n", 8), "one\ntwo\n");
    }

    #[test]
    fn output_beyond_the_bound_ends_with_one_marker_line() {
        assert_eq!(
            copied(b"one\ntwo\nthree\n", 6),
            "one\ntw\n[rota: output truncated after 6 bytes]\n"
        );
        assert_eq!(
            copied(b"one\ntwo\n", 4),
            "one\n[rota: output truncated after 4 bytes]\n"
        );
        assert_eq!(copied(b"x", 0), "[rota: output truncated after 0 bytes]\n");
    }

    #[test]
    fn the_environment_starts_with_a_path() {
        let env = base_env();
        assert_eq!(env[0].0, "PATH");
        assert!(
            env.iter()
                .all(|(name, _)| ["PATH", "HOME", "LANG"].contains(&name.as_str()))
        );
    }
}
