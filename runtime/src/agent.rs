//! Starting a daemon for real: `rota agent` and `rota dev`.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use rota_core::command::{Command, Outcome};
use rota_core::job::JobSpec;
use rota_core::node::Input;

use crate::config::{Config, LogFormat};
use crate::daemon::{self, Handle, Parts};
use crate::executor::docker::{DockerExecutor, DockerExecutorConfig, Engine, EngineConfig};
use crate::executor::process::{ProcessConfig, ProcessExecutor};
use crate::executor::{DockerSlot, Events, Executor, Router};
use crate::io::{BoxFuture, Io};
use crate::resources::SystemProbe;

/// Sets up logging: human lines by default, JSON with `--log-format json`; the level
/// comes from `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A seed for this process's randomness, different at every start.
fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15
}

/// Resolves on SIGINT or SIGTERM.
pub fn shutdown_signal() -> BoxFuture<'static, ()> {
    Box::pin(async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    })
}

/// How this host reaches its Docker engine, from its configuration.
fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        socket: config.docker.socket.clone(),
        request_timeout_ms: config.docker.request_timeout_ms,
        pull_timeout_ms: config.docker.pull_timeout_ms,
        stop_grace_ms: config.limits.stop_grace_ms,
    }
}

/// Looks for the Docker engine at `config.docker.socket`: the engine, or why there is
/// none (which is logged as a warning: the host then runs process jobs only, and tells
/// the cluster it has no Docker, so that no docker job is placed here, until the engine
/// answers; see [`watch_docker`]).
pub async fn find_docker(config: &Config) -> Result<Engine, String> {
    match Engine::connect(engine_config(config)).await {
        Ok(engine) => {
            tracing::info!(
                engine = engine.description(),
                "Docker engine found: docker jobs can run here"
            );
            Ok(engine)
        }
        Err(e) => {
            let why = e.to_string();
            tracing::warn!(
                "no Docker engine answers ({why}): this host runs process jobs only, and tells the cluster it has no Docker, so no docker job is placed here; it looks for the engine again every {} ms (config `docker.probe_interval_ms`)",
                config.docker.probe_interval_ms
            );
            Err(why)
        }
    }
}

/// What [`watch_docker`] needs to take an engine into use.
struct DockerWatch {
    config: Config,
    executor_config: DockerExecutorConfig,
    slot: DockerSlot,
    events: Events,
    handle: Handle,
}

/// Looks at the engine every `docker.probe_interval_ms`, for as long as the daemon runs:
/// an engine that did not answer at start-up is taken into use once it answers (the
/// containers of this host's earlier runs are recovered then, as they are at
/// start-up), and the cluster is told each time the engine starts or stops answering,
/// so that docker runs are placed only where an engine answers. `answering` is what the
/// host advertised at start-up.
async fn watch_docker(watch: DockerWatch, mut answering: bool) {
    let interval = Duration::from_millis(watch.config.docker.probe_interval_ms);
    loop {
        tokio::time::sleep(interval).await;
        let answers = match watch.slot.get() {
            Some(executor) => match executor.engine().ping().await {
                Ok(()) => {
                    if !answering {
                        tracing::info!("the Docker engine answers again: docker jobs can run here");
                    }
                    true
                }
                Err(e) => {
                    if answering {
                        tracing::warn!(
                            "the Docker engine stopped answering ({e}): this host tells the cluster it has no Docker until the engine answers again"
                        );
                    }
                    false
                }
            },
            None => match Engine::connect(engine_config(&watch.config)).await {
                Ok(engine) => {
                    let description = engine.description().to_owned();
                    match DockerExecutor::new(
                        watch.executor_config.clone(),
                        engine,
                        watch.handle.identity.id,
                        watch.events.clone(),
                    ) {
                        Ok(executor) => {
                            let recovered = executor.recover().await;
                            let _ = watch.slot.set(executor);
                            for event in recovered {
                                let _ = watch.events.send(event);
                            }
                            tracing::info!(
                                engine = description,
                                "Docker engine found after start-up: docker jobs can run here now"
                            );
                            true
                        }
                        Err(e) => {
                            tracing::warn!("cannot start the docker executor: {e}");
                            false
                        }
                    }
                }
                Err(_) => false,
            },
        };
        if answers == answering {
            continue;
        }
        answering = answers;
        let told = watch
            .handle
            .with_node(move |node, now| node.handle(now, Input::Docker(answers)))
            .await;
        if told.is_err() {
            // The daemon has stopped.
            return;
        }
    }
}

/// Starts a production daemon and its API; answers its handle and a future that ends
/// when the daemon does.
pub async fn start(
    config: Config,
    shutdown: BoxFuture<'static, ()>,
) -> anyhow::Result<(Handle, impl Future<Output = anyhow::Result<()>>)> {
    let io = Io::production();
    io.disk.create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {} (config `data_dir`)",
            config.data_dir.display()
        )
    })?;
    let runs_dir = daemon::runs_dir(&config.data_dir);
    let limits = config.limits.clone();
    let docker = find_docker(&config).await;
    let has_docker = docker.is_ok();
    let docker_config = DockerExecutorConfig {
        output_bytes_max: limits.output_bytes_max,
        containers_kept_max: config.docker.containers_kept_max,
        runs_kept_max: limits.runs_kept_on_host_max,
        ..DockerExecutorConfig::new(runs_dir.clone(), config.cluster_name.clone())
    };
    let slot = DockerSlot::default();
    let events_sent_to: Arc<OnceLock<Events>> = Arc::default();
    let executor = Box::new({
        let (slot, events_sent_to, docker_config) = (
            Arc::clone(&slot),
            Arc::clone(&events_sent_to),
            docker_config.clone(),
        );
        move |host, events: Events| {
            let process_config = ProcessConfig {
                output_bytes_max: limits.output_bytes_max,
                stop_grace_ms: limits.stop_grace_ms,
                runs_kept_max: limits.runs_kept_on_host_max,
                ..ProcessConfig::new(runs_dir)
            };
            let process = ProcessExecutor::new(process_config, host, events.clone())
                .context("starting the process executor")?;
            tracing::info!(
                supervisor = ?process.config().supervisor,
                "process executor ready"
            );
            let no_docker = match docker {
                Ok(engine) => {
                    let executor = DockerExecutor::new(docker_config, engine, host, events.clone())
                        .context("starting the docker executor")?;
                    let _ = slot.set(executor);
                    String::new()
                }
                Err(why) => why,
            };
            let _ = events_sent_to.set(events.clone());
            Ok(Arc::new(Router::new(process, slot, no_docker, events)) as Arc<dyn Executor>)
        }
    });
    let parts = Parts {
        probe: Arc::new(SystemProbe::new(&config.data_dir)),
        config: config.clone(),
        io: io.clone(),
        executor,
        docker: has_docker,
        seed: fresh_seed(),
        on_event: None,
    };
    let api_listener = io.net.listen(config.api_addr).await.with_context(|| {
        format!(
            "cannot listen for the API on {} (config `api_addr`)",
            config.api_addr
        )
    })?;
    let (handle, task) = daemon::start(parts, shutdown).await?;
    let api = tokio::spawn(crate::api::serve(api_listener, handle.clone()));
    let docker_watch = events_sent_to.get().cloned().map(|events| {
        let watch = DockerWatch {
            config: config.clone(),
            executor_config: docker_config,
            slot,
            events,
            handle: handle.clone(),
        };
        tokio::spawn(watch_docker(watch, has_docker))
    });
    tracing::info!(
        host = %handle.identity.id,
        api = %config.api_addr,
        cluster = %config.advertise_addr,
        data_dir = %config.data_dir.display(),
        "rota agent started"
    );
    let done = async move {
        let result = task.await.context("the event loop panicked")?;
        api.abort();
        if let Some(watch) = docker_watch {
            watch.abort();
        }
        result
    };
    Ok((handle, done))
}

/// `rota agent`: runs until SIGINT or SIGTERM.
pub async fn run_agent(config: Config) -> anyhow::Result<()> {
    init_logging(config.log_format);
    let (_handle, done) = start(config, shutdown_signal()).await?;
    done.await
}

/// The demo job `rota dev` creates: every 10 seconds, a line of output.
pub fn demo_job() -> JobSpec {
    let json = r#"{"name": "demo", "schedule": "*/10 * * * * *",
        "executor": {"process": {"command": ["sh", "-c", "echo \"hello from rota: run $ROTA_RUN_ID of $ROTA_JOB, scheduled at $ROTA_SCHEDULED_AT\""]}}}"#;
    crate::api::parse_job(json.as_bytes()).expect("the demo job is valid")
}

/// `rota dev`: a one-host cluster on the local defaults with a demo job.
pub async fn run_dev(mut config: Config) -> anyhow::Result<()> {
    init_logging(config.log_format);
    config.bootstrap = true;
    config.voters = 1;
    let (handle, done) = start(config.clone(), shutdown_signal()).await?;
    // Wait for this host to lead, then make sure the demo job exists.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if handle
            .with_node(|node, _| node.is_ready_leader())
            .await
            .unwrap_or(false)
        {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "this host did not become leader within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exists = handle
        .with_node(|node, _| {
            node.state()
                .job(&rota_core::job::JobName::new("demo").expect("valid name"))
                .is_some()
        })
        .await
        .unwrap_or(true);
    if !exists {
        let at = handle.clock.now().wall;
        match handle
            .propose(Command::PutJob {
                spec: Box::new(demo_job()),
                replace: false,
                at,
            })
            .await
        {
            Ok(Outcome::JobCreated) => tracing::info!("created the demo job"),
            other => tracing::warn!(outcome = ?other, "could not create the demo job"),
        }
    }
    let api = config.api_addr;
    eprintln!(
        "\nrota is running: a one-host cluster with a demo job that runs every 10 seconds.\n\
         \n  data directory  {data}\
         \n  API             http://{api}/v1/status\
         \n  the demo job    http://{api}/v1/jobs/demo/runs\
         \n  from the CLI    rota --api http://{api} runs demo\
         \n                  rota --api http://{api} logs <run id> -f\
         \n\nStop it with Ctrl-C.\n",
        data = config.data_dir.display(),
    );
    done.await
}
