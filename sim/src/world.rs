//! One seed's simulated cluster: real rota daemons (core, openraft, RPC, HTTP) on
//! turmoil hosts, an operator writing through the API, and the faults of the plan.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rota_core::host::{HostId, ResourceSample};
use rota_core::run::RunId;
use rota_core::state::State;
use runtime::config::{Config, ResourcesOverride};
use runtime::daemon::{self, Parts};
use runtime::executor::Executor;
use runtime::io::{Clock, Io};
use runtime::resources::ResourceProbe;
use serde::Serialize;

use crate::executor::{DispatchCrash, HostRuns, SimExecutor, Truth};
use crate::http;
use crate::io::{ClockFault, SimClock, SimDisk, TurmoilNet};
use crate::plan::{EPOCH, Fault, Plan, Write};

/// How long a host crashed in the middle of a dispatch stays down.
const DISPATCH_CRASH_DOWN_MS: u64 = 3000;

/// When the operator pauses every job, after the faults heal, so that the replicas
/// come to rest and can be compared byte for byte.
pub const PAUSE_AFTER_HEAL_MS: u64 = 45_000;

/// The simulation's step: simulated time advances this much per step.
const TICK: Duration = Duration::from_millis(5);

/// What the simulator can see of a host from outside.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    /// Whether its software runs.
    pub up: bool,
    /// Whether it leads (Raft says so and it applied its first entry).
    pub leader: bool,
    /// Whether it votes in Raft (and so holds the replicated state).
    pub voter: bool,
    /// Its Raft term.
    pub term: u64,
    /// Its replicated state, as last exported.
    pub state: Option<Vec<u8>>,
    /// How many times its software started.
    pub starts: u32,
}

/// A fault that fired, and when.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Fired {
    /// Simulated milliseconds since the start.
    pub at_ms: u64,
    /// What fired.
    pub what: String,
}

/// A write the API acknowledged.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Acked {
    /// Simulated milliseconds since the start.
    pub at_ms: u64,
    /// `PUT job`, `pause`, ...
    pub what: String,
    /// The job.
    pub job: String,
    /// The request's `Idempotency-Key`, for a trigger.
    pub key: Option<String>,
    /// The run, for a stop.
    pub run: Option<u64>,
}

/// Free resources that wander from sample to sample (seeded), so that placement
/// spreads runs over every host as it would on real machines.
struct JitterProbe {
    state: Mutex<u64>,
}

impl JitterProbe {
    fn new(seed: u64) -> Self {
        JitterProbe {
            state: Mutex::new(seed | 1),
        }
    }
}

impl ResourceProbe for JitterProbe {
    fn sample(&self) -> ResourceSample {
        let mut x = lock(&self.state);
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let r = *x;
        ResourceSample {
            cpu_total_milli: 4000,
            cpu_free_milli: 1500 + (r % 2000) as u32,
            memory_total_mb: 8192,
            memory_free_mb: 3000 + (r >> 16) % 4000,
            disk_total_mb: 100_000,
            disk_free_mb: 40_000 + (r >> 32) % 50_000,
        }
    }
}

/// Everything the checkers read.
#[derive(Debug, Clone)]
pub struct History {
    /// The plan.
    pub plan: Plan,
    /// What the executors ran.
    pub truth: Vec<crate::executor::TruthRun>,
    /// Faults that fired.
    pub fired: Vec<Fired>,
    /// Writes acknowledged.
    pub acked: Vec<Acked>,
    /// Each host's final replicated state (hosts up at the end).
    pub states: BTreeMap<usize, State>,
    /// Each host's final state bytes.
    pub state_bytes: BTreeMap<usize, Vec<u8>>,
    /// Hosts lost for good.
    pub lost: Vec<usize>,
    /// Whether a leader existed at the end.
    pub leader_at_end: bool,
    /// Simulated time run.
    pub sim_elapsed: Duration,
    /// How many times each kind of core event happened, across hosts.
    pub marks: BTreeMap<&'static str, u64>,
}

/// State the simulator shares with its hosts (all on one thread).
#[allow(missing_debug_implementations)]
pub struct Shared {
    plan: Plan,
    disks: Vec<SimDisk>,
    clocks: Vec<Arc<Mutex<ClockFault>>>,
    runs: Vec<Arc<Mutex<HostRuns>>>,
    truth: Arc<Mutex<Truth>>,
    views: RefCell<Vec<HostView>>,
    ips: RefCell<Vec<Option<IpAddr>>>,
    fired: RefCell<Vec<Fired>>,
    acked: RefCell<Vec<Acked>>,
    marks: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

fn host_name(i: usize) -> String {
    format!("h{i}")
}

fn elapsed_ms() -> u64 {
    turmoil::elapsed().as_millis() as u64
}

/// Runs one seed and answers its history.
pub fn run(plan: Plan) -> Result<History, String> {
    let shared = Rc::new(Shared {
        disks: (0..plan.hosts).map(|_| SimDisk::new()).collect(),
        clocks: (0..plan.hosts)
            .map(|_| Arc::new(Mutex::new(ClockFault::default())))
            .collect(),
        runs: (0..plan.hosts)
            .map(|_| Arc::new(Mutex::new(HostRuns::default())))
            .collect(),
        truth: Arc::new(Mutex::new(Truth::default())),
        views: RefCell::new(vec![HostView::default(); plan.hosts]),
        ips: RefCell::new(vec![None; plan.hosts]),
        fired: RefCell::new(Vec::new()),
        acked: RefCell::new(Vec::new()),
        marks: Arc::new(Mutex::new(BTreeMap::new())),
        plan: plan.clone(),
    });
    let mut sim = turmoil::Builder::new()
        .simulation_duration(plan.duration() + Duration::from_secs(30))
        .tick_duration(TICK)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .tcp_capacity(1 << 16)
        .udp_capacity(1 << 12)
        .rng_seed(plan.seed)
        .build();
    for i in 0..plan.hosts {
        let shared = Rc::clone(&shared);
        sim.host(host_name(i), move || {
            let shared = Rc::clone(&shared);
            async move { host_main(shared, i).await }
        });
    }
    {
        let shared = Rc::clone(&shared);
        sim.client("operator", async move { operator(shared).await });
    }

    let mut down_until: BTreeMap<usize, u64> = BTreeMap::new();
    let mut lost: Vec<usize> = Vec::new();
    let mut heal_at: Vec<(u64, Heal)> = Vec::new();
    let mut faults = plan.faults.clone();
    faults.reverse();
    loop {
        let now = sim.elapsed().as_millis() as u64;
        if now >= plan.end_ms {
            break;
        }
        // Faults due now.
        while faults.last().is_some_and(|(at, _)| *at <= now) {
            let (_, fault) = faults.pop().expect("a fault");
            apply(
                &mut sim,
                &shared,
                &fault,
                now,
                &mut down_until,
                &mut lost,
                &mut heal_at,
            );
        }
        // Heals due now.
        heal_at.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        while heal_at.last().is_some_and(|(at, _)| *at <= now) {
            let (_, heal) = heal_at.pop().expect("a heal");
            heal.apply(&mut sim);
        }
        // Crashes the executors asked for (in the middle of a dispatch).
        let asked: Vec<(HostId, DispatchCrash)> =
            std::mem::take(&mut lock(&shared.truth).crash_now);
        for (host, kind) in asked {
            let i = (host.0 - 1) as usize;
            crash(&mut sim, &shared, i, now);
            if matches!(kind, DispatchCrash::BeforeStop(_)) {
                *lock(&shared.marks).entry("crash-before-stop").or_default() += 1;
            }
            shared.fired.borrow_mut().push(Fired {
                at_ms: now,
                what: format!("crash h{i} {}", kind.describe()),
            });
            down_until.insert(i, now + DISPATCH_CRASH_DOWN_MS);
        }
        // Restarts due, and hosts whose daemon stopped (a supervisor restarts them).
        for i in 0..plan.hosts {
            if lost.contains(&i) {
                continue;
            }
            let due = down_until.get(&i).is_some_and(|until| *until <= now);
            if due {
                down_until.remove(&i);
                sim.bounce(host_name(i));
                continue;
            }
            if !down_until.contains_key(&i) && !sim.is_host_running(host_name(i)) {
                // The daemon stopped by itself (a fatal storage error): its supervisor
                // restarts it. The simulated executor's runs lived in the daemon's
                // process, so they end with it and are reported after the restart.
                let wall = EPOCH + Duration::from_millis(now);
                lock(&shared.runs[i]).crash(&mut lock(&shared.truth), now, wall);
                shared.fired.borrow_mut().push(Fired {
                    at_ms: now,
                    what: format!("restart h{i}, whose daemon stopped"),
                });
                sim.bounce(host_name(i));
            }
        }
        if let Err(e) = sim.step() {
            return Err(format!("the simulation failed at {now} ms: {e}"));
        }
    }
    // Every fault must have fired.
    let pending_dispatch_crashes = lock(&shared.truth).dispatch_crash.clone();
    let views = shared.views.borrow().clone();
    let mut states = BTreeMap::new();
    let mut state_bytes = BTreeMap::new();
    for (i, view) in views.iter().enumerate() {
        if lost.contains(&i) || !view.up || !view.voter {
            continue;
        }
        if let Some(bytes) = &view.state {
            if let Ok(state) = postcard::from_bytes::<State>(bytes) {
                states.insert(i, state);
            }
            state_bytes.insert(i, bytes.clone());
        }
    }
    let mut fired = shared.fired.borrow().clone();
    for pending in pending_dispatch_crashes {
        let what = match pending {
            // Armed with a request to stop, whose run may have ended by itself first.
            DispatchCrash::BeforeStop(run) => {
                format!("SKIPPED crash before stopping run {run}: its host never had to stop it")
            }
            _ => format!("NOT FIRED: {pending:?} found no dispatch"),
        };
        fired.push(Fired {
            at_ms: u64::MAX,
            what,
        });
    }
    Ok(History {
        plan: plan.clone(),
        truth: lock(&shared.truth).runs.clone(),
        fired,
        acked: shared.acked.borrow().clone(),
        states,
        state_bytes,
        lost,
        leader_at_end: views.iter().any(|v| v.up && v.leader),
        sim_elapsed: sim.elapsed(),
        marks: lock(&shared.marks).clone(),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Undoing a temporary fault.
enum Heal {
    Repair(String, String),
    RepairOneway(String, String),
    Clock(Arc<Mutex<ClockFault>>),
    LinkFail(String, String),
    LinkLatency(String, String),
}

impl Heal {
    fn apply(self, sim: &mut turmoil::Sim<'_>) {
        match self {
            Heal::Repair(a, b) => sim.repair(a.as_str(), b.as_str()),
            Heal::RepairOneway(a, b) => sim.repair_oneway(a.as_str(), b.as_str()),
            Heal::LinkFail(a, b) => sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.0),
            Heal::LinkLatency(a, b) => {
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), Duration::from_millis(5))
            }
            Heal::Clock(fault) => *lock(&fault) = ClockFault::default(),
        }
    }
}

fn crash(sim: &mut turmoil::Sim<'_>, shared: &Shared, i: usize, now: u64) {
    sim.crash(host_name(i));
    shared.disks[i].crash();
    let wall = EPOCH + Duration::from_millis(now);
    lock(&shared.runs[i]).crash(&mut lock(&shared.truth), now, wall);
    let mut views = shared.views.borrow_mut();
    views[i].up = false;
    views[i].leader = false;
}

fn leader(shared: &Shared, lost: &[usize]) -> Option<usize> {
    let views = shared.views.borrow();
    views
        .iter()
        .enumerate()
        .filter(|(i, v)| v.up && v.leader && !lost.contains(i))
        .max_by_key(|(_, v)| v.term)
        .map(|(i, _)| i)
}

fn apply(
    sim: &mut turmoil::Sim<'_>,
    shared: &Shared,
    fault: &Fault,
    now: u64,
    down_until: &mut BTreeMap<usize, u64>,
    lost: &mut Vec<usize>,
    heal_at: &mut Vec<(u64, Heal)>,
) {
    let hosts = shared.plan.hosts;
    let others = |i: usize| (0..hosts).filter(move |j| *j != i).map(host_name);
    let fired = |what: String| shared.fired.borrow_mut().push(Fired { at_ms: now, what });
    let live = |i: usize| !lost.contains(&i) && !down_until.contains_key(&i);
    match *fault {
        Fault::IsolateLeader { for_ms }
        | Fault::LeaderCannotSend { for_ms }
        | Fault::LeaderCannotHear { for_ms } => {
            let Some(l) = leader(shared, lost) else {
                fired(format!("SKIPPED {fault:?}: no leader at the time"));
                return;
            };
            for other in others(l) {
                let me = host_name(l);
                match fault {
                    Fault::IsolateLeader { .. } => {
                        sim.partition(me.as_str(), other.as_str());
                        heal_at.push((now + for_ms, Heal::Repair(me, other)));
                    }
                    Fault::LeaderCannotSend { .. } => {
                        sim.partition_oneway(me.as_str(), other.as_str());
                        heal_at.push((now + for_ms, Heal::RepairOneway(me, other)));
                    }
                    _ => {
                        sim.partition_oneway(other.as_str(), me.as_str());
                        heal_at.push((now + for_ms, Heal::RepairOneway(other, me)));
                    }
                }
            }
            fired(format!("{fault:?} on leader h{l}"));
        }
        Fault::Partition { a, b, for_ms } => {
            sim.partition(host_name(a).as_str(), host_name(b).as_str());
            heal_at.push((now + for_ms, Heal::Repair(host_name(a), host_name(b))));
            fired(format!("{fault:?}"));
        }
        Fault::Lossy {
            host,
            rate_percent,
            for_ms,
        } => {
            for other in others(host) {
                sim.set_link_fail_rate(
                    host_name(host).as_str(),
                    other.as_str(),
                    f64::from(rate_percent) / 100.0,
                );
                heal_at.push((now + for_ms, Heal::LinkFail(host_name(host), other)));
            }
            fired(format!("{fault:?}"));
        }
        Fault::Slow {
            host,
            latency_ms,
            for_ms,
        } => {
            for other in others(host) {
                sim.set_link_max_message_latency(
                    host_name(host).as_str(),
                    other.as_str(),
                    Duration::from_millis(latency_ms),
                );
                heal_at.push((now + for_ms, Heal::LinkLatency(host_name(host), other)));
            }
            fired(format!("{fault:?}"));
        }
        Fault::CrashLeader { down_ms } => {
            let Some(l) = leader(shared, lost) else {
                fired(format!("SKIPPED {fault:?}: no leader at the time"));
                return;
            };
            crash(sim, shared, l, now);
            down_until.insert(l, now + down_ms);
            fired(format!("{fault:?}: crashed leader h{l}"));
        }
        Fault::CrashHost { host, down_ms } => {
            if !live(host) {
                fired(format!("SKIPPED {fault:?}: host already down"));
                return;
            }
            crash(sim, shared, host, now);
            down_until.insert(host, now + down_ms);
            fired(format!("{fault:?}"));
        }
        Fault::LoseHost { host } => {
            crash(sim, shared, host, now);
            down_until.remove(&host);
            lost.push(host);
            fired(format!("{fault:?}"));
        }
        Fault::CrashBeforeStart | Fault::CrashAfterStart => {
            let kind = if matches!(fault, Fault::CrashBeforeStart) {
                DispatchCrash::BeforeStart
            } else {
                DispatchCrash::AfterStart
            };
            // Armed now; it fires (and is recorded) when a host is next dispatched a run.
            lock(&shared.truth).dispatch_crash.push(kind);
        }
        Fault::CrashLeaderBeforeStart => {
            let Some(l) = leader(shared, lost) else {
                fired(format!("SKIPPED {fault:?}: no leader at the time"));
                return;
            };
            lock(&shared.truth)
                .dispatch_crash
                .push(DispatchCrash::BeforeStartOn(HostId(l as u64 + 1)));
        }
        Fault::LeaderClockStep { ms } => {
            let Some(l) = leader(shared, lost) else {
                fired(format!("SKIPPED {fault:?}: no leader at the time"));
                return;
            };
            lock(&shared.clocks[l]).offset_ms += ms;
            heal_at.push((
                shared.plan.heal_ms,
                Heal::Clock(Arc::clone(&shared.clocks[l])),
            ));
            fired(format!("{fault:?} on leader h{l}"));
        }
        Fault::ClockStep { host, ms } => {
            lock(&shared.clocks[host]).offset_ms += ms;
            heal_at.push((
                shared.plan.heal_ms,
                Heal::Clock(Arc::clone(&shared.clocks[host])),
            ));
            fired(format!("{fault:?}"));
        }
        Fault::ClockSkew { host, ppm } => {
            lock(&shared.clocks[host]).skew_ppm = ppm;
            heal_at.push((
                shared.plan.heal_ms,
                Heal::Clock(Arc::clone(&shared.clocks[host])),
            ));
            fired(format!("{fault:?}"));
        }
        Fault::DiskFailure { host, writes } => {
            shared.disks[host].fail_next_writes(writes);
            fired(format!("{fault:?}"));
        }
    }
}

/// The software of host `i`: a rota daemon and its API, and a task that exports what
/// the simulator watches.
async fn host_main(shared: Rc<Shared>, i: usize) -> turmoil::Result {
    let plan = &shared.plan;
    let ip = turmoil::lookup(host_name(i));
    shared.ips.borrow_mut()[i] = Some(ip);
    let seed_ip = turmoil::lookup(host_name(0));
    let starts = {
        let mut views = shared.views.borrow_mut();
        views[i].starts += 1;
        views[i].up = true;
        views[i].starts
    };
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(
        EPOCH,
        turmoil::elapsed(),
        Arc::clone(&shared.clocks[i]),
    ));
    let cluster_addr = SocketAddr::new(ip, 7071);
    let mut join = vec![SocketAddr::new(seed_ip, 7071)];
    for j in 1..plan.hosts.min(3) {
        join.push(SocketAddr::new(turmoil::lookup(host_name(j)), 7071));
    }
    join.retain(|a| *a != cluster_addr);
    // turmoil binds only to the unspecified address; peers dial the host's own.
    let any = IpAddr::from([0, 0, 0, 0]);
    let config = Config {
        data_dir: "/data".into(),
        api_addr: SocketAddr::new(any, 7070),
        cluster_addr: SocketAddr::new(any, 7071),
        advertise_addr: cluster_addr,
        advertise_api_addr: SocketAddr::new(ip, 7070),
        join,
        bootstrap: i == 0,
        voters: plan.voters,
        host_id: Some(i as u64 + 1),
        resources_interval_ms: 1000,
        runs_kept_per_job_max: 100_000,
        resources: ResourcesOverride::default(),
        ..Config::default()
    };
    let truth = Arc::clone(&shared.truth);
    let runs = Arc::clone(&shared.runs[i]);
    let exec_clock = Arc::clone(&clock);
    let seed = plan.seed;
    let parts = Parts {
        config,
        io: Io {
            clock: Arc::clone(&clock),
            net: Arc::new(TurmoilNet),
            disk: Arc::new(shared.disks[i].clone()),
        },
        executor: Box::new(move |host, events| {
            let executor = SimExecutor::new(
                host,
                seed,
                events,
                exec_clock,
                Arc::new(elapsed_ms),
                truth,
                runs,
            );
            Ok(Arc::new(executor) as Arc<dyn Executor>)
        }),
        probe: Arc::new(JitterProbe::new(seed ^ (i as u64).wrapping_mul(7919))),
        docker: false,
        seed: seed ^ ((i as u64) << 40) ^ u64::from(starts),
        on_event: Some({
            let marks = Arc::clone(&shared.marks);
            Arc::new(move |event: &rota_core::node::Event| {
                *lock(&marks).entry(event.name()).or_default() += 1;
            })
        }),
    };
    let api_listener = parts.io.net.listen(SocketAddr::new(any, 7070)).await?;
    let (handle, task) = match daemon::start(parts, Box::pin(std::future::pending())).await {
        Ok(started) => started,
        Err(e) => {
            // A start-up failure (a disk fault during start-up) ends this run of the
            // software; the simulator restarts it, as a supervisor would.
            tracing::warn!(host = i, error = %e, "daemon failed to start");
            shared.views.borrow_mut()[i].up = false;
            return Ok(());
        }
    };
    tokio::spawn(runtime::api::serve(api_listener, handle.clone()));
    let exporter = {
        let shared = Rc::clone(&shared);
        let handle = handle.clone();
        tokio::task::spawn_local(async move {
            loop {
                let view = handle
                    .with_node(|node, _| {
                        (
                            node.is_ready_leader(),
                            node.raft().term,
                            node.role() != rota_core::node::Role::Worker,
                            postcard::to_allocvec(node.state()).unwrap_or_default(),
                        )
                    })
                    .await;
                let Ok((leader, term, voter, state)) = view else {
                    return;
                };
                {
                    let mut views = shared.views.borrow_mut();
                    views[i].leader = leader;
                    views[i].term = term;
                    views[i].voter = voter;
                    views[i].state = Some(state);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let result = task.await;
    exporter.abort();
    shared.views.borrow_mut()[i].up = false;
    shared.views.borrow_mut()[i].leader = false;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(host = i, error = %e, "daemon stopped");
            Ok(())
        }
        Err(e) => Err(format!("host {i}: the event loop panicked: {e}").into()),
    }
}

/// The operator: creates the jobs, then makes the planned writes, through the API of
/// whichever host answers, following redirects to the leader.
async fn operator(shared: Rc<Shared>) -> turmoil::Result {
    let plan = shared.plan.clone();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for job in &plan.jobs {
        write(
            &shared,
            ("POST", "/v1/jobs", Some(&job.json)),
            &job.name,
            "create",
            (None, None),
        )
        .await;
    }
    for (index, (at, w)) in plan.writes.iter().enumerate() {
        let now = elapsed_ms();
        if *at > now {
            tokio::time::sleep(Duration::from_millis(at - now)).await;
        }
        match w {
            Write::PauseResume { job, for_ms } => {
                let name = &plan.jobs[*job].name;
                write(
                    &shared,
                    ("POST", &format!("/v1/jobs/{name}/pause"), None),
                    name,
                    "pause",
                    (None, None),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(*for_ms)).await;
                write(
                    &shared,
                    ("POST", &format!("/v1/jobs/{name}/resume"), None),
                    name,
                    "resume",
                    (None, None),
                )
                .await;
            }
            Write::Trigger { job } => {
                let name = &plan.jobs[*job].name;
                let key = format!("write-{index}");
                write(
                    &shared,
                    ("POST", &format!("/v1/jobs/{name}/run?force=true"), None),
                    name,
                    "trigger",
                    (Some(&key), None),
                )
                .await;
            }
            Write::Create { job } => {
                write(
                    &shared,
                    ("POST", "/v1/jobs", Some(&job.json)),
                    &job.name,
                    "create",
                    (None, None),
                )
                .await;
            }
            Write::Stop { job, crash_host } => {
                let name = &plan.jobs[*job].name;
                if let Some(run) = active_run(&shared, name).await {
                    if *crash_host {
                        lock(&shared.truth)
                            .dispatch_crash
                            .push(DispatchCrash::BeforeStop(RunId(run)));
                    }
                    write(
                        &shared,
                        ("POST", &format!("/v1/runs/{run}/stop"), None),
                        name,
                        "stop",
                        (None, Some(run)),
                    )
                    .await;
                }
            }
        }
    }
    // Bring the cluster to rest: pause every job, so that runs end and replicas stop
    // changing before the end.
    let rest = plan.heal_ms + PAUSE_AFTER_HEAL_MS;
    let now = elapsed_ms();
    if rest > now {
        tokio::time::sleep(Duration::from_millis(rest - now)).await;
    }
    let mut names: Vec<String> = plan.jobs.iter().map(|j| j.name.clone()).collect();
    for (_, w) in &plan.writes {
        if let Write::Create { job } = w {
            names.push(job.name.clone());
        }
    }
    for name in names {
        write(
            &shared,
            ("POST", &format!("/v1/jobs/{name}/pause"), None),
            &name,
            "final-pause",
            (None, None),
        )
        .await;
    }
    Ok(())
}

/// The hosts whose software runs, by index.
fn hosts_up(shared: &Shared) -> Vec<usize> {
    shared
        .views
        .borrow()
        .iter()
        .enumerate()
        .filter(|(_, v)| v.up)
        .map(|(i, _)| i)
        .collect()
}

/// The newest active run of `job`, as the first host up that answers sees it (after
/// following its redirect to the leader), if it has one.
async fn active_run(shared: &Rc<Shared>, job: &str) -> Option<u64> {
    for target in hosts_up(shared) {
        let ip = turmoil::lookup(host_name(target));
        let path = format!("/v1/jobs/{job}/runs?limit=10");
        let Ok(answer) = http::follow(SocketAddr::new(ip, 7070), "GET", &path, None, &[]).await
        else {
            continue;
        };
        if answer.status != 200 {
            continue;
        }
        let runs: serde_json::Value = serde_json::from_str(&answer.body).ok()?;
        return runs.as_array()?.iter().find_map(|run| {
            matches!(run["state"].as_str(), Some("running" | "declared"))
                .then(|| run["id"].as_u64())
                .flatten()
        });
    }
    None
}

/// One write, retried through other hosts until acknowledged or given up (unacknowledged
/// writes are not checked). A trigger carries `key`, so that sending it again makes no
/// second run.
async fn write(
    shared: &Rc<Shared>,
    (method, path, body): (&str, &str, Option<&str>),
    job: &str,
    what: &str,
    (key, run): (Option<&str>, Option<u64>),
) {
    let headers: Vec<(&str, &str)> = key
        .map(|k| (runtime::api::TRIGGER_KEY_HEADER, k))
        .into_iter()
        .collect();
    for attempt in 0..20usize {
        // Ask a host that is up (an operator's client would fail over the same way).
        let up = hosts_up(shared);
        let Some(&target) = up.get((attempt + job.len()) % up.len().max(1)) else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let ip = turmoil::lookup(host_name(target));
        if attempt > 0 && key.is_some() {
            *lock(&shared.marks).entry("trigger-resent").or_default() += 1;
        }
        match http::follow(SocketAddr::new(ip, 7070), method, path, body, &headers).await {
            Ok(answer) if (200..300).contains(&answer.status) => {
                let replayed = serde_json::from_str::<serde_json::Value>(&answer.body)
                    .is_ok_and(|body| body["replayed"] == true);
                if replayed {
                    *lock(&shared.marks).entry("trigger-replayed").or_default() += 1;
                }
                if what == "stop" {
                    *lock(&shared.marks).entry("stop-acked").or_default() += 1;
                }
                shared.acked.borrow_mut().push(Acked {
                    at_ms: elapsed_ms(),
                    what: what.to_owned(),
                    job: job.to_owned(),
                    key: key.map(str::to_owned),
                    run,
                });
                return;
            }
            // A create that raced with its own retry: it is there. A stop of a run that
            // has ended since: nothing to stop.
            Ok(answer) if answer.status == 409 && (what == "create" || what == "stop") => return,
            // The job was never created (its create was not acknowledged).
            Ok(answer) if answer.status == 404 => return,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
