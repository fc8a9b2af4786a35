//! What a run is: one attempt at one fire time of one job, from `Declared` to an end.

use core::fmt;
use core::time::Duration;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::host::HostId;
use crate::job::{Concurrency, ExecutorSpec, JobName};
use crate::time::Timestamp;

/// A run's identity, assigned in order by the replicated state when the run is declared,
/// so every replica gives the same run the same id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub u64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run#{}", self.0)
    }
}

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Committed as about to run on a host, not yet reported started.
    Declared,
    /// Reported started by its host.
    Running,
    /// Ended with exit code 0.
    Succeeded,
    /// Ended any other way; `reason` says how.
    Failed,
    /// A fire time that was not run because it was too late; `reason` says why.
    Missed,
    /// A fire time that was not run because of the concurrency policy.
    Skipped,
}

impl RunState {
    /// Whether the run may still be (or come to be) executing somewhere.
    pub fn is_active(self) -> bool {
        matches!(self, RunState::Declared | RunState::Running)
    }
}

/// Why a run ended the way it did, or why a fire was not run. Written in kebab-case in
/// the API (`host-lost`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The command exited with a code other than 0.
    ExitCode,
    /// The executor could not start the command.
    LaunchFailed,
    /// The host was lost while the run's outcome was unknown; it may well have run.
    HostLost,
    /// The run outlived its timeout and was stopped.
    Timeout,
    /// No host had the free resources, tags or executor the job needs.
    NoCapacity,
    /// The host never acknowledged the dispatch before its start deadline.
    DispatchLost,
    /// The container went over its memory limit and was killed.
    OomKilled,
    /// The container image is not present and could not be pulled.
    ImageUnavailable,
    /// A newer run of a `replace` job stopped this one.
    Replaced,
    /// The job was deleted or the run stopped on request.
    Stopped,
    /// The host lost contact with every leader for a lease period and stopped the run,
    /// so that a successor of a `forbid` or `replace` job cannot overlap it.
    LeaseExpired,
    /// Skipped: the job forbids overlap and a run was active.
    ConcurrencyForbid,
    /// Missed: the fire was found later than its starting deadline.
    StartingDeadline,
    /// Missed: a later missed fire was run instead (missed policy `latest`).
    Superseded,
    /// Missed: the job's missed policy is `skip`.
    MissedPolicySkip,
    /// Missed: more missed fires than the catch-up bound of policy `all`.
    CatchUpBound,
}

impl Reason {
    /// Whether a run that failed this way is tried again under the job's retry policy.
    /// A run stopped on purpose is not.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Reason::ExitCode
                | Reason::LaunchFailed
                | Reason::HostLost
                | Reason::Timeout
                | Reason::NoCapacity
                | Reason::DispatchLost
                | Reason::OomKilled
                | Reason::ImageUnavailable
                | Reason::LeaseExpired
        )
    }

    /// The name used in the API and in logs (`host-lost`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ExitCode => "exit-code",
            Reason::LaunchFailed => "launch-failed",
            Reason::HostLost => "host-lost",
            Reason::Timeout => "timeout",
            Reason::NoCapacity => "no-capacity",
            Reason::DispatchLost => "dispatch-lost",
            Reason::OomKilled => "oom-killed",
            Reason::ImageUnavailable => "image-unavailable",
            Reason::Replaced => "replaced",
            Reason::Stopped => "stopped",
            Reason::LeaseExpired => "lease-expired",
            Reason::ConcurrencyForbid => "concurrency-forbid",
            Reason::StartingDeadline => "starting-deadline",
            Reason::Superseded => "superseded",
            Reason::MissedPolicySkip => "missed-policy-skip",
            Reason::CatchUpBound => "catch-up-bound",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What made a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A fire time of the job's schedule.
    Schedule,
    /// An operator's request to run now; `force` ignores the concurrency policy.
    Manual {
        /// Whether the request overrides the concurrency policy.
        force: bool,
    },
    /// A retry of a failed attempt.
    Retry,
}

/// The most characters of a [`TriggerKey`].
pub const TRIGGER_KEY_LEN_MAX: usize = 128;

/// The client's name for one request to run a job now, so that a request sent again
/// (after a timeout, a lost answer, a change of leader) is recognised and answered with
/// the run it made, rather than making a second run.
///
/// 1 to [`TRIGGER_KEY_LEN_MAX`] characters from `A-Z`, `a-z`, `0-9`, `-`, `_`, `.` and `:`,
/// which covers UUIDs and the usual request ids.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TriggerKey(SmolStr);

impl TriggerKey {
    /// Checks `key` and wraps it; the error says what a key may hold.
    pub fn new(key: &str) -> Result<TriggerKey, String> {
        if key.is_empty() || key.len() > TRIGGER_KEY_LEN_MAX {
            return Err(format!(
                "must be 1-{TRIGGER_KEY_LEN_MAX} characters, got {}",
                key.len()
            ));
        }
        if let Some(bad) = key
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
        {
            return Err(format!(
                "may only hold A-Z, a-z, 0-9, '-', '_', '.' and ':'; found {bad:?}"
            ));
        }
        Ok(TriggerKey(SmolStr::new(key)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for TriggerKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TriggerKey::new(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for TriggerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TriggerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The longest failure detail kept with a run, in bytes.
pub const RUN_DETAIL_BYTES_MAX: usize = 512;

/// A run as the replicated state records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Its id.
    pub id: RunId,
    /// Its job.
    pub job: JobName,
    /// The fire time it is for (for a manual run, when it was requested).
    pub scheduled_at: Timestamp,
    /// 1 for the first try, 2 for the first retry, and so on.
    pub attempt: u32,
    /// What made it.
    pub trigger: Trigger,
    /// Where it was placed; none when no host could take it.
    pub host: Option<HostId>,
    /// Where it is in its life.
    pub state: RunState,
    /// The Raft term of the leader that declared it.
    pub term: u64,
    /// When the leader declared it.
    pub declared_at: Timestamp,
    /// When its host started it.
    pub started_at: Option<Timestamp>,
    /// When it ended (or was recorded as missed or skipped).
    pub finished_at: Option<Timestamp>,
    /// The command's exit code, when it exited by itself.
    pub exit_code: Option<i32>,
    /// Why it failed, was missed or was skipped.
    pub reason: Option<Reason>,
    /// A human-readable detail of the reason, at most [`RUN_DETAIL_BYTES_MAX`] bytes.
    pub detail: Option<String>,
    /// For a record of several missed fires at once: the last of them.
    pub missed_until: Option<Timestamp>,
    /// For a record of missed fires: how many fires it stands for.
    pub missed_count: u32,
    /// Set when the leader has asked the host to stop the run, and why.
    pub stop: Option<Reason>,
    /// For a run of a `replace` job: the runs it replaces, which must end before it starts.
    pub waits_for: Vec<RunId>,
}

impl Run {
    /// Whether the run may still be (or come to be) executing somewhere.
    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }
}

/// Cuts `detail` to at most [`RUN_DETAIL_BYTES_MAX`] bytes on a character boundary.
pub fn bounded_detail(detail: &str) -> String {
    if detail.len() <= RUN_DETAIL_BYTES_MAX {
        return detail.to_owned();
    }
    let mut end = RUN_DETAIL_BYTES_MAX;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    detail[..end].to_owned()
}

/// Everything a host needs to start a run, sent with the dispatch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The run.
    pub id: RunId,
    /// Its job.
    pub job: JobName,
    /// The fire time it is for.
    pub scheduled_at: Timestamp,
    /// Which attempt.
    pub attempt: u32,
    /// How to run it.
    pub executor: Arc<ExecutorSpec>,
    /// The job's run timeout.
    pub timeout_ms: Option<u64>,
    /// The job's concurrency policy (a host stops `forbid` and `replace` runs when its
    /// lease expires).
    pub concurrency: Concurrency,
    /// A host must not start the run after this instant by its own clock; the leader
    /// waits until then (plus the clock-skew allowance) before it records the dispatch
    /// as lost.
    pub start_by: Timestamp,
}

impl RunSpec {
    /// The run timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }
}
