//! The Raft log's entries, and what applying one answers.

use serde::{Deserialize, Serialize};

use crate::host::HostId;
use crate::job::{JobError, JobName, JobSpec};
use crate::run::{Reason, Run, RunId, RunState, Trigger, TriggerKey};
use crate::state::Settings;
use crate::time::Timestamp;

/// One entry of the replicated log. Every value the state stores comes from here (times
/// included), never from the host that applies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Creates a job, or replaces it when `replace` is set.
    PutJob {
        /// The job (boxed: it is far larger than any other command).
        spec: Box<JobSpec>,
        /// Whether an existing job of that name is replaced (`PUT`) or refused (`POST`).
        replace: bool,
        /// When the write was requested; `@every` schedules count from here.
        at: Timestamp,
    },
    /// Deletes a job; its active runs are stopped.
    DeleteJob {
        /// The job.
        name: JobName,
        /// When.
        at: Timestamp,
    },
    /// Stops a job from firing until it is resumed.
    PauseJob {
        /// The job.
        name: JobName,
        /// When.
        at: Timestamp,
    },
    /// Lets a paused job fire again; fires missed meanwhile follow its missed policy.
    ResumeJob {
        /// The job.
        name: JobName,
        /// When.
        at: Timestamp,
    },
    /// Declares a run: the leader's decision to run one fire time of a job on one host.
    Declare(Declare),
    /// A host reported a run started.
    MarkStarted {
        /// The run.
        run: RunId,
        /// The host that reported it.
        host: HostId,
        /// When it started, by the host's clock.
        started_at: Timestamp,
    },
    /// A run ended: reported by its host, or decided by the leader (host lost, dispatch
    /// lost).
    MarkFinished(Finish),
    /// Fire times the leader will not run, recorded so that nothing is skipped silently.
    RecordMissed {
        /// The job.
        job: JobName,
        /// The first of the missed fire times.
        first: Timestamp,
        /// The last of them.
        last: Timestamp,
        /// How many there are.
        count: u32,
        /// Why they were not run.
        reason: Reason,
        /// When this was decided.
        at: Timestamp,
    },
    /// A leader's first entry in its term. Until it is applied the leader declares
    /// nothing; after it is applied no declaration of an older term is accepted.
    LeaderStart {
        /// The new term.
        term: u64,
        /// The new leader.
        leader: HostId,
        /// Unique to this leadership (the leader's boot and a counter): a leader that
        /// restarts within its term must not take the entry its earlier self wrote for
        /// its own, because its state may still be catching up to it.
        nonce: u64,
        /// When.
        at: Timestamp,
    },
    /// Changes the cluster-wide bounds on the replicated state.
    SetSettings(Settings),
    /// Several commands applied in order as one log entry.
    Batch(Vec<Command>),
    /// Stops an active run on request. Its host stops the command (terminate, then kill
    /// after the grace period) and reports it ended `stopped`; a run its host has not
    /// started yet is never started. A run already being stopped keeps its first
    /// reason. A run asked to stop is not retried, even when something else (its host's
    /// death, its timeout) ends it first.
    StopRun {
        /// The run.
        run: RunId,
        /// When it was requested.
        at: Timestamp,
    },
}

impl Command {
    /// A short name of the command's kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::PutJob { .. } => "put-job",
            Command::DeleteJob { .. } => "delete-job",
            Command::PauseJob { .. } => "pause-job",
            Command::ResumeJob { .. } => "resume-job",
            Command::Declare(_) => "declare",
            Command::MarkStarted { .. } => "mark-started",
            Command::MarkFinished(_) => "mark-finished",
            Command::RecordMissed { .. } => "record-missed",
            Command::LeaderStart { .. } => "leader-start",
            Command::SetSettings(_) => "set-settings",
            Command::Batch(_) => "batch",
            Command::StopRun { .. } => "stop-run",
        }
    }

    /// How many commands this entry holds (a batch counts its members).
    pub fn len(&self) -> usize {
        match self {
            Command::Batch(commands) => commands.len(),
            _ => 1,
        }
    }

    /// The commands this entry holds: a batch's members, or the command itself.
    pub fn members(&self) -> &[Command] {
        match self {
            Command::Batch(commands) => commands,
            command => core::slice::from_ref(command),
        }
    }

    /// Whether this is an empty batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Packs commands into one entry: the command itself when there is one.
    pub fn batch(mut commands: Vec<Command>) -> Command {
        if commands.len() == 1 {
            commands.remove(0)
        } else {
            Command::Batch(commands)
        }
    }
}

/// The leader's decision to run one fire time of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declare {
    /// The job.
    pub job: JobName,
    /// The fire time (for a manual run, when it was requested).
    pub scheduled_at: Timestamp,
    /// 1 for the first try.
    pub attempt: u32,
    /// What made this run.
    pub trigger: Trigger,
    /// The chosen host; none when no host was eligible, which records the run as failed
    /// with `no-capacity`.
    pub host: Option<HostId>,
    /// The declaring leader's term.
    pub term: u64,
    /// When the leader decided.
    pub at: Timestamp,
    /// For a manual run, the client's key for its request: a second declaration with a
    /// key the job has seen makes no run.
    pub key: Option<TriggerKey>,
}

impl Declare {
    /// The run this declaration makes under `id`, before anything has happened to it.
    pub(crate) fn run(&self, id: RunId) -> Run {
        Run {
            id,
            job: self.job.clone(),
            scheduled_at: self.scheduled_at,
            attempt: self.attempt,
            trigger: self.trigger,
            host: self.host,
            state: RunState::Declared,
            term: self.term,
            declared_at: self.at,
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            detail: None,
            missed_until: None,
            missed_count: 0,
            stop: None,
            waits_for: Vec::new(),
        }
    }
}

/// The end of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finish {
    /// The run.
    pub run: RunId,
    /// The reporting host; none when the leader decided (host lost, dispatch lost).
    pub host: Option<HostId>,
    /// When it started, if the host reports that too (a start report may have been lost).
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Timestamp,
    /// The exit code, when the command exited by itself.
    pub exit_code: Option<i32>,
    /// Why it failed; none with exit code 0 means success.
    pub reason: Option<Reason>,
    /// A human-readable detail.
    pub detail: Option<String>,
}

/// What applying a command answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Applied.
    Done,
    /// A new job was created.
    JobCreated,
    /// An existing job was replaced.
    JobReplaced,
    /// A run was declared.
    Declared {
        /// The new run.
        run: RunId,
    },
    /// A fire was recorded without running: skipped, missed, or failed for lack of
    /// capacity.
    Recorded {
        /// The record.
        run: RunId,
        /// Its state.
        state: RunState,
        /// Why.
        reason: Reason,
    },
    /// Nothing changed.
    Rejected(Rejection),
    /// The outcomes of a batch, in order.
    Batch(Vec<Outcome>),
}

/// Why a command changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// No job has that name.
    #[error("no job named `{0}`")]
    UnknownJob(JobName),
    /// A job of that name exists and the write did not ask to replace it.
    #[error("a job named `{0}` already exists")]
    JobExists(JobName),
    /// The cluster holds as many jobs as it may.
    #[error("the cluster already holds its maximum of {max} jobs")]
    TooManyJobs {
        /// The bound.
        max: u64,
    },
    /// The job spec breaks a bound.
    #[error("invalid job: {0}")]
    InvalidJob(JobError),
    /// That fire time and attempt of that job was already declared or recorded.
    #[error("already declared or recorded")]
    Duplicate,
    /// A manual run of the job was already made for that trigger key.
    #[error("trigger key `{key}` already made run {run}")]
    KeyUsed {
        /// The key.
        key: TriggerKey,
        /// The run it made.
        run: RunId,
    },
    /// The command came from a leader whose term has ended.
    #[error("term {term} is not the current term {current}")]
    StaleTerm {
        /// The command's term.
        term: u64,
        /// The current term.
        current: u64,
    },
    /// The fire is not the job's next: declaring it would pass over a fire nobody
    /// recorded.
    #[error("not the job's next fire time (that is {expected:?})")]
    NotNextFire {
        /// The next fire time after the job's watermark.
        expected: Option<Timestamp>,
    },
    /// The job is paused.
    #[error("job `{0}` is paused")]
    Paused(JobName),
    /// The job forbids overlap and a run is active (a manual run can say `force`).
    #[error("job `{job}` forbids overlapping runs and run {active} is active")]
    Busy {
        /// The job.
        job: JobName,
        /// Its active run.
        active: RunId,
    },
    /// No retry of that attempt is pending.
    #[error("no retry is pending for that attempt")]
    NoPendingRetry,
    /// No run has that id (it may have aged out of the history).
    #[error("no run {0}")]
    UnknownRun(RunId),
    /// The run has already ended.
    #[error("run {0} has already ended")]
    RunEnded(RunId),
    /// A host reported about a run placed on another host.
    #[error("run {run} was placed on host {expected:?}, not on host {got}")]
    WrongHost {
        /// The run.
        run: RunId,
        /// Where it was placed.
        expected: Option<HostId>,
        /// Who reported.
        got: HostId,
    },
    /// The command is malformed (a nested batch, a range that is empty).
    #[error("malformed command: {0}")]
    Malformed(String),
}

impl Outcome {
    /// Whether the command changed nothing.
    pub fn is_rejected(&self) -> bool {
        matches!(self, Outcome::Rejected(_))
    }
}
