//! The container a run becomes, and what an inspected container says about its run:
//! plain functions of the run's spec and the engine's answers, no I/O.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HostConfig,
};
use rota_core::host::HostId;
use rota_core::job::DockerSpec;
use rota_core::run::{RunId, RunSpec};
use rota_core::time::Timestamp;

use crate::executor::run_env;

/// The label naming the rota cluster that started a container.
pub(super) const LABEL_CLUSTER: &str = "rota.cluster";
/// The label naming the host (its id) whose daemon started a container.
pub(super) const LABEL_HOST: &str = "rota.host";
/// The label naming the run's job.
pub(super) const LABEL_JOB: &str = "rota.job";
/// The label naming the run (its id).
pub(super) const LABEL_RUN: &str = "rota.run";
/// The label naming the run's attempt.
pub(super) const LABEL_ATTEMPT: &str = "rota.attempt";
/// The label naming the fire time the run is for.
pub(super) const LABEL_SCHEDULED_AT: &str = "rota.scheduled_at";
/// The label holding the run's whole spec as JSON, so that a restarted daemon can adopt
/// the run with nothing but the engine's word.
pub(super) const LABEL_SPEC: &str = "rota.spec";

/// The most processes a container may hold when its job does not say.
pub(super) const PIDS_MAX_DEFAULT: u32 = 256;
/// The network a container joins when its job does not say: none at all.
pub(super) const NETWORK_DEFAULT: &str = "none";

/// The container's name: derived from the run alone, so that the engine itself refuses
/// a second container for the same run.
pub fn container_name(cluster: &str, run: RunId) -> String {
    format!("rota-{cluster}-run-{run}")
}

/// The label filters (`key=value`) that select the containers of this cluster's `host`.
pub(super) fn host_filters(cluster: &str, host: HostId) -> Vec<String> {
    vec![
        format!("{LABEL_CLUSTER}={cluster}"),
        format!("{LABEL_HOST}={host}"),
    ]
}

/// The labels a run's container carries.
pub(super) fn labels(cluster: &str, host: HostId, spec: &RunSpec) -> HashMap<String, String> {
    let spec_json = serde_json::to_string(spec).unwrap_or_default();
    HashMap::from([
        (LABEL_CLUSTER.to_owned(), cluster.to_owned()),
        (LABEL_HOST.to_owned(), host.to_string()),
        (LABEL_JOB.to_owned(), spec.job.to_string()),
        (LABEL_RUN.to_owned(), spec.id.to_string()),
        (LABEL_ATTEMPT.to_owned(), spec.attempt.to_string()),
        (LABEL_SCHEDULED_AT.to_owned(), spec.scheduled_at.to_string()),
        (LABEL_SPEC.to_owned(), spec_json),
    ])
}

/// The environment of a run's container: the job's own, then the `ROTA_*` variables a
/// process run gets too (which win over the job's).
pub(super) fn environment(docker: &DockerSpec, spec: &RunSpec, host: HostId) -> Vec<String> {
    let mut env: BTreeMap<String, String> = docker.env.clone();
    env.extend(run_env(spec, host));
    env.into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect()
}

/// What the engine is asked to create for a run: its image and command, its labels and
/// environment, and its limits. The CPU limit is `cpus` cores; memory and memory plus
/// swap are both `memory_mb` (so the container cannot swap); processes are capped at
/// `pids_max` (256 by default); the network is `none` unless the job names one.
pub(super) fn create_body(
    cluster: &str,
    host: HostId,
    spec: &RunSpec,
    docker: &DockerSpec,
) -> ContainerCreateBody {
    let memory = docker
        .memory_mb
        .map(|mb| i64::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX));
    ContainerCreateBody {
        image: Some(docker.image.clone()),
        // Empty: the image's own command.
        cmd: (!docker.command.is_empty()).then(|| docker.command.clone()),
        env: Some(environment(docker, spec, host)),
        labels: Some(labels(cluster, host, spec)),
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(HostConfig {
            // A thousandth of a core is a million nano-CPUs.
            nano_cpus: docker.cpus.map(|c| i64::from(c.0) * 1_000_000),
            memory,
            memory_swap: memory,
            pids_limit: Some(i64::from(docker.pids_max.unwrap_or(PIDS_MAX_DEFAULT))),
            network_mode: Some(
                docker
                    .network
                    .clone()
                    .unwrap_or_else(|| NETWORK_DEFAULT.to_owned()),
            ),
            // rota removes finished containers itself, once it has their end and output.
            auto_remove: Some(false),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// How a container ended, as the engine tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ContainerEnd {
    /// When it started, if it ever did.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// Its exit code (128 + the signal's number when a signal ended it).
    pub exit_code: Option<i32>,
    /// Whether the kernel killed a process of it for going over its memory limit.
    pub oom_killed: bool,
    /// The engine's own error about it (a command that could not be executed).
    pub error: Option<String>,
}

/// What an inspected container says about a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// The name is held by a container that is not this run's (another cluster's with
    /// the same name, or not rota's at all).
    Foreign {
        /// Whether it is running.
        running: bool,
        /// Whether it carries rota's cluster label with this cluster's name (a leftover
        /// of an earlier cluster of the same name, which rota may remove).
        ours: bool,
    },
    /// Created and never started; the engine's error if starting it failed.
    Created {
        /// Why it did not start, if the engine tried.
        error: Option<String>,
    },
    /// It is executing (or paused, or restarting).
    Running {
        /// When it started.
        started_at: Timestamp,
    },
    /// It has ended.
    Ended(ContainerEnd),
}

/// The run's identity as a container's labels give it.
pub(super) fn spec_of(labels: &HashMap<String, String>) -> Option<RunSpec> {
    serde_json::from_str(labels.get(LABEL_SPEC)?).ok()
}

/// Whether `spec` (from a container's labels) is the run `expected`.
fn same_run(spec: &RunSpec, expected: &RunSpec) -> bool {
    spec.id == expected.id
        && spec.job == expected.job
        && spec.scheduled_at == expected.scheduled_at
        && spec.attempt == expected.attempt
}

/// What the inspected container `found` says about the run `expected` of this cluster's
/// `host`.
pub(super) fn examine(
    found: &ContainerInspectResponse,
    cluster: &str,
    host: HostId,
    expected: &RunSpec,
) -> Found {
    let labels = found
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let state = found.state.clone().unwrap_or_default();
    let running = state.running.unwrap_or(false)
        || state.paused.unwrap_or(false)
        || state.restarting.unwrap_or(false);
    let ours = labels.get(LABEL_CLUSTER).map(String::as_str) == Some(cluster);
    let mine = ours && labels.get(LABEL_HOST) == Some(&host.to_string());
    if !mine || !spec_of(&labels).is_some_and(|spec| same_run(&spec, expected)) {
        return Found::Foreign { running, ours };
    }
    state_of(&state)
}

/// What a container's state says, for a container known to be the run's.
pub(super) fn state_of(state: &bollard::models::ContainerState) -> Found {
    let started_at = state.started_at.as_deref().and_then(engine_time);
    let error = state.error.clone().filter(|e| !e.trim().is_empty());
    let running = state.running.unwrap_or(false)
        || state.paused.unwrap_or(false)
        || state.restarting.unwrap_or(false);
    if running {
        return Found::Running {
            started_at: started_at.unwrap_or_else(super::run_dir::wall_now),
        };
    }
    let never_started =
        started_at.is_none() || state.status == Some(ContainerStateStatusEnum::CREATED);
    if never_started && state.status != Some(ContainerStateStatusEnum::EXITED) {
        return Found::Created { error };
    }
    if never_started && error.is_some() {
        return Found::Created { error };
    }
    Found::Ended(ContainerEnd {
        started_at,
        finished_at: state.finished_at.as_deref().and_then(engine_time),
        exit_code: state
            .exit_code
            .map(|c| i32::try_from(c).unwrap_or(i32::MAX)),
        oom_killed: state.oom_killed.unwrap_or(false),
        error,
    })
}

/// A time as the engine writes it (RFC 3339 with nanoseconds); none for the engine's
/// "never" (year 1).
pub(super) fn engine_time(text: &str) -> Option<Timestamp> {
    let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    let ms = time.timestamp_millis();
    (ms > Timestamp::MIN.as_millis()).then(|| Timestamp::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bollard::models::{ContainerConfig, ContainerState};
    use rota_core::job::{Concurrency, ExecutorSpec, JobName, MilliCpus, PullPolicy};

    use super::*;

    fn docker_spec() -> DockerSpec {
        DockerSpec {
            image: "app:1".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: BTreeMap::from([
                ("GREETING".to_owned(), "hello".to_owned()),
                ("ROTA_JOB".to_owned(), "spoofed".to_owned()),
            ]),
            cpus: Some(MilliCpus(1500)),
            memory_mb: Some(64),
            pids_max: None,
            network: None,
            pull: PullPolicy::Never,
        }
    }

    fn run_spec(docker: DockerSpec) -> RunSpec {
        RunSpec {
            id: RunId(42),
            job: JobName::new("backup").unwrap(),
            scheduled_at: Timestamp::from_secs(1_700_000_000),
            attempt: 2,
            executor: Arc::new(ExecutorSpec::Docker(docker)),
            timeout_ms: Some(60_000),
            concurrency: Concurrency::Forbid,
            start_by: Timestamp::from_secs(1_700_000_300),
        }
    }

    #[test]
    fn the_name_comes_from_the_cluster_and_the_run() {
        assert_eq!(container_name("prod", RunId(42)), "rota-prod-run-42");
    }

    #[test]
    fn a_run_becomes_a_container_with_its_limits_labels_and_environment() {
        let docker = docker_spec();
        let spec = run_spec(docker.clone());
        let body = create_body("prod", HostId(7), &spec, &docker);
        assert_eq!(body.image.as_deref(), Some("app:1"));
        assert_eq!(body.cmd, Some(docker.command.clone()));
        let host = body.host_config.unwrap();
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.memory, Some(64 * 1024 * 1024));
        assert_eq!(host.memory_swap, host.memory);
        assert_eq!(host.pids_limit, Some(256));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_CLUSTER], "prod");
        assert_eq!(labels[LABEL_HOST], "7");
        assert_eq!(labels[LABEL_JOB], "backup");
        assert_eq!(labels[LABEL_RUN], "42");
        assert_eq!(labels[LABEL_ATTEMPT], "2");
        assert_eq!(labels[LABEL_SCHEDULED_AT], "2023-11-14T22:13:20Z");
        assert_eq!(spec_of(&labels), Some(spec.clone()));
        let env = body.env.unwrap();
        assert!(env.contains(&"GREETING=hello".to_owned()), "{env:?}");
        // The run's own variables win over the job's.
        assert!(env.contains(&"ROTA_JOB=backup".to_owned()), "{env:?}");
        assert!(!env.iter().any(|e| e == "ROTA_JOB=spoofed"), "{env:?}");
        assert!(env.contains(&"ROTA_RUN_ID=42".to_owned()), "{env:?}");
        assert!(env.contains(&"ROTA_HOST=7".to_owned()), "{env:?}");
    }

    #[test]
    fn no_command_means_the_images_own_and_a_named_network_is_kept() {
        let docker = DockerSpec {
            command: Vec::new(),
            cpus: None,
            memory_mb: None,
            pids_max: Some(10),
            network: Some("bridge".into()),
            ..docker_spec()
        };
        let body = create_body("prod", HostId(7), &run_spec(docker.clone()), &docker);
        assert_eq!(body.cmd, None);
        let host = body.host_config.unwrap();
        assert_eq!(
            (host.nano_cpus, host.memory, host.memory_swap),
            (None, None, None)
        );
        assert_eq!(host.pids_limit, Some(10));
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
    }

    fn inspected(
        labels: HashMap<String, String>,
        state: ContainerState,
    ) -> ContainerInspectResponse {
        ContainerInspectResponse {
            config: Some(ContainerConfig {
                labels: Some(labels),
                ..ContainerConfig::default()
            }),
            state: Some(state),
            ..ContainerInspectResponse::default()
        }
    }

    #[test]
    fn an_inspected_container_is_the_runs_only_with_its_labels() {
        let spec = run_spec(docker_spec());
        let labels = labels("prod", HostId(7), &spec);
        let running = ContainerState {
            running: Some(true),
            status: Some(ContainerStateStatusEnum::RUNNING),
            started_at: Some("2026-01-02T03:04:05.123456789Z".into()),
            ..ContainerState::default()
        };
        assert_eq!(
            examine(
                &inspected(labels.clone(), running.clone()),
                "prod",
                HostId(7),
                &spec
            ),
            Found::Running {
                started_at: Timestamp::from_millis(1_767_323_045_123)
            }
        );
        // Another host's, another cluster's, another run's: not this run's.
        assert_eq!(
            examine(
                &inspected(labels.clone(), running.clone()),
                "prod",
                HostId(8),
                &spec
            ),
            Found::Foreign {
                running: true,
                ours: true
            }
        );
        assert_eq!(
            examine(
                &inspected(labels.clone(), running.clone()),
                "test",
                HostId(7),
                &spec
            ),
            Found::Foreign {
                running: true,
                ours: false
            }
        );
        let other = RunSpec {
            attempt: 3,
            ..spec.clone()
        };
        assert_eq!(
            examine(&inspected(labels, running), "prod", HostId(7), &other),
            Found::Foreign {
                running: true,
                ours: true
            }
        );
    }

    #[test]
    fn a_containers_state_tells_created_running_and_ended_apart() {
        let never = "0001-01-01T00:00:00Z".to_owned();
        let created = ContainerState {
            status: Some(ContainerStateStatusEnum::CREATED),
            started_at: Some(never.clone()),
            finished_at: Some(never.clone()),
            exit_code: Some(0),
            ..ContainerState::default()
        };
        assert_eq!(state_of(&created), Found::Created { error: None });
        let failed = ContainerState {
            exit_code: Some(127),
            error: Some("exec: \"nope\": executable file not found in $PATH".into()),
            ..created
        };
        assert!(
            matches!(state_of(&failed), Found::Created { error: Some(e) } if e.contains("nope"))
        );
        let oom = ContainerState {
            status: Some(ContainerStateStatusEnum::EXITED),
            running: Some(false),
            oom_killed: Some(true),
            exit_code: Some(137),
            started_at: Some("2026-01-02T03:04:05Z".into()),
            finished_at: Some("2026-01-02T03:04:06Z".into()),
            ..ContainerState::default()
        };
        assert_eq!(
            state_of(&oom),
            Found::Ended(ContainerEnd {
                started_at: Some(Timestamp::from_millis(1_767_323_045_000)),
                finished_at: Some(Timestamp::from_millis(1_767_323_046_000)),
                exit_code: Some(137),
                oom_killed: true,
                error: None,
            })
        );
        assert_eq!(engine_time(&never), None);
        assert_eq!(engine_time("garbage"), None);
    }
}
