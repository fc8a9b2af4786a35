//! Executors: what starts, stops and watches runs on this host. The core decides; an
//! executor does, and reports back through a channel of [`ExecutorEvent`]s.
//!
//! Every executor is idempotent by run id: a second start of the same run starts
//! nothing and reports what became of the first.

pub mod docker;
pub mod process;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rota_core::host::HostId;
use rota_core::node::ExecutorEvent;
use rota_core::run::{Reason, RunId, RunSpec};
use tokio::sync::mpsc;

use self::docker::DockerExecutor;
use self::process::ProcessExecutor;
use crate::io::BoxFuture;

/// Where an executor sends what happens to runs.
pub type Events = mpsc::UnboundedSender<ExecutorEvent>;

/// Starts, stops and watches runs.
pub trait Executor: Send + Sync + 'static {
    /// Starts a run, once. Reports `Started` then `Exited`, or `LaunchFailed`; a second
    /// start of a run already started reports its current status again.
    fn start(&self, spec: RunSpec);
    /// Stops a run (terminate, then kill after a grace period); it then reports `Exited`.
    fn stop(&self, run: RunId, reason: Reason);
    /// At start-up: the runs that ended while the daemon was down (as `Exited`) and
    /// those still executing (as `Adopted`, then watched to their end).
    fn recover(&self) -> BoxFuture<'_, Vec<ExecutorEvent>>;
    /// The file holding a run's output on this host, if it ran here.
    fn output_path(&self, run: RunId) -> Option<PathBuf>;
}

/// The environment a run sees besides its job's own: who it is, so that a job can make
/// itself idempotent.
pub fn run_env(spec: &RunSpec, host: HostId) -> Vec<(String, String)> {
    vec![
        ("ROTA_JOB".into(), spec.job.to_string()),
        ("ROTA_RUN_ID".into(), spec.id.to_string()),
        ("ROTA_SCHEDULED_AT".into(), spec.scheduled_at.to_string()),
        ("ROTA_ATTEMPT".into(), spec.attempt.to_string()),
        ("ROTA_HOST".into(), host.to_string()),
    ]
}

/// Where a daemon's [`DockerExecutor`] is, once it has one: filled at start-up when the
/// engine answers then, or later, when an engine that did not answer at start does.
pub type DockerSlot = Arc<OnceLock<DockerExecutor>>;

/// The executor of a daemon: sends each run to the executor of its kind, docker runs
/// to the [`DockerExecutor`] and process runs to the [`ProcessExecutor`]. Without a
/// Docker engine a docker run fails to launch, saying so (the leader places docker
/// runs only on hosts that advertise an engine, so this takes a leader that still goes
/// by what this host advertised before it restarted without one, or before it found
/// its engine gone).
///
/// Both executors keep their runs' directories in the same `runs_dir`, so the router
/// also keeps the process executor from reporting docker runs' directories, which it
/// does not understand, at start-up.
#[derive(Debug)]
pub struct Router {
    process: ProcessExecutor,
    docker: DockerSlot,
    /// Why there was no docker executor at start-up, for runs that need one.
    no_docker: String,
    events: Events,
}

impl Router {
    /// A router over `process` and the docker executor in `docker`, when there is one;
    /// `no_docker` says why there was none at start-up.
    pub fn new(
        process: ProcessExecutor,
        docker: DockerSlot,
        no_docker: String,
        events: Events,
    ) -> Self {
        Router {
            process,
            docker,
            no_docker,
            events,
        }
    }

    fn runs_dir(&self) -> &Path {
        &self.process.config().runs_dir
    }
}

impl Executor for Router {
    fn start(&self, spec: RunSpec) {
        if !spec.executor.needs_docker() {
            return self.process.start(spec);
        }
        match self.docker.get() {
            Some(docker) => docker.start(spec),
            None => {
                let detail = format!("this host has no Docker engine: {}", self.no_docker);
                tracing::warn!(run = %spec.id, "{detail}");
                let at = docker::wall_now();
                let event = ExecutorEvent::LaunchFailed {
                    run: spec.id,
                    at,
                    reason: Reason::LaunchFailed,
                    detail: rota_core::run::bounded_detail(&detail),
                };
                let _ = self.events.send(event);
            }
        }
    }

    fn stop(&self, run: RunId, reason: Reason) {
        match self.docker.get() {
            Some(docker) if docker.owns(run) => docker.stop(run, reason),
            _ => self.process.stop(run, reason),
        }
    }

    fn recover(&self) -> BoxFuture<'_, Vec<ExecutorEvent>> {
        Box::pin(async move {
            let mut events = match self.docker.get() {
                Some(docker) => docker.recover().await,
                None => Vec::new(),
            };
            let runs_dir = self.runs_dir().to_path_buf();
            events.extend(
                self.process
                    .recover()
                    .await
                    .into_iter()
                    .filter(|event| !docker::is_docker_run(&runs_dir, event_run(event))),
            );
            events
        })
    }

    fn output_path(&self, run: RunId) -> Option<PathBuf> {
        self.docker
            .get()
            .and_then(|docker| docker.output_path(run))
            .or_else(|| self.process.output_path(run))
    }
}

/// The run an event is about.
fn event_run(event: &ExecutorEvent) -> RunId {
    match event {
        ExecutorEvent::Adopted { spec, .. } => spec.id,
        ExecutorEvent::Started { run, .. }
        | ExecutorEvent::Exited { run, .. }
        | ExecutorEvent::LaunchFailed { run, .. } => *run,
    }
}
