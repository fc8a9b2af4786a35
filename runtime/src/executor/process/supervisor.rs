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
//! - the launcher, which reads the daemon's requests and starts each run's command;
//! - an event loop, which waits on every started command at once (`epoll` over each
//!   command's pidfd and output pipe), copying output and writing each end as it comes;
//! - the recorder (`recorder.rs`), which makes the status lines durable, several with one
//!   sync when several wait, reaps the ended commands, and then tells the daemon.
//!
//! A launch that blocks (a working directory on a dead network mount) holds up the
//! launches after it, never the ends of the runs already started. Linux only; without
//! pidfds (before Linux 5.3) the loop polls for each command's end instead.

use std::collections::{BTreeSet, HashMap};
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
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rota_core::run::RunId;
use rustix::process::{WaitId, WaitIdOptions, waitid};

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

/// How often the loop looks for the end of a command it has no pidfd of.
const UNWATCHED_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The most events taken from `epoll` at once.
const EVENTS_PER_WAIT_MAX: usize = 256;

/// The stack of a thread of the supervisor: it holds a read buffer on the heap and little
/// else.
const THREAD_STACK_BYTES: usize = 128 * 1024;

/// What an event is about, in the low bits of its `epoll` token; the rest is the run's
/// key in the loop. Keys are never reused, so an event of a run that has ended finds
/// no run.
const TOKEN_KIND_BITS: u32 = 2;
/// The launcher has handed over runs.
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
/// starts. It returns once its input has closed and every run it took has ended; or,
/// should its event loop fail, once it has killed the commands it watched and told the
/// daemon their runs are lost.
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
        let looped = Supervisor::new(runs_dir, written).map(Supervisor::run);
        if let Err(e) = &looped {
            complain!("rota supervisor: cannot start: {e}");
        }
        // The loop has dropped its sender: the recorder ends once it has recorded all.
        let recorded = recorder.join().unwrap_or(false);
        looped.unwrap_or(false) && recorded
    });
    if recorded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What the launcher hands the loop.
enum Request {
    /// A run whose command has started.
    Launched(Box<Launched>),
    /// A run that could not start: its last status line.
    Failed(Written),
    /// No more runs: standard input has ended, or could not be read (`failed`).
    Closed { failed: bool },
}

/// A run whose command the launcher started, for the loop to watch.
struct Launched {
    /// The run as the loop keeps it, its output not yet watched.
    running: Running,
    /// The line that says the command started, for the recorder.
    started: Written,
}

/// The launcher: reads the daemon's requests, one run id per line, until standard input
/// ends, and starts each run; hands each to the loop, waking it with a byte on `wake`.
/// Every status line goes to the recorder through the loop, so that the recorder's
/// input ends when the loop does.
fn launch_requested(runs_dir: &Path, requests: &mpsc::Sender<Request>, mut wake: io::PipeWriter) {
    let mut send = |request| match requests.send(request) {
        Ok(()) => {
            let _ = wake.write_all(b"r");
            true
        }
        // The loop has ended, and the supervisor is exiting: a command started now
        // would run unwatched and unrecorded.
        Err(mpsc::SendError(request)) => {
            if let Request::Launched(launched) = request {
                let mut child = launched.running.child;
                kill_group(&child);
                let _ = child.wait();
            }
            false
        }
    };
    for line in io::stdin().lock().lines() {
        let sent = match line {
            Ok(line) => match run_of(std::ffi::OsStr::new(line.trim())) {
                Some(run) => send(launch(runs_dir, run)),
                None => {
                    complain!("rota supervisor: ignoring a request that names no run: {line:?}");
                    true
                }
            },
            Err(e) => {
                complain!("rota supervisor: cannot read the daemon's requests: {e}");
                send(Request::Closed { failed: true });
                return;
            }
        };
        if !sent {
            return;
        }
    }
    send(Request::Closed { failed: false });
}

/// Starts `run`: writes its first status lines and starts its command.
fn launch(runs_dir: &Path, run: RunId) -> Request {
    let dir = run_dir::run_dir(runs_dir, run);
    let mut status = Status {
        pid: std::process::id(),
        ..Status::default()
    };
    // First thing: say who supervises the run, so the daemon can tell later whether its
    // supervisor lives. Not synced: a crash of the machine ends us too, and a status
    // holding only our pid says what no status says, that the command never started.
    let opened = StatusLog::create(&dir).and_then(|mut log| log.write(&status).map(|()| log));
    let mut log = match opened {
        Ok(log) => log,
        Err(e) => {
            return Request::Failed(Written {
                run,
                dir,
                file: Err(e),
                step: Step::Ended(None),
            });
        }
    };
    let (child, output) = match start_command(&dir) {
        Ok(started) => started,
        Err(error) => {
            complain!("rota supervisor: {}: {error}", dir.display());
            status.error = Some(error);
            status.finished_at = Some(wall_now());
            let file = log.write(&status).map(|()| log.file());
            return Request::Failed(Written {
                run,
                dir,
                file,
                step: Step::Ended(None),
            });
        }
    };
    status.child_pid = Some(child.id());
    status.started_at = Some(wall_now());
    let started = Written {
        run,
        dir: dir.clone(),
        file: log.write(&status).map(|()| log.file()),
        step: Step::Started,
    };
    Request::Launched(Box::new(Launched {
        running: Running {
            run,
            dir,
            status,
            log,
            child,
            exit: None,
            end: None,
            output: Some(output),
            output_until: None,
        },
        started,
    }))
}

/// Starts the command of the run in `dir`, with its output going to a pipe.
fn start_command(dir: &Path) -> Result<(Child, OutputCopy), String> {
    let order: SpecFile = match read_json(dir, SPEC_FILE) {
        Ok(Some(order)) => order,
        Ok(None) => return Err(format!("{} is missing", dir.join(SPEC_FILE).display())),
        Err(e) => return Err(format!("cannot read the run's spec: {e}")),
    };
    let launch = Launch::new(dir, &order)?;
    // One pipe for both stdout and stderr, so that the output keeps the order in which
    // the command wrote it. The command blocks on it when it is full, until the loop
    // reads it.
    let pipe_error = |e: &dyn std::fmt::Display| format!("cannot create the output pipe: {e}");
    let (reader, writer) = io::pipe().map_err(|e| pipe_error(&e))?;
    fcntl(&reader, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| pipe_error(&e))?;
    let spawned = launch.spawn(&writer);
    // Drop our copy of the pipe's write end, or the copy would never see the end of the
    // output.
    drop(writer);
    let child = spawned.map_err(|e| format!("cannot execute `{}`: {e}", launch.program))?;
    Ok((
        child,
        OutputCopy::new(reader, dir.join(OUTPUT_FILE), order.output_bytes_max),
    ))
}

/// The event loop and the runs it watches.
struct Supervisor {
    epoll: Epoll,
    /// Runs from the launcher, which writes a byte to `wake` after each.
    requests: mpsc::Receiver<Request>,
    /// Watched while more runs may come; none once no more can.
    wake: Option<io::PipeReader>,
    /// Whether standard input could be read to its end.
    requests_read: bool,
    runs: HashMap<u64, Running>,
    next_key: u64,
    /// The runs whose output is let go of at a time: their commands have exited, and
    /// their pipes are still open.
    lingering: BTreeSet<(Instant, u64)>,
    /// The runs whose commands' ends are looked for by polling, having no pidfd, and
    /// when next.
    unwatched: BTreeSet<u64>,
    next_poll: Instant,
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
    /// Readable once the command has exited; none once that is seen, or if the
    /// command has no pidfd (its end is polled for).
    exit: Option<OwnedFd>,
    /// How the command ended, once it has.
    end: Option<io::Result<End>>,
    /// The copy of its output, until the pipe ends or is let go of.
    output: Option<OutputCopy>,
    /// When the output is let go of, once the command has exited.
    output_until: Option<Instant>,
}

/// How the command ended.
enum End {
    /// It exited with this code.
    Code(i32),
    /// This signal killed it (`SIGTERM`, or `signal 40` for one without a name).
    Signal(String),
}

impl Supervisor {
    fn new(runs_dir: &Path, written: mpsc::Sender<Written>) -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let (wake, waker) = io::pipe()?;
        fcntl(&wake, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        epoll.add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_REQUESTS))?;
        let (sender, requests) = mpsc::channel();
        let runs_dir = runs_dir.to_path_buf();
        // Detached: it blocks on standard input until the daemon closes it, and must not
        // keep the supervisor from exiting if the loop fails first.
        thread::Builder::new()
            .name("rota launcher".to_owned())
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || launch_requested(&runs_dir, &sender, waker))?;
        Ok(Supervisor {
            epoll,
            requests,
            wake: Some(wake),
            requests_read: true,
            runs: HashMap::new(),
            next_key: 0,
            lingering: BTreeSet::new(),
            unwatched: BTreeSet::new(),
            next_poll: Instant::now(),
            written,
            buf: vec![0; OUTPUT_CHUNK_BYTES],
        })
    }

    /// Runs the loop until no more requests may come and every run has ended; whether
    /// standard input was read to its end and the loop did not fail.
    fn run(mut self) -> bool {
        let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT_MAX];
        while self.wake.is_some() || !self.runs.is_empty() {
            let timeout = self.timeout(Instant::now());
            let ready = match self.epoll.wait(&mut events, timeout) {
                Ok(ready) => ready,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    self.abandon(&format!("cannot wait for events: {e}"));
                    return false;
                }
            };
            for event in &events[..ready] {
                let key = event.data() >> TOKEN_KIND_BITS;
                match event.data() & ((1 << TOKEN_KIND_BITS) - 1) {
                    TOKEN_REQUESTS => self.take_requests(),
                    TOKEN_EXIT => self.exited(key),
                    TOKEN_OUTPUT => self.output(key),
                    _ => {}
                }
            }
            if !self.unwatched.is_empty() && self.next_poll <= Instant::now() {
                self.next_poll = Instant::now() + UNWATCHED_POLL_INTERVAL;
                for key in self.unwatched.clone() {
                    self.exited(key);
                }
            }
            self.let_go_of_lingering_output(Instant::now());
        }
        self.requests_read
    }

    /// How long the loop may wait: until the next output to let go of, or the next poll
    /// of an unwatched command.
    fn timeout(&self, now: Instant) -> EpollTimeout {
        let poll = (!self.unwatched.is_empty()).then_some(self.next_poll);
        let next = self.lingering.first().map(|(until, _)| *until);
        match next.into_iter().chain(poll).min() {
            None => EpollTimeout::NONE,
            Some(until) => {
                // Rounded up, so that the loop does not wake just before it.
                let ms = until
                    .saturating_duration_since(now)
                    .as_micros()
                    .div_ceil(1_000);
                EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
            }
        }
    }

    fn take_requests(&mut self) {
        // Drain the wake-ups, then take every request sent so far.
        if let Some(wake) = self.wake.as_mut() {
            while matches!(wake.read(&mut self.buf), Ok(n) if n > 0) {}
        }
        loop {
            match self.requests.try_recv() {
                Ok(Request::Launched(launched)) => self.watch(launched),
                Ok(Request::Failed(written)) => self.record(written),
                // The last request: the launcher is gone after it.
                Ok(Request::Closed { failed }) => {
                    self.requests_read &= !failed;
                    self.stop_taking();
                    return;
                }
                Err(mpsc::TryRecvError::Empty) => return,
                // The launcher is gone without a word: it cannot have read to the end.
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.requests_read = false;
                    self.stop_taking();
                    return;
                }
            }
        }
    }

    fn stop_taking(&mut self) {
        if let Some(wake) = self.wake.take() {
            let _ = self.epoll.delete(&wake);
        }
    }

    /// Watches the command of a launched run: its end and its output.
    fn watch(&mut self, launched: Box<Launched>) {
        let key = self.next_key;
        self.next_key += 1;
        let Launched {
            mut running,
            started,
        } = *launched;
        self.record(started);
        let output_token = EpollEvent::new(EpollFlags::EPOLLIN, token(key, TOKEN_OUTPUT));
        let watched = running
            .output
            .as_ref()
            .map(|output| self.epoll.add(&output.pipe, output_token));
        if let Some(Err(e)) = watched {
            running.output = None;
            // Unread, the pipe would fill and block the command for good.
            let error = format!("cannot read the command's output, so it was killed: {e}");
            complain!("rota supervisor: {}: {error}", running.dir.display());
            running.status.error = Some(error);
            kill_group(&running.child);
        }
        match self.pidfd(&running.child, key) {
            Ok(exit) => running.exit = Some(exit),
            Err(e) => {
                complain!(
                    "rota supervisor: {}: no pidfd of the command ({e}); its end is polled for",
                    running.dir.display()
                );
                if self.unwatched.is_empty() {
                    self.next_poll = Instant::now() + UNWATCHED_POLL_INTERVAL;
                }
                self.unwatched.insert(key);
            }
        }
        self.runs.insert(key, running);
    }

    /// A pidfd of `child`, watched under `key`.
    fn pidfd(&self, child: &Child, key: u64) -> io::Result<OwnedFd> {
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
        let Some(end) = end_of(&running.child) else {
            return;
        };
        self.unwatched.remove(&key);
        if let Some(exit) = running.exit.take() {
            let _ = self.epoll.delete(&exit);
        }
        running.end = Some(end);
        if running.output.is_none() {
            self.finish(key);
        } else {
            let until = Instant::now() + OUTPUT_DRAIN_AFTER_EXIT;
            running.output_until = Some(until);
            self.lingering.insert((until, key));
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
        while let Some(&(until, key)) = self.lingering.first() {
            if until > now {
                return;
            }
            self.lingering.pop_first();
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
        if let Some(until) = running.output_until {
            self.lingering.remove(&(until, key));
        }
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
            .map(|()| running.log.file());
        self.record(Written {
            run: running.run,
            dir: running.dir,
            file,
            step: Step::Ended(Some(running.child)),
        });
    }

    /// The loop cannot go on (`why`): kills every command it watches, so that none runs
    /// on unrecorded, and has their runs told lost.
    fn abandon(&mut self, why: &str) {
        complain!("rota supervisor: {why}; the commands it watches are killed");
        self.stop_taking();
        // Runs handed over later find the loop gone, and the launcher kills them.
        while let Ok(request) = self.requests.try_recv() {
            match request {
                Request::Launched(launched) => self.watch(launched),
                Request::Failed(written) => self.record(written),
                Request::Closed { .. } => {}
            }
        }
        for (_, running) in std::mem::take(&mut self.runs) {
            kill_group(&running.child);
            self.record(Written {
                run: running.run,
                dir: running.dir,
                file: Err(io::Error::other(why.to_owned())),
                step: Step::Ended(Some(running.child)),
            });
        }
    }

    fn record(&self, written: Written) {
        if self.written.send(written).is_err() {
            complain!("rota supervisor: the recorder is gone; a status line is not made durable");
        }
    }
}

/// Kills `child`'s process group: the command and everything it started.
fn kill_group(child: &Child) {
    if let Ok(group) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
}

/// How `child` ended, if it has, leaving it a zombie (its pid and process group id still
/// taken) until the recorder reaps it.
fn end_of(child: &Child) -> Option<io::Result<End>> {
    let pid = rustix::process::Pid::from_child(child);
    loop {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
        return match waitid(WaitId::Pid(pid), options) {
            Ok(None) => None,
            Ok(Some(status)) => match (status.exit_status(), status.terminating_signal()) {
                (Some(code), _) => Some(Ok(End::Code(code))),
                (None, Some(signal)) => Some(Ok(End::Signal(
                    Signal::try_from(signal)
                        .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned()),
                ))),
                // Only an end was asked for; anything else is spurious.
                (None, None) => None,
            },
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => Some(Err(e.into())),
        };
    }
}
