//! The Docker executor: runs a job as a container on this host's Docker engine, through
//! bollard on the engine's Unix socket.
//!
//! A run's container is named after the cluster and the run
//! ([`container_name`], `rota-<cluster>-run-<run id>`), so the engine itself refuses a
//! second container for a run: a start repeated after a leader change, a lost
//! acknowledgement or a daemon restart finds the first container ("name already in
//! use") and reports what became of it instead of starting another. The container
//! carries labels naming the cluster, host, job, run, attempt and fire time, and the
//! run's whole spec as JSON (`rota.spec`), so that a restarted daemon can adopt it from
//! the engine's word alone. Its limits are the job's: `cpus` cores, `memory_mb` of memory
//! and as much memory plus swap (no swapping), `pids_max` processes (default 256), and
//! the network `none` unless the job names one. It gets the job's environment and the
//! same `ROTA_*` variables as a process run.
//!
//! Images follow the job's pull policy: `if-missing` (create the container, and pull
//! only if the engine lacks the image), `always` (pull first), `never`. An image that is
//! missing and cannot be pulled fails the run at once with `image-unavailable`, naming
//! the image: every engine call is bounded, and a pull must make progress within the
//! request timeout.
//!
//! While the container runs, `docker logs --follow` is copied into the run's directory,
//! `runs_dir/<run id>/output`, bounded like a process run's output, so that the API
//! serves live and finished output of both alike (the engine captures stdout and
//! stderr apart, so lines keep their order within each, not always across them). The
//! container's exit code is the run's; a container killed for going over its memory
//! limit is reported `oom-killed`. Stopping a run (its timeout, a `replace`, a lease
//! expiry) stops the container with the stop grace period, after which the engine
//! kills it. A finished container is removed once its end and output are recorded,
//! except the last `containers_kept_max`, kept for debugging. The run directory's
//! files are described in `run_dir.rs`.
//!
//! At daemon start-up ([`Executor::recover`]) the executor lists the containers with this
//! cluster's and this host's labels: one still running is reported `Adopted` and
//! watched to its end, one that ended while the daemon was down is reported `Exited`,
//! one created but never started is removed (the leader dispatches the run again). Runs
//! the leader no longer considers active are stopped by the leader once this host
//! reports them.

mod container;
mod engine;
mod output;
mod recovery;
mod run_dir;
mod watch;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rota_core::host::HostId;
use rota_core::job::{DockerSpec, ExecutorSpec, PullPolicy};
use rota_core::node::ExecutorEvent;
use rota_core::run::{Reason, RunId, RunSpec, bounded_detail};
use rota_core::time::Timestamp;
use tokio::sync::{Notify, watch as signal};

use self::container::Found;
use self::output::OutputFile;
use self::run_dir::{ContainerFile, OUTPUT_FILE};
use self::watch::Announce;
use super::{Events, Executor};
use crate::io::BoxFuture;

pub use self::container::container_name;
pub use self::engine::{Engine, EngineConfig, EngineError};
pub(crate) use self::run_dir::wall_now;

/// How the Docker executor runs containers (how it reaches the engine is the
/// [`Engine`]'s business).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerExecutorConfig {
    /// The directory holding one directory per run (shared with the process executor).
    pub runs_dir: PathBuf,
    /// The cluster's name, in container names and labels.
    pub cluster_name: String,
    /// The most output kept per run, in bytes. Default 1 MiB.
    pub output_bytes_max: u64,
    /// How many finished containers are kept for debugging. Default 0.
    pub containers_kept_max: usize,
    /// How many run directories this host keeps (of both executors); the oldest docker
    /// runs' directories are removed beyond that. Default 1000.
    pub runs_kept_max: usize,
}

impl DockerExecutorConfig {
    /// The defaults, with runs kept under `runs_dir`.
    pub fn new(runs_dir: PathBuf, cluster_name: impl Into<String>) -> Self {
        DockerExecutorConfig {
            runs_dir,
            cluster_name: cluster_name.into(),
            output_bytes_max: 1024 * 1024,
            containers_kept_max: 0,
            runs_kept_max: 1000,
        }
    }
}

/// Whether the run directory of `run` under `runs_dir` is a docker run's.
pub fn is_docker_run(runs_dir: &Path, run: RunId) -> bool {
    run_dir::is_docker_run(&run_dir::run_dir(runs_dir, run))
}

/// Runs jobs as containers of the local Docker engine. See the
/// [module documentation](self).
///
/// Dropping it stops watching containers (as the daemon's death would), never the
/// containers.
#[derive(Debug)]
pub struct DockerExecutor {
    shared: Arc<Shared>,
    /// Dropped with the executor, which ends every watch.
    _alive: signal::Sender<()>,
}

/// What the executor and its tasks share.
#[derive(Debug)]
struct Shared {
    config: DockerExecutorConfig,
    engine: Engine,
    host: HostId,
    events: Events,
    /// The runs this daemon is starting or watching.
    runs: Mutex<BTreeMap<RunId, Arc<RunHandle>>>,
    /// Where tasks run.
    tokio: tokio::runtime::Handle,
    /// Closed when the executor is dropped.
    alive: signal::Receiver<()>,
}

/// The daemon's side of one run being started or watched.
#[derive(Debug, Default)]
struct RunHandle {
    /// Why the daemon asked the run to stop, once it has.
    stop: Mutex<Option<Reason>>,
    /// Wakes the run's watch early (a stop request).
    wake: Notify,
    /// When its container started, once it has and that is reported.
    started: Mutex<Option<Timestamp>>,
}

impl RunHandle {
    fn stop_reason(&self) -> Option<Reason> {
        *self.stop.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn request_stop(&self, reason: Reason) {
        self.stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
    }

    fn started(&self) -> Option<Timestamp> {
        *self.started.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_started(&self, at: Timestamp) {
        *self.started.lock().unwrap_or_else(PoisonError::into_inner) = Some(at);
    }
}

impl DockerExecutor {
    /// An executor running containers on `engine`, keeping run directories under
    /// `config.runs_dir` (created if missing) and reporting to `events`. It must be
    /// created inside a tokio runtime, where it spawns its tasks.
    pub fn new(
        mut config: DockerExecutorConfig,
        engine: Engine,
        host: HostId,
        events: Events,
    ) -> io::Result<Self> {
        let tokio = tokio::runtime::Handle::try_current().map_err(|_| {
            io::Error::other("the docker executor must be created inside a tokio runtime")
        })?;
        std::fs::create_dir_all(&config.runs_dir)?;
        config.runs_dir = std::fs::canonicalize(&config.runs_dir)?;
        let (alive_tx, alive_rx) = signal::channel(());
        Ok(DockerExecutor {
            shared: Arc::new(Shared {
                config,
                engine,
                host,
                events,
                runs: Mutex::new(BTreeMap::new()),
                tokio,
                alive: alive_rx,
            }),
            _alive: alive_tx,
        })
    }

    /// The configuration in use (with `runs_dir` made absolute).
    pub fn config(&self) -> &DockerExecutorConfig {
        &self.shared.config
    }

    /// The engine it runs containers on.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Whether `run` is a docker run of this host: being started or watched, or with a
    /// docker run's directory.
    pub fn owns(&self, run: RunId) -> bool {
        self.shared.runs().contains_key(&run) || run_dir::is_docker_run(&self.shared.run_dir(run))
    }
}

impl Shared {
    fn run_dir(&self, run: RunId) -> PathBuf {
        run_dir::run_dir(&self.config.runs_dir, run)
    }

    fn name(&self, run: RunId) -> String {
        container_name(&self.config.cluster_name, run)
    }

    fn runs(&self) -> MutexGuard<'_, BTreeMap<RunId, Arc<RunHandle>>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, event: ExecutorEvent) {
        if self.events.send(event).is_err() {
            tracing::debug!("docker executor: nobody listens to executor events any more");
        }
    }

    /// Starts handling `run`, unless this daemon already does; its new handle.
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

    /// The run has ended (or will never start): records how, durably, so that a later
    /// start or a restarted daemon reports the same; then reports it.
    fn finish(&self, run: RunId, event: ExecutorEvent) {
        let dir = self.run_dir(run);
        if dir.is_dir()
            && let Err(e) = run_dir::write_end(&dir, &event)
        {
            tracing::warn!(%run, "docker executor: cannot record the end of the run in {}: {e}", dir.display());
        }
        self.unregister(run);
        self.send(event);
    }

    /// The run could not be started.
    fn fail(&self, run: RunId, reason: Reason, detail: String) {
        tracing::warn!(%run, %reason, "docker executor: {detail}");
        self.finish(
            run,
            ExecutorEvent::LaunchFailed {
                run,
                at: wall_now(),
                reason,
                detail: bounded_detail(&detail),
            },
        );
    }

    /// Spawns the task that watches `run`'s container to its end, and answers its handle
    /// (dropping the handle leaves the task running).
    fn spawn_watch(
        self: &Arc<Self>,
        run: RunId,
        handle: Arc<RunHandle>,
        output: Option<OutputFile>,
        announce: Announce,
        memory_mb: Option<u64>,
    ) -> tokio::task::JoinHandle<()> {
        let shared = Arc::clone(self);
        self.tokio.spawn(async move {
            watch::watch(shared, run, handle, output, announce, memory_mb).await;
        })
    }

    /// The output file of a container that ran before, to go on copying into; none
    /// (and a warning) if it cannot be opened.
    fn resume_output(&self, run: RunId) -> Option<OutputFile> {
        let path = self.run_dir(run).join(OUTPUT_FILE);
        match OutputFile::resume(&path, self.config.output_bytes_max) {
            Ok(output) => Some(output),
            Err(e) => {
                tracing::warn!(%run, "docker executor: cannot open {}; the run's output is not kept: {e}", path.display());
                None
            }
        }
    }
}

/// Why a run could not be started.
#[derive(Debug)]
struct Failure {
    reason: Reason,
    detail: String,
}

impl Failure {
    fn launch(detail: String) -> Self {
        Failure {
            reason: Reason::LaunchFailed,
            detail,
        }
    }

    fn image(detail: String) -> Self {
        Failure {
            reason: Reason::ImageUnavailable,
            detail,
        }
    }
}

/// What creating a run's container came to.
#[derive(Debug)]
enum Creation {
    /// A new container, not started.
    New,
    /// The run's container existed already: it was started before.
    Existing,
}

/// Starts a run (registered by the caller as `handle`): unless it is known to have
/// ended, creates its container (pulling the image as its policy says) and starts it.
async fn launch(shared: Arc<Shared>, spec: RunSpec, handle: Arc<RunHandle>) {
    let run = spec.id;
    let ExecutorSpec::Docker(docker) = &*spec.executor else {
        shared.fail(
            run,
            Reason::LaunchFailed,
            "the run is not for the docker executor".into(),
        );
        return;
    };
    let dir = shared.run_dir(run);
    // A run this host saw end (this daemon or an earlier one) is not started again.
    if let Some(end) = run_dir::read_end(&dir) {
        tracing::debug!(%run, "docker executor: the run ended before; reporting its end again");
        shared.unregister(run);
        shared.send(end);
        return;
    }
    let name = shared.name(run);
    let file = ContainerFile {
        container: name.clone(),
        host: shared.host,
        spec: spec.clone(),
    };
    if let Err(e) = run_dir::prepare(&dir, &file) {
        shared.fail(
            run,
            Reason::LaunchFailed,
            format!("cannot create the run directory {}: {e}", dir.display()),
        );
        return;
    }
    match create(&shared, &name, &spec, docker).await {
        Ok(Creation::New) => start_created(&shared, run, handle, &name, docker).await,
        Ok(Creation::Existing) => existing(&shared, &spec, handle, &name, docker).await,
        Err(failure) => shared.fail(run, failure.reason, failure.detail),
    }
}

/// Creates the run's container, pulling its image as the job's policy says; or finds
/// that it exists already.
async fn create(
    shared: &Shared,
    name: &str,
    spec: &RunSpec,
    docker: &DockerSpec,
) -> Result<Creation, Failure> {
    let image = &docker.image;
    let body = container::create_body(&shared.config.cluster_name, shared.host, spec, docker);
    let mut pulled = false;
    if docker.pull == PullPolicy::Always {
        pull(shared, image).await?;
        pulled = true;
    }
    let mut cleared = false;
    loop {
        let error = match shared.engine.create(name, body.clone()).await {
            Ok(()) => return Ok(Creation::New),
            Err(e) => e,
        };
        if error.is_conflict() {
            // The name is taken: by this run's container, started before, or by a
            // leftover.
            match shared.engine.inspect(name).await {
                Ok(Some(found)) => {
                    match container::examine(&found, &shared.config.cluster_name, shared.host, spec)
                    {
                        Found::Foreign {
                            running: false,
                            ours: true,
                        } if !cleared => {
                            // A finished container of an earlier cluster with the same name
                            // (its run ids started again): rota's own leftover.
                            tracing::warn!(container = %name, "docker executor: removing a finished container of an earlier cluster of the same name that holds the run's container name");
                            shared.engine.remove(name, false).await.map_err(|e| {
                            Failure::launch(format!(
                                "the container name {name} is taken by a leftover container that cannot be removed: {e}"
                            ))
                        })?;
                            cleared = true;
                            continue;
                        }
                        Found::Foreign { .. } => {
                            return Err(Failure::launch(format!(
                                "the container name {name} is taken by a container that is not this run's; remove it, or give this cluster another `cluster_name`"
                            )));
                        }
                        _ => return Ok(Creation::Existing),
                    }
                }
                // Removed meanwhile: try once more.
                Ok(None) if !cleared => {
                    cleared = true;
                    continue;
                }
                Ok(None) => {
                    return Err(Failure::launch(format!(
                        "the container {name} exists and vanishes again: {error}"
                    )));
                }
                // The run's container exists; what became of it, its watch finds out.
                Err(_) => return Ok(Creation::Existing),
            }
        }
        if error.is_not_found() && error.message().to_ascii_lowercase().contains("image") {
            match docker.pull {
                PullPolicy::Never => {
                    return Err(Failure::image(format!(
                        "image {image} is not on this host, and the job's pull policy is `never`: {}",
                        error.message()
                    )));
                }
                _ if !pulled => {
                    pull(shared, image).await?;
                    pulled = true;
                    continue;
                }
                _ => {
                    return Err(Failure::image(format!(
                        "image {image} is not on this host even after pulling it: {}",
                        error.message()
                    )));
                }
            }
        }
        return Err(Failure::launch(format!(
            "cannot create a container of image {image}: {error}"
        )));
    }
}

/// Pulls `image`, failing the run with `image-unavailable` if that is not possible.
async fn pull(shared: &Shared, image: &str) -> Result<(), Failure> {
    tracing::info!(image, "docker executor: pulling the image");
    shared.engine.pull(image).await.map_err(|e| {
        Failure::image(format!(
            "image {image} is not on this host and cannot be pulled: {e}"
        ))
    })
}

/// Starts the run's created container and watches it; a stop that came first removes it
/// instead.
async fn start_created(
    shared: &Arc<Shared>,
    run: RunId,
    handle: Arc<RunHandle>,
    name: &str,
    docker: &DockerSpec,
) {
    if let Some(reason) = handle.stop_reason() {
        if let Err(e) = shared.engine.remove(name, true).await {
            tracing::warn!(%run, "docker executor: cannot remove the container of a run stopped before it started: {e}");
        }
        shared.finish(
            run,
            ExecutorEvent::Exited {
                run,
                at: wall_now(),
                started_at: None,
                exit_code: None,
                reason: Some(reason),
                detail: Some("stopped before its container started".into()),
            },
        );
        return;
    }
    let path = shared.run_dir(run).join(OUTPUT_FILE);
    let output = match OutputFile::create(&path, shared.config.output_bytes_max) {
        Ok(output) => output,
        Err(e) => {
            if let Err(e) = shared.engine.remove(name, true).await {
                tracing::warn!(%run, "docker executor: cannot remove the container: {e}");
            }
            shared.fail(
                run,
                Reason::LaunchFailed,
                format!("cannot create the output file {}: {e}", path.display()),
            );
            return;
        }
    };
    match shared.engine.start(name).await {
        Ok(()) => {
            let at = wall_now();
            {
                // Under the lock: a repeated start reports `Started` only once it is true.
                let _runs = shared.runs();
                handle.set_started(at);
                shared.send(ExecutorEvent::Started { run, at });
            }
            tracing::debug!(%run, container = %name, "docker executor: container started");
            shared.spawn_watch(
                run,
                handle,
                Some(output),
                Announce::Nothing,
                docker.memory_mb,
            );
        }
        Err(e @ (EngineError::Timeout { .. } | EngineError::Transport { .. })) => {
            // The engine may have started it without saying so: its watch finds out.
            tracing::warn!(%run, "docker executor: {e}; watching the container to find out whether it started");
            shared.spawn_watch(
                run,
                handle,
                Some(output),
                Announce::Started,
                docker.memory_mb,
            );
        }
        Err(e) => {
            if let Err(e) = shared.engine.remove(name, true).await {
                tracing::warn!(%run, "docker executor: cannot remove the container that did not start: {e}");
            }
            shared.fail(
                run,
                Reason::LaunchFailed,
                format!(
                    "cannot start the container of image {}: {}",
                    docker.image,
                    e.message()
                ),
            );
        }
    }
}

/// A start of a run whose container exists already: reports what became of it, and
/// watches it if it still runs; starts it if an earlier start stopped between creating
/// and starting it.
async fn existing(
    shared: &Arc<Shared>,
    spec: &RunSpec,
    handle: Arc<RunHandle>,
    name: &str,
    docker: &DockerSpec,
) {
    let run = spec.id;
    tracing::debug!(%run, container = %name, "docker executor: the run's container exists already; not starting another");
    let found = match shared.engine.inspect(name).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            shared.fail(
                run,
                Reason::LaunchFailed,
                format!("the container {name} vanished while the run was being started"),
            );
            return;
        }
        Err(e) => {
            tracing::warn!(%run, "docker executor: {e}; watching the container to find out what became of it");
            let output = shared.resume_output(run);
            shared.spawn_watch(run, handle, output, Announce::Started, docker.memory_mb);
            return;
        }
    };
    match container::examine(&found, &shared.config.cluster_name, shared.host, spec) {
        Found::Created { error: None } => {
            start_created(shared, run, handle, name, docker).await;
        }
        Found::Created { error: Some(error) } => {
            if let Err(e) = shared.engine.remove(name, true).await {
                tracing::warn!(%run, "docker executor: cannot remove the container that did not start: {e}");
            }
            shared.fail(
                run,
                Reason::LaunchFailed,
                format!(
                    "cannot start the container of image {}: {error}",
                    docker.image
                ),
            );
        }
        Found::Running { started_at } => {
            {
                let _runs = shared.runs();
                handle.set_started(started_at);
                shared.send(ExecutorEvent::Started {
                    run,
                    at: started_at,
                });
            }
            let output = shared.resume_output(run);
            shared.spawn_watch(run, handle, output, Announce::Nothing, docker.memory_mb);
        }
        Found::Ended(_) => {
            // Its watch records and reports the end, with the rest of its output.
            let output = shared.resume_output(run);
            shared.spawn_watch(run, handle, output, Announce::Nothing, docker.memory_mb);
        }
        Found::Foreign { .. } => shared.fail(
            run,
            Reason::LaunchFailed,
            format!("the container name {name} is taken by a container that is not this run's; remove it, or give this cluster another `cluster_name`"),
        ),
    }
}

impl Executor for DockerExecutor {
    fn start(&self, spec: RunSpec) {
        let run = spec.id;
        match self.shared.register(run) {
            Some(handle) => {
                let shared = Arc::clone(&self.shared);
                self.shared.tokio.spawn(launch(shared, spec, handle));
            }
            None => {
                // Being started or watched already: say again that it started, if it
                // has; what comes next is reported by its watch.
                let runs = self.shared.runs();
                if let Some(at) = runs.get(&run).and_then(|h| h.started()) {
                    self.shared.send(ExecutorEvent::Started { run, at });
                }
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
            None => tracing::debug!(%run, %reason, "docker executor: no such run executing here"),
        }
    }

    fn recover(&self) -> BoxFuture<'_, Vec<ExecutorEvent>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { recovery::recover(&shared).await })
    }

    fn output_path(&self, run: RunId) -> Option<PathBuf> {
        let dir = self.shared.run_dir(run);
        run_dir::is_docker_run(&dir).then(|| dir.join(OUTPUT_FILE))
    }
}
