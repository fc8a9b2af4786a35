//! A docker run's directory, `runs_dir/<run id>/`: the same place and the same `output`
//! file as a process run's, so that the API serves both alike. The engine's containers
//! are the truth about runs that still have one; these files are what outlives them.
//!
//! | file             | written                          | holds |
//! |------------------|----------------------------------|-------|
//! | `container.json` | before the container is created  | the container's name, the host, the run's spec: marks the directory as a docker run's |
//! | `output`         | while the container runs         | its stdout and stderr from `docker logs`, bounded |
//! | `stop.json`      | when the daemon stops the run    | why, so that a restarted daemon still reports the stop |
//! | `end.json`       | once the run has ended, durably, before its container is removed | the event that reported the end |

use std::io;
use std::path::{Path, PathBuf};

use rota_core::host::HostId;
use rota_core::node::ExecutorEvent;
use rota_core::run::{Reason, RunId, RunSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::io::{Disk, FsDisk};

/// Marks a docker run's directory and holds what the run is.
pub(super) const CONTAINER_FILE: &str = "container.json";
/// The container's output.
pub(super) const OUTPUT_FILE: &str = "output";
/// The daemon's stop request.
pub(super) const STOP_FILE: &str = "stop.json";
/// How the run ended.
pub(super) const END_FILE: &str = "end.json";

/// What `container.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ContainerFile {
    /// The container's name.
    pub container: String,
    /// The host the run executes on.
    pub host: HostId,
    /// The run.
    pub spec: RunSpec,
}

/// What `stop.json` holds (the process executor's file has the same shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StopFile {
    reason: Reason,
}

/// The directory of `run` under `runs_dir`.
pub(super) fn run_dir(runs_dir: &Path, run: RunId) -> PathBuf {
    runs_dir.join(run.0.to_string())
}

/// The run a directory entry of `runs_dir` belongs to, if it is a run directory.
pub(super) fn run_of(name: &std::ffi::OsStr) -> Option<RunId> {
    let name = name.to_str()?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok().map(RunId)
}

/// Whether `dir` is a docker run's directory.
pub(super) fn is_docker_run(dir: &Path) -> bool {
    dir.join(CONTAINER_FILE).is_file()
}

/// Creates the run's directory (if needed) with its `container.json` and an empty
/// `output`, ready for a new container.
///
/// `container.json` is not synced to disk: a container the engine has is found by its
/// labels, which hold the same.
pub(super) fn prepare(dir: &Path, container: &ContainerFile) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec_pretty(container).map_err(io::Error::other)?;
    let tmp = dir.join(format!(".{CONTAINER_FILE}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(CONTAINER_FILE))
}

/// Reads `container.json`.
pub(super) fn read_container(dir: &Path) -> Option<ContainerFile> {
    read_json(dir, CONTAINER_FILE)
}

/// Records the stop request, so that a restarted daemon still reports it.
pub(super) fn write_stop(dir: &Path, reason: Reason) -> io::Result<()> {
    write_json(dir, STOP_FILE, &StopFile { reason })
}

/// The stop the daemon (this one or an earlier one) asked of the run, if any.
pub(super) fn read_stop(dir: &Path) -> Option<Reason> {
    read_json::<StopFile>(dir, STOP_FILE).map(|s| s.reason)
}

/// Records, durably, how the run ended.
pub(super) fn write_end(dir: &Path, event: &ExecutorEvent) -> io::Result<()> {
    write_json(dir, END_FILE, event)
}

/// How the run ended, if that is recorded.
pub(super) fn read_end(dir: &Path) -> Option<ExecutorEvent> {
    read_json(dir, END_FILE)
}

/// Replaces `dir/name` with `value` as JSON, crash-safely.
fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    FsDisk.write_atomic(&dir.join(name), &bytes)
}

/// Reads `dir/name` as JSON; none if it is missing, or unreadable (which is logged).
fn read_json<T: DeserializeOwned>(dir: &Path, name: &str) -> Option<T> {
    let path = dir.join(name);
    match FsDisk.read(&path) {
        Ok(None) => None,
        Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::warn!("docker executor: {} is not valid: {e}", path.display());
                None
            }
        },
        Err(e) => {
            tracing::warn!("docker executor: cannot read {}: {e}", path.display());
            None
        }
    }
}

pub(crate) use crate::io::clock::system_wall_now as wall_now;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rota_core::job::{Concurrency, DockerSpec, ExecutorSpec, JobName, PullPolicy};
    use rota_core::time::Timestamp;

    use super::*;

    #[test]
    fn a_docker_run_directory_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().join("7");
        let spec = RunSpec {
            id: RunId(7),
            job: JobName::new("j").unwrap(),
            scheduled_at: Timestamp::from_secs(100),
            attempt: 1,
            executor: Arc::new(ExecutorSpec::Docker(DockerSpec {
                image: "a:1".into(),
                command: Vec::new(),
                env: Default::default(),
                cpus: None,
                memory_mb: None,
                pids_max: None,
                network: None,
                pull: PullPolicy::IfMissing,
            })),
            timeout_ms: None,
            concurrency: Concurrency::Allow,
            start_by: Timestamp::from_secs(400),
        };
        let file = ContainerFile {
            container: "rota-c-run-7".into(),
            host: HostId(3),
            spec,
        };
        assert!(!is_docker_run(&dir));
        prepare(&dir, &file).unwrap();
        assert!(is_docker_run(&dir));
        assert_eq!(read_container(&dir), Some(file));
        assert_eq!(read_stop(&dir), None);
        write_stop(&dir, Reason::Timeout).unwrap();
        assert_eq!(read_stop(&dir), Some(Reason::Timeout));
        let end = ExecutorEvent::LaunchFailed {
            run: RunId(7),
            at: Timestamp::from_secs(101),
            reason: Reason::ImageUnavailable,
            detail: "image a:1 is not on this host".into(),
        };
        assert_eq!(read_end(&dir), None);
        write_end(&dir, &end).unwrap();
        assert_eq!(read_end(&dir), Some(end));
        assert_eq!(run_of(std::ffi::OsStr::new("7")), Some(RunId(7)));
        assert_eq!(run_of(std::ffi::OsStr::new(".7")), None);
    }
}
