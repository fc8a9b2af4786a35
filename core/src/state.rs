//! The replicated state machine: jobs, runs, and what each host was asked to do.
//!
//! [`State::apply`] is pure and deterministic. Every value it stores comes from the
//! command, so all replicas that apply the same log hold the same bytes. The rules that
//! must survive a leader change live here, because the log is the only thing a new
//! leader is sure to share with the old one:
//! - a fire time of a job is declared at most once, and none is passed over: each job
//!   keeps a watermark (the latest fire time declared or recorded), and a scheduled
//!   declaration or missed record must start at the schedule's first fire after it;
//! - a retry is declared only when the failed attempt left a pending retry;
//! - the concurrency policy is decided at declaration, against the runs active then;
//! - only the current leader's declarations are accepted.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::{Command, Declare, Finish, Outcome, Rejection};
use crate::host::HostId;
use crate::id_table::IdTable;
use crate::job::{Concurrency, JobLimits, JobName, JobSpec};
use crate::run::{Reason, Run, RunId, RunState, Trigger, TriggerKey, bounded_detail};
use crate::time::Timestamp;

use table::JobTable;

/// Cluster-wide bounds on the replicated state, themselves replicated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The most jobs the cluster holds.
    pub jobs_max: u64,
    /// The most ended runs kept per job; older ones are dropped first.
    pub runs_kept_per_job_max: u32,
    /// Bounds on each job spec.
    pub job_limits: JobLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            jobs_max: 100_000,
            runs_kept_per_job_max: 20,
            job_limits: JobLimits::default(),
        }
    }
}

/// A retry owed to a failed attempt, due once `not_before` has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRetry {
    /// The fire time being retried.
    pub scheduled_at: Timestamp,
    /// The attempt to declare.
    pub attempt: u32,
    /// The earliest time to declare it.
    pub not_before: Timestamp,
}

/// A job and what the cluster remembers of its runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job as last written.
    pub spec: JobSpec,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last written.
    pub updated_at: Timestamp,
    /// The instant `@every` counts from: creation, or the last change of schedule or zone.
    pub anchor: Timestamp,
    /// The latest fire time declared or recorded. The next fire is the schedule's first
    /// fire after it; it is derived, never written on a tick.
    pub watermark: Timestamp,
    /// The time of the latest manual run, which a new manual run must come after.
    pub last_manual: Option<Timestamp>,
    /// When the job was paused, while it is.
    pub paused_at: Option<Timestamp>,
    /// When the job was last resumed; fires before this passed while it was paused.
    pub resumed_at: Option<Timestamp>,
    /// Runs declared or running, oldest first.
    pub active: Vec<RunId>,
    /// Ended runs and records, oldest first, at most `runs_kept_per_job_max`.
    pub history: VecDeque<RunId>,
    /// Retries owed to failed attempts.
    pub retries: Vec<PendingRetry>,
    /// The keys of the latest keyed manual runs and the runs they made, oldest first, at
    /// most [`TRIGGER_KEYS_KEPT_PER_JOB`].
    pub trigger_keys: Vec<(TriggerKey, RunId)>,
}

/// How many keyed manual runs of a job are remembered: a request sent again with the key
/// of an older one than these makes a new run.
pub const TRIGGER_KEYS_KEPT_PER_JOB: usize = 100;

impl JobRecord {
    /// The run a manual request with `key` made, if the job remembers it.
    pub fn run_for_key(&self, key: &TriggerKey) -> Option<RunId> {
        self.trigger_keys
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|&(_, run)| run)
    }

    fn remember_key(&mut self, key: TriggerKey, run: RunId) {
        if self.trigger_keys.len() >= TRIGGER_KEYS_KEPT_PER_JOB {
            self.trigger_keys.remove(0);
        }
        self.trigger_keys.push((key, run));
    }

    /// The first fire time after the watermark: the next one to declare or record.
    pub fn next_fire(&self) -> Option<Timestamp> {
        self.spec
            .schedule
            .next_after(self.watermark, self.spec.timezone, self.anchor)
    }
}

/// The replicated state. See the module documentation for its rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    settings: Settings,
    jobs: JobTable,
    runs: IdTable<Run>,
    /// The runs declared or running, cluster-wide (an index over `runs`).
    active: BTreeSet<RunId>,
    next_run: u64,
    term: u64,
    leader: Option<HostId>,
    applied_index: u64,
}

/// Owes a retry to a failed attempt when the job's policy allows one.
fn owe_retry(
    record: &mut JobRecord,
    scheduled_at: Timestamp,
    attempt: u32,
    reason: Reason,
    at: Timestamp,
) {
    if !reason.is_retryable() || attempt > record.spec.retries {
        return;
    }
    record.retries.push(PendingRetry {
        scheduled_at,
        attempt: attempt + 1,
        not_before: at + record.spec.retry_delay(attempt),
    });
}

/// Says in an ended run's detail why its fire is not tried again, though the run's
/// reason would owe a retry.
fn not_tried_again(run: &mut Run, why: &str) {
    let note = match run.detail.take() {
        Some(detail) => format!("not tried again: {why}; {detail}"),
        None => format!("not tried again: {why}"),
    };
    run.detail = Some(bounded_detail(&note));
}

/// Appends an ended run to a job's history, dropping the oldest beyond the bound.
fn push_ended(record: &mut JobRecord, id: RunId, runs: &mut IdTable<Run>, settings: &Settings) {
    record.history.push_back(id);
    trim(record, runs, settings);
}

/// Drops a job's oldest ended runs beyond the bound.
fn trim(record: &mut JobRecord, runs: &mut IdTable<Run>, settings: &Settings) {
    let kept = settings.runs_kept_per_job_max.max(1) as usize;
    while record.history.len() > kept {
        if let Some(old) = record.history.pop_front() {
            runs.remove(old);
        }
    }
}

/// A broken invariant: the state is corrupt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("state invariant broken: {0}")]
pub struct InvariantViolation(pub String);

impl State {
    /// An empty state with default settings.
    pub fn new() -> Self {
        State::default()
    }

    /// The cluster-wide bounds.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The latest leader term applied.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The leader of the latest term applied.
    pub fn leader(&self) -> Option<HostId> {
        self.leader
    }

    /// The index of the last entry applied.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// One job.
    pub fn job(&self, name: &JobName) -> Option<&JobRecord> {
        self.jobs.get(name)
    }

    /// All jobs, by name.
    pub fn jobs(&self) -> impl ExactSizeIterator<Item = (&JobName, &JobRecord)> {
        self.jobs.iter()
    }

    /// One run.
    pub fn run(&self, id: RunId) -> Option<&Run> {
        self.runs.get(id)
    }

    /// Every run kept, by id.
    pub fn runs(&self) -> impl ExactSizeIterator<Item = (&RunId, &Run)> {
        self.runs.iter()
    }

    /// A job's runs, newest first: active ones, then the history.
    pub fn runs_of<'a>(&'a self, job: &'a JobRecord) -> impl Iterator<Item = &'a Run> + 'a {
        job.active
            .iter()
            .rev()
            .chain(job.history.iter().rev())
            .filter_map(|id| self.runs.get(*id))
    }

    /// Every active run (declared or running), by id.
    pub fn active_runs(&self) -> impl Iterator<Item = &Run> {
        self.active.iter().filter_map(|id| self.runs.get(*id))
    }

    /// How many runs are active.
    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// Applies one committed entry at log index `index`.
    pub fn apply(&mut self, index: u64, command: &Command) -> Outcome {
        self.applied_index = self.applied_index.max(index);
        match command {
            Command::Batch(commands) => Outcome::Batch(
                commands
                    .iter()
                    .map(|c| self.apply_in_batch(index, c))
                    .collect(),
            ),
            command => self.apply_one(command),
        }
    }

    /// Applies one command of a batch at log index `index`: the same as applying it on
    /// its own, except that a batch inside a batch is refused. A caller that must act on
    /// each command's outcome before the next applies goes through this, one command
    /// at a time, and ends where [`State::apply`] of the whole batch would.
    pub fn apply_in_batch(&mut self, index: u64, command: &Command) -> Outcome {
        self.applied_index = self.applied_index.max(index);
        match command {
            Command::Batch(_) => {
                Outcome::Rejected(Rejection::Malformed("a batch may not hold a batch".into()))
            }
            command => self.apply_one(command),
        }
    }

    fn apply_one(&mut self, command: &Command) -> Outcome {
        let result = match command {
            Command::PutJob { spec, replace, at } => self.put_job(spec, *replace, *at),
            Command::DeleteJob { name, at } => self.delete_job(name, *at),
            Command::PauseJob { name, at } => self.pause_job(name, *at),
            Command::ResumeJob { name, at } => self.resume_job(name, *at),
            Command::Declare(declare) => self.declare(declare),
            Command::MarkStarted {
                run,
                host,
                started_at,
            } => self.mark_started(*run, *host, *started_at),
            Command::MarkFinished(finish) => self.mark_finished(finish),
            Command::RecordMissed {
                job,
                first,
                last,
                count,
                reason,
                at,
            } => self.record_missed(job, *first, *last, *count, *reason, *at),
            Command::LeaderStart { term, leader, .. } => self.leader_start(*term, *leader),
            Command::SetSettings(settings) => {
                self.settings = settings.clone();
                // A lower bound on history applies at once, oldest first.
                for record in self.jobs.values_mut() {
                    trim(record, &mut self.runs, &self.settings);
                }
                Ok(Outcome::Done)
            }
            Command::Batch(_) => Err(Rejection::Malformed("nested batch".into())),
            Command::StopRun { run, .. } => self.stop_run(*run),
        };
        result.unwrap_or_else(Outcome::Rejected)
    }

    fn put_job(
        &mut self,
        spec: &JobSpec,
        replace: bool,
        at: Timestamp,
    ) -> Result<Outcome, Rejection> {
        spec.validate(&self.settings.job_limits)
            .map_err(Rejection::InvalidJob)?;
        if let Some(job) = self.jobs.get_mut(&spec.name) {
            if !replace {
                return Err(Rejection::JobExists(spec.name.clone()));
            }
            let timing_changed =
                job.spec.schedule != spec.schedule || job.spec.timezone != spec.timezone;
            if timing_changed {
                // A new schedule starts counting now: its fire times before this write
                // were never owed, so they are neither run nor recorded as missed.
                job.anchor = at;
                job.watermark = job.watermark.max(at);
            }
            match (job.spec.paused, spec.paused) {
                (false, true) => job.paused_at = Some(at),
                (true, false) => {
                    job.paused_at = None;
                    job.resumed_at = Some(at);
                }
                _ => {}
            }
            // Fewer retries now allowed: the attempts beyond them are no longer owed.
            job.retries
                .retain(|retry| retry.attempt <= spec.retries + 1);
            job.spec = spec.clone();
            job.updated_at = at;
            return Ok(Outcome::JobReplaced);
        }
        if self.jobs.len() as u64 >= self.settings.jobs_max {
            return Err(Rejection::TooManyJobs {
                max: self.settings.jobs_max,
            });
        }
        self.jobs.insert(
            spec.name.clone(),
            JobRecord {
                spec: spec.clone(),
                created_at: at,
                updated_at: at,
                anchor: at,
                watermark: at,
                last_manual: None,
                paused_at: spec.paused.then_some(at),
                resumed_at: None,
                active: Vec::new(),
                history: VecDeque::new(),
                retries: Vec::new(),
                trigger_keys: Vec::new(),
            },
        );
        Ok(Outcome::JobCreated)
    }

    fn delete_job(&mut self, name: &JobName, _at: Timestamp) -> Result<Outcome, Rejection> {
        let job = self
            .jobs
            .remove(name)
            .ok_or_else(|| Rejection::UnknownJob(name.clone()))?;
        // The job's runs go with it; the leader asks the hosts of its active runs to stop
        // them, and their late reports find no run and are acknowledged.
        for id in job.active.iter().chain(job.history.iter()) {
            self.runs.remove(*id);
            self.active.remove(id);
        }
        Ok(Outcome::Done)
    }

    fn pause_job(&mut self, name: &JobName, at: Timestamp) -> Result<Outcome, Rejection> {
        let job = self.job_mut(name)?;
        if !job.spec.paused {
            job.spec.paused = true;
            job.paused_at = Some(at);
        }
        Ok(Outcome::Done)
    }

    fn resume_job(&mut self, name: &JobName, at: Timestamp) -> Result<Outcome, Rejection> {
        let job = self.job_mut(name)?;
        if job.spec.paused {
            job.spec.paused = false;
            job.paused_at = None;
            job.resumed_at = Some(at);
        }
        Ok(Outcome::Done)
    }

    fn job_mut(&mut self, name: &JobName) -> Result<&mut JobRecord, Rejection> {
        self.jobs
            .get_mut(name)
            .ok_or_else(|| Rejection::UnknownJob(name.clone()))
    }

    /// Refuses a command that would make a run when no run id is left (only a state
    /// decoded from a crafted snapshot gets there), before it changes anything.
    fn check_ids_left(&self) -> Result<(), Rejection> {
        if self.next_run == u64::MAX {
            return Err(Rejection::Malformed("no run id is left".into()));
        }
        Ok(())
    }

    fn declare(&mut self, d: &Declare) -> Result<Outcome, Rejection> {
        self.check_ids_left()?;
        if d.term != self.term {
            return Err(Rejection::StaleTerm {
                term: d.term,
                current: self.term,
            });
        }
        let job = self
            .jobs
            .get_mut(&d.job)
            .ok_or_else(|| Rejection::UnknownJob(d.job.clone()))?;
        if let Some(key) = &d.key {
            if !matches!(d.trigger, Trigger::Manual { .. }) {
                return Err(Rejection::Malformed(
                    "only a manual run carries a trigger key".into(),
                ));
            }
            // Checked first: a request sent again is answered with its run, whatever
            // has happened to the job since.
            if let Some(run) = job.run_for_key(key) {
                return Err(Rejection::KeyUsed {
                    key: key.clone(),
                    run,
                });
            }
        }
        match d.trigger {
            Trigger::Schedule => {
                if d.attempt != 1 || d.scheduled_at <= job.watermark {
                    return Err(Rejection::Duplicate);
                }
                if job.spec.paused {
                    return Err(Rejection::Paused(d.job.clone()));
                }
                // Fire times are declared or recorded one after another: a declaration
                // that would pass over a fire nobody recorded is refused, so that no
                // fire is ever skipped silently, whatever a leader planned.
                let next = job.next_fire();
                if next != Some(d.scheduled_at) {
                    return Err(Rejection::NotNextFire { expected: next });
                }
            }
            Trigger::Manual { force } => {
                if d.attempt != 1 || job.last_manual.is_some_and(|t| d.scheduled_at <= t) {
                    return Err(Rejection::Duplicate);
                }
                let busy = job.spec.concurrency == Concurrency::Forbid && !force;
                if let (true, Some(&active)) = (busy, job.active.first()) {
                    return Err(Rejection::Busy {
                        job: d.job.clone(),
                        active,
                    });
                }
            }
            Trigger::Retry => {
                let pending = job
                    .retries
                    .iter()
                    .position(|r| r.scheduled_at == d.scheduled_at && r.attempt == d.attempt)
                    .ok_or(Rejection::NoPendingRetry)?;
                job.retries.swap_remove(pending);
            }
        }
        // The fire time is now spent, whatever becomes of the run.
        match d.trigger {
            Trigger::Schedule => job.watermark = d.scheduled_at,
            Trigger::Manual { .. } => job.last_manual = Some(d.scheduled_at),
            Trigger::Retry => {}
        }

        let id = RunId(self.next_run);
        self.next_run += 1;
        // Whatever is recorded of the run below, the key now names it.
        if let Some(key) = &d.key {
            job.remember_key(key.clone(), id);
        }
        let mut run = d.run(id);

        let forced = matches!(d.trigger, Trigger::Manual { force: true });
        let blocking = job.active.first().copied();
        if let (Concurrency::Forbid, Some(active), false) = (job.spec.concurrency, blocking, forced)
        {
            run.state = RunState::Skipped;
            run.finished_at = Some(d.at);
            run.reason = Some(Reason::ConcurrencyForbid);
            run.detail = Some(format!("run {active} was still active"));
            self.runs.insert(run);
            push_ended(job, id, &mut self.runs, &self.settings);
            return Ok(Outcome::Recorded {
                run: id,
                state: RunState::Skipped,
                reason: Reason::ConcurrencyForbid,
            });
        }
        if d.host.is_none() {
            run.state = RunState::Failed;
            run.finished_at = Some(d.at);
            run.reason = Some(Reason::NoCapacity);
            run.detail =
                Some("no host had the free resources, tags and executor the job needs".into());
            self.runs.insert(run);
            owe_retry(job, d.scheduled_at, d.attempt, Reason::NoCapacity, d.at);
            push_ended(job, id, &mut self.runs, &self.settings);
            return Ok(Outcome::Recorded {
                run: id,
                state: RunState::Failed,
                reason: Reason::NoCapacity,
            });
        }
        if job.spec.concurrency == Concurrency::Replace && !forced {
            run.waits_for = job.active.clone();
            for old in &job.active {
                if let Some(old_run) = self.runs.get_mut(*old) {
                    old_run.stop.get_or_insert(Reason::Replaced);
                }
            }
            // The retries still owed to earlier fires are replaced too, whatever this
            // run's trigger (a retry of a later fire included): declared later, an older
            // fire's retry would replace this newer run in its turn. The run each would
            // have retried says so.
            let mut dropped = BTreeSet::new();
            job.retries.retain(|retry| {
                let keep = retry.scheduled_at >= d.scheduled_at;
                if !keep {
                    dropped.insert((retry.scheduled_at, retry.attempt.saturating_sub(1)));
                }
                keep
            });
            if !dropped.is_empty() {
                for ended in &job.history {
                    if let Some(failed) = self.runs.get_mut(*ended)
                        && dropped.remove(&(failed.scheduled_at, failed.attempt))
                    {
                        not_tried_again(failed, &format!("run {id}, of a later fire, replaced it"));
                    }
                }
            }
        }
        job.active.push(id);
        self.active.insert(id);
        self.runs.insert(run);
        Ok(Outcome::Declared { run: id })
    }

    fn mark_started(
        &mut self,
        id: RunId,
        host: HostId,
        started_at: Timestamp,
    ) -> Result<Outcome, Rejection> {
        let run = self.runs.get_mut(id).ok_or(Rejection::UnknownRun(id))?;
        if run.host != Some(host) {
            return Err(Rejection::WrongHost {
                run: id,
                expected: run.host,
                got: host,
            });
        }
        match run.state {
            RunState::Declared => {
                run.state = RunState::Running;
                run.started_at = Some(started_at);
                Ok(Outcome::Done)
            }
            RunState::Running => Err(Rejection::Duplicate),
            _ => Err(Rejection::RunEnded(id)),
        }
    }

    fn mark_finished(&mut self, f: &Finish) -> Result<Outcome, Rejection> {
        let run = self
            .runs
            .get_mut(f.run)
            .ok_or(Rejection::UnknownRun(f.run))?;
        if let Some(host) = f.host
            && run.host != Some(host)
        {
            return Err(Rejection::WrongHost {
                run: f.run,
                expected: run.host,
                got: host,
            });
        }
        if !run.is_active() {
            return Err(Rejection::RunEnded(f.run));
        }
        if run.started_at.is_none() {
            run.started_at = f.started_at;
        }
        // A run the leader asked to stop ended because of that request, whatever signal
        // or code the executor saw.
        let reason = match (f.reason, run.stop, f.exit_code) {
            (Some(Reason::Stopped), Some(stop), _) => Some(stop),
            (Some(reason), _, _) => Some(reason),
            (None, _, Some(0)) => None,
            (None, Some(stop), _) => Some(stop),
            (None, None, _) => Some(Reason::ExitCode),
        };
        run.state = if reason.is_none() {
            RunState::Succeeded
        } else {
            RunState::Failed
        };
        run.finished_at = Some(f.finished_at);
        run.exit_code = f.exit_code;
        run.reason = reason;
        run.detail = f.detail.as_deref().map(bounded_detail);
        let (scheduled_at, attempt) = (run.scheduled_at, run.attempt);
        self.active.remove(&f.run);
        if let Some(record) = self.jobs.get_mut(&run.job) {
            record.active.retain(|id| *id != f.run);
            match (reason, run.stop) {
                (Some(reason), None) => {
                    owe_retry(record, scheduled_at, attempt, reason, f.finished_at);
                }
                // A run asked to stop that something else ended first (its host died,
                // it timed out) keeps that reason, but its fire is not tried again:
                // the request was that it not run on. Its detail says so.
                (Some(reason), Some(stop))
                    if reason != stop
                        && reason.is_retryable()
                        && attempt <= record.spec.retries =>
                {
                    not_tried_again(run, &format!("it had been asked to stop ({stop})"));
                }
                _ => {}
            }
            push_ended(record, f.run, &mut self.runs, &self.settings);
        }
        Ok(Outcome::Done)
    }

    fn record_missed(
        &mut self,
        name: &JobName,
        first: Timestamp,
        last: Timestamp,
        count: u32,
        reason: Reason,
        at: Timestamp,
    ) -> Result<Outcome, Rejection> {
        self.check_ids_left()?;
        if count == 0 || first > last || (count == 1 && first != last) {
            return Err(Rejection::Malformed(format!(
                "missed range {first}..{last} of {count} fires"
            )));
        }
        let job = self.job_mut(name)?;
        if first <= job.watermark {
            return Err(Rejection::Duplicate);
        }
        let next = job.next_fire();
        if next != Some(first) {
            return Err(Rejection::NotNextFire { expected: next });
        }
        job.watermark = last;
        let id = RunId(self.next_run);
        self.next_run += 1;
        self.runs.insert(Run {
            id,
            job: name.clone(),
            scheduled_at: first,
            attempt: 1,
            trigger: Trigger::Schedule,
            host: None,
            state: RunState::Missed,
            term: self.term,
            declared_at: at,
            started_at: None,
            finished_at: Some(at),
            exit_code: None,
            reason: Some(reason),
            detail: None,
            missed_until: Some(last),
            missed_count: count,
            stop: None,
            waits_for: Vec::new(),
        });
        self.push_history(name, id);
        Ok(Outcome::Recorded {
            run: id,
            state: RunState::Missed,
            reason,
        })
    }

    fn stop_run(&mut self, id: RunId) -> Result<Outcome, Rejection> {
        let run = self.runs.get_mut(id).ok_or(Rejection::UnknownRun(id))?;
        if !run.is_active() {
            return Err(Rejection::RunEnded(id));
        }
        run.stop.get_or_insert(Reason::Stopped);
        Ok(Outcome::Done)
    }

    fn leader_start(&mut self, term: u64, leader: HostId) -> Result<Outcome, Rejection> {
        if term < self.term {
            return Err(Rejection::StaleTerm {
                term,
                current: self.term,
            });
        }
        self.term = term;
        self.leader = Some(leader);
        Ok(Outcome::Done)
    }

    /// Appends an ended run to its job's history, dropping the oldest beyond the bound.
    fn push_history(&mut self, job: &JobName, id: RunId) {
        if let Some(record) = self.jobs.get_mut(job) {
            push_ended(record, id, &mut self.runs, &self.settings);
        }
    }

    /// Checks every rule the state must keep. A broken rule means corrupt state.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let fail = |what: String| Err(InvariantViolation(what));
        let mut seen = 0usize;
        let mut scheduled_keys = std::collections::BTreeSet::new();
        if !self.jobs.is_consistent() {
            return fail("the index of job names disagrees with the jobs".into());
        }
        for (name, job) in self.jobs.iter() {
            if &job.spec.name != name {
                return fail(format!("job {name} is stored as {}", job.spec.name));
            }
            if job.history.len() > self.settings.runs_kept_per_job_max.max(1) as usize {
                return fail(format!("job {name} keeps {} ended runs", job.history.len()));
            }
            if job.spec.paused != job.paused_at.is_some() {
                return fail(format!("job {name}: paused flag and pause time disagree"));
            }
            if job.trigger_keys.len() > TRIGGER_KEYS_KEPT_PER_JOB {
                return fail(format!(
                    "job {name} keeps {} trigger keys",
                    job.trigger_keys.len()
                ));
            }
            let keys: BTreeSet<&TriggerKey> = job.trigger_keys.iter().map(|(k, _)| k).collect();
            if keys.len() != job.trigger_keys.len() {
                return fail(format!("job {name} holds a trigger key twice"));
            }
            for (ids, active) in [
                (&job.active, true),
                (&job.history.iter().copied().collect(), false),
            ] {
                for id in ids {
                    seen += 1;
                    let Some(run) = self.runs.get(*id) else {
                        return fail(format!("job {name} lists missing run {id}"));
                    };
                    if &run.job != name {
                        return fail(format!("run {id} of {} is listed under {name}", run.job));
                    }
                    if run.is_active() != active {
                        return fail(format!(
                            "run {id} is {:?} but listed as active={active}",
                            run.state
                        ));
                    }
                    if id.0 >= self.next_run {
                        return fail(format!(
                            "run {id} is not below the next id {}",
                            self.next_run
                        ));
                    }
                    if run.trigger == Trigger::Schedule && run.scheduled_at > job.watermark {
                        return fail(format!(
                            "run {id} is for {} after the watermark",
                            run.scheduled_at
                        ));
                    }
                    if run.state != RunState::Missed
                        && !scheduled_keys.insert((
                            name.clone(),
                            run.scheduled_at,
                            run.attempt,
                            run.trigger,
                        ))
                    {
                        return fail(format!(
                            "run {id}: fire {} attempt {} is recorded twice",
                            run.scheduled_at, run.attempt
                        ));
                    }
                    let ended = run.finished_at.is_some();
                    if ended == active {
                        return fail(format!(
                            "run {id} is {:?} with finished_at {:?}",
                            run.state, run.finished_at
                        ));
                    }
                    if run.state == RunState::Running && run.started_at.is_none() {
                        return fail(format!("run {id} is running without a start time"));
                    }
                    if active && run.host.is_none() {
                        return fail(format!("active run {id} has no host"));
                    }
                    if matches!(
                        run.state,
                        RunState::Failed | RunState::Missed | RunState::Skipped
                    ) && run.reason.is_none()
                    {
                        return fail(format!("run {id} is {:?} without a reason", run.state));
                    }
                }
            }
            for retry in &job.retries {
                if retry.attempt < 2 || retry.attempt > job.spec.retries + 1 {
                    return fail(format!("job {name} owes attempt {}", retry.attempt));
                }
            }
        }
        if seen != self.runs.len() {
            return fail(format!(
                "{} runs stored, {seen} listed by jobs",
                self.runs.len()
            ));
        }
        let active: BTreeSet<RunId> = self
            .jobs
            .iter()
            .flat_map(|(_, j)| j.active.iter().copied())
            .collect();
        if active != self.active {
            return fail("the index of active runs disagrees with the jobs".into());
        }
        Ok(())
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state@{}: term {}, {} jobs, {} runs",
            self.applied_index,
            self.term,
            self.jobs.len(),
            self.runs.len()
        )
    }
}

mod table;
#[cfg(test)]
mod tests;
