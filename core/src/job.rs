//! What a job is: its name, schedule, zone, executor and policies, and how a spec is
//! checked before anything stores it.
//!
//! A [`JobSpec`] is the user's document. It is the JSON the API takes and returns (with
//! serde's externally tagged enums, unknown fields refused) and it travels through Raft
//! as postcard, so no field may be skipped when serialized.

use core::fmt;
use core::time::Duration;
use std::collections::BTreeMap;

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;

use crate::schedule::{Schedule, Tz};

/// The longest job name accepted.
pub const JOB_NAME_LEN_MAX: usize = 64;

/// A job's name: 1 to 64 characters of `[a-z0-9._-]`, so it is safe in a URL path, a
/// file name and a container label without escaping.
///
/// Held inline when it fits (up to 23 bytes, as most names do), shared behind a counted
/// reference when longer: the job, its runs, the leader's plans and its queue all hold
/// the name, and the leader hashes and copies it for every run it declares. Inline, that
/// touches no other memory and counts no reference.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct JobName(SmolStr);

impl JobName {
    /// Checks `name` and wraps it.
    pub fn new(name: &str) -> Result<JobName, JobError> {
        if name.is_empty() || name.len() > JOB_NAME_LEN_MAX {
            return Err(JobError::new(
                "name",
                format!(
                    "must be 1-{JOB_NAME_LEN_MAX} characters, got {}",
                    name.len()
                ),
            ));
        }
        if let Some(bad) = name.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        }) {
            return Err(JobError::new(
                "name",
                format!("may only hold a-z, 0-9, '.', '_' and '-'; found {bad:?}"),
            ));
        }
        if name == "." || name == ".." {
            return Err(JobError::new("name", "may not be '.' or '..'"));
        }
        Ok(JobName(SmolStr::new(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for JobName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        JobName::new(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A bad job spec: which field, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct JobError {
    /// The offending field, as a path in the JSON document (`executor.docker.image`).
    pub field: String,
    /// What to fix.
    pub message: String,
}

impl JobError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        JobError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An amount of CPU in thousandths of a core. Written as a decimal number of cores in
/// JSON (`0.5`), kept as an integer so replicated state never holds a float.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MilliCpus(pub u32);

impl MilliCpus {
    /// The amount as a decimal number of cores.
    pub fn as_cores(self) -> f64 {
        f64::from(self.0) / 1000.0
    }
}

impl Serialize for MilliCpus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_f64(self.as_cores())
        } else {
            s.serialize_u32(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for MilliCpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return u32::deserialize(d).map(MilliCpus);
        }
        let cores = f64::deserialize(d)?;
        if !cores.is_finite() || !(0.001..=1024.0).contains(&cores) {
            return Err(serde::de::Error::custom(format!(
                "cpus must be between 0.001 and 1024 cores, got {cores}"
            )));
        }
        // The range check above keeps the product inside u32.
        Ok(MilliCpus((cores * 1000.0).round() as u32))
    }
}

/// How a job runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ExecutorSpec {
    /// As a Docker container with resource limits.
    Docker(DockerSpec),
    /// As a plain child process of the rota daemon.
    Process(ProcessSpec),
}

impl ExecutorSpec {
    /// The command line, whichever the executor.
    pub fn command(&self) -> &[String] {
        match self {
            ExecutorSpec::Docker(d) => &d.command,
            ExecutorSpec::Process(p) => &p.command,
        }
    }

    /// The extra environment, whichever the executor.
    pub fn env(&self) -> &BTreeMap<String, String> {
        match self {
            ExecutorSpec::Docker(d) => &d.env,
            ExecutorSpec::Process(p) => &p.env,
        }
    }

    /// Whether the job needs a host with a Docker engine.
    pub fn needs_docker(&self) -> bool {
        matches!(self, ExecutorSpec::Docker(_))
    }
}

/// When the Docker executor pulls the image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Pull only when the engine does not have the image (the default).
    #[default]
    IfMissing,
    /// Pull before every run.
    Always,
    /// Never pull; a missing image fails the run with `image-unavailable`.
    Never,
}

/// A job run as a Docker container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSpec {
    /// The image, e.g. `backup:1`.
    pub image: String,
    /// The command; empty means the image's own entry point and command.
    #[serde(default)]
    pub command: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The CPU limit, in cores (`0.5`).
    #[serde(default)]
    pub cpus: Option<MilliCpus>,
    /// The memory limit in MiB; swap is limited to the same amount.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// The most processes the container may hold (default 256).
    #[serde(default)]
    pub pids_max: Option<u32>,
    /// The Docker network to attach to (default `none`: no network).
    #[serde(default)]
    pub network: Option<String>,
    /// When to pull the image.
    #[serde(default)]
    pub pull: PullPolicy,
}

/// A job run as a plain child process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// The program and its arguments; no shell is involved unless you name one.
    pub command: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The working directory (default: the run's own directory).
    #[serde(default)]
    pub cwd: Option<String>,
}

/// What happens when a job is due while one of its runs is still active.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// Runs may overlap (the default, as with crontab).
    #[default]
    Allow,
    /// The due fire is skipped, and recorded as skipped, while a run is active.
    Forbid,
    /// The active run is stopped, then the new one starts.
    Replace,
}

/// What happens to fire times that passed while no leader could declare them (a leader
/// change, the whole cluster down, or the job paused).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Run the most recent missed fire once, if it is still inside the starting deadline;
    /// record the others as missed (the default).
    #[default]
    Latest,
    /// Run none of them; record them all as missed.
    Skip,
    /// Run every missed fire still inside the starting deadline, up to a bound; record
    /// the rest as missed.
    All,
}

/// Resources a run needs on its host; placement only picks hosts with this much free.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU, in cores.
    #[serde(default)]
    pub cpus: Option<MilliCpus>,
    /// Memory, in MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Disk, in MiB.
    #[serde(default)]
    pub disk_mb: Option<u64>,
}

fn utc() -> Tz {
    Tz::UTC
}

const fn default_retry_backoff_s() -> u64 {
    10
}

const fn default_retry_backoff_max_s() -> u64 {
    600
}

const fn default_starting_deadline_s() -> u64 {
    300
}

/// A job as the user writes it.
///
/// Only `name`, `schedule` and `executor` are required. Defaults: zone UTC, concurrency
/// `allow`, missed `latest`, no retries (backoff 10 s doubling to at most 600 s), no run
/// timeout, starting deadline 300 s, no constraints, no requested resources, not paused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job's unique name.
    pub name: JobName,
    /// When it fires.
    pub schedule: Schedule,
    /// The IANA zone the schedule's wall-clock fields are read in.
    #[serde(default = "utc")]
    pub timezone: Tz,
    /// How it runs (shared with every run dispatched from it, not copied).
    pub executor: Arc<ExecutorSpec>,
    /// What happens when it is due while a run is active.
    #[serde(default)]
    pub concurrency: Concurrency,
    /// What happens to fire times that passed while nobody could declare them.
    #[serde(default)]
    pub missed: MissedPolicy,
    /// How many times a failed run is tried again (as new attempts).
    #[serde(default)]
    pub retries: u32,
    /// The wait before the first retry; it doubles with each attempt.
    #[serde(default = "default_retry_backoff_s")]
    pub retry_backoff_s: u64,
    /// The longest wait between two attempts.
    #[serde(default = "default_retry_backoff_max_s")]
    pub retry_backoff_max_s: u64,
    /// A run still going after this long is stopped and recorded as `timeout`.
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// How late a fire may still start; a later one is recorded as missed.
    #[serde(default = "default_starting_deadline_s")]
    pub starting_deadline_s: u64,
    /// Tags a host must carry, with these values, to run the job.
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
    /// Resources a host must have free to run the job.
    #[serde(default)]
    pub resources: Resources,
    /// A paused job does not fire.
    #[serde(default)]
    pub paused: bool,
}

/// Bounds on what a job spec may hold. Every bound names its unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobLimits {
    /// The most arguments in a command.
    pub command_args_max: usize,
    /// The most bytes in a command, all arguments together.
    pub command_bytes_max: usize,
    /// The most environment variables.
    pub env_vars_max: usize,
    /// The most bytes of environment, names and values together.
    pub env_bytes_max: usize,
    /// The most constraints.
    pub constraints_max: usize,
    /// The most bytes in any one short string (image, tag, network, path).
    pub string_bytes_max: usize,
    /// The most retries.
    pub retries_max: u32,
    /// The longest run timeout, starting deadline or backoff, in seconds.
    pub duration_s_max: u64,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            command_args_max: 256,
            command_bytes_max: 64 * 1024,
            env_vars_max: 128,
            env_bytes_max: 64 * 1024,
            constraints_max: 32,
            string_bytes_max: 1024,
            retries_max: 100,
            duration_s_max: 366 * 24 * 3600,
        }
    }
}

impl JobSpec {
    /// Checks every field the types alone do not, naming the first field that is wrong.
    pub fn validate(&self, limits: &JobLimits) -> Result<(), JobError> {
        match &*self.executor {
            ExecutorSpec::Docker(d) => {
                check_string("executor.docker.image", &d.image, limits)?;
                if d.image.trim().is_empty() || d.image.chars().any(char::is_whitespace) {
                    return Err(JobError::new(
                        "executor.docker.image",
                        "must be an image reference such as `backup:1`, without spaces",
                    ));
                }
                check_command("executor.docker.command", &d.command, false, limits)?;
                check_env("executor.docker.env", &d.env, limits)?;
                if d.memory_mb == Some(0) || d.memory_mb.is_some_and(|m| m > 16 * 1024 * 1024) {
                    return Err(JobError::new(
                        "executor.docker.memory_mb",
                        "must be between 1 and 16777216 MiB",
                    ));
                }
                // The engine refuses a memory limit under 6 MiB; say so here instead.
                if d.memory_mb.is_some_and(|m| m < 6) {
                    return Err(JobError::new(
                        "executor.docker.memory_mb",
                        "must be at least 6 MiB (the engine's minimum)",
                    ));
                }
                if d.pids_max == Some(0) {
                    return Err(JobError::new(
                        "executor.docker.pids_max",
                        "must be at least 1",
                    ));
                }
                if let Some(network) = &d.network {
                    check_string("executor.docker.network", network, limits)?;
                    if network.is_empty() {
                        return Err(JobError::new("executor.docker.network", "may not be empty"));
                    }
                }
            }
            ExecutorSpec::Process(p) => {
                check_command("executor.process.command", &p.command, true, limits)?;
                check_env("executor.process.env", &p.env, limits)?;
                if let Some(cwd) = &p.cwd {
                    check_string("executor.process.cwd", cwd, limits)?;
                    if cwd.is_empty() {
                        return Err(JobError::new("executor.process.cwd", "may not be empty"));
                    }
                }
            }
        }
        if self.retries > limits.retries_max {
            return Err(JobError::new(
                "retries",
                format!("at most {} retries", limits.retries_max),
            ));
        }
        check_duration("retry_backoff_s", self.retry_backoff_s, 0, limits)?;
        check_duration("retry_backoff_max_s", self.retry_backoff_max_s, 0, limits)?;
        if let Some(timeout) = self.timeout_s {
            check_duration("timeout_s", timeout, 1, limits)?;
        }
        check_duration("starting_deadline_s", self.starting_deadline_s, 0, limits)?;
        if self.constraints.len() > limits.constraints_max {
            return Err(JobError::new(
                "constraints",
                format!("at most {} constraints", limits.constraints_max),
            ));
        }
        for (tag, value) in &self.constraints {
            check_tag(&format!("constraints.{tag}"), tag, value, limits)?;
        }
        if self
            .resources
            .memory_mb
            .is_some_and(|m| m > 16 * 1024 * 1024)
        {
            return Err(JobError::new("resources.memory_mb", "at most 16777216 MiB"));
        }
        if self.resources.disk_mb.is_some_and(|m| m > 1 << 40) {
            return Err(JobError::new("resources.disk_mb", "at most 2^40 MiB"));
        }
        Ok(())
    }

    /// The run timeout, if the job has one.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_s.map(Duration::from_secs)
    }

    /// How late a fire may still start.
    pub fn starting_deadline(&self) -> Duration {
        Duration::from_secs(self.starting_deadline_s)
    }

    /// The wait before attempt `attempt + 1`, after attempt `attempt` failed: the backoff,
    /// doubled for each earlier retry, at most the maximum backoff.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        let secs = self
            .retry_backoff_s
            .saturating_mul(1u64 << doublings)
            .min(self.retry_backoff_max_s.max(self.retry_backoff_s));
        Duration::from_secs(secs)
    }

    /// What placement must find free on a host for one run of this job: the requested
    /// resources, else the Docker limits, else a nominal share, so that even jobs that
    /// ask for nothing spread across hosts in a burst.
    pub fn placement_request(&self) -> Request {
        let (docker_cpus, docker_memory) = match &*self.executor {
            ExecutorSpec::Docker(d) => (d.cpus, d.memory_mb),
            ExecutorSpec::Process(_) => (None, None),
        };
        Request {
            milli_cpus: self
                .resources
                .cpus
                .or(docker_cpus)
                .map_or(Request::NOMINAL.milli_cpus, |c| c.0),
            memory_mb: self
                .resources
                .memory_mb
                .or(docker_memory)
                .unwrap_or(Request::NOMINAL.memory_mb),
            disk_mb: self.resources.disk_mb.unwrap_or(Request::NOMINAL.disk_mb),
        }
    }
}

/// What one run takes from a host, for placement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// CPU, in thousandths of a core.
    pub milli_cpus: u32,
    /// Memory, in MiB.
    pub memory_mb: u64,
    /// Disk, in MiB.
    pub disk_mb: u64,
}

impl Request {
    /// What a run that asks for nothing is assumed to take: a hundredth of a core and
    /// 8 MiB. Small enough that short jobs by the thousand do not exhaust a host on
    /// paper, large enough that a burst spreads out.
    pub const NOMINAL: Request = Request {
        milli_cpus: 10,
        memory_mb: 8,
        disk_mb: 0,
    };
}

fn check_string(field: &str, value: &str, limits: &JobLimits) -> Result<(), JobError> {
    if value.len() > limits.string_bytes_max {
        return Err(JobError::new(
            field,
            format!("at most {} bytes", limits.string_bytes_max),
        ));
    }
    if value.contains('\0') {
        return Err(JobError::new(field, "may not contain a NUL byte"));
    }
    Ok(())
}

fn check_command(
    field: &str,
    command: &[String],
    required: bool,
    limits: &JobLimits,
) -> Result<(), JobError> {
    if required && command.first().is_none_or(|program| program.is_empty()) {
        return Err(JobError::new(
            field,
            "must name a program, e.g. [\"sh\", \"-c\", \"echo hi\"]",
        ));
    }
    if command.len() > limits.command_args_max {
        return Err(JobError::new(
            field,
            format!("at most {} arguments", limits.command_args_max),
        ));
    }
    let bytes: usize = command.iter().map(String::len).sum();
    if bytes > limits.command_bytes_max {
        return Err(JobError::new(
            field,
            format!("at most {} bytes in all", limits.command_bytes_max),
        ));
    }
    if command.iter().any(|arg| arg.contains('\0')) {
        return Err(JobError::new(field, "may not contain a NUL byte"));
    }
    Ok(())
}

fn check_env(
    field: &str,
    env: &BTreeMap<String, String>,
    limits: &JobLimits,
) -> Result<(), JobError> {
    if env.len() > limits.env_vars_max {
        return Err(JobError::new(
            field,
            format!("at most {} variables", limits.env_vars_max),
        ));
    }
    let bytes: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > limits.env_bytes_max {
        return Err(JobError::new(
            field,
            format!("at most {} bytes in all", limits.env_bytes_max),
        ));
    }
    for (name, value) in env {
        let valid_name = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(JobError::new(
                format!("{field}.{name}"),
                "a variable name is letters, digits and '_', not starting with a digit",
            ));
        }
        if name.starts_with("ROTA_") {
            return Err(JobError::new(
                format!("{field}.{name}"),
                "names starting with ROTA_ are set by rota itself",
            ));
        }
        if value.contains('\0') {
            return Err(JobError::new(
                format!("{field}.{name}"),
                "may not contain a NUL byte",
            ));
        }
    }
    Ok(())
}

fn check_duration(field: &str, secs: u64, min: u64, limits: &JobLimits) -> Result<(), JobError> {
    if secs < min || secs > limits.duration_s_max {
        return Err(JobError::new(
            field,
            format!(
                "must be between {min} and {} seconds, got {secs}",
                limits.duration_s_max
            ),
        ));
    }
    Ok(())
}

/// Checks a host tag or a job constraint: a short name of `[a-z0-9._-]` and a short value.
pub fn check_tag(field: &str, tag: &str, value: &str, limits: &JobLimits) -> Result<(), JobError> {
    let valid = !tag.is_empty()
        && tag.len() <= 64
        && tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(JobError::new(
            field,
            "a tag name is 1-64 characters of a-z, 0-9, '.', '_' and '-'",
        ));
    }
    check_string(field, value, limits)?;
    if value.len() > 256 {
        return Err(JobError::new(field, "a tag value is at most 256 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_json(extra: &str) -> String {
        format!(
            r#"{{"name": "nightly-backup", "schedule": "30 2 * * *",
                "executor": {{"process": {{"command": ["sh", "-c", "echo hi"]}}}}{extra}}}"#
        )
    }

    fn parse(json: &str) -> Result<JobSpec, String> {
        let spec: JobSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        spec.validate(&JobLimits::default())
            .map_err(|e| e.to_string())?;
        Ok(spec)
    }

    #[test]
    fn names_are_checked() {
        assert!(JobName::new("nightly-backup.v2_a").is_ok());
        for bad in ["", "Upper", "white space", "..", "slash/y", &"x".repeat(65)] {
            let err = JobName::new(bad).unwrap_err();
            assert_eq!(err.field, "name", "{bad:?}");
        }
        assert!(JobName::new(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn the_issue_example_parses_with_defaults_filled_in() {
        let json = r#"{"name": "nightly-backup", "schedule": "0 30 2 * * *", "timezone": "Europe/Berlin",
            "executor": {"docker": {"image": "backup:1", "command": ["sh", "-c", "run-backup"], "cpus": 0.5, "memory_mb": 256}},
            "concurrency": "forbid", "missed": "latest", "retries": 2, "timeout_s": 3600, "starting_deadline_s": 300,
            "constraints": {"zone": "a"}, "paused": false}"#;
        let spec = parse(json).unwrap();
        assert_eq!(spec.timezone, Tz::Europe__Berlin);
        assert_eq!(spec.concurrency, Concurrency::Forbid);
        let ExecutorSpec::Docker(d) = &*spec.executor else {
            panic!("docker")
        };
        assert_eq!(d.cpus, Some(MilliCpus(500)));
        assert_eq!(d.pull, PullPolicy::IfMissing);
        assert_eq!(spec.placement_request().milli_cpus, 500);
        assert_eq!(spec.placement_request().memory_mb, 256);

        let minimal = parse(&spec_json("")).unwrap();
        assert_eq!(minimal.timezone, Tz::UTC);
        assert_eq!(minimal.concurrency, Concurrency::Allow);
        assert_eq!(minimal.missed, MissedPolicy::Latest);
        assert_eq!(minimal.starting_deadline_s, 300);
        assert_eq!(minimal.placement_request(), Request::NOMINAL);
    }

    #[test]
    fn json_and_postcard_round_trip() {
        let spec = parse(&spec_json(
            r#", "timezone": "America/New_York", "retries": 3"#,
        ))
        .unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<JobSpec>(&json).unwrap(), spec);
        let bytes = postcard::to_allocvec(&spec).unwrap();
        assert_eq!(postcard::from_bytes::<JobSpec>(&bytes).unwrap(), spec);
    }

    #[test]
    fn bad_specs_name_the_field() {
        let cases = [
            (r#", "bogus": 1"#, "bogus"),
            (r#", "timezone": "Mars/Olympus""#, "Mars/Olympus"),
            (r#", "retries": 1000"#, "retries"),
            (r#", "timeout_s": 0"#, "timeout_s"),
            (r#", "concurrency": "sometimes""#, "sometimes"),
            (
                r#", "constraints": {"Bad Tag": "x"}"#,
                "constraints.Bad Tag",
            ),
        ];
        for (extra, needle) in cases {
            let err = parse(&spec_json(extra)).unwrap_err();
            assert!(err.contains(needle), "{extra}: {err}");
        }
        let empty_command =
            r#"{"name": "a", "schedule": "@daily", "executor": {"process": {"command": []}}}"#;
        assert!(
            parse(empty_command)
                .unwrap_err()
                .contains("executor.process.command")
        );
        let bad_env = r#"{"name": "a", "schedule": "@daily", "executor": {"process": {"command": ["true"], "env": {"ROTA_JOB": "x"}}}}"#;
        assert!(parse(bad_env).unwrap_err().contains("ROTA_JOB"));
        let bad_cpus = r#"{"name": "a", "schedule": "@daily", "executor": {"docker": {"image": "x", "cpus": -1}}}"#;
        assert!(parse(bad_cpus).unwrap_err().contains("cpus"));
        let bad_schedule = r#"{"name": "a", "schedule": "61 * * * *", "executor": {"process": {"command": ["true"]}}}"#;
        assert!(parse(bad_schedule).unwrap_err().contains("minute"));
    }

    #[test]
    fn limits_hold() {
        let limits = JobLimits::default();
        let mut spec = parse(&spec_json("")).unwrap();
        if let ExecutorSpec::Process(p) = Arc::make_mut(&mut spec.executor) {
            p.command = vec!["x".repeat(limits.command_bytes_max + 1)];
        }
        assert_eq!(
            spec.validate(&limits).unwrap_err().field,
            "executor.process.command"
        );
    }

    #[test]
    fn retry_backoff_doubles_up_to_the_maximum() {
        let spec = parse(&spec_json(
            r#", "retry_backoff_s": 10, "retry_backoff_max_s": 60"#,
        ))
        .unwrap();
        let delays: Vec<u64> = (1..=5).map(|a| spec.retry_delay(a).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 60, 60]);
    }
}
