//! Executors: what starts, stops and watches runs on this host. The core decides; an
//! executor does, and reports back through a channel of [`ExecutorEvent`]s.
//!
//! Every executor is idempotent by run id: a second start of the same run starts
//! nothing and reports what became of the first.

pub mod process;

use std::path::PathBuf;

use rota_core::host::HostId;
use rota_core::node::ExecutorEvent;
use rota_core::run::{Reason, RunId, RunSpec};
use tokio::sync::mpsc;

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
