//! The supervisor: a small process, `rota-supervisor <runs dir>` (or `rota __supervise
//! <runs dir>`), that lives across runs. The daemon starts one, and hands it runs by
//! writing their ids to its standard input, one per line; for each, the supervisor
//! starts the command, copies its output to the run directory and records how it ended.
//! After each record it writes the run's id to its standard output, so that the daemon
//! looks at the run at once rather than at its next poll.
//!
//! It runs in a process group of its own, so the daemon can die (even by `kill -9`) and
//! restart while commands keep running and their ends are still recorded. The daemon's
//! death closes the supervisor's standard input: it then takes no more runs, and exits
//! once those it has have ended. A restarted daemon starts a supervisor of its own.
//!
//! Each command gets a process group of its own too: the daemon stops a run by
//! signalling the command's group, never the supervisor's, so the supervisor outlives
//! the command it watches and records the signal that ended it. (This needs no signal
//! handler, which nix only offers through `unsafe`.)
//!
//! The supervisor uses plain threads, no async runtime: two per run, one waiting for the
//! command and one copying its output.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::Duration;

use nix::unistd::{AccessFlags, access};
use rota_core::job::ExecutorSpec;
use rota_core::run::RunId;

use super::run_dir::{
    self, OUTPUT_FILE, SPEC_FILE, STATUS_FILE, SpecFile, Status, StatusLog, read_json, run_of,
    wall_now,
};
use crate::executor::run_env;

/// The `PATH` a command gets when the daemon has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// What runs a script the kernel cannot execute, as `execvp` does.
const SHELL: &str = "/bin/sh";

/// How long the supervisor keeps copying output after the command has exited, for what
/// its background processes (which may hold the pipe open forever) still write; then it
/// closes its end of the pipe, and their writes fail.
const OUTPUT_DRAIN_AFTER_EXIT_MS: u64 = 2_000;

/// The size of one read from the output pipe.
const OUTPUT_CHUNK_BYTES: usize = 8 * 1024;

/// Writes a complaint to standard error, which the daemon logs. Once the daemon is gone
/// nobody reads it, and the write fails; `eprintln!` would panic then.
macro_rules! complain {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr(), $($arg)*);
    }};
}

/// The stack of a thread of the supervisor: it holds a read buffer on the heap and little
/// else.
const THREAD_STACK_BYTES: usize = 128 * 1024;

/// Supervises the runs of `runs_dir` that the daemon names on standard input, each to
/// its end: the body of the binary `rota-supervisor <runs dir>` and of the hidden
/// subcommand `rota __supervise <runs dir>`, one of which the daemon's process executor
/// starts. It returns once its input has closed and every run it took has ended.
///
/// A command's environment is clean, not the daemon's: `PATH` (the daemon's, or
/// `/usr/local/bin:/usr/bin:/bin`), `HOME` and `LANG` when the daemon has them, then
/// the job's own `env`, then `ROTA_JOB`, `ROTA_RUN_ID`, `ROTA_SCHEDULED_AT`,
/// `ROTA_ATTEMPT` and `ROTA_HOST`. Its working directory is the job's `cwd` (relative
/// to the run directory), else the run directory. No shell is involved, unless the
/// program is a script without a `#!` line, which `/bin/sh` runs, as `execvp` would.
/// Processes the command leaves behind holding its output lose it two seconds after it
/// exits: the supervisor closes its end of the pipe, so their next write fails (and
/// `SIGPIPE` kills those that do not ignore it, as when a supervisor of one run exited).
///
/// It exits with success if it recorded the end of every run it took (a failed launch is
/// an end too), with failure if it could not.
pub fn supervise_main(runs_dir: &Path) -> ExitCode {
    let told = Told(Mutex::new(io::stdout()));
    let failed = AtomicBool::new(false);
    let fail = || failed.store(true, Ordering::Relaxed);
    thread::scope(|scope| {
        for line in io::stdin().lock().lines() {
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    complain!("rota supervisor: cannot read the daemon's requests: {e}");
                    fail();
                    break;
                }
            };
            let Some(run) = run_of(OsStr::new(line.trim())) else {
                complain!("rota supervisor: ignoring a request that names no run: {line:?}");
                continue;
            };
            let dir = run_dir::run_dir(runs_dir, run);
            let (told, fail) = (&told, &fail);
            let spawned = thread::Builder::new()
                .name(format!("run {run}"))
                .stack_size(THREAD_STACK_BYTES)
                .spawn_scoped(scope, move || {
                    let recorded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        supervise_run(&dir, &|| told.tell(run, News::Changed))
                    }))
                    .unwrap_or(false);
                    if recorded {
                        told.tell(run, News::Changed);
                    } else {
                        // The daemon would otherwise wait for an end that never comes.
                        fail();
                        told.tell(run, News::Lost);
                    }
                });
            if let Err(e) = spawned {
                // Recorded as the run's end, so that the daemon reports it at once.
                let error = format!("the supervisor cannot start a thread for the run: {e}");
                complain!("rota supervisor: run {run}: {error}");
                if record_failure(&run_dir::run_dir(runs_dir, run), error).is_ok() {
                    told.tell(run, News::Changed);
                } else {
                    fail();
                    told.tell(run, News::Lost);
                }
            }
        }
    });
    if failed.load(Ordering::Relaxed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Where the supervisor tells the daemon which run has news: its standard output.
struct Told(Mutex<io::Stdout>);

/// What the supervisor says of a run on its standard output.
#[derive(Clone, Copy)]
enum News {
    /// Its status has changed: `<run id>`.
    Changed,
    /// Its end could not be recorded, and never will be: `<run id> lost`.
    Lost,
}

impl Told {
    /// Writes `run`'s id, and what became of it, as one line, in one write. A daemon that
    /// is gone is not told.
    fn tell(&self, run: RunId, news: News) {
        let line = match news {
            News::Changed => format!("{run}\n"),
            News::Lost => format!("{run} {LOST}\n"),
        };
        let mut out = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    }
}

/// The word after a run's id on the supervisor's standard output that says the
/// supervisor could not record the run's end.
pub(super) const LOST: &str = "lost";

/// Records that the run in `run_dir` could not be supervised, for `error`.
fn record_failure(run_dir: &Path, error: String) -> io::Result<()> {
    let status = Status {
        pid: std::process::id(),
        error: Some(error),
        finished_at: Some(wall_now()),
        ..Status::default()
    };
    StatusLog::create(run_dir).and_then(|mut log| log.record(&status, true))
}

/// Supervises the run whose directory is `run_dir` to its end, calling `started` once
/// its start is recorded; whether its end is recorded.
fn supervise_run(run_dir: &Path, started: &dyn Fn()) -> bool {
    let mut status = Status {
        pid: std::process::id(),
        ..Status::default()
    };
    // First thing: say who supervises the run, so the daemon can tell later whether
    // its supervisor lives. Not synced: a crash of the machine ends us too, and a status
    // holding only our pid says what no status says, that the command never started.
    let opened =
        StatusLog::create(run_dir).and_then(|mut log| log.record(&status, false).map(|()| log));
    let mut log = match opened {
        Ok(log) => log,
        Err(e) => {
            complain!(
                "rota supervisor: cannot write {}: {e}",
                run_dir.join(STATUS_FILE).display()
            );
            return false;
        }
    };
    let recorded = match supervise(run_dir, &mut status, &mut log, started) {
        Ok(recorded) => recorded,
        Err(error) => {
            complain!("rota supervisor: {}: {error}", run_dir.display());
            status.error = Some(error);
            status.finished_at = Some(wall_now());
            log.record(&status, true)
        }
    };
    match recorded {
        Ok(()) => true,
        Err(e) => {
            complain!(
                "rota supervisor: cannot record the end of the run in {}: {e}",
                run_dir.join(STATUS_FILE).display()
            );
            false
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
    started: &dyn Fn(),
) -> Result<io::Result<()>, String> {
    let order: SpecFile = match read_json(run_dir, SPEC_FILE) {
        Ok(Some(order)) => order,
        Ok(None) => return Err(format!("{} is missing", run_dir.join(SPEC_FILE).display())),
        Err(e) => return Err(format!("cannot read the run's spec: {e}")),
    };
    let output = File::create(run_dir.join(OUTPUT_FILE))
        .map_err(|e| format!("cannot create {}: {e}", run_dir.join(OUTPUT_FILE).display()))?;
    let launch = Launch::new(run_dir, &order)?;
    // One pipe for both stdout and stderr, so that the output keeps the order in which
    // the command wrote it.
    let (reader, writer) = io::pipe().map_err(|e| format!("cannot create the output pipe: {e}"))?;
    // The copy goes on in a thread of its own, started first so that a command never
    // runs without one. Processes the command started may hold the pipe open after it
    // exits: closing `abandon` then ends the copy, and the pipe with it.
    let (abandoned, abandon) =
        io::pipe().map_err(|e| format!("cannot create the output pipe: {e}"))?;
    let (copied, copy_done) = mpsc::channel();
    let bytes_max = order.output_bytes_max;
    thread::Builder::new()
        .stack_size(THREAD_STACK_BYTES)
        .spawn(move || {
            if let Err(e) = copy_output(reader, output, bytes_max, &abandoned) {
                complain!("rota supervisor: cannot copy the command's output: {e}");
            }
            let _ = copied.send(());
        })
        .map_err(|e| format!("cannot start a thread to copy the command's output: {e}"))?;
    let spawned = launch.spawn(&writer);
    // Drop our copy of the pipe's write end, or the copy would never see the end of the
    // output.
    drop(writer);
    let mut child = spawned.map_err(|e| format!("cannot execute `{}`: {e}", launch.program))?;
    status.child_pid = Some(child.id());
    status.started_at = Some(wall_now());
    match log.record(status, true) {
        Ok(()) => started(),
        // The run goes on; the daemon learns of it at the end.
        Err(e) => complain!(
            "rota supervisor: {}: cannot record the start of the run: {e}",
            run_dir.display()
        ),
    }

    let end = wait_without_reaping(&mut child);
    if copy_done
        .recv_timeout(Duration::from_millis(OUTPUT_DRAIN_AFTER_EXIT_MS))
        .is_err()
    {
        complain!(
            "rota supervisor: {}: processes the command left behind still hold its output \
             open; their output after its exit is not kept, and their pipe is closed",
            run_dir.display()
        );
    }
    drop(abandon);
    status.finished_at = Some(wall_now());
    match end {
        Ok(End::Code(code)) => status.exit_code = Some(code),
        Ok(End::Signal(signal)) => status.signal = Some(signal),
        Err(e) => {
            let error = format!("cannot wait for the command: {e}");
            complain!("rota supervisor: {error}");
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

/// How to start the command of a run.
struct Launch<'a> {
    /// The program, as the job names it: argument zero.
    program: &'a str,
    /// Its arguments.
    args: &'a [String],
    /// Where it is.
    path: PathBuf,
    /// The environment it starts with.
    env: Vec<(String, OsString)>,
    /// Its working directory.
    cwd: PathBuf,
}

impl<'a> Launch<'a> {
    fn new(run_dir: &Path, order: &'a SpecFile) -> Result<Self, String> {
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
        let mut env = base_env();
        env.extend(process.env.iter().map(|(k, v)| (k.clone(), v.into())));
        env.extend(
            run_env(&order.spec, order.host)
                .into_iter()
                .map(|(k, v)| (k, v.into())),
        );
        // The last value of a name counts, as in `Command::envs`.
        let path = env
            .iter()
            .rev()
            .find(|(name, _)| name == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Ok(Self {
            program,
            args,
            path: find_program(program, &path, &cwd),
            env,
            cwd,
        })
    }

    /// Starts the command with its output to `output`. A file the kernel cannot
    /// execute (a script without a `#!` line) is run by `/bin/sh`, as `execvp` does.
    fn spawn(&self, output: &io::PipeWriter) -> io::Result<Child> {
        match self.command(false, output)?.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOEXEC) => {
                self.command(true, output)?.spawn()
            }
            spawned => spawned,
        }
    }

    /// The command, or with `by_shell` the shell running the program as a script.
    fn command(&self, by_shell: bool, output: &io::PipeWriter) -> io::Result<Command> {
        let mut command;
        if by_shell {
            command = Command::new(SHELL);
            command.arg(&self.path);
        } else {
            command = Command::new(&self.path);
            command.arg0(self.program);
        }
        command
            .args(self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output.try_clone()?)
            // Its own process group: the daemon signals it, and everything it started,
            // without signalling the supervisor.
            .process_group(0);
        Ok(command)
    }
}

/// Where `program` is, searched as `execvp` does in the directories of `path` (relative
/// ones, and an empty one, from `cwd`) when it names no directory; as it is when it does,
/// or when no executable file of that name is found (the start then fails as it would
/// have, naming it).
///
/// Starting a command by its path lets the standard library start it with
/// `posix_spawn`, which shares the supervisor's memory until the command executes,
/// rather than with `fork`, which copies the supervisor's page tables (of every thread's
/// stack) and runs one at a time in the whole process.
fn find_program(program: &str, path: &OsStr, cwd: &Path) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    std::env::split_paths(path)
        .map(|dir| cwd.join(dir).join(program))
        .find(|candidate| {
            candidate.metadata().is_ok_and(|m| m.is_file())
                && access(candidate, AccessFlags::X_OK).is_ok()
        })
        .unwrap_or_else(|| PathBuf::from(program))
}

/// The environment every command starts from.
fn base_env() -> Vec<(String, OsString)> {
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
/// so that the command never blocks on a full pipe or dies of a closed one; or until
/// the write end of `abandoned` is closed.
fn copy_output(
    mut pipe: io::PipeReader,
    mut output: File,
    bytes_max: u64,
    abandoned: &io::PipeReader,
) -> io::Result<()> {
    let mut buf = vec![0u8; OUTPUT_CHUNK_BYTES];
    let mut kept: u64 = 0;
    let mut last_byte = b'\n';
    let mut keeping = true;
    let mut write_error = None;
    loop {
        if !readable_unless_abandoned(&pipe, abandoned)? {
            break;
        }
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

/// Waits until `pipe` can be read (or has ended) or the write end of `abandoned` is
/// closed; whether `pipe` can be read.
fn readable_unless_abandoned(
    pipe: &io::PipeReader,
    abandoned: &io::PipeReader,
) -> io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;

    loop {
        let mut fds = [
            PollFd::new(abandoned.as_fd(), PollFlags::POLLIN),
            PollFd::new(pipe.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        if ready(&fds[0]) {
            return Ok(false);
        }
        if ready(&fds[1]) {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn copied(input: &[u8], bytes_max: u64) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(OUTPUT_FILE);
        let (reader, mut writer) = io::pipe().unwrap();
        let input = input.to_vec();
        let feeder = thread::spawn(move || writer.write_all(&input).unwrap());
        let (abandoned, _abandon) = io::pipe().unwrap();
        copy_output(reader, File::create(&path).unwrap(), bytes_max, &abandoned).unwrap();
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
    fn a_program_is_found_in_the_path_as_execvp_finds_it() {
        let root = tempfile::tempdir().unwrap();
        let (first, second) = (root.path().join("first"), root.path().join("second"));
        for dir in [&first, &second] {
            std::fs::create_dir(dir).unwrap();
        }
        let write = |path: PathBuf, mode: u32| {
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        // Not executable in the first directory: skipped.
        write(first.join("job"), 0o644);
        write(second.join("job"), 0o755);
        let path = std::env::join_paths([&first, &second]).unwrap();
        assert_eq!(find_program("job", &path, root.path()), second.join("job"));
        // A relative directory of the PATH counts from the working directory.
        assert_eq!(
            find_program("job", OsStr::new("second"), root.path()),
            second.join("job")
        );
        // Named with a directory, or found nowhere: as it is.
        assert_eq!(
            find_program("./job", &path, root.path()),
            PathBuf::from("./job")
        );
        assert_eq!(
            find_program("missing", &path, root.path()),
            PathBuf::from("missing")
        );
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
