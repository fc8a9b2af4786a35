//! Builders shared by the core's tests.

use std::collections::BTreeMap;

use crate::job::{
    Concurrency, ExecutorSpec, JobName, JobSpec, MissedPolicy, ProcessSpec, Resources,
};
use crate::schedule::{Schedule, Tz};
use crate::time::Timestamp;

/// A job name, checked.
pub fn name(text: &str) -> JobName {
    JobName::new(text).expect("test job name")
}

/// An instant written as RFC 3339.
pub fn ts(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).expect("test instant")
}

/// A process job with the given schedule and every other field at its default.
pub fn job(job_name: &str, schedule: &str) -> JobSpec {
    JobSpec {
        name: name(job_name),
        schedule: Schedule::parse(schedule).expect("test schedule"),
        timezone: Tz::UTC,
        executor: std::sync::Arc::new(ExecutorSpec::Process(ProcessSpec {
            command: vec!["true".into()],
            env: BTreeMap::new(),
            cwd: None,
        })),
        concurrency: Concurrency::Allow,
        missed: MissedPolicy::Latest,
        retries: 0,
        retry_backoff_s: 10,
        retry_backoff_max_s: 600,
        timeout_s: None,
        starting_deadline_s: 300,
        constraints: BTreeMap::new(),
        resources: Resources::default(),
        paused: false,
    }
}
