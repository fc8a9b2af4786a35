//! The process executor: runs a job's command as a plain process on this host, in a way
//! that survives a crash or restart of the daemon.
//!
//! Each run gets a directory, `runs_dir/<run id>/`, holding `spec.json` (the run's spec
//! and the host id, written by the daemon before the run is handed over),
//! `status.jsonl` (the supervisor's record of the command's pid, start and end),
//! `output` (the command's stdout and stderr, interleaved and bounded) and `stop.json`
//! (the daemon's stop request).
//!
//! The runs are handed to the host's supervisor ([`supervise_main`]), one process that
//! lives across runs: `rota-supervisor <runs dir>` where that binary is installed beside
//! `rota` (`cargo install` installs both), else the `rota` binary itself run as
//! `rota __supervise <runs dir>`, which does the same. The daemon starts it when it
//! first needs it, in a process group of its own, so that the daemon's death, even by
//! `kill -9`, does not take the runs with it; the supervisor starts each command (in
//! yet another process group), copies its output to the run directory and records its
//! start and end in `status.jsonl`, then names the run on its standard output so that
//! the daemon looks at once. The daemon otherwise only watches that file, and so does a
//! restarted daemon, which adopts the runs it finds still executing
//! ([`Executor::recover`]) and starts a supervisor of its own for new runs; the old one
//! exits once its runs have ended. A supervisor that dies takes its runs' records with
//! it: runs it had started end `host-lost`, those it had not `launch-failed`, and the
//! next run starts another.
//!
//! Stopping a run signals the command's process group (`SIGTERM`, then `SIGKILL` after
//! the grace period), never the supervisor's: the supervisor lives on to record the
//! signal. Under systemd, run the daemon with `KillMode=process`, or stopping the
//! service kills the supervisor too (its runs are then reported `host-lost`).
//!
//! The command's environment is documented at [`supervise_main`].

mod recovery;
mod resident;
mod run_dir;
mod supervisor;
mod watch;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rota_core::host::HostId;
use rota_core::node::ExecutorEvent;
use rota_core::run::{Reason, RunId, RunSpec};
use tokio::sync::{Notify, watch as signal};

use self::run_dir::{SPEC_FILE, SpecFile, wall_now, write_json_unsynced};
use self::watch::{Announce, Supervisor};
use super::{Events, Executor};
use crate::io::BoxFuture;

pub use self::supervisor::{DEFAULT_PATH, supervise_main};

/// The argument that makes the `rota` binary the supervisor: `rota __supervise <runs dir>`.
pub const SUPERVISE_SUBCOMMAND: &str = "__supervise";

/// The supervisor's own binary, looked for beside the daemon's.
pub const SUPERVISOR_BINARY: &str = "rota-supervisor";

/// How the process executor runs commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessConfig {
    /// The directory holding one directory per run.
    pub runs_dir: PathBuf,
    /// The supervisor's program and leading arguments; the runs directory is appended.
    /// Default: see [`default_supervisor`].
    pub supervisor: Vec<OsString>,
    /// The most output kept per run, in bytes; the rest is dropped, and a last line
    /// says so. Default 1 MiB.
    pub output_bytes_max: u64,
    /// How long a stopped command has to end after `SIGTERM` before it gets `SIGKILL`.
    /// Default 10 s.
    pub stop_grace_ms: u64,
    /// How many run directories this host keeps; the oldest finished ones are removed
    /// beyond that. Default 1000.
    pub runs_kept_max: usize,
    /// How often a run's status is looked at. Default 200 ms.
    pub poll_interval_ms: u64,
}

impl ProcessConfig {
    /// The defaults, with runs kept under `runs_dir`.
    pub fn new(runs_dir: PathBuf) -> Self {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("rota"));
        ProcessConfig {
            runs_dir,
            supervisor: default_supervisor(&exe),
            output_bytes_max: 1024 * 1024,
            stop_grace_ms: 10_000,
            runs_kept_max: 1000,
            poll_interval_ms: 200,
        }
    }
}

/// The supervisor of a daemon whose executable is `exe`: `rota-supervisor` where it is
/// installed beside `exe` (it starts faster and takes less memory), else `exe __supervise`.
pub fn default_supervisor(exe: &Path) -> Vec<OsString> {
    let own = exe.with_file_name(SUPERVISOR_BINARY);
    if own.is_file() {
        vec![own.into_os_string()]
    } else {
        vec![exe.as_os_str().to_owned(), SUPERVISE_SUBCOMMAND.into()]
    }
}

/// Runs jobs' commands as processes on this host, under a supervisor that outlives the
/// daemon. See the [module documentation](self).
///
/// Dropping it stops watching runs (as the daemon's death would), never the runs.
#[derive(Debug)]
pub struct ProcessExecutor {
    shared: Arc<Shared>,
    /// Dropped with the executor, which ends every watch.
    _alive: signal::Sender<()>,
}

/// What the executor and its watch tasks share.
#[derive(Debug)]
struct Shared {
    config: ProcessConfig,
    host: HostId,
    events: Events,
    /// The runs being watched by this daemon.
    runs: Mutex<BTreeMap<RunId, Arc<RunHandle>>>,
    /// This executor's run directories, oldest first: listed once at recovery, then
    /// added at each launch, so that removing the oldest needs no listing of them all;
    /// each with whether this daemon's watch saw its run end, so that removing it needs
    /// no look at its status.
    dirs: Mutex<BTreeMap<RunId, bool>>,
    /// Held while old run directories are removed, one removal at a time.
    pruning: Mutex<()>,
    /// The host's supervisor, once this daemon has started one.
    resident: Mutex<Option<resident::Resident>>,
    /// Where watch tasks run.
    tokio: tokio::runtime::Handle,
    /// Closed when the executor is dropped.
    alive: signal::Receiver<()>,
}

/// The daemon's side of one watched run.
#[derive(Debug, Default)]
struct RunHandle {
    /// Why the daemon asked the run to stop, once it has.
    stop: Mutex<Option<Reason>>,
    /// Wakes the run's watch task early (a stop request, or news from the supervisor).
    wake: Notify,
    /// Set when the supervisor says it cannot record the run's end.
    lost: std::sync::atomic::AtomicBool,
}

impl RunHandle {
    fn is_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn stop_reason(&self) -> Option<Reason> {
        *self
            .stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn request_stop(&self, reason: Reason) {
        self.stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(reason);
    }
}

impl ProcessExecutor {
    /// An executor keeping runs under `config.runs_dir` (created if missing) and
    /// reporting to `events`. It must be created inside a tokio runtime, where it
    /// spawns the tasks watching runs.
    pub fn new(mut config: ProcessConfig, host: HostId, events: Events) -> io::Result<Self> {
        if config.supervisor.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the process executor's supervisor command is empty",
            ));
        }
        if config.poll_interval_ms == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the process executor's poll_interval_ms must be at least 1",
            ));
        }
        let tokio = tokio::runtime::Handle::try_current().map_err(|_| {
            io::Error::other("the process executor must be created inside a tokio runtime")
        })?;
        fs::create_dir_all(&config.runs_dir)?;
        // Absolute, because the supervisor runs in it and a restarted
        // daemon recognises supervisors by their command line.
        config.runs_dir = fs::canonicalize(&config.runs_dir)?;
        let (alive_tx, alive_rx) = signal::channel(());
        Ok(ProcessExecutor {
            shared: Arc::new(Shared {
                config,
                host,
                events,
                runs: Mutex::new(BTreeMap::new()),
                dirs: Mutex::new(BTreeMap::new()),
                pruning: Mutex::new(()),
                resident: Mutex::new(None),
                tokio,
                alive: alive_rx,
            }),
            _alive: alive_tx,
        })
    }

    /// The configuration in use (with `runs_dir` made absolute).
    pub fn config(&self) -> &ProcessConfig {
        &self.shared.config
    }
}

impl Shared {
    fn run_dir(&self, run: RunId) -> PathBuf {
        run_dir::run_dir(&self.config.runs_dir, run)
    }

    fn runs(&self) -> MutexGuard<'_, BTreeMap<RunId, Arc<RunHandle>>> {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn send(&self, event: ExecutorEvent) {
        if self.events.send(event).is_err() {
            tracing::debug!("process executor: nobody listens to executor events any more");
        }
    }

    fn launch_failed(&self, run: RunId, detail: String) {
        tracing::warn!(%run, "process executor: {detail}");
        self.send(ExecutorEvent::LaunchFailed {
            run,
            at: wall_now(),
            reason: Reason::LaunchFailed,
            detail,
        });
    }

    /// Starts watching `run`, unless this daemon already does; the handle of the new
    /// watch.
    fn register(&self, run: RunId) -> Option<Arc<RunHandle>> {
        let mut runs = self.runs();
        if runs.contains_key(&run) {
            return None;
        }
        let handle = Arc::new(RunHandle::default());
        runs.insert(run, Arc::clone(&handle));
        Some(handle)
    }

    fn unregister(&self, run: RunId) {
        self.runs().remove(&run);
    }

    fn dirs(&self) -> MutexGuard<'_, BTreeMap<RunId, bool>> {
        self.dirs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Spawns the task that watches `run` to its end.
    fn spawn_watch(
        self: &Arc<Self>,
        run: RunId,
        handle: Arc<RunHandle>,
        supervisor: Supervisor,
        announce: Announce,
    ) {
        let shared = Arc::clone(self);
        self.tokio.spawn(async move {
            watch::watch(&shared, run, &handle, supervisor, announce).await;
        });
    }
}

/// Creates the run directory and hands the run to the supervisor; on success the run is
/// watched.
/// The run is registered (`handle`) by the caller.
fn launch(shared: &Arc<Shared>, spec: RunSpec, handle: Arc<RunHandle>) {
    let run = spec.id;
    let dir = shared.run_dir(run);
    // Creating the directory is what makes a start happen once: a second start of the
    // run, in this daemon or a later one, finds it.
    match fs::create_dir(&dir) {
        Ok(()) => {
            shared.dirs().insert(run, false);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            shared.dirs().entry(run).or_insert(false);
            recovery::resume(shared, run, handle);
            return;
        }
        Err(e) => {
            shared.unregister(run);
            shared.launch_failed(
                run,
                format!("cannot create the run directory {}: {e}", dir.display()),
            );
            return;
        }
    }
    let order = SpecFile {
        host: shared.host,
        output_bytes_max: shared.config.output_bytes_max,
        spec,
    };
    // Not synced to disk: the supervisor reads it from the page cache, and after a
    // crash of the machine, which ends the supervisor too, a lost spec only means a run
    // that never started (its start, recorded in `status.jsonl`, is synced).
    if let Err(e) = write_json_unsynced(&dir, SPEC_FILE, &order) {
        shared.unregister(run);
        shared.launch_failed(
            run,
            format!("cannot write the run's spec in {}: {e}", dir.display()),
        );
        return;
    }
    match resident::hand_over(shared, run) {
        Ok(life) => {
            tracing::debug!(%run, pid = life.pid, "process executor: run handed to the supervisor");
            shared.spawn_watch(run, handle, Supervisor::Resident(life), Announce::Started);
        }
        Err(e) => {
            shared.unregister(run);
            shared.launch_failed(
                run,
                format!(
                    "cannot start the host's supervisor {}: {e}",
                    Path::new(&shared.config.supervisor[0]).display()
                ),
            );
        }
    }
}

impl Executor for ProcessExecutor {
    fn start(&self, spec: RunSpec) {
        let run = spec.id;
        match self.shared.register(run) {
            Some(handle) => {
                let shared = Arc::clone(&self.shared);
                // Directory and process creation block briefly; keep them off the
                // caller's task.
                self.shared
                    .tokio
                    .spawn_blocking(move || launch(&shared, spec, handle));
            }
            None => {
                // Watched already: its watch reports what comes next; say again what
                // has happened so far.
                let shared = Arc::clone(&self.shared);
                self.shared
                    .tokio
                    .spawn_blocking(move || recovery::report_watched(&shared, run));
            }
        }
    }

    fn stop(&self, run: RunId, reason: Reason) {
        let handle = self.shared.runs().get(&run).cloned();
        match handle {
            Some(handle) => {
                handle.request_stop(reason);
                handle.wake.notify_one();
            }
            None => tracing::debug!(%run, %reason, "process executor: no such run executing here"),
        }
    }

    fn recover(&self) -> BoxFuture<'_, Vec<ExecutorEvent>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || recovery::recover(&shared)).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!("process executor: recovery failed: {e}");
                    Vec::new()
                }
            }
        })
    }

    fn output_path(&self, run: RunId) -> Option<PathBuf> {
        let dir = self.shared.run_dir(run);
        dir.is_dir().then(|| dir.join(run_dir::OUTPUT_FILE))
    }
}
