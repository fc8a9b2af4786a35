//! HTTP API requests (arbitrary method, path, query, headers and body) into the router
//! of one live daemon, started once and shared by every input.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use rota_core::host::ResourceSample;
use rota_core::node::ExecutorEvent;
use rota_core::run::{Reason, RunId, RunSpec};
use runtime::api::{BodyError, RequestBody};
use runtime::config::Config;
use runtime::daemon::{self, Handle, Parts};
use runtime::executor::{Events, Executor};
use runtime::io::{BoxFuture, Io, SystemClock, TokioNet};
use runtime::resources::FixedProbe;
use sim::io::SimDisk;

/// Runs nothing: the router is under test, not the executor.
struct IdleExecutor(Events);

impl Executor for IdleExecutor {
    fn start(&self, spec: RunSpec) {
        let _ = self.0.send(ExecutorEvent::LaunchFailed {
            run: spec.id,
            at: rota_core::time::Timestamp::EPOCH,
            reason: Reason::LaunchFailed,
            detail: "the fuzzer runs nothing".into(),
        });
    }

    fn stop(&self, _run: RunId, _reason: Reason) {}

    fn recover(&self) -> BoxFuture<'_, Vec<ExecutorEvent>> {
        Box::pin(async { Vec::new() })
    }

    fn output_path(&self, _run: RunId) -> Option<std::path::PathBuf> {
        None
    }
}

fn daemon() -> &'static (tokio::runtime::Runtime, Handle) {
    static DAEMON: OnceLock<(tokio::runtime::Runtime, Handle)> = OnceLock::new();
    DAEMON.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let handle = runtime.block_on(async {
            let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let config = Config {
                data_dir: "/fuzz".into(),
                api_addr: any,
                cluster_addr: any,
                advertise_addr: any,
                advertise_api_addr: any,
                bootstrap: true,
                voters: 1,
                host_id: Some(1),
                ..Config::default()
            };
            let parts = Parts {
                config,
                io: Io {
                    clock: Arc::new(SystemClock::new()),
                    net: Arc::new(TokioNet),
                    disk: Arc::new(SimDisk::new()),
                },
                executor: Box::new(|_, events| {
                    Ok(Arc::new(IdleExecutor(events)) as Arc<dyn Executor>)
                }),
                probe: Arc::new(FixedProbe(ResourceSample {
                    cpu_total_milli: 4000,
                    cpu_free_milli: 3000,
                    memory_total_mb: 8192,
                    memory_free_mb: 6000,
                    disk_total_mb: 100_000,
                    disk_free_mb: 80_000,
                })),
                docker: false,
                seed: 1,
                on_event: None,
            };
            let (handle, task) = daemon::start(parts, Box::pin(std::future::pending()))
                .await
                .expect("the fuzzed daemon starts");
            std::mem::forget(task);
            // Wait until it leads, so that writes reach the state machine.
            for _ in 0..500 {
                if handle
                    .with_node(|n, _| n.is_ready_leader())
                    .await
                    .unwrap_or(false)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            handle
        });
        (runtime, handle)
    })
}

#[derive(Arbitrary, Debug)]
struct Fuzzed<'a> {
    method: u8,
    raw_method: &'a str,
    segments: Vec<Segment<'a>>,
    query: &'a str,
    headers: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
    json_job: bool,
}

#[derive(Arbitrary, Debug)]
enum Segment<'a> {
    Known(u8),
    Raw(&'a str),
}

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];
const WORDS: [&str; 14] = [
    "v1", "status", "members", "jobs", "runs", "output", "pause", "resume", "run", "next", "demo",
    "1", "stop", "metrics",
];

/// See the module documentation.
pub fn http_router(data: &[u8]) {
    let Ok(input) = Fuzzed::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let method = if input.method < 200 {
        METHODS[input.method as usize % METHODS.len()].to_owned()
    } else {
        input.raw_method.to_owned()
    };
    let mut path = String::new();
    for segment in input.segments.iter().take(8) {
        path.push('/');
        match segment {
            Segment::Known(w) => path.push_str(WORDS[*w as usize % WORDS.len()]),
            Segment::Raw(raw) => path.push_str(raw),
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    if !input.query.is_empty() {
        path.push('?');
        path.push_str(input.query);
    }
    let body = if input.json_job {
        // A near-valid job spec with the fuzzed bytes as its schedule, so the router's
        // validation paths see plausible documents too.
        format!(
            r#"{{"name": "fuzz", "schedule": {}, "executor": {{"process": {{"command": ["true"]}}}}}}"#,
            serde_json::to_string(&String::from_utf8_lossy(input.body)).expect("a string encodes")
        )
        .into_bytes()
    } else {
        input.body.to_vec()
    };
    let mut builder = Request::builder()
        .method(method.as_str())
        .uri(path.as_str());
    for (name, value) in input.headers.iter().take(16) {
        builder = builder.header(*name, *value);
    }
    let Ok(request) = builder.body(
        Full::new(Bytes::from(body))
            .map_err(|never| -> BodyError { match never {} })
            .boxed(),
    ) else {
        // Not an HTTP request hyper would have parsed.
        return;
    };
    let request: Request<RequestBody> = request;
    let (runtime, handle) = daemon();
    runtime.block_on(async {
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            runtime::api::route(handle, request),
        )
        .await
        .expect("the router answers within 10 s");
        assert!(answer.status().as_u16() >= 200, "{answer:?}");
        // Read a little of the body; a followed stream may go on for long.
        let _ = tokio::time::timeout(Duration::from_millis(50), answer.into_body().collect()).await;
    });
}
