//! The leader hat: the scheduler.
//!
//! The leader keeps due jobs in a queue keyed by their next due instant (the
//! schedule's next fire after the job's watermark, or a pending retry), so a tick costs
//! the jobs that are due, not all jobs. On each tick it turns every due fire into
//! commands (declare, or record as missed per the job's missed policy), batched into as
//! few proposals as the bound allows. Once a declaration applies it dispatches the run,
//! and it keeps after every run in flight: dispatches not reported in time are sent
//! again until the run's start deadline, then recorded `dispatch-lost`; runs on a host
//! declared down are recorded `host-lost` once the host's lease has surely run out.
//!
//! A new leader first commits a `LeaderStart` entry. When it applies, the state is
//! current: the leader then re-dispatches every declared run it inherited and asks
//! hosts about running ones, and only then plans fires, the missed ones first.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::FixedHash;
use crate::command::{Command, Declare, Finish, Outcome};
use crate::host::HostId;
use crate::id_table::{IdTable, Keyed};
use crate::job::{Concurrency, ExecutorSpec, JobName, JobSpec, MissedPolicy, Request};
use crate::membership::{Change, Liveness, Membership};
use crate::placement::{self, Candidate, Need, Pending};
use crate::run::{Reason, Run, RunId, RunSpec, RunState, Trigger, TriggerKey};
use crate::state::{JobRecord, State};
use crate::time::{Mono, Now, Timestamp};

use super::due::DueQueue;
use super::{Effect, Event, Message, NodeConfig, RaftStatus, ReportStatus, is_placeable};

/// Why a manual run could not be planned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// This host is not the leader.
    #[error("this host is not the leader")]
    NotLeader,
    /// This host was just elected and has not applied its first entry yet.
    #[error("the leader is still taking over; try again shortly")]
    NotReady,
    /// No job has that name.
    #[error("no job named `{0}`")]
    UnknownJob(JobName),
    /// The job forbids overlap and a run is active.
    #[error(
        "job `{job}` forbids overlapping runs and run {active} is active; ask with force to run anyway"
    )]
    Busy {
        /// The job.
        job: JobName,
        /// Its active run.
        active: RunId,
    },
}

/// What answers a request to run a job now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Planned {
    /// Propose this declaration; its outcome answers the request.
    Propose(Command),
    /// The request's key already made this run: nothing is proposed.
    Made(RunId),
}

/// What the leader needs from the node for one call.
pub(super) struct Ctx<'a> {
    pub now: Now,
    pub state: &'a State,
    pub membership: &'a Membership,
    pub config: &'a NodeConfig,
    pub raft: &'a RaftStatus,
    /// Where hosts gossip has not shown yet can be reached (they messaged us).
    pub peers: &'a BTreeMap<HostId, core::net::SocketAddr>,
    pub effects: &'a mut VecDeque<Effect>,
    pub loopback: &'a mut VecDeque<Message>,
}

impl Ctx<'_> {
    fn emit(&mut self, event: Event) {
        self.effects.push_back(Effect::Event(event));
    }

    fn me(&self) -> HostId {
        self.config.identity.id
    }

    fn send(&mut self, to: HostId, message: Message) {
        if to == self.me() {
            self.loopback.push_back(message);
            return;
        }
        let addr = self
            .membership
            .host(to)
            .map(|entry| entry.identity.cluster_addr)
            .or_else(|| self.peers.get(&to).copied());
        if let Some(addr) = addr {
            self.effects.push_back(Effect::Send { to, addr, message });
        }
    }

    fn ms(&self, ms: u64) -> Duration {
        Duration::from_millis(ms)
    }
}

/// What the state held before an entry applied, that the leader needs afterwards.
#[derive(Debug, Default)]
pub(super) struct Before {
    /// Active runs of a job being deleted, with their hosts.
    deleted_runs: Vec<(RunId, Option<HostId>)>,
}

impl Before {
    /// What `command` will change that the leader must know of. The node hands over a
    /// batch's commands one by one, so a batch here is one nested in a batch, which the
    /// state refuses whole: it changes nothing.
    pub(super) fn capture(state: &State, command: &Command) -> Before {
        let mut before = Before::default();
        if let Command::DeleteJob { name, .. } = command
            && let Some(job) = state.job(name)
        {
            before.deleted_runs = job
                .active
                .iter()
                .map(|id| (*id, state.run(*id).and_then(|r| r.host)))
                .collect();
        }
        before
    }
}

/// How long a declaration this leader proposed is remembered without its proposal
/// applying or failing (the proposal was lost: it frees what it placed).
const PROPOSED_KEPT: Duration = Duration::from_secs(60);

/// A declaration this leader proposed, until it applies or its proposal fails.
#[derive(Debug)]
struct ProposedDeclare {
    /// The declaration as proposed: the log applies the very same.
    declare: Declare,
    at: Mono,
    /// What it placed on a host: none for a declaration that takes no room.
    placed: Option<Placed>,
    /// The job's executor spec when it was declared, shared while it was still in cache,
    /// so that the dispatch need not reach for it again (see [`run_spec`]).
    executor: Arc<ExecutorSpec>,
}

/// The declarations this leader proposed, in the order it proposed them. The log applies
/// them in that order, so the one an applied declaration is looked for is nearly always
/// the first: found without hashing, in memory read in order.
#[derive(Debug, Default)]
struct Proposed(VecDeque<ProposedDeclare>);

impl Proposed {
    fn push(&mut self, proposed: ProposedDeclare) {
        self.0.push_back(proposed);
    }

    /// Forgets the declaration `d` (it applied, or its proposal failed) and answers it;
    /// `None` for a declaration this leader did not propose.
    fn take(&mut self, d: &Declare) -> Option<ProposedDeclare> {
        let index = self.0.iter().position(|p| p.declare == *d)?;
        self.0.remove(index)
    }

    fn placed_mut(&mut self) -> impl Iterator<Item = &mut Placed> {
        self.0.iter_mut().filter_map(|p| p.placed.as_mut())
    }

    /// Forgets the declarations proposed before `cutoff`; answers what they placed.
    fn expire(&mut self, cutoff: Mono) -> Vec<Placed> {
        let mut freed = Vec::new();
        while self.0.front().is_some_and(|p| p.at < cutoff) {
            freed.extend(self.0.pop_front().and_then(|p| p.placed));
        }
        freed
    }
}

/// How many due jobs [`Leader::warm_due`] reads ahead.
const WARM_AHEAD: usize = 16;

/// A job as the leader plans it.
#[derive(Debug, Clone, Default)]
struct Plan {
    /// Fire times up to here are declared, recorded, or proposed.
    planned: Timestamp,
    /// When the job is next due (a fire or a retry); matches its queue entry.
    next: Option<Timestamp>,
    /// Retries proposed and not applied yet.
    retries_proposed: BTreeSet<(Timestamp, u32)>,
}

/// A declared run the leader is getting started.
#[derive(Debug, Clone, Copy)]
struct Dispatch {
    host: HostId,
    /// When to send it again if the host has not reported.
    deadline: Mono,
    /// How many times this leader has sent it.
    sent: u32,
    /// Whether it waits for the runs it replaces to end.
    waiting: bool,
}

/// What the leader knows of a host's lease.
#[derive(Debug, Clone, Copy)]
struct HostTrack {
    /// When this leader last heard from the host.
    heard: Mono,
    /// When this leader last sent it a heartbeat (renewing its lease).
    renewed: Option<Mono>,
    /// Since when this leader has stopped renewing its lease, if it has.
    fenced: Option<Mono>,
    /// Whether the host has answered this leader at all.
    answered: bool,
}

/// Resources placed on a host that its gossip may not show yet.
#[derive(Debug, Clone, Copy)]
struct Placed {
    host: HostId,
    at: Mono,
    request: Request,
}

/// What the leader keeps of one declared run: its dispatch, until the host reports the
/// run started, and the resources placed for it, until it ends.
#[derive(Debug)]
struct Tracked {
    id: RunId,
    dispatch: Option<Dispatch>,
    placed: Option<Placed>,
}

impl Tracked {
    fn new(id: RunId) -> Self {
        Tracked {
            id,
            dispatch: None,
            placed: None,
        }
    }
}

impl Keyed for Tracked {
    fn key(&self) -> &RunId {
        &self.id
    }
}

/// The runs the leader keeps after, in one table: a run declared and dispatched costs
/// one insertion (at the end, as run ids grow), and ending it one removal.
#[derive(Debug, Default)]
struct InFlight(IdTable<Tracked>);

impl InFlight {
    fn dispatch(&self, id: RunId) -> Option<&Dispatch> {
        self.0.get(id).and_then(|t| t.dispatch.as_ref())
    }

    fn dispatches(&self) -> impl Iterator<Item = (RunId, &Dispatch)> {
        self.0
            .iter()
            .filter_map(|(id, t)| Some((*id, t.dispatch.as_ref()?)))
    }

    fn dispatches_mut(&mut self) -> impl Iterator<Item = &mut Dispatch> {
        self.0.values_mut().filter_map(|t| t.dispatch.as_mut())
    }

    /// Forgets the placements on `host` made before `cutoff`, which its gossip now
    /// shows, and runs left with neither a placement nor a dispatch; answers what the
    /// placements had counted. So the table holds the runs placed lately or still to be
    /// started, not every running run.
    fn release_reflected(&mut self, host: HostId, cutoff: Mono) -> Vec<Request> {
        let mut freed = Vec::new();
        self.0.retain(|tracked| {
            if let Some(p) = tracked.placed
                && p.host == host
                && p.at < cutoff
            {
                freed.push(p.request);
                tracked.placed = None;
            }
            tracked.dispatch.is_some() || tracked.placed.is_some()
        });
        freed
    }

    /// The run's dispatch, made with `new` if it has none; records `placed`, if any,
    /// in the same lookup.
    fn dispatch_or(
        &mut self,
        id: RunId,
        new: Dispatch,
        placed: Option<Placed>,
    ) -> Option<&mut Dispatch> {
        let tracked = self.0.get_or_insert_with(id, || Tracked::new(id))?;
        if placed.is_some() {
            tracked.placed = placed;
        }
        Some(tracked.dispatch.get_or_insert(new))
    }

    fn place(&mut self, id: RunId, placed: Placed) {
        if let Some(tracked) = self.0.get_or_insert_with(id, || Tracked::new(id)) {
            tracked.placed = Some(placed);
        }
    }

    /// Forgets the run's dispatch (it started, or will never be sent again).
    fn end_dispatch(&mut self, id: RunId) {
        if let Some(tracked) = self.0.get_mut(id) {
            tracked.dispatch = None;
            if tracked.placed.is_none() {
                self.0.remove(id);
            }
        }
    }

    /// Forgets the run (it ended, or is gone); answers what was placed for it.
    fn remove(&mut self, id: RunId) -> Option<Placed> {
        self.0.remove(id).and_then(|t| t.placed)
    }
}

#[derive(Debug)]
pub(super) struct Leader {
    term: u64,
    /// Identifies this leadership's `LeaderStart` entry.
    nonce: u64,
    ready: bool,
    /// Fires before this instant passed while this leader could not declare them.
    ready_wall: Timestamp,
    ready_mono: Mono,
    /// When this leader's own set-up command is proposed again if it has not applied:
    /// `LeaderStart` until the leader is ready, then `SetSettings` until its settings are
    /// in force.
    start_retry_at: Mono,
    /// Jobs by due time.
    due: DueQueue,
    plans: HashMap<JobName, Plan, FixedHash>,
    /// Declared runs' dispatches and placements.
    inflight: InFlight,
    /// The dispatches that wait for the runs they replace to end.
    waiting: BTreeSet<RunId>,
    /// Runs with a start or end proposed and not applied.
    proposing: BTreeSet<RunId>,
    /// Declarations proposed and not yet applied, with what they placed.
    proposed: Proposed,
    loads: BTreeMap<HostId, Pending>,
    hosts: BTreeMap<HostId, HostTrack>,
    outbox: Vec<Command>,
    next_heartbeat: Mono,
    next_housekeeping: Mono,
    next_reconcile: Mono,
    next_stop_resend: Mono,
}

impl Leader {
    pub(super) fn new(term: u64, nonce: u64, now: Now) -> Self {
        Leader {
            term,
            nonce,
            ready: false,
            ready_wall: now.wall,
            ready_mono: now.mono,
            start_retry_at: now.mono + Duration::from_secs(2),
            due: DueQueue::default(),
            plans: HashMap::default(),
            inflight: InFlight::default(),
            waiting: BTreeSet::new(),
            proposing: BTreeSet::new(),
            proposed: Proposed::default(),
            loads: BTreeMap::new(),
            hosts: BTreeMap::new(),
            outbox: Vec::new(),
            next_heartbeat: now.mono,
            next_housekeeping: now.mono,
            next_reconcile: now.mono,
            next_stop_resend: now.mono,
        }
    }

    pub(super) fn term(&self) -> u64 {
        self.term
    }

    pub(super) fn is_ready(&self) -> bool {
        self.ready
    }

    pub(super) fn start_command(&self, me: HostId, now: Now) -> Command {
        Command::LeaderStart {
            term: self.term,
            leader: me,
            nonce: self.nonce,
            at: now.wall,
        }
    }

    pub(super) fn poll_timeout(&self, now: Now) -> Option<Mono> {
        if !self.ready {
            return Some(self.start_retry_at);
        }
        let mut next = self.next_housekeeping.min(self.next_heartbeat);
        if let Some(at) = self.due.peek() {
            let at = if at <= now.wall {
                now.mono
            } else {
                now.mono + at.saturating_since(now.wall)
            };
            next = next.min(at);
        }
        Some(next)
    }

    // ----- planning -----

    /// Rebuilds every job's plan from the state (on becoming ready, or after a snapshot).
    pub(super) fn resync(&mut self, state: &State) {
        self.plans.clear();
        self.due.clear();
        for (name, job) in state.jobs() {
            self.plan_from_state(name, job);
        }
    }

    /// Replans one job from the state. With `reset`, fires proposed but not applied are
    /// planned again (their proposal failed or was rejected); without it they are not,
    /// so that a job whose runs end while its next fires are in flight is not declared
    /// twice over (the state would refuse it, but the work is wasted).
    fn resync_job(&mut self, state: &State, name: &JobName, reset: bool) {
        match state.job(name) {
            Some(job) => {
                let planned = match (reset, self.plans.get(name)) {
                    (false, Some(plan)) => plan.planned.max(job.watermark),
                    _ => job.watermark,
                };
                self.plan_from(name, job, planned);
            }
            None => {
                self.plans.remove(name);
            }
        }
    }

    fn plan_from_state(&mut self, name: &JobName, job: &JobRecord) {
        self.plan_from(name, job, job.watermark);
    }

    fn plan_from(&mut self, name: &JobName, job: &JobRecord, planned: Timestamp) {
        let retries_proposed = self
            .plans
            .get(name)
            .map(|p| p.retries_proposed.clone())
            .unwrap_or_default();
        let queued = self.plans.get(name).and_then(|p| p.next);
        let mut plan = Plan {
            planned,
            next: None,
            retries_proposed,
        };
        plan.next = next_due(job, &plan);
        // The queue already holds an entry for an unchanged due time.
        if let Some(at) = plan.next
            && queued != Some(at)
        {
            self.queue(at, name);
        }
        self.plans.insert(name.clone(), plan);
    }

    fn queue(&mut self, at: Timestamp, name: &JobName) {
        self.due.push(at, name.clone());
    }

    /// Plans every job due by now, within the tick's step budget.
    fn plan_due(&mut self, ctx: &mut Ctx<'_>) {
        let mut steps = 0usize;
        let budget = ctx.config.limits.plan_steps_per_tick_max.max(1);
        let mut warm_left = 0usize;
        while steps < budget {
            if warm_left == 0 {
                warm_left = self.warm_due(ctx);
            }
            let Some((at, name)) = self.due.pop_due(ctx.now.wall) else {
                break;
            };
            warm_left = warm_left.saturating_sub(1);
            steps += self.plan_job(ctx, name, at, budget - steps);
        }
    }

    /// Reads, ahead of planning them, the plans and job records of the next few due
    /// jobs. Each lies somewhere in a state of many megabytes, mostly out of cache;
    /// looked up together, their cache misses overlap, where planning one job after the
    /// other waits for each miss in turn. Answers how many jobs it read.
    fn warm_due(&self, ctx: &Ctx<'_>) -> usize {
        let mut names: [Option<&JobName>; WARM_AHEAD] = [None; WARM_AHEAD];
        let mut seen = 0usize;
        for (slot, name) in names.iter_mut().zip(self.due.upcoming(ctx.now.wall)) {
            *slot = Some(name);
            seen += 1;
        }
        let mut sum = 0usize;
        // One kind of lookup at a time, so that the processor has several independent
        // misses in flight rather than a chain of them.
        for name in names.iter().flatten() {
            if let Some(plan) = self.plans.get(*name) {
                sum = sum
                    .wrapping_add(plan.planned.as_millis() as usize)
                    .wrapping_add(plan.next.map_or(0, |t| t.as_millis() as usize))
                    .wrapping_add(plan.retries_proposed.len());
            }
        }
        let mut jobs: [Option<&JobRecord>; WARM_AHEAD] = [None; WARM_AHEAD];
        for (slot, name) in jobs.iter_mut().zip(names.iter().flatten()) {
            *slot = ctx.state.job(name);
        }
        for job in jobs.iter().flatten() {
            sum = sum
                .wrapping_add(job.spec.schedule.touch())
                .wrapping_add(Arc::strong_count(&job.spec.executor))
                .wrapping_add(touch_planned_fields(job));
        }
        std::hint::black_box(sum);
        seen
    }

    /// Turns a job's fires and retries due at `at` into commands. Answers the steps
    /// used: none for a stale queue entry, which the queue keeps for a job replanned
    /// since it was queued.
    fn plan_job(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: JobName,
        at: Timestamp,
        budget: usize,
    ) -> usize {
        let Some(slot) = self.plans.get_mut(&name) else {
            return 0;
        };
        if slot.next != Some(at) {
            return 0;
        }
        let Some(job) = ctx.state.job(&name) else {
            self.plans.remove(&name);
            return 1;
        };
        if job.spec.paused {
            slot.next = None;
            return 1;
        }
        // Taken out of its slot, and put back below, so that planning can borrow the
        // leader whole. Left in the map, the entry needs no new slot when it returns.
        let mut plan = core::mem::take(slot);

        let now = ctx.now;
        let spec = &job.spec;

        for retry in &job.retries {
            if retry.not_before <= now.wall
                && plan
                    .retries_proposed
                    .insert((retry.scheduled_at, retry.attempt))
            {
                let declare = self.declare(
                    ctx,
                    job,
                    retry.scheduled_at,
                    retry.attempt,
                    Trigger::Retry,
                    None,
                );
                self.outbox.push(Command::Declare(declare));
            }
        }

        // Fires before this instant passed while no leader could declare them, or while
        // the job was paused: they follow the missed policy.
        let missed_before = job
            .resumed_at
            .map_or(self.ready_wall, |r| r.max(self.ready_wall));
        let deadline = spec.starting_deadline();
        let mut emitter = Emitter::new(
            name.clone(),
            now.wall,
            ctx.config.limits.missed_range_fires_max,
        );
        let mut held: Option<Timestamp> = None;
        let mut caught_up = 0u32;
        let mut steps = 1usize;
        let mut cursor = plan.planned;
        let mut next_fire = None;
        let mut exhausted = true;
        while steps < budget {
            steps += 1;
            let Some(fire) = spec.schedule.next_after(cursor, spec.timezone, job.anchor) else {
                break;
            };
            if fire > now.wall {
                next_fire = Some(fire);
                break;
            }
            cursor = fire;
            let too_late = now.wall.saturating_since(fire) > deadline;
            if fire >= missed_before {
                if let Some(h) = held.take() {
                    self.emit_declare(ctx, &mut emitter, job, h);
                }
                if too_late {
                    emitter.missed(fire, Reason::StartingDeadline, &mut self.outbox);
                } else {
                    self.emit_declare(ctx, &mut emitter, job, fire);
                }
                continue;
            }
            if too_late {
                emitter.missed(fire, Reason::StartingDeadline, &mut self.outbox);
                continue;
            }
            match spec.missed {
                MissedPolicy::Skip => {
                    emitter.missed(fire, Reason::MissedPolicySkip, &mut self.outbox)
                }
                MissedPolicy::Latest => {
                    if let Some(h) = held.replace(fire) {
                        emitter.missed(h, Reason::Superseded, &mut self.outbox);
                    }
                }
                MissedPolicy::All => {
                    if caught_up < ctx.config.limits.catch_up_runs_max {
                        caught_up += 1;
                        self.emit_declare(ctx, &mut emitter, job, fire);
                    } else {
                        emitter.missed(fire, Reason::CatchUpBound, &mut self.outbox);
                    }
                }
            }
        }
        if steps >= budget && next_fire.is_none() {
            // Out of budget mid-way: finish this job on the next tick.
            exhausted = false;
        }
        if let Some(h) = held.take() {
            if exhausted {
                self.emit_declare(ctx, &mut emitter, job, h);
            } else {
                // The next tick may find a later missed fire that supersedes this one;
                // leave it unplanned so that it is considered again.
                cursor = emitter.last_planned().unwrap_or(plan.planned);
            }
        }
        emitter.flush(&mut self.outbox);
        plan.planned = cursor;
        plan.next = if exhausted {
            let retry = job
                .retries
                .iter()
                .filter(|r| !plan.retries_proposed.contains(&(r.scheduled_at, r.attempt)))
                .map(|r| r.not_before)
                .min();
            match (next_fire, retry) {
                (Some(f), Some(r)) => Some(f.min(r)),
                (f, r) => f.or(r),
            }
        } else {
            Some(now.wall)
        };
        if let Some(at) = plan.next {
            self.queue(at, &name);
        }
        if let Some(slot) = self.plans.get_mut(&name) {
            *slot = plan;
        }
        steps
    }

    fn emit_declare(
        &mut self,
        ctx: &mut Ctx<'_>,
        emitter: &mut Emitter,
        job: &JobRecord,
        fire: Timestamp,
    ) {
        emitter.flush(&mut self.outbox);
        emitter.planned(fire);
        let declare = self.declare(ctx, job, fire, 1, Trigger::Schedule, None);
        self.outbox.push(Command::Declare(declare));
    }

    /// A declaration of one fire, placed on the best host.
    fn declare(
        &mut self,
        ctx: &Ctx<'_>,
        job: &JobRecord,
        scheduled_at: Timestamp,
        attempt: u32,
        trigger: Trigger,
        key: Option<TriggerKey>,
    ) -> Declare {
        let blocked = job.spec.concurrency == Concurrency::Forbid
            && !job.active.is_empty()
            && !matches!(trigger, Trigger::Manual { force: true });
        let host = self.place(ctx, &job.spec);
        let declare = Declare {
            job: job.spec.name.clone(),
            scheduled_at,
            attempt,
            trigger,
            host,
            term: self.term,
            at: ctx.now.wall,
            key,
        };
        // A fire the state will skip takes no room on any host.
        let placed = match (host, blocked) {
            (Some(host), false) => {
                let request = job.spec.placement_request();
                self.loads.entry(host).or_default().add(&request);
                Some(Placed {
                    host,
                    at: ctx.now.mono,
                    request,
                })
            }
            _ => None,
        };
        self.proposed.push(ProposedDeclare {
            declare: declare.clone(),
            at: ctx.now.mono,
            placed,
            executor: Arc::clone(&job.spec.executor),
        });
        declare
    }

    /// The best host for a run of `spec`: among the hosts that have answered this
    /// leader if one of them can take it, else among every host gossip holds alive.
    ///
    /// A host that died moments ago still looks alive to gossip, and to a new leader
    /// that has not heard from it yet: the leader that just crashed is one. Its free
    /// resources, sampled before it died, may well be the most. So a run goes to a host
    /// that has answered this leader's heartbeats when one can take it; only when none
    /// can does it go to a host yet to answer, rather than fail for lack of capacity.
    fn place(&self, ctx: &Ctx<'_>, spec: &JobSpec) -> Option<HostId> {
        let need = Need {
            request: spec.placement_request(),
            docker: spec.executor.needs_docker(),
            constraints: &spec.constraints,
        };
        let me = ctx.me();
        let candidates = |answered_only: bool| {
            ctx.membership
                .hosts()
                .values()
                .filter(move |h| {
                    let track = self.hosts.get(&h.identity.id);
                    let fenced = track.is_some_and(|t| t.fenced.is_some());
                    let answered = h.identity.id == me || track.is_some_and(|t| t.answered);
                    is_placeable(h) && !fenced && (answered || !answered_only)
                })
                .filter_map(|h| {
                    Some(Candidate {
                        id: h.identity.id,
                        info: h.info.as_ref()?,
                        pending: self.loads.get(&h.identity.id).copied().unwrap_or_default(),
                    })
                })
        };
        placement::choose(&need, candidates(true))
            .or_else(|| placement::choose(&need, candidates(false)))
    }

    pub(super) fn plan_trigger(
        &mut self,
        ctx: &Ctx<'_>,
        name: &JobName,
        force: bool,
        key: Option<TriggerKey>,
    ) -> Result<Planned, TriggerError> {
        if !self.ready {
            return Err(TriggerError::NotReady);
        }
        let job = ctx
            .state
            .job(name)
            .ok_or_else(|| TriggerError::UnknownJob(name.clone()))?;
        // A request sent again: its run is the answer, even if the job is busy now. One
        // whose first sending is not applied yet is refused when it is (`KeyUsed`).
        if let Some(run) = key.as_ref().and_then(|key| job.run_for_key(key)) {
            return Ok(Planned::Made(run));
        }
        if job.spec.concurrency == Concurrency::Forbid
            && !force
            && let Some(&active) = job.active.first()
        {
            return Err(TriggerError::Busy {
                job: name.clone(),
                active,
            });
        }
        let after_last = job
            .last_manual
            .map_or(Timestamp::MIN, |t| t + Duration::from_millis(1));
        let scheduled_at = ctx.now.wall.max(after_last);
        let declare = self.declare(ctx, job, scheduled_at, 1, Trigger::Manual { force }, key);
        Ok(Planned::Propose(Command::Declare(declare)))
    }

    fn unplace(&mut self, placed: Option<Placed>) {
        if let Some(p) = placed
            && let Some(load) = self.loads.get_mut(&p.host)
        {
            load.remove(&p.request);
        }
    }

    // ----- reacting to the log -----

    /// Reacts to one applied command (never a batch: the node hands over a batch's
    /// commands one by one). The commands it queues go out at the next
    /// [`Leader::flush`].
    pub(super) fn on_applied(
        &mut self,
        ctx: &mut Ctx<'_>,
        command: &Command,
        outcome: &Outcome,
        before: Before,
    ) {
        if let Command::LeaderStart {
            term,
            leader,
            nonce,
            ..
        } = command
            && *term == self.term
            && *leader == ctx.me()
            && *nonce == self.nonce
            && !outcome.is_rejected()
            && !self.ready
        {
            self.become_ready(ctx);
        } else if self.ready {
            self.react(ctx, command, outcome);
        }
        for (run, host) in before.deleted_runs {
            let placed = self.inflight.remove(run);
            self.unplace(placed);
            if let Some(host) = host {
                ctx.send(
                    host,
                    Message::Stop {
                        term: self.term,
                        run,
                        reason: Reason::Stopped,
                    },
                );
            }
        }
    }

    fn react(&mut self, ctx: &mut Ctx<'_>, command: &Command, outcome: &Outcome) {
        match (command, outcome) {
            (Command::PutJob { spec, .. }, _) => self.resync_job(ctx.state, &spec.name, false),
            (
                Command::ResumeJob { name, .. }
                | Command::PauseJob { name, .. }
                | Command::DeleteJob { name, .. },
                _,
            ) => {
                self.resync_job(ctx.state, name, false);
            }
            (Command::Declare(d), outcome) => {
                let (placed, executor) = self
                    .proposed
                    .take(d)
                    .map_or((None, None), |p| (p.placed, Some(p.executor)));
                if d.trigger == Trigger::Retry
                    && let Some(plan) = self.plans.get_mut(&d.job)
                {
                    plan.retries_proposed.remove(&(d.scheduled_at, d.attempt));
                }
                match outcome {
                    Outcome::Declared { run } => {
                        let state = ctx.state;
                        let Some(r) = state.run(*run) else {
                            if let Some(p) = placed {
                                self.inflight.place(*run, p);
                            }
                            return;
                        };
                        if let Some(host) = d.host {
                            ctx.emit(Event::Declared {
                                run: *run,
                                host,
                                scheduled_at: r.scheduled_at,
                            });
                            for old in &r.waits_for {
                                self.send_stop(ctx, *old);
                            }
                        }
                        self.dispatch_run(ctx, r, false, executor, placed);
                    }
                    Outcome::Recorded { run, state, reason } => {
                        self.unplace(placed);
                        ctx.emit(Event::Recorded {
                            run: *run,
                            state: *state,
                            reason: *reason,
                        });
                        // A recorded failure may owe a retry.
                        self.resync_job(ctx.state, &d.job, false);
                    }
                    _ => {
                        self.unplace(placed);
                        self.resync_job(ctx.state, &d.job, true);
                    }
                }
            }
            (Command::MarkStarted { run, host, .. }, _) => {
                self.proposing.remove(run);
                self.inflight.end_dispatch(*run);
                let finished = ctx.state.run(*run).is_none_or(|r| !r.is_active());
                ctx.send(
                    *host,
                    Message::Ack {
                        term: self.term,
                        run: *run,
                        finished,
                    },
                );
            }
            (Command::MarkFinished(f), outcome) => {
                self.proposing.remove(&f.run);
                let placed = self.inflight.remove(f.run);
                self.unplace(placed);
                if let Some(host) = f.host {
                    ctx.send(
                        host,
                        Message::Ack {
                            term: self.term,
                            run: f.run,
                            finished: true,
                        },
                    );
                }
                if *outcome == Outcome::Done
                    && let Some(r) = ctx.state.run(f.run)
                {
                    ctx.emit(Event::Ended {
                        run: f.run,
                        state: r.state,
                        reason: r.reason,
                    });
                    let job = r.job.clone();
                    self.resync_job(ctx.state, &job, false);
                    // Runs that waited for this one to end may start now.
                    let waiting: Vec<RunId> = self.waiting.iter().copied().collect();
                    for id in waiting {
                        self.dispatch(ctx, id, false);
                    }
                }
            }
            (Command::RecordMissed { job, .. }, Outcome::Recorded { run, state, reason }) => {
                ctx.emit(Event::Recorded {
                    run: *run,
                    state: *state,
                    reason: *reason,
                });
                let _ = job;
            }
            (Command::RecordMissed { job, .. }, Outcome::Rejected(_)) => {
                self.resync_job(ctx.state, job, true)
            }
            (Command::StopRun { run, .. }, Outcome::Done) => {
                match ctx.state.run(*run).map(|r| r.state) {
                    // Not started: told through its dispatch, which stops it instead.
                    Some(RunState::Declared) => self.dispatch(ctx, *run, false),
                    _ => self.send_stop(ctx, *run),
                }
            }
            _ => {}
        }
    }

    fn become_ready(&mut self, ctx: &mut Ctx<'_>) {
        self.ready = true;
        self.ready_wall = ctx.now.wall;
        self.ready_mono = ctx.now.mono;
        if ctx.state.settings() != &ctx.config.settings {
            self.start_retry_at = ctx.now.mono + Duration::from_secs(2);
            self.outbox
                .push(Command::SetSettings(ctx.config.settings.clone()));
        }
        // Reconcile what was inherited before declaring anything new.
        let inherited: Vec<(RunId, RunState, bool)> = ctx
            .state
            .active_runs()
            .map(|r| (r.id, r.state, r.stop.is_some()))
            .collect();
        for (id, state, stopping) in &inherited {
            match state {
                RunState::Declared => {
                    ctx.emit(Event::InheritedDispatch { run: *id });
                    self.dispatch(ctx, *id, true);
                }
                _ => {
                    if *stopping {
                        self.send_stop(ctx, *id);
                    }
                }
            }
        }
        // Ask at once about the running ones rather than at the next reconcile.
        self.next_reconcile = ctx.now.mono;
        ctx.emit(Event::LeaderReady {
            term: self.term,
            inherited_runs: inherited.len(),
        });
        self.resync(ctx.state);
    }

    // ----- dispatch -----

    /// Sends the declared run `id` to its host, unless it waits for runs it replaces.
    fn dispatch(&mut self, ctx: &mut Ctx<'_>, id: RunId, inherited: bool) {
        let state = ctx.state;
        match state.run(id) {
            Some(run) => self.dispatch_run(ctx, run, inherited, None, None),
            None => {
                self.waiting.remove(&id);
                self.inflight.end_dispatch(id);
            }
        }
    }

    /// [`Leader::dispatch`] of a run the caller has looked up already.
    /// `executor`: the job's executor spec as it was declared, if the caller has it.
    /// `placed`: the resources placed for the run at its declaration, to keep until it
    /// ends, if the caller has them.
    fn dispatch_run(
        &mut self,
        ctx: &mut Ctx<'_>,
        run: &Run,
        inherited: bool,
        executor: Option<Arc<ExecutorSpec>>,
        placed: Option<Placed>,
    ) {
        let id = run.id;
        self.waiting.remove(&id);
        let (RunState::Declared, Some(host)) = (run.state, run.host) else {
            if let Some(p) = placed {
                self.inflight.place(id, p);
            }
            self.inflight.end_dispatch(id);
            return;
        };
        let waiting = run
            .waits_for
            .iter()
            .any(|w| ctx.state.run(*w).is_some_and(|r| r.is_active()));
        let Some(entry) = self.inflight.dispatch_or(
            id,
            Dispatch {
                host,
                deadline: ctx.now.mono,
                sent: 0,
                waiting,
            },
            placed,
        ) else {
            return;
        };
        // A run stopped before it started is not started: its host is told to stop it
        // instead, and remembers it ended, so that a dispatch sent before is not started
        // either. It is told again at each dispatch deadline until it reports.
        if run.stop.is_some() {
            entry.waiting = false;
            entry.deadline = ctx.now.mono + ctx.ms(ctx.config.timing.dispatch_timeout_ms);
            self.send_stop(ctx, id);
            return;
        }
        entry.waiting = waiting;
        if waiting {
            self.waiting.insert(id);
            return;
        }
        // A leader that cannot show a fresh quorum may have been deposed without knowing:
        // it starts nothing, so that the next leader can count on its silence within
        // half a lease (the dispatch is retried once the quorum answers again).
        if host != ctx.me() && !quorum_fresh(ctx) {
            return;
        }
        let Some(spec) = run_spec(ctx, run, executor) else {
            return;
        };
        entry.sent += 1;
        entry.deadline = ctx.now.mono + ctx.ms(ctx.config.timing.dispatch_timeout_ms);
        let sent = entry.sent;
        if sent > 1 && !inherited {
            ctx.emit(Event::DispatchRetried {
                run: id,
                attempt: sent,
            });
        }
        let renews_lease = self.renew(ctx, host);
        ctx.send(
            host,
            Message::Dispatch {
                term: self.term,
                run: spec,
                renews_lease,
            },
        );
    }

    fn send_stop(&mut self, ctx: &mut Ctx<'_>, id: RunId) {
        if let Some(run) = ctx.state.run(id)
            && let (true, Some(host), Some(reason)) = (run.is_active(), run.host, run.stop)
        {
            ctx.send(
                host,
                Message::Stop {
                    term: self.term,
                    run: id,
                    reason,
                },
            );
        }
    }

    // ----- reports -----

    /// Tells a host that the cluster holds `id` ended (or holds it no more): the host
    /// may forget it, and must stop it if its report says it is still going.
    fn release(&self, ctx: &mut Ctx<'_>, from: HostId, id: RunId, status: &ReportStatus) {
        if matches!(
            status,
            ReportStatus::Started { .. } | ReportStatus::Starting
        ) {
            ctx.send(
                from,
                Message::Stop {
                    term: self.term,
                    run: id,
                    reason: Reason::Stopped,
                },
            );
        }
        ctx.send(
            from,
            Message::Ack {
                term: self.term,
                run: id,
                finished: true,
            },
        );
    }

    pub(super) fn on_report(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: HostId,
        id: RunId,
        status: ReportStatus,
    ) {
        if !self.ready {
            return;
        }
        self.heard_from(ctx.now, from, ctx.membership);
        let Some(run) = ctx.state.run(id) else {
            // A run the state no longer holds (its job was deleted, or it aged out):
            // let the host forget it, and stop it if it is still going.
            self.release(ctx, from, id, &status);
            return;
        };
        if run.host != Some(from) || self.proposing.contains(&id) {
            return;
        }
        match (run.state, status) {
            (state, status) if !state.is_active() => {
                // Ended here already: the host may forget it. If the host says it is
                // still going (a run found after a long outage, already recorded lost),
                // it must stop: the cluster has moved on, and its retry may be running.
                self.release(ctx, from, id, &status);
            }
            (RunState::Declared, ReportStatus::Started { at }) => {
                self.proposing.insert(id);
                self.outbox.push(Command::MarkStarted {
                    run: id,
                    host: from,
                    started_at: at,
                });
            }
            (RunState::Running, ReportStatus::Started { .. }) => {
                ctx.send(
                    from,
                    Message::Ack {
                        term: self.term,
                        run: id,
                        finished: false,
                    },
                );
            }
            (
                _,
                ReportStatus::Finished {
                    started_at,
                    at,
                    exit_code,
                    reason,
                    detail,
                },
            ) => {
                self.proposing.insert(id);
                self.outbox.push(Command::MarkFinished(Finish {
                    run: id,
                    host: Some(from),
                    started_at,
                    finished_at: at,
                    exit_code,
                    reason,
                    detail,
                }));
            }
            (RunState::Declared, ReportStatus::Unknown) => {
                // The host does not have it (it restarted, or the dispatch was lost):
                // send it again, if its last sending is not too recent.
                let due = self
                    .inflight
                    .dispatch(id)
                    .is_none_or(|d| d.deadline <= ctx.now.mono);
                if due {
                    self.dispatch(ctx, id, false);
                }
            }
            (RunState::Running, ReportStatus::Unknown) => {
                self.proposing.insert(id);
                self.outbox.push(Command::MarkFinished(Finish {
                    run: id,
                    host: None,
                    started_at: None,
                    finished_at: ctx.now.wall,
                    exit_code: None,
                    reason: Some(Reason::HostLost),
                    detail: Some(format!(
                        "host {from} has no record of the run: it restarted while the run was active"
                    )),
                }));
            }
            (_, ReportStatus::Starting | ReportStatus::Unknown | ReportStatus::Started { .. }) => {}
        }
        self.flush(ctx);
    }

    pub(super) fn on_proposal_failed(&mut self, state: &State, command: &Command) {
        for command in command.members() {
            match command {
                Command::LeaderStart { .. } => {}
                Command::Declare(d) => {
                    let placed = self.proposed.take(d).and_then(|p| p.placed);
                    self.unplace(placed);
                    if let Some(plan) = self.plans.get_mut(&d.job) {
                        plan.retries_proposed.remove(&(d.scheduled_at, d.attempt));
                    }
                    self.resync_job(state, &d.job, true);
                }
                Command::RecordMissed { job, .. } => self.resync_job(state, job, true),
                Command::MarkStarted { run, .. } => {
                    self.proposing.remove(run);
                }
                Command::MarkFinished(f) => {
                    self.proposing.remove(&f.run);
                }
                _ => {}
            }
        }
    }

    pub(super) fn on_membership(&mut self, now: Now, change: &Change, membership: &Membership) {
        match change {
            Change::Info(host) => {
                // The host's gossip now reflects what was placed on it a while ago.
                let reflected = Duration::from_secs(1);
                let cutoff = now.mono.saturating_sub(reflected);
                let mut freed = self.inflight.release_reflected(*host, cutoff);
                for placed in self.proposed.placed_mut() {
                    if placed.host == *host
                        && placed.at < cutoff
                        && placed.request != Request::default()
                    {
                        freed.push(placed.request);
                        placed.request = Request::default();
                    }
                }
                if let Some(load) = self.loads.get_mut(host) {
                    for r in &freed {
                        load.remove(r);
                    }
                }
            }
            Change::Up(host) | Change::Restarted(host) => {
                // Resend at once whatever waits for this host.
                for d in self.inflight.dispatches_mut() {
                    if d.host == *host {
                        d.deadline = now.mono;
                    }
                }
                if matches!(change, Change::Restarted(_)) {
                    self.next_reconcile = now.mono;
                }
            }
            Change::Down(_) | Change::Rejoined => {}
        }
        let _ = membership;
    }

    // ----- time -----

    pub(super) fn on_tick(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if !self.ready {
            if now.mono >= self.start_retry_at {
                // The first LeaderStart may have been lost with a failed proposal;
                // another is harmless (the same term applies once more as a no-op).
                self.start_retry_at = now.mono + Duration::from_secs(2);
                ctx.effects
                    .push_back(Effect::Propose(self.start_command(ctx.me(), now)));
            }
            return;
        }
        if now.mono >= self.next_heartbeat {
            self.next_heartbeat = now.mono + ctx.ms(ctx.config.timing.heartbeat_interval_ms.max(1));
            self.heartbeat(ctx);
        }
        self.plan_due(ctx);
        if now.mono >= self.next_housekeeping {
            self.next_housekeeping = now.mono + ctx.ms(ctx.config.timing.housekeeping_ms.max(1));
            self.check_dispatches(ctx);
            self.check_lost_hosts(ctx);
            if now.mono >= self.start_retry_at && ctx.state.settings() != &ctx.config.settings {
                // The first `SetSettings` may have been lost with a failed proposal.
                self.start_retry_at = now.mono + Duration::from_secs(2);
                self.outbox
                    .push(Command::SetSettings(ctx.config.settings.clone()));
            }
            for placed in self.proposed.expire(now.mono.saturating_sub(PROPOSED_KEPT)) {
                self.unplace(Some(placed));
            }
            if now.mono >= self.next_stop_resend {
                self.next_stop_resend = now.mono + ctx.ms(ctx.config.timing.stop_retry_ms.max(1));
                let stopping: Vec<RunId> = ctx
                    .state
                    .active_runs()
                    .filter(|r| r.stop.is_some())
                    .map(|r| r.id)
                    .collect();
                for id in stopping {
                    self.send_stop(ctx, id);
                }
            }
            if now.mono >= self.next_reconcile {
                self.next_reconcile =
                    now.mono + ctx.ms(ctx.config.timing.reconcile_interval_ms.max(1));
                self.reconcile(ctx);
            }
        }
        self.flush(ctx);
    }

    /// Renews the lease of every host this leader can reach, while a quorum still says
    /// it leads (a leader cut off from its quorum stops renewing), and stops renewing
    /// (fences) hosts that gossip declares down or that have not answered for a while.
    fn heartbeat(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now.mono;
        let quorum_fresh = quorum_fresh(ctx);
        let me = ctx.me();
        // Every host gossip knows, and every host this leader has tracked (a host that
        // gossip has forgotten may still hold runs).
        let mut hosts: BTreeMap<HostId, Option<Liveness>> = ctx
            .membership
            .hosts()
            .values()
            .filter(|h| h.identity.id != me)
            .map(|h| (h.identity.id, Some(h.liveness)))
            .collect();
        for id in self.hosts.keys().filter(|id| **id != me) {
            hosts.entry(*id).or_insert(None);
        }
        for (host, liveness) in hosts {
            self.fence_if_unreachable(ctx, host, liveness);
            // Hosts down or unknown to gossip get nothing; the others a heartbeat.
            if !quorum_fresh || matches!(liveness, None | Some(Liveness::Down)) {
                continue;
            }
            // A fenced host is only asked whether it is reachable; its answer lifts the
            // fence, and the next heartbeat renews its lease.
            let track = self
                .hosts
                .get_mut(&host)
                .expect("tracked by fence_if_unreachable");
            let renews_lease = track.fenced.is_none();
            if renews_lease {
                track.renewed = Some(now);
            }
            ctx.send(
                host,
                Message::Heartbeat {
                    term: self.term,
                    renews_lease,
                },
            );
        }
    }

    /// Fences `host` (stops renewing its lease) if gossip says it is down or does not
    /// know it, or if it has not answered for a while. Answers whether it is fenced.
    fn fence_if_unreachable(
        &mut self,
        ctx: &Ctx<'_>,
        host: HostId,
        liveness: Option<Liveness>,
    ) -> bool {
        if host == ctx.me() {
            return false;
        }
        let now = ctx.now.mono;
        let unreachable = Duration::from_millis(ctx.config.timing.unreachable_after_ms);
        let ready = self.ready_mono;
        let track = self.hosts.entry(host).or_insert(HostTrack {
            heard: ready.max(now),
            renewed: None,
            fenced: None,
            answered: false,
        });
        let silent = now.saturating_since(track.heard) > unreachable;
        let down = matches!(liveness, None | Some(Liveness::Down));
        if (down || silent) && track.fenced.is_none() {
            track.fenced = Some(track.renewed.unwrap_or(ready).max(ready));
        }
        track.fenced.is_some()
    }

    /// Whether a message to `host` may renew its lease now; if so, records the renewal.
    fn renew(&mut self, ctx: &Ctx<'_>, host: HostId) -> bool {
        let now = ctx.now.mono;
        let lease = Duration::from_millis(ctx.config.timing.lease_ms);
        let quorum_fresh = ctx
            .raft
            .quorum_acked
            .is_some_and(|q| now.saturating_since(q) < lease / 2);
        if host == ctx.me() || !quorum_fresh {
            return false;
        }
        let liveness = ctx.membership.host(host).map(|h| h.liveness);
        if self.fence_if_unreachable(ctx, host, liveness) {
            return false;
        }
        if let Some(track) = self.hosts.get_mut(&host) {
            track.renewed = Some(now);
        }
        true
    }

    /// A message arrived from `host`: it is reachable, so its lease may be renewed.
    pub(super) fn heard_from(&mut self, now: Now, host: HostId, membership: &Membership) {
        let track = self.hosts.entry(host).or_insert(HostTrack {
            heard: now.mono,
            renewed: None,
            fenced: None,
            answered: true,
        });
        track.heard = now.mono;
        track.answered = true;
        if membership
            .host(host)
            .is_some_and(|h| h.liveness != Liveness::Down)
        {
            track.fenced = None;
        }
    }

    /// Sends again every dispatch whose host has not reported in time. A host that
    /// receives one after the run's start deadline refuses it and reports the run
    /// `dispatch-lost`; a host that never answers is fenced, and its runs are settled by
    /// the lost-host rule.
    fn check_dispatches(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let due: Vec<RunId> = self
            .inflight
            .dispatches()
            .filter(|(_, d)| d.waiting || d.deadline <= now.mono)
            .map(|(id, _)| id)
            .collect();
        for id in due {
            if self.proposing.contains(&id) {
                continue;
            }
            let Some(host) = ctx
                .state
                .run(id)
                .filter(|r| r.state == RunState::Declared)
                .and_then(|r| r.host)
            else {
                self.inflight.end_dispatch(id);
                continue;
            };
            if self.hosts.get(&host).is_some_and(|t| t.fenced.is_some()) {
                continue;
            }
            self.dispatch(ctx, id, false);
        }
    }

    /// Settles the runs of fenced hosts once their lease has surely expired, so that a
    /// `forbid` job's successor cannot overlap them: `dispatch-lost` for runs the host
    /// never confirmed, `host-lost` for runs whose outcome is unknown.
    fn check_lost_hosts(&mut self, ctx: &mut Ctx<'_>) {
        let t = &ctx.config.timing;
        let lease = Duration::from_millis(t.lease_ms);
        let wait = lease + Duration::from_millis(t.lease_margin_ms);
        // A previous leader may have renewed leases until half a lease after this one
        // took over (it renews only while its quorum is fresh).
        let inherited_renewals = self.ready_mono + lease / 2;
        let now = ctx.now;
        let me = ctx.me();
        let mut lost: BTreeMap<HostId, Vec<(RunId, RunState)>> = BTreeMap::new();
        for run in ctx.state.active_runs() {
            let Some(host) = run.host else { continue };
            if host == me || self.proposing.contains(&run.id) {
                continue;
            }
            let fenced = match (self.hosts.get(&host), ctx.membership.host(host)) {
                (Some(track), _) => track.fenced,
                // Never seen by this leader's gossip: it may be long gone.
                (None, None) => {
                    Some(self.ready_mono + Duration::from_millis(t.unreachable_after_ms))
                }
                (None, Some(_)) => None,
            };
            if let Some(since) = fenced
                && now.mono.saturating_since(since.max(inherited_renewals)) >= wait
                && now.mono >= inherited_renewals + wait
            {
                lost.entry(host).or_default().push((run.id, run.state));
            }
        }
        for (host, runs) in lost {
            ctx.emit(Event::HostLost {
                host,
                runs: runs.len(),
            });
            for (id, state) in runs {
                self.proposing.insert(id);
                self.inflight.end_dispatch(id);
                let (reason, detail) = if state == RunState::Declared {
                    (
                        Reason::DispatchLost,
                        format!("host {host} never confirmed the run and stopped answering"),
                    )
                } else {
                    (
                        Reason::HostLost,
                        format!(
                            "host {host} stopped answering while the run's outcome was unknown"
                        ),
                    )
                };
                self.outbox.push(Command::MarkFinished(Finish {
                    run: id,
                    host: None,
                    started_at: None,
                    finished_at: now.wall,
                    exit_code: None,
                    reason: Some(reason),
                    detail: Some(detail),
                }));
            }
        }
    }

    /// Asks each live host about the runs the state says it is running.
    fn reconcile(&mut self, ctx: &mut Ctx<'_>) {
        let mut by_host: BTreeMap<HostId, Vec<RunId>> = BTreeMap::new();
        for run in ctx.state.active_runs() {
            if let (RunState::Running, Some(host)) = (run.state, run.host)
                && ctx.membership.is_alive(host)
            {
                by_host.entry(host).or_default().push(run.id);
            }
        }
        let chunk = ctx.config.limits.query_runs_max.max(1);
        for (host, runs) in by_host {
            for part in runs.chunks(chunk) {
                ctx.send(
                    host,
                    Message::Query {
                        term: self.term,
                        runs: part.to_vec(),
                    },
                );
            }
        }
    }

    pub(super) fn flush(&mut self, ctx: &mut Ctx<'_>) {
        if self.outbox.is_empty() {
            return;
        }
        let max = ctx.config.limits.proposal_commands_max.max(1);
        // The commands go out in the vector they were gathered in, not copied; the next
        // tick's start as large, so that gathering them does not grow a vector again.
        let next = Vec::with_capacity(self.outbox.len().min(max));
        let mut commands = core::mem::replace(&mut self.outbox, next);
        // Cut from the back, so that each cut copies only the commands it takes.
        let mut later = Vec::new();
        while commands.len() > max {
            let cut = (commands.len() - 1) / max * max;
            later.push(commands.split_off(cut));
        }
        for batch in std::iter::once(commands).chain(later.into_iter().rev()) {
            ctx.effects
                .push_back(Effect::Propose(Command::batch(batch)));
        }
    }
}

/// Whether a quorum acknowledged this leader within half a lease: only then may it renew
/// leases or start runs, so a deposed leader that does not know it yet falls silent in
/// time for its successor.
fn quorum_fresh(ctx: &Ctx<'_>) -> bool {
    let half_lease = Duration::from_millis(ctx.config.timing.lease_ms / 2);
    ctx.raft
        .quorum_acked
        .is_some_and(|q| ctx.now.mono.saturating_since(q) < half_lease)
}

/// The job's next due instant under a plan: its next fire, or an unproposed retry.
fn next_due(job: &JobRecord, plan: &Plan) -> Option<Timestamp> {
    if job.spec.paused {
        return None;
    }
    let fire = job
        .spec
        .schedule
        .next_after(plan.planned, job.spec.timezone, job.anchor);
    let retry = job
        .retries
        .iter()
        .filter(|r| !plan.retries_proposed.contains(&(r.scheduled_at, r.attempt)))
        .map(|r| r.not_before)
        .min();
    match (fire, retry) {
        (Some(f), Some(r)) => Some(f.min(r)),
        (f, r) => f.or(r),
    }
}

/// The instant after which a host must not start the run: the job's starting deadline
/// past the fire time, and never less than a few dispatch timeouts past its
/// declaration. Every leader computes the same from the state.
fn start_by(ctx: &Ctx<'_>, run: &Run, job: &JobRecord) -> Timestamp {
    let floor = run.declared_at
        + Duration::from_millis(ctx.config.timing.dispatch_timeout_ms.saturating_mul(3));
    let base = match run.trigger {
        Trigger::Schedule => run.scheduled_at,
        // A retry or a manual run counts from when it was declared.
        Trigger::Retry | Trigger::Manual { .. } => run.declared_at,
    };
    (base + job.spec.starting_deadline()).max(floor)
}

/// What a host needs to start `run`, or none when its job is gone. `declared` is the
/// job's executor spec as it was when the run was declared, if the caller kept it: used
/// when the job still holds that same spec. Sharing the job's own copy would count a
/// new reference on memory long out of cache, and that count waits for every memory
/// access before it.
fn run_spec(ctx: &Ctx<'_>, run: &Run, declared: Option<Arc<ExecutorSpec>>) -> Option<RunSpec> {
    let job = ctx.state.job(&run.job)?;
    let executor = match declared {
        Some(e) if Arc::ptr_eq(&e, &job.spec.executor) => e,
        _ => Arc::clone(&job.spec.executor),
    };
    Some(RunSpec {
        id: run.id,
        job: run.job.clone(),
        scheduled_at: run.scheduled_at,
        attempt: run.attempt,
        executor,
        timeout_ms: job.spec.timeout_s.map(|s| s.saturating_mul(1000)),
        concurrency: job.spec.concurrency,
        start_by: start_by(ctx, run, job),
    })
}

/// Reads the fields of a job record that planning it reads, wherever the compiler laid
/// them out, so that [`Leader::warm_due`] brings every cache line they lie on.
fn touch_planned_fields(job: &JobRecord) -> usize {
    let spec = &job.spec;
    let times = [Some(job.anchor), Some(job.watermark), job.resumed_at]
        .into_iter()
        .flatten()
        .fold(0i64, |sum, t| sum.wrapping_add(t.as_millis()));
    (times as usize)
        .wrapping_add(usize::from(spec.paused))
        .wrapping_add(spec.concurrency as usize)
        .wrapping_add(spec.missed as usize)
        .wrapping_add(spec.starting_deadline_s as usize)
        .wrapping_add(spec.constraints.len())
        .wrapping_add(spec.resources.memory_mb.unwrap_or(0) as usize)
        .wrapping_add(spec.resources.disk_mb.unwrap_or(0) as usize)
        .wrapping_add(usize::from(spec.resources.cpus.is_some()))
        .wrapping_add(job.active.len())
        .wrapping_add(job.retries.len())
}

/// Gathers consecutive missed fires with the same reason into one record.
struct Emitter {
    job: JobName,
    at: Timestamp,
    range_max: u32,
    range: Option<(Timestamp, Timestamp, u32, Reason)>,
    last_planned: Option<Timestamp>,
}

impl Emitter {
    fn new(job: JobName, at: Timestamp, range_max: u32) -> Self {
        Emitter {
            job,
            at,
            range_max: range_max.max(1),
            range: None,
            last_planned: None,
        }
    }

    fn missed(&mut self, fire: Timestamp, reason: Reason, outbox: &mut Vec<Command>) {
        self.last_planned = Some(fire);
        match &mut self.range {
            Some((_, last, count, r)) if *r == reason && *count < self.range_max => {
                *last = fire;
                *count += 1;
            }
            _ => {
                self.flush(outbox);
                self.range = Some((fire, fire, 1, reason));
            }
        }
    }

    fn planned(&mut self, fire: Timestamp) {
        self.last_planned = Some(fire);
    }

    fn last_planned(&self) -> Option<Timestamp> {
        self.last_planned
    }

    fn flush(&mut self, outbox: &mut Vec<Command>) {
        if let Some((first, last, count, reason)) = self.range.take() {
            outbox.push(Command::RecordMissed {
                job: self.job.clone(),
                first,
                last,
                count,
                reason,
                at: self.at,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{job, name, ts};

    fn declare(job: &str, at: &str, trigger: Trigger) -> Declare {
        Declare {
            job: name(job),
            scheduled_at: ts(at),
            attempt: 1,
            trigger,
            host: Some(HostId(1)),
            term: 1,
            at: ts(at),
            key: None,
        }
    }

    fn proposed(d: &Declare, at_ms: u64, placed_on: Option<u64>) -> ProposedDeclare {
        ProposedDeclare {
            declare: d.clone(),
            at: Mono::from_millis(at_ms),
            placed: placed_on.map(|host| Placed {
                host: HostId(host),
                at: Mono::from_millis(at_ms),
                request: Request::default(),
            }),
            executor: job(d.job.as_str(), "@hourly").executor,
        }
    }

    #[test]
    fn a_proposed_declaration_is_found_in_or_out_of_order_and_only_once() {
        let a = declare("a", "2026-01-01T00:00:00Z", Trigger::Schedule);
        let b = declare("b", "2026-01-01T00:00:00Z", Trigger::Schedule);
        let c = declare("a", "2026-01-01T00:00:01Z", Trigger::Schedule);
        let manual = declare(
            "a",
            "2026-01-01T00:00:00Z",
            Trigger::Manual { force: false },
        );
        let mut list = Proposed::default();
        list.push(proposed(&a, 0, Some(1)));
        list.push(proposed(&b, 0, None));
        list.push(proposed(&c, 0, Some(3)));

        // Out of order: the later one first.
        assert_eq!(
            list.take(&c).and_then(|p| p.placed).map(|p| p.host),
            Some(HostId(3))
        );
        // Same job and time, but manual: not the scheduled one.
        assert!(list.take(&manual).is_none());
        // Same job and time, but placed on another host.
        let elsewhere = Declare {
            host: Some(HostId(2)),
            ..a.clone()
        };
        assert!(list.take(&elsewhere).is_none());
        assert_eq!(
            list.take(&a).and_then(|p| p.placed).map(|p| p.host),
            Some(HostId(1))
        );
        assert!(list.take(&a).is_none(), "taken twice");
        // Found, but it placed nothing.
        let b = list.take(&b).expect("b was proposed");
        assert!(b.placed.is_none());
        assert!(list.0.is_empty(), "{:?}", list.0);
    }

    #[test]
    fn placements_a_hosts_gossip_reflects_are_released_and_finished_runs_forgotten() {
        let placed = |host: u64, at_ms: u64| Placed {
            host: HostId(host),
            at: Mono::from_millis(at_ms),
            request: Request {
                milli_cpus: 10,
                memory_mb: 8,
                disk_mb: 0,
            },
        };
        let dispatch = Dispatch {
            host: HostId(1),
            deadline: Mono::from_millis(0),
            sent: 1,
            waiting: false,
        };
        let mut runs = InFlight::default();
        // Started (no dispatch left), placed long ago on host 1: forgotten.
        runs.place(RunId(1), placed(1, 1_000));
        // Still to be started, placed long ago on host 1: its placement goes.
        runs.place(RunId(2), placed(1, 1_000));
        runs.dispatch_or(RunId(2), dispatch, None);
        // On another host, and placed lately: kept.
        runs.place(RunId(3), placed(2, 1_000));
        runs.place(RunId(4), placed(1, 5_000));

        let freed = runs.release_reflected(HostId(1), Mono::from_millis(4_000));
        assert_eq!(freed.len(), 2, "{freed:?}");
        assert_eq!(
            runs.0.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [RunId(2), RunId(3), RunId(4)]
        );
        assert!(runs.dispatch(RunId(2)).is_some());
        assert!(
            runs.remove(RunId(2)).is_none(),
            "its placement was released"
        );
        assert!(runs.remove(RunId(3)).is_some() && runs.remove(RunId(4)).is_some());
    }

    #[test]
    fn declarations_proposed_before_the_cutoff_expire_and_free_what_they_placed() {
        let a = declare("a", "2026-01-01T00:00:00Z", Trigger::Schedule);
        let b = declare("b", "2026-01-01T00:00:00Z", Trigger::Schedule);
        let c = declare("c", "2026-01-01T00:00:00Z", Trigger::Schedule);
        let mut list = Proposed::default();
        list.push(proposed(&a, 1_000, Some(1)));
        list.push(proposed(&b, 2_000, None));
        list.push(proposed(&c, 3_000, Some(3)));

        let freed = list.expire(Mono::from_millis(3_000));
        assert_eq!(
            freed.iter().map(|p| p.host).collect::<Vec<_>>(),
            [HostId(1)]
        );
        assert!(list.take(&a).is_none() && list.take(&b).is_none());
        assert_eq!(
            list.take(&c).and_then(|p| p.placed).map(|p| p.host),
            Some(HostId(3))
        );
    }
}
