//! The Docker engine as the executor reaches it: one bollard client on the engine's
//! Unix socket, every call bounded by a timeout, every failure an [`EngineError`] that
//! says which call failed and why.
//!
//! Two calls are not bounded, because they last as long as a container runs: waiting
//! for a container's end and following its logs. Both only start once the engine has
//! answered (bollard's own timeout covers the wait for the answer's headers), and both
//! are abandoned when the run's watch ends.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bytes::Bytes;
use futures::{Stream, StreamExt as _};

/// A call to the engine that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// There is no socket at the configured path.
    #[error("no Docker engine socket at {0} (config `docker.socket`)")]
    NoSocket(PathBuf),
    /// The engine did not answer in time.
    #[error("{call}: the engine did not answer within {after_ms} ms")]
    Timeout {
        /// The call, as `create container rota-x-run-1`.
        call: String,
        /// How long it waited.
        after_ms: u64,
    },
    /// The engine answered with an error.
    #[error("{call}: the engine answered {status}: {message}")]
    Refused {
        /// The call.
        call: String,
        /// The HTTP status.
        status: u16,
        /// The engine's message.
        message: String,
    },
    /// The engine could not be reached, or its answer could not be read.
    #[error("{call}: {message}")]
    Transport {
        /// The call.
        call: String,
        /// What went wrong.
        message: String,
    },
}

impl EngineError {
    /// The HTTP status the engine answered, if it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            EngineError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The engine does not know the container or image named.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The name is taken: the container exists already.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// The engine's own message, or the whole error.
    pub fn message(&self) -> String {
        match self {
            EngineError::Refused { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    fn from_bollard(call: &str, error: BollardError, after: Duration) -> EngineError {
        match error {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => EngineError::Refused {
                call: call.to_owned(),
                status: status_code,
                message: message.trim().to_owned(),
            },
            BollardError::RequestTimeoutError => EngineError::Timeout {
                call: call.to_owned(),
                after_ms: after.as_millis() as u64,
            },
            BollardError::SocketNotFoundError(path) => EngineError::NoSocket(path.into()),
            other => EngineError::Transport {
                call: call.to_owned(),
                message: other.to_string(),
            },
        }
    }
}

/// How the engine is reached and how long its calls may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// The engine's Unix socket.
    pub socket: PathBuf,
    /// The longest a call may take (stopping a container takes its grace period more).
    pub request_timeout_ms: u64,
    /// The longest an image pull may take in all.
    pub pull_timeout_ms: u64,
    /// The longest `stop` waits for a container before the engine kills it.
    pub stop_grace_ms: u64,
}

/// A Docker engine that answered: a client with bounded calls.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    config: EngineConfig,
    /// What the engine said it is, for the logs.
    description: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("socket", &self.config.socket)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Connects to the engine at `config.socket` and checks that it answers, agreeing
    /// on an API version both sides speak.
    pub async fn connect(config: EngineConfig) -> Result<Engine, EngineError> {
        let request = Duration::from_millis(config.request_timeout_ms);
        // bollard's own timeout bounds the wait for every answer's headers, which for
        // `stop` come only once the container has stopped: leave room for the grace.
        let client_timeout_s =
            (config.request_timeout_ms + config.stop_grace_ms).div_ceil(1000) + 1;
        let path = config.socket.to_string_lossy().into_owned();
        if !config.socket.exists() {
            return Err(EngineError::NoSocket(config.socket.clone()));
        }
        let docker =
            Docker::connect_with_unix(&path, client_timeout_s, bollard::API_DEFAULT_VERSION)
                .map_err(|e| EngineError::from_bollard("connect", e, request))?;
        let docker = bounded(
            "negotiate the API version",
            request,
            docker.negotiate_version(),
        )
        .await?;
        let version = bounded("ask the engine's version", request, docker.version()).await?;
        let description = format!(
            "Docker {} (API {}) at {}",
            version.version.as_deref().unwrap_or("?"),
            version.api_version.as_deref().unwrap_or("?"),
            config.socket.display()
        );
        Ok(Engine {
            docker,
            config,
            description,
        })
    }

    /// What the engine is and where, for the logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The socket it is reached at.
    pub fn socket(&self) -> &Path {
        &self.config.socket
    }

    /// Checks that the engine still answers at its socket. A socket file that is gone
    /// counts as no engine, whatever connection the client may still hold to the old one.
    pub async fn ping(&self) -> Result<(), EngineError> {
        if !self.config.socket.exists() {
            return Err(EngineError::NoSocket(self.config.socket.clone()));
        }
        bounded(
            "ping the engine",
            self.request_timeout(),
            self.docker.ping(),
        )
        .await
        .map(drop)
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    /// The container's state, or none if the engine does not know it.
    pub(super) async fn inspect(
        &self,
        name: &str,
    ) -> Result<Option<ContainerInspectResponse>, EngineError> {
        let call = format!("inspect container {name}");
        match bounded(
            &call,
            self.request_timeout(),
            self.docker.inspect_container(name, None),
        )
        .await
        {
            Ok(found) => Ok(Some(found)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the container `name`.
    pub(super) async fn create(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<(), EngineError> {
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..CreateContainerOptions::default()
        };
        bounded(
            &format!("create container {name}"),
            self.request_timeout(),
            self.docker.create_container(Some(options), body),
        )
        .await
        .map(|_| ())
    }

    /// Starts the container `name` (nothing if it runs already).
    pub(super) async fn start(&self, name: &str) -> Result<(), EngineError> {
        bounded(
            &format!("start container {name}"),
            self.request_timeout(),
            self.docker.start_container(name, None),
        )
        .await
    }

    /// Stops the container `name`: its stop signal, then `SIGKILL` after the grace
    /// period; answers once it has stopped.
    pub(super) async fn stop(&self, name: &str) -> Result<(), EngineError> {
        let grace_s = self.config.stop_grace_ms.div_ceil(1000);
        let options = StopContainerOptions {
            t: Some(i32::try_from(grace_s).unwrap_or(i32::MAX)),
            signal: None,
        };
        let timeout = self.request_timeout() + Duration::from_secs(grace_s);
        match bounded(
            &format!("stop container {name}"),
            timeout,
            self.docker.stop_container(name, Some(options)),
        )
        .await
        {
            // Stopped already, or gone.
            Err(e) if e.status() == Some(304) || e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Kills the container `name` (`SIGKILL`).
    pub(super) async fn kill(&self, name: &str) -> Result<(), EngineError> {
        let options = KillContainerOptions {
            signal: "SIGKILL".to_owned(),
        };
        match bounded(
            &format!("kill container {name}"),
            self.request_timeout(),
            self.docker.kill_container(name, Some(options)),
        )
        .await
        {
            // Not running (409), or gone.
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Removes the container `name` (killing it first if `force`); nothing if it is
    /// gone already.
    pub(super) async fn remove(&self, name: &str, force: bool) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force,
            ..RemoveContainerOptions::default()
        };
        match bounded(
            &format!("remove container {name}"),
            self.request_timeout(),
            self.docker.remove_container(name, Some(options)),
        )
        .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            // Removal in progress already.
            Err(e) if e.is_conflict() && e.message().contains("already in progress") => Ok(()),
            other => other,
        }
    }

    /// Every container, running or not, that carries all of `labels` (`key=value`).
    pub(super) async fn list(
        &self,
        labels: &[String],
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), labels.to_vec())])),
            ..ListContainersOptions::default()
        };
        bounded(
            "list rota's containers",
            self.request_timeout(),
            self.docker.list_containers(Some(options)),
        )
        .await
    }

    /// Pulls `image`. Bounded twice: each progress message must come within the request
    /// timeout (a registry that does not answer fails fast), and the whole pull within
    /// the pull timeout.
    pub(super) async fn pull(&self, image: &str) -> Result<(), EngineError> {
        let call = format!("pull image {image}");
        let (from_image, tag) = split_reference(image);
        let options = CreateImageOptions {
            from_image: Some(from_image.to_owned()),
            tag: tag.map(str::to_owned),
            ..CreateImageOptions::default()
        };
        let stall = self.request_timeout();
        let total = Duration::from_millis(self.config.pull_timeout_ms);
        let mut progress = self.docker.create_image(Some(options), None, None);
        let pull = async {
            loop {
                match tokio::time::timeout(stall, progress.next()).await {
                    Err(_) => {
                        return Err(EngineError::Timeout {
                            call: format!("{call} (no progress)"),
                            after_ms: stall.as_millis() as u64,
                        });
                    }
                    Ok(None) => return Ok(()),
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(e))) => return Err(EngineError::from_bollard(&call, e, stall)),
                }
            }
        };
        match tokio::time::timeout(total, pull).await {
            Ok(result) => result,
            Err(_) => Err(EngineError::Timeout {
                call,
                after_ms: self.config.pull_timeout_ms,
            }),
        }
    }

    /// Waits until the container `name` is not running (unbounded: it lasts as long as
    /// the container runs).
    pub(super) async fn wait_not_running(&self, name: &str) -> Result<(), EngineError> {
        let options = WaitContainerOptions {
            condition: "not-running".to_owned(),
        };
        let mut answers = self.docker.wait_container(name, Some(options));
        match answers.next().await {
            // An exit code other than 0 comes as this error; it is an end like any other.
            Some(Ok(_)) | Some(Err(BollardError::DockerContainerWaitError { .. })) | None => Ok(()),
            Some(Err(e)) => Err(EngineError::from_bollard(
                &format!("wait for container {name}"),
                e,
                self.request_timeout(),
            )),
        }
    }

    /// The container's output (stdout and stderr as the engine interleaved them), from
    /// its start; with `follow`, until it stops.
    pub(super) fn logs(
        &self,
        name: &str,
        follow: bool,
    ) -> impl Stream<Item = Result<Bytes, EngineError>> + Send + Unpin + 'static {
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            ..LogsOptions::default()
        };
        let call = format!("read the logs of container {name}");
        let timeout = self.request_timeout();
        self.docker
            .logs(name, Some(options))
            .map(move |item| match item {
                Ok(
                    LogOutput::StdOut { message }
                    | LogOutput::StdErr { message }
                    | LogOutput::Console { message },
                ) => Ok(message),
                Ok(LogOutput::StdIn { .. }) => Ok(Bytes::new()),
                Err(e) => Err(EngineError::from_bollard(&call, e, timeout)),
            })
    }
}

/// Runs one engine call, at most `timeout`.
async fn bounded<T>(
    call: &str,
    timeout: Duration,
    request: impl Future<Output = Result<T, BollardError>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(EngineError::from_bollard(call, e, timeout)),
        Err(_) => Err(EngineError::Timeout {
            call: call.to_owned(),
            after_ms: timeout.as_millis() as u64,
        }),
    }
}

/// An image reference split for a pull: the repository and the tag (none for a digest
/// reference, which names one image already). Without a tag the engine would pull
/// every tag of the repository; `latest` is what `docker pull` means then.
pub(super) fn split_reference(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    // A `:` after the last `/` starts the tag; one before it is a registry's port.
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => {
            let at = name_start + i;
            (&image[..at], Some(&image[at + 1..]))
        }
        None => (image, Some("latest")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_splits_into_repository_and_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", Some("latest")));
        assert_eq!(split_reference("busybox:1.36"), ("busybox", Some("1.36")));
        assert_eq!(
            split_reference("localhost:5000/team/app"),
            ("localhost:5000/team/app", Some("latest"))
        );
        assert_eq!(
            split_reference("localhost:5000/team/app:2"),
            ("localhost:5000/team/app", Some("2"))
        );
        assert_eq!(
            split_reference("app@sha256:0123"),
            ("app@sha256:0123", None)
        );
    }

    #[test]
    fn engine_errors_name_the_call() {
        let e = EngineError::from_bollard(
            "create container rota-x-run-1",
            BollardError::DockerResponseServerError {
                status_code: 409,
                message: "Conflict. The container name is already in use\n".into(),
            },
            Duration::from_secs(1),
        );
        assert!(e.is_conflict());
        assert!(!e.is_not_found());
        assert_eq!(
            e.to_string(),
            "create container rota-x-run-1: the engine answered 409: Conflict. The container name is already in use"
        );
        let e = EngineError::from_bollard(
            "start container c",
            BollardError::RequestTimeoutError,
            Duration::from_millis(1500),
        );
        assert_eq!(
            e.to_string(),
            "start container c: the engine did not answer within 1500 ms"
        );
    }
}
