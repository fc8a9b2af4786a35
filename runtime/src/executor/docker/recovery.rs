//! Reconciling with the engine at daemon start-up, and cleaning up after runs: removing
//! finished containers beyond those kept, and old run directories.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::ContainerSummaryStateEnum;
use rota_core::node::ExecutorEvent;
use rota_core::run::{Reason, RunId, bounded_detail};

use super::Shared;
use super::container::{self, Found, LABEL_RUN};
use super::run_dir::{self, wall_now};
use super::watch::Announce;
use rota_core::job::ExecutorSpec;

/// How long start-up waits for the ends of containers that ended while the daemon was
/// down to be recorded and reported (the rest of their output copied first).
const ENDED_WATCH_WAIT: Duration = Duration::from_secs(10);

/// At daemon start: reports and watches every run of this host that has a container
/// (running ones as `Adopted`, ended ones as `Exited` once their watch has their
/// output), reports the recorded ends of runs whose container is gone, removes
/// containers created but never started, then cleans up.
pub(super) async fn recover(shared: &Arc<Shared>) -> Vec<ExecutorEvent> {
    let cluster = shared.config.cluster_name.clone();
    let mut events = Vec::new();
    let filters = container::host_filters(&cluster, shared.host);
    let containers: BTreeSet<RunId> = match shared.engine.list(&filters).await {
        Ok(found) => found
            .iter()
            .filter_map(|c| c.labels.as_ref()?.get(LABEL_RUN)?.parse().ok().map(RunId))
            .collect(),
        Err(e) => {
            tracing::error!(
                "docker executor: cannot list this host's containers; runs they hold are not adopted: {e}"
            );
            BTreeSet::new()
        }
    };
    let dirs: BTreeSet<RunId> = run_ids(&shared.config.runs_dir)
        .into_iter()
        .filter(|run| run_dir::is_docker_run(&shared.run_dir(*run)))
        .collect();
    let mut adopted = 0usize;
    // The watches of containers that ended while no daemon watched them.
    let mut ending = Vec::new();
    for run in containers.union(&dirs).copied() {
        // A run this daemon already handles reports for itself.
        let Some(handle) = shared.register(run) else {
            continue;
        };
        let dir = shared.run_dir(run);
        let name = shared.name(run);
        let recorded = run_dir::read_container(&dir);
        if containers.contains(&run) {
            let found = match shared.engine.inspect(&name).await {
                Ok(Some(found)) => Some(found),
                Ok(None) => None,
                Err(e) => {
                    // What became of it, its watch finds out.
                    tracing::warn!(%run, "docker executor: {e}; watching the container to find out what became of it");
                    let announce = match recorded.map(|r| r.spec) {
                        Some(spec) => Announce::Adopted(Box::new(spec)),
                        None => Announce::Started,
                    };
                    let output = shared.resume_output(run);
                    shared.spawn_watch(run, handle, output, announce, None);
                    continue;
                }
            };
            if let Some(found) = found {
                let labels = found
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.clone())
                    .unwrap_or_default();
                let spec = container::spec_of(&labels).or(recorded.map(|r| r.spec));
                let memory_mb = spec.as_ref().and_then(|s| match &*s.executor {
                    ExecutorSpec::Docker(d) => d.memory_mb,
                    ExecutorSpec::Process(_) => None,
                });
                match found.state.as_ref().map(container::state_of) {
                    Some(Found::Running { started_at }) => {
                        if let Some(reason) = run_dir::read_stop(&dir) {
                            // Go on stopping it: the daemon that asked may have died
                            // before the container stopped.
                            handle.request_stop(reason);
                        }
                        handle.set_started(started_at);
                        match spec {
                            Some(spec) => events.push(ExecutorEvent::Adopted { spec, started_at }),
                            None => events.push(ExecutorEvent::Started {
                                run,
                                at: started_at,
                            }),
                        }
                        adopted += 1;
                        tracing::info!(%run, container = %name, "docker executor: adopted a container still running");
                        let output = shared.resume_output(run);
                        shared.spawn_watch(run, handle, output, Announce::Nothing, memory_mb);
                    }
                    Some(Found::Ended(_)) => {
                        // Its watch records and reports the end, once it has the rest
                        // of the output. Waited for below, so that the end is reported
                        // before the node starts: else the leader, asking this host
                        // about the run, could hear first that it has no record of it,
                        // and record the run `host-lost` instead of its exit code.
                        let output = shared.resume_output(run);
                        ending.push(shared.spawn_watch(
                            run,
                            handle,
                            output,
                            Announce::Nothing,
                            memory_mb,
                        ));
                    }
                    Some(Found::Created { error: None }) | None => {
                        // The daemon died between creating and starting it: it never
                        // ran, and the leader dispatches the run again.
                        tracing::info!(%run, container = %name, "docker executor: removing a container that was never started");
                        if let Err(e) = shared.engine.remove(&name, true).await {
                            tracing::warn!(%run, "docker executor: {e}");
                        }
                        shared.unregister(run);
                    }
                    Some(Found::Created { error: Some(error) }) => {
                        if let Err(e) = shared.engine.remove(&name, true).await {
                            tracing::warn!(%run, "docker executor: {e}");
                        }
                        let event = ExecutorEvent::LaunchFailed {
                            run,
                            at: wall_now(),
                            reason: Reason::LaunchFailed,
                            detail: bounded_detail(&format!(
                                "the container {name} could not start: {error}"
                            )),
                        };
                        if let Err(e) = run_dir::write_end(&dir, &event) {
                            tracing::warn!(%run, "docker executor: cannot record the end of the run: {e}");
                        }
                        shared.unregister(run);
                        events.push(event);
                    }
                    Some(Found::Foreign { .. }) => shared.unregister(run),
                }
                continue;
            }
        }
        // No container: what the run directory recorded.
        shared.unregister(run);
        match run_dir::read_end(&dir) {
            Some(end) => events.push(end),
            // Never created (the daemon died first), or removed outside rota: nothing
            // to report; the leader dispatches the run again, or learns that this host
            // does not know it.
            None => {
                tracing::debug!(%run, "docker executor: a run directory without a container or a recorded end")
            }
        }
    }
    let deadline = tokio::time::Instant::now() + ENDED_WATCH_WAIT;
    for watch in ending {
        if tokio::time::timeout_at(deadline, watch).await.is_err() {
            tracing::warn!(
                "docker executor: the ends of containers that ended while the daemon was down are still being recorded; going on without them"
            );
            break;
        }
    }
    if adopted > 0 {
        tracing::info!(
            adopted,
            "docker executor: containers from before the restart adopted"
        );
    }
    prune_containers(shared).await;
    let prune = Arc::clone(shared);
    let _ = tokio::task::spawn_blocking(move || prune_dirs(&prune)).await;
    events
}

/// Cleans up after `run`'s container ended and its end is recorded: removes it, or
/// keeps it and removes the oldest finished containers beyond `containers_kept_max`.
pub(super) async fn dispose(shared: &Shared, run: RunId) {
    if shared.config.containers_kept_max == 0 {
        let name = shared.name(run);
        if let Err(e) = shared.engine.remove(&name, false).await {
            tracing::warn!(%run, "docker executor: cannot remove the finished container: {e}");
        }
    } else {
        prune_containers(shared).await;
    }
}

/// Removes this host's finished containers beyond the newest `containers_kept_max`,
/// of runs no watch follows.
pub(super) async fn prune_containers(shared: &Shared) {
    let filters = container::host_filters(&shared.config.cluster_name, shared.host);
    let found = match shared.engine.list(&filters).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(
                "docker executor: cannot list this host's containers to remove finished ones: {e}"
            );
            return;
        }
    };
    let watched: BTreeSet<RunId> = shared.runs().keys().copied().collect();
    let finished: BTreeMap<RunId, ()> = found
        .iter()
        .filter(|c| {
            matches!(
                c.state,
                Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD)
            )
        })
        .filter_map(|c| c.labels.as_ref()?.get(LABEL_RUN)?.parse().ok().map(RunId))
        .filter(|run| !watched.contains(run))
        .map(|run| (run, ()))
        .collect();
    // Newest (highest run id) first: those are kept.
    for run in finished
        .keys()
        .rev()
        .skip(shared.config.containers_kept_max)
    {
        let name = shared.name(*run);
        match shared.engine.remove(&name, false).await {
            Ok(()) => {
                tracing::debug!(%run, container = %name, "docker executor: removed a finished container")
            }
            Err(e) => {
                tracing::warn!(%run, "docker executor: cannot remove a finished container: {e}")
            }
        }
    }
}

/// Removes the oldest docker runs' directories while there are more run directories
/// (of both executors) than `runs_kept_max`, only of runs no watch follows.
pub(super) fn prune_dirs(shared: &Shared) {
    let runs = run_ids(&shared.config.runs_dir);
    let mut excess = runs.len().saturating_sub(shared.config.runs_kept_max);
    if excess == 0 {
        return;
    }
    let watched: BTreeSet<RunId> = shared.runs().keys().copied().collect();
    for run in runs {
        if excess == 0 {
            break;
        }
        let dir = shared.run_dir(run);
        if watched.contains(&run) || !run_dir::is_docker_run(&dir) {
            continue;
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::debug!(%run, "docker executor: removed an old run directory");
                excess -= 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => excess -= 1,
            Err(e) => tracing::warn!(
                "docker executor: cannot remove the old run directory {}: {e}",
                dir.display()
            ),
        }
    }
}

/// The runs with a directory in `runs_dir`, oldest (lowest id) first.
fn run_ids(runs_dir: &Path) -> Vec<RunId> {
    let entries = match fs::read_dir(runs_dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!(
                "docker executor: cannot list the run directories in {}: {e}",
                runs_dir.display()
            );
            return Vec::new();
        }
    };
    let mut runs: Vec<RunId> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| run_dir::run_of(&entry.file_name()))
        .collect();
    runs.sort_unstable();
    runs
}
