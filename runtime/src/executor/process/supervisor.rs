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
//! The supervisor has three threads, however many runs it has:
//! - an event loop, which starts each command and waits on all of them at once (`epoll`
//!   over each command's pidfd and output pipe), copying output and writing each status
//!   line as it comes;
//! - the recorder (`recorder.rs`), which makes those lines durable, several with one
//!   sync when several wait, and only then tells the daemon and reaps ended commands;
//! - a reader of the daemon's requests, which blocks on standard input.
//!
//! Linux only: it needs pidfds (Linux 5.3).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use rota_core::run::RunId;

use self::launch::Launch;
use self::output::OutputCopy;
use self::recorder::{Step, Written};
use super::run_dir::{
    self, OUTPUT_FILE, SPEC_FILE, SpecFile, Status, StatusLog, read_json, run_of, wall_now,
};

/// Writes a complaint to standard error, which the daemon logs. Once the daemon is gone
/// nobody reads it, and the write fails; `eprintln!` would panic then.
macro_rules! complain {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr(), $($arg)*);
    }};
}

mod launch;
mod output;
mod recorder;

pub use self::launch::DEFAULT_PATH;
pub(super) use self::recorder::LOST;

/// How long the supervisor keeps copying output after the command has exited, for what
/// its background processes (which may hold the pipe open forever) still write; then it
/// closes its end of the pipe, and their writes fail.
const OUTPUT_DRAIN_AFTER_EXIT: Duration = Duration::from_millis(2_000);

/// The size of one read from an output pipe.
const OUTPUT_CHUNK_BYTES: usize = 8 * 1024;

/// The most events taken from `epoll` at once.
const EVENTS_PER_WAIT_MAX: usize = 256;

/// The stack of a thread of the supervisor: it holds a read buffer on the heap and little
/// else.
const THREAD_STACK_BYTES: usize = 128 * 1024;

/// What an event is about, in the low bits of its `epoll` token; the rest is the run's
/// key in the loop.
const TOKEN_KIND_BITS: u32 = 2;
/// The daemon has sent requests.
const TOKEN_REQUESTS: u64 = 0;
/// A command has exited.
const TOKEN_EXIT: u64 = 1;
/// A command's output pipe can be read.
const TOKEN_OUTPUT: u64 = 2;

fn token(key: u64, kind: u64) -> u64 {
    (key << TOKEN_KIND_BITS) | kind
}

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
    let (written, to_record) = mpsc::channel();
    let recorded = thread::scope(|scope| {
        let recorder = thread::Builder::new()
            .name("rota recorder".to_owned())
            .stack_size(THREAD_STACK_BYTES)
            .spawn_scoped(scope, move || recorder::record(runs_dir, &to_record));
        let recorder = match recorder {
            Ok(recorder) => recorder,
            Err(e) => {
                complain!("rota supervisor: cannot start a thread: {e}");
                return false;
            }
        };
        let looped = Supervisor::new(runs_dir, written).and_then(Supervisor::run);
        if let Err(e) = &looped {
            complain!("rota supervisor: {e}; the runs it has are not watched any more");
        }
        // The loop has dropped its sender: the recorder ends once it has recorded all.
        let recorded = recorder.join().unwrap_or(false);
        looped.is_ok_and(|requests_read| requests_read) && recorded
    });
    if recorded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What the reader of standard input hands the loop.
enum Request {
    /// Supervise this run.
    Run(RunId),
    /// No more runs: standard input has ended, or could not be read (`failed`).
    Closed { failed: bool },
}

/// Reads the daemon's requests, one run id per line, until standard input ends; wakes
/// the loop with a byte on `wake` after each.
fn read_requests(requests: &mpsc::Sender<Request>, mut wake: io::PipeWriter) {
    let mut send = |request| {
        // The loop is gone only if the supervisor is exiting.
        if requests.send(request).is_ok() {
            let _ = wake.write_all(b"r");
        }
    };
    for line in io::stdin().lock().lines() {
        match line {
            Ok(line) => match run_of(std::ffi::OsStr::new(line.trim())) {
                Some(run) => send(Request::Run(run)),
                None => {
                    complain!("rota supervisor: ignoring a request that names no run: {line:?}")
                }
            },
            Err(e) => {
                complain!("rota supervisor: cannot read the daemon's requests: {e}");
                send(Request::Closed { failed: true });
                return;
            }
        }
    }
    send(Request::Closed { failed: false });
}

/// The event loop and the runs it watches.
struct Supervisor<'a> {
    runs_dir: &'a Path,
    epoll: Epoll,
    /// Requests from the reader of standard input, which writes a byte to `wake` after
    /// each.
    requests: mpsc::Receiver<Request>,
    wake: io::PipeReader,
    /// Whether more requests may come.
    taking: bool,
    /// Whether standard input could be read to its end.
    requests_read: bool,
    runs: HashMap<u64, Running>,
    next_key: u64,
    /// Where written status lines go, to be made durable.
    written: mpsc::Sender<Written>,
    buf: Vec<u8>,
}

/// A run whose command has started and whose end is not yet written.
struct Running {
    run: RunId,
    dir: PathBuf,
    status: Status,
    log: StatusLog,
    child: Child,
    /// Readable once the command has exited; none once that is seen.
    exit: Option<OwnedFd>,
    /// How the command ended, once it has.
    end: Option<io::Result<End>>,
    /// The copy of its output, until the pipe ends or is let go of.
    output: Option<OutputCopy>,
    /// When the output is let go of, if the command has exited and its pipe is still open.
    output_until: Option<Instant>,
}

/// How the command ended.
enum End {
    /// It exited with this code.
    Code(i32),
    /// This signal killed it.
    Signal(String),
}

impl<'a> Supervisor<'a> {
    fn new(runs_dir: &'a Path, written: mpsc::Sender<Written>) -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let (wake, waker) = io::pipe()?;
        fcntl(&wake, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        epoll.add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_REQUESTS))?;
        let (sender, requests) = mpsc::channel();
        // Detached: it blocks on standard input until the daemon closes it, and must not
        // keep the supervisor from exiting if the loop fails first.
        thread::Builder::new()
            .name("rota requests".to_owned())
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || read_requests(&sender, waker))?;
        Ok(Supervisor {
            runs_dir,
            epoll,
            requests,
            wake,
            taking: true,
            requests_read: true,
            runs: HashMap::new(),
            // Key 0 would make a token equal to `TOKEN_REQUESTS`.
            next_key: 1,
            written,
            buf: vec![0; OUTPUT_CHUNK_BYTES],
        })
    }

    /// Runs the loop until no more requests may come and every run has ended; whether
    /// standard input was read to its end. An error is one of `epoll`'s: the loop cannot
    /// go on.
    fn run(mut self) -> io::Result<bool> {
        let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT_MAX];
        while self.taking || !self.runs.is_empty() {
            let timeout = self.timeout(Instant::now());
            let ready = match self.epoll.wait(&mut events, timeout) {
                Ok(ready) => ready,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(io::Error::other(format!("cannot wait for events: {e}"))),
            };
            for event in &events[..ready] {
                let key = event.data() >> TOKEN_KIND_BITS;
                match event.data() & ((1 << TOKEN_KIND_BITS) - 1) {
                    TOKEN_REQUESTS => self.take_requests(),
                    TOKEN_EXIT => self.exited(key),
                    _ => self.output(key),
                }
            }
            self.let_go_of_lingering_output(Instant::now());
        }
        Ok(self.requests_read)
    }

    /// How long the loop may wait: until the next output to let go of.
    fn timeout(&self, now: Instant) -> EpollTimeout {
        self.runs
            .values()
            .filter_map(|r| r.output_until)
            .min()
            .map_or(EpollTimeout::NONE, |until| {
                // Rounded up, so that the loop does not wake just before it.
                let ms = until
                    .saturating_duration_since(now)
                    .as_micros()
                    .div_ceil(1_000);
                EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
            })
    }

    fn take_requests(&mut self) {
        // Drain the wake-ups, then take every request sent so far.
        while matches!(self.wake.read(&mut self.buf), Ok(n) if n > 0) {}
        while let Ok(request) = self.requests.try_recv() {
            match request {
                Request::Run(run) => self.start(run),
                Request::Closed { failed } => {
                    self.taking = false;
                    self.requests_read &= !failed;
                    let _ = self.epoll.delete(&self.wake);
                }
            }
        }
    }

    /// Starts `run`: writes its first status lines and its command, or why it could not.
    fn start(&mut self, run: RunId) {
        let dir = run_dir::run_dir(self.runs_dir, run);
        let mut status = Status {
            pid: std::process::id(),
            ..Status::default()
        };
        // First thing: say who supervises the run, so the daemon can tell later whether
        // its supervisor lives. Not synced: a crash of the machine ends us too, and a
        // status holding only our pid says what no status says, that the command never
        // started.
        let opened = StatusLog::create(&dir).and_then(|mut log| log.write(&status).map(|()| log));
        let mut log = match opened {
            Ok(log) => log,
            Err(e) => {
                self.record(Written {
                    run,
                    dir,
                    file: Err(e),
                    step: Step::Ended(None),
                });
                return;
            }
        };
        let key = self.next_key;
        self.next_key += 1;
        let (child, output) = match self.launch(&dir, key) {
            Ok(launched) => launched,
            Err(error) => {
                complain!("rota supervisor: {}: {error}", dir.display());
                status.error = Some(error);
                status.finished_at = Some(wall_now());
                let file = log.write(&status).map(|()| log.into_file());
                self.record(Written {
                    run,
                    dir,
                    file,
                    step: Step::Ended(None),
                });
                return;
            }
        };
        status.child_pid = Some(child.id());
        status.started_at = Some(wall_now());
        let file = log.write(&status).and_then(|()| log.file());
        self.record(Written {
            run,
            dir: dir.clone(),
            file,
            step: Step::Started,
        });
        let mut running = Running {
            run,
            dir,
            status,
            log,
            child,
            exit: None,
            end: None,
            output: Some(output),
            output_until: None,
        };
        match self.watch_exit(&running.child, key) {
            Ok(exit) => running.exit = Some(exit),
            Err(e) => {
                // Unwatched, its end would never be recorded: end it now instead.
                let error = format!("cannot watch the command, so it was killed: {e}");
                complain!("rota supervisor: {}: {error}", running.dir.display());
                running.status.error = Some(error);
                if let Ok(group) = i32::try_from(running.child.id()) {
                    let _ = nix::sys::signal::killpg(
                        Pid::from_raw(group),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                running.end = Some(wait_for_end(&running.child, WaitPidFlag::empty()));
                running.output_until = Some(Instant::now() + OUTPUT_DRAIN_AFTER_EXIT);
            }
        }
        self.runs.insert(key, running);
    }

    /// Starts the run's command with its output going to a pipe that the loop watches
    /// under `key` from before the command starts.
    fn launch(&self, dir: &Path, key: u64) -> Result<(Child, OutputCopy), String> {
        let order: SpecFile = match read_json(dir, SPEC_FILE) {
            Ok(Some(order)) => order,
            Ok(None) => return Err(format!("{} is missing", dir.join(SPEC_FILE).display())),
            Err(e) => return Err(format!("cannot read the run's spec: {e}")),
        };
        let output = File::create(dir.join(OUTPUT_FILE))
            .map_err(|e| format!("cannot create {}: {e}", dir.join(OUTPUT_FILE).display()))?;
        let launch = Launch::new(dir, &order)?;
        // One pipe for both stdout and stderr, so that the output keeps the order in
        // which the command wrote it.
        let pipe_error = |e: &dyn std::fmt::Display| format!("cannot create the output pipe: {e}");
        let (reader, writer) = io::pipe().map_err(|e| pipe_error(&e))?;
        fcntl(&reader, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| pipe_error(&e))?;
        self.epoll
            .add(
                &reader,
                EpollEvent::new(EpollFlags::EPOLLIN, token(key, TOKEN_OUTPUT)),
            )
            .map_err(|e| pipe_error(&e))?;
        let spawned = launch.spawn(&writer);
        // Drop our copy of the pipe's write end, or the copy would never see the end of
        // the output.
        drop(writer);
        match spawned {
            Ok(child) => Ok((
                child,
                OutputCopy::new(reader, output, order.output_bytes_max),
            )),
            Err(e) => {
                let _ = self.epoll.delete(&reader);
                Err(format!("cannot execute `{}`: {e}", launch.program))
            }
        }
    }

    /// A pidfd of `child`, watched under `key`.
    fn watch_exit(&self, child: &Child, key: u64) -> io::Result<OwnedFd> {
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_child(child),
            rustix::process::PidfdFlags::empty(),
        )?;
        self.epoll.add(
            &pidfd,
            EpollEvent::new(EpollFlags::EPOLLIN, token(key, TOKEN_EXIT)),
        )?;
        Ok(pidfd)
    }

    /// The command of the run under `key` may have exited.
    fn exited(&mut self, key: u64) {
        let Some(running) = self.runs.get_mut(&key) else {
            return;
        };
        let end = wait_for_end(&running.child, WaitPidFlag::WNOHANG);
        if matches!(&end, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            return;
        }
        if let Some(exit) = running.exit.take() {
            let _ = self.epoll.delete(&exit);
        }
        running.end = Some(end);
        if running.output.is_none() {
            self.finish(key);
        } else {
            running.output_until = Some(Instant::now() + OUTPUT_DRAIN_AFTER_EXIT);
        }
    }

    /// The output pipe of the run under `key` can be read.
    fn output(&mut self, key: u64) {
        let Some(running) = self.runs.get_mut(&key) else {
            return;
        };
        let Some(copy) = running.output.as_mut() else {
            return;
        };
        match copy.pump(&mut self.buf) {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => complain!(
                "rota supervisor: {}: cannot read the command's output: {e}",
                running.dir.display()
            ),
        }
        self.let_go_of_output(key);
        if self.runs.get(&key).is_some_and(|r| r.end.is_some()) {
            self.finish(key);
        }
    }

    /// Stops copying the output of the run under `key`, closing the pipe.
    fn let_go_of_output(&mut self, key: u64) {
        let Some(running) = self.runs.get_mut(&key) else {
            return;
        };
        if let Some(copy) = running.output.take() {
            let _ = self.epoll.delete(&copy.pipe);
            if let Some(e) = copy.into_write_error() {
                complain!(
                    "rota supervisor: cannot copy the command's output to {}: {e}",
                    running.dir.join(OUTPUT_FILE).display()
                );
            }
        }
    }

    /// Ends the runs whose commands exited more than the drain period ago while
    /// processes they left behind still hold their output open.
    fn let_go_of_lingering_output(&mut self, now: Instant) {
        let lingering: Vec<u64> = self
            .runs
            .iter()
            .filter(|(_, r)| r.output_until.is_some_and(|until| until <= now))
            .map(|(key, _)| *key)
            .collect();
        for key in lingering {
            if let Some(running) = self.runs.get(&key).filter(|r| r.output.is_some()) {
                complain!(
                    "rota supervisor: {}: processes the command left behind still hold its \
                     output open; their output after its exit is not kept, and their pipe \
                     is closed",
                    running.dir.display()
                );
            }
            self.let_go_of_output(key);
            self.finish(key);
        }
    }

    /// Writes the end of the run under `key`, whose command has exited and whose output
    /// is over, and hands it to the recorder.
    fn finish(&mut self, key: u64) {
        let Some(mut running) = self.runs.remove(&key) else {
            return;
        };
        let status = &mut running.status;
        status.finished_at = Some(wall_now());
        match running.end {
            Some(Ok(End::Code(code))) => status.exit_code = Some(code),
            Some(Ok(End::Signal(signal))) => status.signal = Some(signal),
            Some(Err(e)) => {
                let error = format!("cannot wait for the command: {e}");
                complain!("rota supervisor: {}: {error}", running.dir.display());
                status.error.get_or_insert(error);
            }
            None => {}
        }
        let file = running
            .log
            .write(&running.status)
            .map(|()| running.log.into_file());
        self.record(Written {
            run: running.run,
            dir: running.dir,
            file,
            step: Step::Ended(Some(running.child)),
        });
    }

    fn record(&self, written: Written) {
        if self.written.send(written).is_err() {
            complain!("rota supervisor: the recorder is gone; a status line is not made durable");
        }
    }
}

/// How `child` ended, leaving it a zombie (its pid and process group id still taken)
/// until the recorder reaps it; with `WNOHANG`, `WouldBlock` while it runs.
fn wait_for_end(child: &Child, flags: WaitPidFlag) -> io::Result<End> {
    let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
    loop {
        match waitid(
            Id::Pid(Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | flags,
        ) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(End::Code(code)),
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                return Ok(End::Signal(signal.as_str().to_owned()));
            }
            Ok(WaitStatus::StillAlive) => return Err(io::ErrorKind::WouldBlock.into()),
            // Only an end was asked for; anything else is spurious.
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
