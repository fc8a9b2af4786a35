//! Watching one run's container to its end: copying its output, stopping it when
//! asked, and reporting, recording and cleaning up once it has ended.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rota_core::node::ExecutorEvent;
use rota_core::run::{Reason, RunId, RunSpec, bounded_detail};
use rota_core::time::Timestamp;
use tokio::task::JoinHandle;

use super::container::{ContainerEnd, Found, state_of};
use super::engine::Engine;
use super::output::{OutputFile, SharedOutput, copy_logs};
use super::run_dir::{self, wall_now};
use super::{RunHandle, Shared};

/// How long the output copy may go on after the container has stopped, for the engine
/// to hand over the last of its logs.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// The first pause after the engine failed to answer; it doubles up to the longest.
const TROUBLE_PAUSE_MIN: Duration = Duration::from_millis(250);
/// The longest pause between attempts to reach an engine that does not answer.
const TROUBLE_PAUSE_MAX: Duration = Duration::from_secs(5);

/// What the watch reports once it sees the container running.
#[derive(Debug)]
pub(super) enum Announce {
    /// Nothing: the start is reported already.
    Nothing,
    /// `Started`.
    Started,
    /// `Adopted` with this spec: the run was found by a restarted daemon.
    Adopted(Box<RunSpec>),
}

/// How the watch of a container ended.
#[derive(Debug)]
enum Outcome {
    /// The container ended.
    Ended(ContainerEnd),
    /// It never started: the engine's error.
    NeverStarted(Option<String>),
    /// It is gone: removed outside rota before its end was seen.
    Vanished,
}

/// Watches `run`'s container until its end, which it records and reports, then removes
/// the container (unless it is kept); or until the executor is dropped.
pub(super) async fn watch(
    shared: Arc<Shared>,
    run: RunId,
    handle: Arc<RunHandle>,
    output: Option<OutputFile>,
    mut announce: Announce,
    memory_mb: Option<u64>,
) {
    let name = shared.name(run);
    let engine = shared.engine.clone();
    let output: Option<SharedOutput> = output.map(|o| Arc::new(Mutex::new(o)));
    let mut copy = output.as_ref().map(|o| {
        shared
            .tokio
            .spawn(copy_logs(engine.clone(), name.clone(), Arc::clone(o), true))
    });
    let mut alive = shared.alive.clone();
    let mut stopper: Option<JoinHandle<()>> = None;
    let mut killing = false;
    let mut pause = TROUBLE_PAUSE_MIN;
    let mut wait_failed = false;
    let mut wait_ended = false;
    let outcome = loop {
        // After a failed wait, pause before asking again.
        let mut trouble = std::mem::take(&mut wait_failed);
        let after_wait = std::mem::take(&mut wait_ended);
        match engine.inspect(&name).await {
            Ok(Some(found)) => match found.state.as_ref().map(state_of) {
                Some(Found::Running { started_at }) => {
                    announce_start(&shared, run, &handle, &mut announce, started_at);
                    if after_wait {
                        // The wait answered, yet it runs: do not ask in a tight loop.
                        trouble = true;
                    } else if !trouble {
                        pause = TROUBLE_PAUSE_MIN;
                    }
                }
                Some(Found::Ended(end)) => {
                    if let Some(started_at) = end.started_at {
                        announce_start(&shared, run, &handle, &mut announce, started_at);
                    }
                    break Outcome::Ended(end);
                }
                Some(Found::Created { error }) => break Outcome::NeverStarted(error),
                Some(Found::Foreign { .. }) | None => trouble = true,
            },
            Ok(None) => break Outcome::Vanished,
            Err(e) => {
                tracing::warn!(%run, "docker executor: {e}");
                trouble = true;
            }
        }
        if let Some(reason) = handle.stop_reason() {
            match &stopper {
                None => {
                    stopper = Some(shared.tokio.spawn(stop(
                        engine.clone(),
                        name.clone(),
                        shared.run_dir(run),
                        run,
                        reason,
                    )));
                }
                // Asked again after the stop was done, and still running: kill it.
                Some(done) if done.is_finished() && !killing => {
                    killing = true;
                    let (engine, name) = (engine.clone(), name.clone());
                    stopper = Some(shared.tokio.spawn(async move {
                        if let Err(e) = engine.kill(&name).await {
                            tracing::warn!(%run, "docker executor: cannot kill the container: {e}");
                        }
                    }));
                }
                Some(_) => {}
            }
        }
        let sleep_for = trouble.then_some(pause);
        if trouble {
            pause = (pause * 2).min(TROUBLE_PAUSE_MAX);
        }
        let (engine_ref, name_ref) = (&engine, &name);
        let waited = async move {
            match sleep_for {
                Some(pause) => {
                    tokio::time::sleep(pause).await;
                    Ok(())
                }
                None => engine_ref.wait_not_running(name_ref).await,
            }
        };
        tokio::select! {
            result = waited => {
                match result {
                    Ok(()) => wait_ended = sleep_for.is_none(),
                    Err(e) => {
                        tracing::warn!(%run, "docker executor: {e}");
                        wait_failed = true;
                    }
                }
            }
            () = handle.wake.notified() => {}
            changed = alive.changed() => {
                if changed.is_err() {
                    // The executor is gone, as with a daemon that died: the container
                    // goes on, for a later daemon to find.
                    if let Some(copy) = copy.take() {
                        copy.abort();
                    }
                    return;
                }
            }
        }
    };
    if let Some(task) = stopper {
        // A stop in progress has done its work: the container has ended.
        task.abort();
    }
    if let (Some(task), Some(output)) = (copy.as_mut(), output.as_ref()) {
        // The copy ends by itself once the engine has handed over the last logs.
        if tokio::time::timeout(OUTPUT_DRAIN, &mut *task)
            .await
            .is_err()
        {
            task.abort();
            tracing::debug!(%run, "docker executor: the output copy did not end; reading the rest once");
            let rest = copy_logs(engine.clone(), name.clone(), Arc::clone(output), false);
            if tokio::time::timeout(OUTPUT_DRAIN * 5, rest).await.is_err() {
                tracing::warn!(%run, "docker executor: the end of the container's output could not be read");
            }
        }
    }
    let stop = handle
        .stop_reason()
        .or_else(|| run_dir::read_stop(&shared.run_dir(run)));
    let event = match &outcome {
        Outcome::Ended(end) => exited(run, end, stop, memory_mb),
        Outcome::NeverStarted(error) => ExecutorEvent::LaunchFailed {
            run,
            at: wall_now(),
            reason: Reason::LaunchFailed,
            detail: bounded_detail(&format!(
                "the container {name} was created but never started{}",
                error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
            )),
        },
        Outcome::Vanished => ExecutorEvent::Exited {
            run,
            at: wall_now(),
            started_at: handle.started(),
            exit_code: None,
            reason: Some(stop.unwrap_or(Reason::HostLost)),
            detail: Some(format!(
                "the container {name} was removed outside rota before its end was seen"
            )),
        },
    };
    tracing::debug!(%run, ?event, "docker executor: the run ended");
    shared.finish(run, event);
    if !matches!(outcome, Outcome::Vanished) {
        super::recovery::dispose(&shared, run).await;
    }
    let prune = Arc::clone(&shared);
    let _ = tokio::task::spawn_blocking(move || super::recovery::prune_dirs(&prune)).await;
}

fn announce_start(
    shared: &Shared,
    run: RunId,
    handle: &RunHandle,
    announce: &mut Announce,
    started_at: Timestamp,
) {
    let event = match std::mem::replace(announce, Announce::Nothing) {
        Announce::Nothing => return,
        Announce::Started => ExecutorEvent::Started {
            run,
            at: started_at,
        },
        Announce::Adopted(spec) => ExecutorEvent::Adopted {
            spec: *spec,
            started_at,
        },
    };
    let _runs = shared.runs();
    handle.set_started(started_at);
    shared.send(event);
}

/// Stops the container: records why (so that a restarted daemon reports the stop),
/// then asks the engine to stop it with the grace period, after which the engine kills
/// it; kills it if the engine does not manage that.
async fn stop(engine: Engine, name: String, dir: std::path::PathBuf, run: RunId, reason: Reason) {
    if let Err(e) = run_dir::write_stop(&dir, reason) {
        tracing::warn!(%run, "docker executor: cannot record the stop request: {e}");
    }
    tracing::info!(%run, %reason, container = %name, "docker executor: stopping the container");
    if let Err(e) = engine.stop(&name).await {
        tracing::warn!(%run, "docker executor: {e}; killing the container");
        if let Err(e) = engine.kill(&name).await {
            tracing::warn!(%run, "docker executor: cannot kill the container: {e}");
        }
    }
}

/// The event for a container that ended: its exit code; the stop's reason if the daemon
/// stopped it; `oom-killed` if the kernel killed it for its memory.
pub(super) fn exited(
    run: RunId,
    end: &ContainerEnd,
    stop: Option<Reason>,
    memory_mb: Option<u64>,
) -> ExecutorEvent {
    let code = end
        .exit_code
        .map_or_else(|| "no exit code".to_owned(), |c| format!("exit code {c}"));
    let (reason, detail) = if let Some(stop) = stop {
        (
            Some(stop),
            Some(format!("stopped ({stop}); the container ended with {code}")),
        )
    } else if end.oom_killed && end.exit_code != Some(0) {
        let limit = memory_mb.map_or_else(String::new, |mb| format!(" of {mb} MiB"));
        (
            Some(Reason::OomKilled),
            Some(format!(
                "the container went over its memory limit{limit} and was killed ({code})"
            )),
        )
    } else {
        (None, end.error.as_deref().map(bounded_detail))
    };
    ExecutorEvent::Exited {
        run,
        at: end.finished_at.unwrap_or_else(wall_now),
        started_at: end.started_at,
        exit_code: end.exit_code,
        reason,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(exit_code: i32, oom_killed: bool) -> ContainerEnd {
        ContainerEnd {
            started_at: Some(Timestamp::from_secs(10)),
            finished_at: Some(Timestamp::from_secs(20)),
            exit_code: Some(exit_code),
            oom_killed,
            error: None,
        }
    }

    #[test]
    fn an_ended_container_reports_its_code_its_oom_kill_or_its_stop() {
        let plain = exited(RunId(1), &end(3, false), None, None);
        assert_eq!(
            plain,
            ExecutorEvent::Exited {
                run: RunId(1),
                at: Timestamp::from_secs(20),
                started_at: Some(Timestamp::from_secs(10)),
                exit_code: Some(3),
                reason: None,
                detail: None,
            }
        );
        let ExecutorEvent::Exited { reason, detail, .. } =
            exited(RunId(1), &end(137, true), None, Some(16))
        else {
            panic!("exited");
        };
        assert_eq!(reason, Some(Reason::OomKilled));
        assert!(detail.unwrap().contains("16 MiB"));
        // A process killed for memory that the container survived is no failure of it.
        let ExecutorEvent::Exited { reason, .. } = exited(RunId(1), &end(0, true), None, None)
        else {
            panic!("exited");
        };
        assert_eq!(reason, None);
        let ExecutorEvent::Exited {
            reason, exit_code, ..
        } = exited(RunId(1), &end(137, false), Some(Reason::Timeout), None)
        else {
            panic!("exited");
        };
        assert_eq!((reason, exit_code), (Some(Reason::Timeout), Some(137)));
    }
}
