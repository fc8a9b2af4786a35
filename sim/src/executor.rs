//! The simulated executor: runs take a seeded duration, can fail or hang, and every
//! start is written to the ground truth the checkers read (never rota's own records).
//!
//! A job's behaviour comes from its environment: `SIM_MS_MIN`/`SIM_MS_MAX` (how long a
//! run takes, drawn per run from the seed), `SIM_EXIT` (its exit code), `SIM_HANG=1`
//! (it never ends by itself).

use std::collections::{BTreeMap, BTreeSet};

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rota_core::host::HostId;
use rota_core::job::JobName;
use rota_core::node::ExecutorEvent;
use rota_core::run::{Reason, RunId, RunSpec};
use rota_core::time::Timestamp;
use runtime::executor::{Events, Executor};
use runtime::io::{BoxFuture, Clock};

/// One run as the executor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthRun {
    /// The host.
    pub host: HostId,
    /// The run.
    pub run: RunId,
    /// Its job.
    pub job: JobName,
    /// Its fire time.
    pub scheduled_at: Timestamp,
    /// Its attempt.
    pub attempt: u32,
    /// When it started, in simulated milliseconds since the simulation began.
    pub started_ms: u64,
    /// When it ended (exited, was stopped, or died with its host).
    pub ended_ms: Option<u64>,
    /// The wall time the host's clock showed at the start.
    pub started_wall: Timestamp,
}

/// What crashes the simulator asked the executor to cause.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum DispatchCrash {
    /// Nothing.
    #[default]
    None,
    /// Crash the host when it is told to start a run, before it starts it.
    BeforeStart,
    /// Crash the host right after a run started, before the host reports it.
    AfterStart,
    /// Crash this host (the leader's) when it is told to start a run, before it starts it.
    BeforeStartOn(HostId),
    /// Crash the host running this run when it is told to stop it, before it stops it.
    /// Waits for its run, letting the other crashes go first.
    BeforeStop(RunId),
}

impl DispatchCrash {
    /// What fired, for the history.
    pub fn describe(self) -> String {
        match self {
            DispatchCrash::None => "nothing".into(),
            DispatchCrash::BeforeStart | DispatchCrash::BeforeStartOn(_) => {
                "before starting a dispatched run".into()
            }
            DispatchCrash::AfterStart => {
                "after starting a dispatched run, before reporting it".into()
            }
            DispatchCrash::BeforeStop(run) => format!("before stopping run {run}"),
        }
    }
}

/// Everything executors on all hosts share with the simulator.
#[derive(Debug, Default)]
pub struct Truth {
    /// Every start, in order.
    pub runs: Vec<TruthRun>,
    /// Crashes to cause at the next dispatches, in order.
    pub dispatch_crash: Vec<DispatchCrash>,
    /// Hosts the executor asks the simulator to crash now, with what fired.
    pub crash_now: Vec<(HostId, DispatchCrash)>,
}

/// Per host state that survives the host's crashes, as a container engine's does.
#[derive(Debug, Default)]
pub struct HostRuns {
    /// Runs ever started here (a second start of one is refused).
    started: BTreeSet<RunId>,
    /// Runs that ended, with what to report about them.
    ended: BTreeMap<RunId, ExecutorEvent>,
    /// Runs executing now: index into the truth, and the task.
    running: BTreeMap<RunId, (usize, tokio::task::AbortHandle)>,
}

impl HostRuns {
    /// The host crashed: its runs die with it, and are reported so after it restarts.
    pub fn crash(&mut self, truth: &mut Truth, now_ms: u64, wall: Timestamp) {
        for (run, (index, task)) in std::mem::take(&mut self.running) {
            task.abort();
            if let Some(t) = truth.runs.get_mut(index) {
                t.ended_ms.get_or_insert(now_ms);
            }
            self.ended.insert(
                run,
                ExecutorEvent::Exited {
                    run,
                    at: wall,
                    started_at: None,
                    exit_code: None,
                    reason: Some(Reason::HostLost),
                    detail: Some("the run died with its host".into()),
                },
            );
        }
    }
}

/// The executor of one host.
pub struct SimExecutor {
    host: HostId,
    seed: u64,
    events: Events,
    clock: Arc<dyn Clock>,
    elapsed_ms: Arc<dyn Fn() -> u64 + Send + Sync>,
    truth: Arc<Mutex<Truth>>,
    runs: Arc<Mutex<HostRuns>>,
}

impl std::fmt::Debug for SimExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimExecutor")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A number in `lo..=hi` drawn from the seed and the run, the same at every replay.
fn draw(seed: u64, run: RunId, lo: u64, hi: u64) -> u64 {
    let mut x = seed ^ run.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    lo + x % (hi.saturating_sub(lo) + 1)
}

impl SimExecutor {
    /// The executor of `host`, reporting to `events`.
    pub fn new(
        host: HostId,
        seed: u64,
        events: Events,
        clock: Arc<dyn Clock>,
        elapsed_ms: Arc<dyn Fn() -> u64 + Send + Sync>,
        truth: Arc<Mutex<Truth>>,
        runs: Arc<Mutex<HostRuns>>,
    ) -> Self {
        SimExecutor {
            host,
            seed,
            events,
            clock,
            elapsed_ms,
            truth,
            runs,
        }
    }
}

impl Executor for SimExecutor {
    fn start(&self, spec: RunSpec) {
        let id = spec.id;
        {
            let runs = lock(&self.runs);
            if runs.started.contains(&id) {
                // The engine refuses a second container of the same name: report what
                // became of the first.
                let event = match runs.ended.get(&id) {
                    Some(ended) => ended.clone(),
                    None => ExecutorEvent::Started {
                        run: id,
                        at: self.clock.now().wall,
                    },
                };
                let _ = self.events.send(event);
                return;
            }
        }
        // The first crash armed for a start, if any, and where it waits.
        let (armed, mut crash) = lock(&self.truth)
            .dispatch_crash
            .iter()
            .enumerate()
            .find(|(_, c)| !matches!(c, DispatchCrash::BeforeStop(_)))
            .map_or((None, DispatchCrash::None), |(at, c)| (Some(at), *c));
        if crash == DispatchCrash::BeforeStartOn(self.host) {
            crash = DispatchCrash::BeforeStart;
        }
        if let (DispatchCrash::BeforeStart, Some(at)) = (crash, armed) {
            let mut truth = lock(&self.truth);
            truth.dispatch_crash.remove(at);
            truth.crash_now.push((self.host, crash));
            return;
        }
        let env = spec.executor.env();
        let get = |name: &str| env.get(name).and_then(|v| v.parse::<u64>().ok());
        let hang = env.get("SIM_HANG").is_some_and(|v| v == "1");
        let exit_code = get("SIM_EXIT").unwrap_or(0) as i32;
        let duration_ms = draw(
            self.seed,
            id,
            get("SIM_MS_MIN").unwrap_or(100),
            get("SIM_MS_MAX").unwrap_or(1000),
        );
        let now = self.clock.now().wall;
        let index = {
            let mut truth = lock(&self.truth);
            truth.runs.push(TruthRun {
                host: self.host,
                run: id,
                job: spec.job.clone(),
                scheduled_at: spec.scheduled_at,
                attempt: spec.attempt,
                started_ms: (self.elapsed_ms)(),
                ended_ms: None,
                started_wall: now,
            });
            if let (DispatchCrash::AfterStart, Some(at)) = (crash, armed) {
                truth.dispatch_crash.remove(at);
                truth.crash_now.push((self.host, crash));
            }
            truth.runs.len() - 1
        };
        let events = self.events.clone();
        let clock = Arc::clone(&self.clock);
        let elapsed = Arc::clone(&self.elapsed_ms);
        let truth = Arc::clone(&self.truth);
        let runs = Arc::clone(&self.runs);
        let _ = events.send(ExecutorEvent::Started { run: id, at: now });
        let task = tokio::spawn(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(duration_ms)).await;
            let at = clock.now().wall;
            let event = ExecutorEvent::Exited {
                run: id,
                at,
                started_at: Some(now),
                exit_code: Some(exit_code),
                reason: None,
                detail: None,
            };
            {
                let mut runs = lock(&runs);
                runs.running.remove(&id);
                runs.ended.insert(id, event.clone());
            }
            if let Some(t) = lock(&truth).runs.get_mut(index) {
                t.ended_ms.get_or_insert(elapsed());
            }
            let _ = events.send(event);
        });
        let mut runs = lock(&self.runs);
        runs.started.insert(id);
        runs.running.insert(id, (index, task.abort_handle()));
    }

    fn stop(&self, run: RunId, reason: Reason) {
        if !lock(&self.runs).running.contains_key(&run) {
            return;
        }
        {
            let mut truth = lock(&self.truth);
            let crash = DispatchCrash::BeforeStop(run);
            if let Some(at) = truth.dispatch_crash.iter().position(|c| *c == crash) {
                // The host dies with the run still going: the simulator crashes it
                // once the current step ends, and this request is not carried out.
                truth.dispatch_crash.remove(at);
                truth.crash_now.push((self.host, crash));
                return;
            }
        }
        let Some((index, task)) = lock(&self.runs).running.remove(&run) else {
            return;
        };
        task.abort();
        if let Some(t) = lock(&self.truth).runs.get_mut(index) {
            t.ended_ms.get_or_insert((self.elapsed_ms)());
        }
        let event = ExecutorEvent::Exited {
            run,
            at: self.clock.now().wall,
            started_at: None,
            exit_code: Some(143),
            reason: Some(Reason::Stopped),
            detail: Some(format!("stopped: {reason}")),
        };
        lock(&self.runs).ended.insert(run, event.clone());
        let _ = self.events.send(event);
    }

    fn recover(&self) -> BoxFuture<'_, Vec<ExecutorEvent>> {
        let ended: Vec<ExecutorEvent> = lock(&self.runs).ended.values().cloned().collect();
        Box::pin(async move { ended })
    }

    fn output_path(&self, _run: RunId) -> Option<std::path::PathBuf> {
        None
    }
}
