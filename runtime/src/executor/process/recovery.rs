//! Finding runs in the run directories: at daemon start (runs that ended or still
//! execute while no daemon watched), on a repeated start of a run, and when old run
//! directories are removed.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use rota_core::node::ExecutorEvent;
use rota_core::run::RunId;

use super::run_dir::{OUTPUT_FILE, SPEC_FILE, STATUS_FILE, SpecFile, Status, read_json, run_of};
use super::watch::{self, Announce, Supervisor};
use super::{RunHandle, Shared};

/// What a run directory says of a run no watch of this daemon follows.
enum Found {
    /// The run has ended, or will never start: report this.
    Ended(ExecutorEvent),
    /// Its supervisor lives (process id), last seen in this status.
    Live(u32, Status),
}

fn examine(run: RunId, dir: &Path) -> Found {
    match watch::read_status(dir) {
        Some(status) if status.is_final() => Found::Ended(watch::ended(run, dir, &status, None)),
        Some(status) if watch::supervisor_alive(status.pid, dir) => Found::Live(status.pid, status),
        status => Found::Ended(watch::supervisor_died(
            run,
            dir,
            status.as_ref(),
            None,
            None,
        )),
    }
}

/// The run's spec as written in its directory.
fn read_spec(dir: &Path) -> Option<SpecFile> {
    match read_json(dir, SPEC_FILE) {
        Ok(spec) => spec,
        Err(e) => {
            tracing::warn!("process executor: {e}");
            None
        }
    }
}

/// At daemon start: reports every run in `runs_dir` (ended ones as `Exited` or
/// `LaunchFailed`, executing ones as `Adopted`) and watches the executing ones; then
/// removes old run directories.
pub(super) fn recover(shared: &Arc<Shared>) -> Vec<ExecutorEvent> {
    let mut events = Vec::new();
    let found = run_ids(&shared.config.runs_dir);
    shared.dirs().extend(found.iter().map(|run| (*run, false)));
    for run in found {
        // A run this daemon already watches reports for itself.
        let Some(handle) = shared.register(run) else {
            continue;
        };
        let dir = shared.run_dir(run);
        match examine(run, &dir) {
            Found::Ended(event) => {
                shared.unregister(run);
                events.push(event);
            }
            Found::Live(pid, status) => {
                if let Some(reason) = watch::read_stop(&dir) {
                    // Go on stopping it: the daemon that asked may have died before
                    // the stop's `SIGKILL`.
                    handle.request_stop(reason);
                }
                let spec = read_spec(&dir).map(|s| s.spec);
                let announce = match (status.started(), spec) {
                    (Some((_, started_at)), Some(spec)) => {
                        events.push(ExecutorEvent::Adopted { spec, started_at });
                        Announce::Nothing
                    }
                    (Some((_, at)), None) => {
                        events.push(ExecutorEvent::Started { run, at });
                        Announce::Nothing
                    }
                    (None, Some(spec)) => Announce::Adopted(Box::new(spec)),
                    (None, None) => Announce::Started,
                };
                tracing::info!(%run, pid, "process executor: adopted a run still executing");
                shared.spawn_watch(run, handle, Supervisor::Found(pid), announce);
            }
        }
    }
    prune(shared);
    events
}

/// A start of a run whose directory exists already (registered by the caller): reports
/// what became of it, and watches it if it still executes.
pub(super) fn resume(shared: &Arc<Shared>, run: RunId, handle: Arc<RunHandle>) {
    let dir = shared.run_dir(run);
    tracing::debug!(%run, "process executor: the run was started before; not starting it again");
    match examine(run, &dir) {
        Found::Ended(event) => {
            shared.unregister(run);
            shared.send(event);
        }
        Found::Live(pid, status) => {
            if let Some(reason) = watch::read_stop(&dir) {
                handle.request_stop(reason);
            }
            let announce = match status.started() {
                Some((_, at)) => {
                    shared.send(ExecutorEvent::Started { run, at });
                    Announce::Nothing
                }
                None => Announce::Started,
            };
            shared.spawn_watch(run, handle, Supervisor::Found(pid), announce);
        }
    }
}

/// A start of a run this daemon watches already: says again that it started, if it
/// has (its watch reports the end).
pub(super) fn report_watched(shared: &Shared, run: RunId) {
    let status = watch::read_status(&shared.run_dir(run));
    if let Some((_, at)) = status
        .filter(|s| !s.is_final())
        .as_ref()
        .and_then(Status::started)
    {
        // Only while the watch is on: once it is off it may have reported the end, and
        // a start must not follow an end.
        let runs = shared.runs();
        if runs.contains_key(&run) {
            shared.send(ExecutorEvent::Started { run, at });
        }
    }
}

/// The runs with a directory in `runs_dir`, oldest (lowest id) first.
fn run_ids(runs_dir: &Path) -> Vec<RunId> {
    let entries = match fs::read_dir(runs_dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!(
                "process executor: cannot list the run directories in {}: {e}",
                runs_dir.display()
            );
            return Vec::new();
        }
    };
    let mut runs: Vec<RunId> = entries
        .filter_map(|entry| match entry {
            Ok(entry) => Some(entry),
            Err(e) => {
                tracing::warn!("process executor: cannot list a run directory: {e}");
                None
            }
        })
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        // The Docker executor keeps its runs in the same directory: a process run's
        // directory is the one holding this executor's spec.
        .filter(|entry| entry.path().join(SPEC_FILE).exists())
        .filter_map(|entry| run_of(&entry.file_name()))
        .collect();
    runs.sort_unstable();
    runs
}

/// Removes the oldest run directories beyond `runs_kept_max`, only of runs that have
/// ended (as a watch saw, or as their status says, or whose supervisor is gone) and that
/// no watch follows. It goes by the
/// executor's own record of its directories, not by listing them, so that the end of
/// each run costs a look at the oldest few only.
pub(super) fn prune(shared: &Shared) {
    let _one_at_a_time = shared
        .pruning
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let watched: BTreeSet<RunId> = shared.runs().keys().copied().collect();
    let (mut excess, oldest) = {
        let dirs = shared.dirs();
        let excess = dirs.len().saturating_sub(shared.config.runs_kept_max);
        // Watched runs are skipped, so look at that many more.
        let oldest: Vec<(RunId, bool)> = dirs
            .iter()
            .map(|(run, seen_ended)| (*run, *seen_ended))
            .take(excess + watched.len())
            .collect();
        (excess, oldest)
    };
    for (run, seen_ended) in oldest {
        if excess == 0 {
            break;
        }
        if watched.contains(&run) {
            continue;
        }
        let dir = shared.run_dir(run);
        let ended = seen_ended
            || match watch::read_status(&dir) {
                Some(status) => status.is_final() || !watch::supervisor_alive(status.pid, &dir),
                None => true,
            };
        if !ended {
            continue;
        }
        match remove_run_dir(&dir) {
            Ok(()) => {
                tracing::debug!(%run, "process executor: removed an old run directory");
            }
            // Removed by something else.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(
                    "process executor: cannot remove the old run directory {}: {e}",
                    dir.display()
                );
                continue;
            }
        }
        shared.dirs().remove(&run);
        excess -= 1;
    }
}

/// Removes a run directory. Most hold only the files every run has, which are removed by
/// name; listing the directory, as `remove_dir_all` does, would cost a run three more
/// system calls.
fn remove_run_dir(dir: &Path) -> std::io::Result<()> {
    for name in [STATUS_FILE, SPEC_FILE, OUTPUT_FILE] {
        match fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return fs::remove_dir_all(dir),
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(e),
        // Files from a stop, an older supervisor, or anything else.
        Err(_) => fs::remove_dir_all(dir),
    }
}
