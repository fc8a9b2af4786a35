//! Watching one run to its end from the daemon: polling its `status.jsonl`, stopping it
//! when asked, and turning what the supervisor recorded into executor events.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use rota_core::node::ExecutorEvent;
use rota_core::run::{Reason, RunId, RunSpec, bounded_detail};
use rota_core::time::Timestamp;
use tokio::time::Instant;

use super::resident::Life;
use super::run_dir::{
    STOP_FILE, SUPERVISOR_LOG_FILE, Status, StopFile, read_json, read_status_file, wall_now,
    write_json,
};
use super::{RunHandle, Shared};

/// The longest excerpt of what a supervisor said (its `supervisor.log`, or its standard
/// error as the daemon heard it) quoted in a failure's detail, in bytes.
pub(super) const SUPERVISOR_LOG_QUOTED_BYTES_MAX: usize = 300;

/// The supervisor of a watched run.
#[derive(Debug)]
pub(super) enum Supervisor {
    /// Started by this daemon: its end is seen directly.
    Resident(Arc<Life>),
    /// Found running by this daemon (started by an earlier one): its process id, which
    /// is checked against its command line to guard against reuse.
    Found(u32),
}

impl Supervisor {
    /// How the supervisor ended, if it has.
    fn gone(&self, dir: &Path) -> Option<String> {
        match self {
            Supervisor::Resident(life) => life.ended(),
            Supervisor::Found(pid) => (!supervisor_alive(*pid, dir)).then(|| "gone".to_owned()),
        }
    }

    /// What the supervisor said before it ended, if this daemon heard it.
    fn last_words(&self) -> Option<String> {
        match self {
            Supervisor::Resident(life) => life.last_words(),
            Supervisor::Found(_) => None,
        }
    }

    /// Returns when a supervisor started by this daemon ends; never for another.
    async fn exited(&self) {
        match self {
            Supervisor::Resident(life) => life.wait().await,
            Supervisor::Found(_) => std::future::pending().await,
        }
    }
}

/// What the watch reports once the command has started.
#[derive(Debug)]
pub(super) enum Announce {
    /// Nothing: the start is reported already.
    Nothing,
    /// `Started`.
    Started,
    /// `Adopted` with this spec: the run was found by a restarted daemon.
    Adopted(Box<RunSpec>),
}

/// A stop in progress.
#[derive(Debug)]
struct Stopping {
    /// When `SIGKILL` follows the `SIGTERM`.
    kill_at: Instant,
    /// Whether it has.
    killed: bool,
}

/// Watches `run` until its end, which it reports (or until the executor is dropped).
pub(super) async fn watch(
    shared: &Arc<Shared>,
    run: RunId,
    handle: &RunHandle,
    supervisor: Supervisor,
    mut announce: Announce,
) {
    let dir = shared.run_dir(run);
    let poll = Duration::from_millis(shared.config.poll_interval_ms);
    let mut alive = shared.alive.clone();
    let mut stopping: Option<Stopping> = None;
    // The command's process id and start, as last read.
    let mut started: Option<(u32, Timestamp)> = None;
    // Each look but the first waits for the supervisor's news, a stop, or the poll. A
    // run just handed over has nothing written yet, so its first look waits too, sparing
    // a run three system calls.
    let mut look_at_once = !matches!(
        (&supervisor, &announce),
        (Supervisor::Resident(_), Announce::Started)
    );
    let end = loop {
        if !std::mem::take(&mut look_at_once) {
            let wait = match &stopping {
                Some(s) if !s.killed => {
                    poll.min(s.kill_at.saturating_duration_since(Instant::now()))
                }
                _ => poll,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = handle.wake.notified() => {}
                () = supervisor.exited() => {}
                changed = alive.changed() => {
                    if changed.is_err() {
                        // The executor is gone, as with a daemon that died: the run goes
                        // on, for a later daemon to find.
                        return;
                    }
                }
            }
        }
        let status = read_status(&dir);
        if let Some((child_pid, started_at)) = status.as_ref().and_then(Status::started) {
            started = Some((child_pid, started_at));
            announce_start(shared, run, &mut announce, started_at);
        }
        if status.is_none()
            && fs::symlink_metadata(&dir).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            break directory_gone(run, &dir, started, &supervisor, handle.stop_reason());
        }
        if let Some(status) = status.as_ref().filter(|s| s.is_final()) {
            break ended(run, &dir, status, handle.stop_reason());
        }
        if let (Some(reason), Some((child_pid, _))) = (
            handle.stop_reason(),
            status.as_ref().and_then(Status::started),
        ) {
            escalate(shared, run, &dir, reason, child_pid, &mut stopping);
        }
        let gone = supervisor.gone(&dir).or_else(|| {
            handle
                .is_lost()
                .then(|| "without recording the end; it lost track of the run".to_owned())
        });
        if let Some(how) = gone {
            // It may have recorded the end just before it exited.
            let status = read_status(&dir);
            if let Some((_, started_at)) = status.as_ref().and_then(Status::started) {
                announce_start(shared, run, &mut announce, started_at);
            }
            break match status {
                Some(status) if status.is_final() => {
                    ended(run, &dir, &status, handle.stop_reason())
                }
                status => supervisor_died(
                    run,
                    &dir,
                    status.as_ref(),
                    Some(&how),
                    supervisor.last_words(),
                ),
            };
        }
    };
    shared.unregister(run);
    shared.send(end);
    if let Some(seen_ended) = shared.dirs().get_mut(&run) {
        *seen_ended = true;
    }
    let shared = Arc::clone(shared);
    let _ = tokio::task::spawn_blocking(move || super::recovery::prune(&shared)).await;
}

fn announce_start(shared: &Shared, run: RunId, announce: &mut Announce, started_at: Timestamp) {
    match std::mem::replace(announce, Announce::Nothing) {
        Announce::Nothing => {}
        Announce::Started => shared.send(ExecutorEvent::Started {
            run,
            at: started_at,
        }),
        Announce::Adopted(spec) => shared.send(ExecutorEvent::Adopted {
            spec: *spec,
            started_at,
        }),
    }
}

/// Sends the stop's next signal, if it is due: `SIGTERM` at once, `SIGKILL` after the
/// grace period.
fn escalate(
    shared: &Shared,
    run: RunId,
    dir: &Path,
    reason: Reason,
    child_pid: u32,
    stopping: &mut Option<Stopping>,
) {
    match stopping {
        None => {
            // Recorded first, so that a restarted daemon still reports the stop.
            if let Err(e) = write_json(dir, STOP_FILE, &StopFile { reason }) {
                tracing::warn!(%run, "process executor: cannot record the stop request: {e}");
            }
            tracing::info!(%run, %reason, "process executor: stopping the run (SIGTERM)");
            signal_group(run, child_pid, Signal::SIGTERM);
            *stopping = Some(Stopping {
                kill_at: Instant::now() + Duration::from_millis(shared.config.stop_grace_ms),
                killed: false,
            });
        }
        Some(s) if !s.killed && Instant::now() >= s.kill_at => {
            tracing::info!(%run, "process executor: the run outlived its stop grace period (SIGKILL)");
            signal_group(run, child_pid, Signal::SIGKILL);
            s.killed = true;
        }
        Some(_) => {}
    }
}

/// Signals the command's process group (its process id: the supervisor makes it a
/// group leader).
fn signal_group(run: RunId, child_pid: u32, signal: Signal) {
    let pgid = match i32::try_from(child_pid) {
        // Never 0 (our own group) nor 1 (init), whatever a damaged status says.
        Ok(pgid) if pgid > 1 => pgid,
        _ => {
            tracing::warn!(%run, child_pid, "process executor: refusing to signal an impossible process group");
            return;
        }
    };
    match killpg(Pid::from_raw(pgid), signal) {
        // Already gone: its end is being recorded.
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(%run, pgid, %signal, "process executor: cannot signal the run: {e}")
        }
    }
}

/// The run's status, if its supervisor has written one it can read.
pub(super) fn read_status(dir: &Path) -> Option<Status> {
    match read_status_file(dir) {
        Ok(status) => status,
        Err(e) => {
            tracing::warn!("process executor: {e}");
            None
        }
    }
}

/// The stop the daemon (this one or an earlier one) asked of the run, if any.
pub(super) fn read_stop(dir: &Path) -> Option<Reason> {
    match read_json::<StopFile>(dir, STOP_FILE) {
        Ok(stop) => stop.map(|s| s.reason),
        Err(e) => {
            tracing::warn!("process executor: {e}");
            None
        }
    }
}

/// The event for a run whose supervisor recorded its end.
pub(super) fn ended(
    run: RunId,
    dir: &Path,
    status: &Status,
    stop: Option<Reason>,
) -> ExecutorEvent {
    let at = status.finished_at.unwrap_or_else(wall_now);
    let Some((_, started_at)) = status.started() else {
        let detail = status.error.clone().unwrap_or_else(|| {
            "the run's supervisor ended without starting the command".to_owned()
        });
        return ExecutorEvent::LaunchFailed {
            run,
            at,
            reason: Reason::LaunchFailed,
            detail: bounded_detail(&detail),
        };
    };
    let detail = match (&status.signal, &status.error) {
        (Some(signal), _) => Some(format!("killed by {signal}")),
        (None, Some(error)) => Some(bounded_detail(error)),
        (None, None) => None,
    };
    ExecutorEvent::Exited {
        run,
        at,
        started_at: Some(started_at),
        exit_code: status.exit_code,
        reason: stop.or_else(|| read_stop(dir)),
        detail,
    }
}

/// The end of a run whose directory was removed under it, which cannot be known. The
/// command, if its start was seen (`started`, with its process id) and its supervisor
/// lives, is killed first, so that no retry overlaps it: the operator who removed the
/// run's record has ended the run. The reason is the stop's, if one was asked for.
fn directory_gone(
    run: RunId,
    dir: &Path,
    started: Option<(u32, Timestamp)>,
    supervisor: &Supervisor,
    stop: Option<Reason>,
) -> ExecutorEvent {
    let mut detail = format!(
        "the run directory {} was removed while the run was in flight; how the run ended \
         cannot be known",
        dir.display()
    );
    if let Some((child_pid, _)) = started
        && supervisor.gone(dir).is_none()
    {
        signal_group(run, child_pid, Signal::SIGKILL);
        detail.push_str("; the command was killed");
    }
    tracing::warn!(%run, "process executor: {detail}");
    ExecutorEvent::Exited {
        run,
        at: wall_now(),
        started_at: started.map(|(_, at)| at),
        exit_code: None,
        reason: Some(stop.unwrap_or(Reason::HostLost)),
        detail: Some(bounded_detail(&detail)),
    }
}

/// The event for a run whose supervisor is gone without recording the end: `exit` is
/// how it ended when this daemon saw it end, none when it was found gone, and
/// `last_words` what it wrote to its standard error, when this daemon heard it.
pub(super) fn supervisor_died(
    run: RunId,
    dir: &Path,
    status: Option<&Status>,
    exit: Option<&str>,
    last_words: Option<String>,
) -> ExecutorEvent {
    match status.and_then(Status::started) {
        Some((child_pid, started_at)) => {
            let detail = match exit {
                Some(how) => format!(
                    "the run's supervisor ended ({how}) before it recorded the end of the run"
                ),
                None => "the run's supervisor died with the host".to_owned(),
            };
            tracing::warn!(%run, child_pid, "process executor: {detail}; the command may still run");
            ExecutorEvent::Exited {
                run,
                at: wall_now(),
                started_at: Some(started_at),
                exit_code: None,
                reason: Some(Reason::HostLost),
                detail: Some(bounded_detail(&detail)),
            }
        }
        None => {
            let mut detail = match exit {
                Some(how) => {
                    format!("the run's supervisor ended ({how}) before it started the command")
                }
                None => "the run's supervisor is gone and never started the command".to_owned(),
            };
            if let Some(log) = last_words.or_else(|| supervisor_log_tail(dir)) {
                detail.push_str(": ");
                detail.push_str(&log);
            }
            tracing::warn!(%run, "process executor: {detail}");
            ExecutorEvent::LaunchFailed {
                run,
                at: wall_now(),
                reason: Reason::LaunchFailed,
                detail: bounded_detail(&detail),
            }
        }
    }
}

/// The end of the supervisor's own log in the run directory, if it said anything: where
/// a supervisor of one run wrote it, before supervisors lived across runs.
fn supervisor_log_tail(dir: &Path) -> Option<String> {
    let log = fs::read(dir.join(SUPERVISOR_LOG_FILE)).ok()?;
    let start = log.len().saturating_sub(SUPERVISOR_LOG_QUOTED_BYTES_MAX);
    let tail = String::from_utf8_lossy(&log[start..]).trim().to_owned();
    (!tail.is_empty()).then_some(tail)
}

/// Whether process `pid` is the live supervisor of the run in `dir`: it exists, and its
/// command line ends with the runs directory holding `dir` (or with `dir` itself, as did
/// supervisors of one run, before supervisors lived across runs), which a process that
/// reused the pid would not have.
pub(super) fn supervisor_alive(pid: u32, dir: &Path) -> bool {
    let raw = match i32::try_from(pid) {
        Ok(raw) if raw > 1 => raw,
        _ => return false,
    };
    match kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    let cmdline = match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => cmdline,
        // Without procfs, the signal test is all there is.
        Err(_) if !Path::new("/proc/self").exists() => return true,
        // Gone meanwhile.
        Err(_) => return false,
    };
    // A zombie's command line is empty, so a supervisor that exited but is not yet
    // reaped counts as gone. A supervisor's last argument is its runs directory, whichever
    // form started it (`rota-supervisor <runs dir>` or `rota __supervise <runs dir>`), so
    // that a daemon restarted with the other form still knows the supervisors of the last.
    let mut args = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty());
    let _program = args.next();
    let Some(last) = args.next_back() else {
        return false;
    };
    last == dir.as_os_str().as_bytes()
        || dir
            .parent()
            .is_some_and(|runs_dir| last == runs_dir.as_os_str().as_bytes())
}
