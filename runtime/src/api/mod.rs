//! The HTTP API (JSON, under `/v1`), served by every host.
//!
//! Writes and consistent reads are answered by the leader; any other host answers
//! `302 Found` with `Location` on the leader's API address, or `503` with `Retry-After`
//! while there is no leader or the leader cannot reach a quorum (a request waits for the
//! quorum at most half the lease, never indefinitely). Reads with `?stale=true` are
//! answered by any host from its own replica. A write answered 2xx has been committed by
//! Raft and applied.
//!
//! `POST /v1/jobs/{name}/run` may carry an `Idempotency-Key`: the leader answers a key
//! the job has already seen with the run it made (`200`, `"replayed": true`), and the
//! replicated state refuses a second declaration with that key, so a request sent again
//! after a lost answer never makes a second run.
//!
//! `GET /metrics` answers this host's metrics (see [`crate::metrics`]), never redirected.

mod output;
pub mod views;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rota_core::command::{Command, Outcome, Rejection};
use rota_core::host::HostId;
use rota_core::job::{JobName, JobSpec};
use rota_core::membership::Liveness;
use rota_core::node::{MemberView, Planned, TriggerError};
use rota_core::run::{Reason, RunId, TriggerKey};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::conn_limit::ConnectionLimiter;
use crate::daemon::{Handle, ProposeError};
use crate::io::Listener;
use crate::metrics::Standing;
use views::{NextFire, RunView, StatusView};

/// A response body: whole, or streamed (run output).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// An error reading a request body.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A request body, whatever carried it (a connection, or a fuzzer).
pub type RequestBody = BoxBody<Bytes, BodyError>;

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: Box<dyn Listener>, handle: Handle) {
    let slots = Arc::new(Semaphore::new(
        handle.config.limits.api_requests_concurrent_max,
    ));
    let limits = &handle.config.limits;
    let connections = ConnectionLimiter::new(
        limits.api_connections_max,
        limits.api_connections_per_client_max,
    );
    let header_timeout = Duration::from_millis(limits.api_header_timeout_ms);
    let header_bytes_max = limits.api_header_bytes_max;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "API accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // One client holding many connections cannot take every place: beyond its share
        // its new connections are closed at once.
        let Some(admitted) = connections.admit(peer.ip()) else {
            drop(stream);
            continue;
        };
        let handle = handle.clone();
        let slots = Arc::clone(&slots);
        tokio::spawn(async move {
            let _admitted = admitted;
            let service = hyper::service::service_fn(move |request| {
                let handle = handle.clone();
                let slots = Arc::clone(&slots);
                async move { Ok::<_, Infallible>(answer(&handle, &slots, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(header_bytes_max)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "API connection ended with an error");
            }
        });
    }
}

async fn answer(
    handle: &Handle,
    slots: &Arc<Semaphore>,
    request: Request<Incoming>,
) -> Response<Body> {
    let request = request.map(|body| body.map_err(|e| Box::new(e) as BodyError).boxed());
    // hyper bounds the bytes it buffers; the head's own size is bounded here, by the
    // configured limit, with an answer that says so.
    let head_bytes = request.uri().to_string().len()
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    let max = handle.config.limits.api_header_bytes_max;
    if head_bytes > max {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!("the request line and headers are over the limit of {max} bytes"),
            None,
        );
    }
    // Too many requests at once: refuse at once rather than queue without bound.
    let Ok(slot) = Arc::clone(slots).try_acquire_owned() else {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests at once; retry shortly",
            None,
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, "1".parse().expect("static header"));
        return response;
    };
    // The slot is held until the answer is sent, so a streamed one (run output followed
    // live) counts for as long as it streams.
    route(handle, request)
        .await
        .map(|body| Slotted { body, _slot: slot }.boxed())
}

/// A response body holding its request's slot until it is sent or dropped.
struct Slotted {
    body: Body,
    _slot: OwnedSemaphorePermit,
}

impl hyper::body::Body for Slotted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The request, as the routes see it.
struct Req {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    path_and_query: String,
    headers: hyper::HeaderMap,
    body: RequestBody,
}

impl Req {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1" | "yes"))
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Answers one request.
pub async fn route(handle: &Handle, request: Request<RequestBody>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parse_query(parts.uri.query().unwrap_or("")),
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.to_string()),
        headers: parts.headers,
        body,
    };
    let path = req.path.clone();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let m = &req.method;
    match segments.as_slice() {
        ["v1", "status"] if m == Method::GET => status(handle).await,
        ["v1", "members"] if m == Method::GET => members(handle).await,
        ["v1", "jobs"] if m == Method::GET => {
            read(handle, &req, |h, _| Box::pin(list_jobs(h))).await
        }
        ["v1", "jobs"] if m == Method::POST => {
            write(handle, req, |h, r| Box::pin(put_job(h, r, None))).await
        }
        ["v1", "jobs", name] => {
            let name = (*name).to_owned();
            match *m {
                Method::GET => read(handle, &req, move |h, _| Box::pin(get_job(h, name))).await,
                Method::PUT => {
                    write(handle, req, move |h, r| Box::pin(put_job(h, r, Some(name)))).await
                }
                Method::DELETE => {
                    write(handle, req, move |h, r| {
                        Box::pin(simple_write(h, r, name, Verb::Delete))
                    })
                    .await
                }
                _ => not_allowed(),
            }
        }
        ["v1", "jobs", name, action] => {
            let name = (*name).to_owned();
            match (m, *action) {
                (&Method::POST, "pause") => {
                    write(handle, req, move |h, r| {
                        Box::pin(simple_write(h, r, name, Verb::Pause))
                    })
                    .await
                }
                (&Method::POST, "resume") => {
                    write(handle, req, move |h, r| {
                        Box::pin(simple_write(h, r, name, Verb::Resume))
                    })
                    .await
                }
                (&Method::POST, "run") => {
                    write(handle, req, move |h, r| Box::pin(trigger(h, r, name))).await
                }
                (&Method::GET, "next") => {
                    let count = req.param("count").map(str::to_owned);
                    read(handle, &req, move |h, _| Box::pin(next(h, name, count))).await
                }
                (&Method::GET, "runs") => {
                    let limit = req.param("limit").map(str::to_owned);
                    read(handle, &req, move |h, _| Box::pin(job_runs(h, name, limit))).await
                }
                (_, "pause" | "resume" | "run" | "next" | "runs") => not_allowed(),
                _ => not_found("no such endpoint"),
            }
        }
        ["v1", "runs", id] if m == Method::GET => {
            let id = id.to_string();
            read(handle, &req, move |h, _| Box::pin(get_run(h, id))).await
        }
        ["v1", "runs", id, "stop"] if m == Method::POST => {
            let id = id.to_string();
            write(handle, req, move |h, r| Box::pin(stop_run(h, r, id))).await
        }
        ["v1", "runs", id, "output"] if m == Method::GET => {
            output::serve_output(handle, &req.path_and_query, id, req.flag("follow")).await
        }
        ["metrics"] if m == Method::GET => metrics(handle).await,
        ["v1", "runs", ..] | ["v1", "jobs", ..] | ["v1", "status" | "members"] | ["metrics"] => {
            not_allowed()
        }
        _ => not_found("no such endpoint; the API lives under /v1, metrics at /metrics"),
    }
}

type Answer<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send + 'a>>;

/// Where a request that needs the leader goes, if not here.
enum Leadership {
    /// This host leads and has applied its first entry.
    Here,
    /// Another host leads; answer with this redirect.
    Elsewhere(Response<Body>),
}

/// How long the leader waits for its quorum: for a write to commit, for a read to be
/// confirmed, or since the quorum last acknowledged it before it stops accepting
/// requests. It is the bound the core uses to judge a leader's quorum gone quiet (half
/// the lease), so that a leader cut off from its voters answers `503` instead of
/// leaving its clients hanging.
fn quorum_wait(handle: &Handle) -> Duration {
    Duration::from_millis((handle.config.timing.lease_ms / 2).max(1))
}

/// The leader this host knows of, with its term and API address: Raft's view first,
/// else what a leader last told it, unless Raft has since moved to a later term (an
/// election is under way, so that leader is no longer one).
fn known_leader(node: &rota_core::node::Node) -> Option<(HostId, u64, Option<String>)> {
    let raft = node.raft();
    let api = |id: HostId| node.member(id).map(|m| m.identity.api_addr.to_string());
    match raft.leader {
        Some(id) => Some((id, raft.term, api(id))),
        None => node
            .known_leader()
            .filter(|(_, term, _)| *term >= raft.term)
            .map(|(id, term, addr)| (id, term, addr.map(|a| a.to_string()))),
    }
}

async fn leadership(handle: &Handle, path_and_query: &str) -> Leadership {
    let quiet_after = quorum_wait(handle);
    let view = handle
        .with_node(move |node, now| {
            let quorum_quiet = node
                .raft()
                .quorum_acked
                .is_none_or(|acked| now.mono.saturating_since(acked) >= quiet_after);
            (
                node.is_ready_leader(),
                node.raft().is_leader,
                known_leader(node),
                quorum_quiet,
            )
        })
        .await;
    let Ok((ready, is_leader, known, quorum_quiet)) = view else {
        return Leadership::Elsewhere(unavailable("this host is shutting down"));
    };
    if ready && quorum_quiet {
        return Leadership::Elsewhere(unavailable(&format!(
            "this host leads but no quorum of voters has answered it for {} ms; it cannot commit",
            quiet_after.as_millis()
        )));
    }
    if ready {
        return Leadership::Here;
    }
    if is_leader {
        return Leadership::Elsewhere(unavailable(
            "this host was just elected leader and is taking over",
        ));
    }
    let api = known.and_then(|(id, _, api)| leader_api(handle, id.0).or(api));
    match api {
        Some(api) => Leadership::Elsewhere(redirect(&api, path_and_query)),
        None => Leadership::Elsewhere(unavailable(
            "there is no leader at the moment (an election may be under way)",
        )),
    }
}

/// The leader's API address from Raft's membership.
fn leader_api(handle: &Handle, leader: u64) -> Option<String> {
    let metrics = handle.raft.metrics().borrow().clone();
    metrics
        .membership_config
        .membership()
        .get_node(&leader)
        .map(|peer| peer.api_addr.clone())
}

/// A consistent read: on the leader after confirming it still leads, or anywhere with
/// `?stale=true`.
async fn read<'a>(
    handle: &'a Handle,
    req: &Req,
    f: impl FnOnce(&'a Handle, &Req) -> Answer<'a>,
) -> Response<Body> {
    if !req.flag("stale") {
        match leadership(handle, &req.path_and_query).await {
            Leadership::Elsewhere(response) => return response,
            Leadership::Here => {
                let confirmed =
                    tokio::time::timeout(quorum_wait(handle), handle.raft.ensure_linearizable())
                        .await;
                if !matches!(confirmed, Ok(Ok(_))) {
                    return unavailable("leadership is changing; retry shortly");
                }
            }
        }
    }
    f(handle, req).await
}

/// A write: on the leader only.
async fn write<'a>(
    handle: &'a Handle,
    req: Req,
    f: impl FnOnce(&'a Handle, Req) -> Answer<'a>,
) -> Response<Body> {
    match leadership(handle, &req.path_and_query).await {
        Leadership::Elsewhere(response) => response,
        Leadership::Here => f(handle, req).await,
    }
}

// ----- endpoints -----

async fn status(handle: &Handle) -> Response<Body> {
    let h = handle.clone();
    match handle.with_node(move |node, _| status_view(node, &h)).await {
        Ok(view) => json_response(StatusCode::OK, &view),
        Err(_) => unavailable("this host is shutting down"),
    }
}

/// This host as `GET /v1/status` shows it, and as its metrics show it.
fn status_view(node: &rota_core::node::Node, h: &Handle) -> StatusView {
    let raft = node.raft();
    let known = known_leader(node);
    let leader = known.as_ref().map(|(id, _, _)| *id);
    let leader_api = known.and_then(|(id, _, api)| leader_api(h, id.0).or(api));
    StatusView {
        id: node.identity().id.0,
        api_addr: node.identity().api_addr.to_string(),
        cluster_addr: node.identity().cluster_addr.to_string(),
        role: node.role(),
        is_leader: raft.is_leader,
        leader_ready: node.is_ready_leader(),
        leader_id: leader.map(|l| l.0),
        leader_api,
        term: raft.term.max(node.known_leader().map_or(0, |(_, t, _)| t)),
        cluster_size: node.members().len(),
        voters: raft.voters.len(),
        applied_index: node.state().applied_index(),
        jobs: node.state().jobs().len(),
        active_runs: node.state().active_count(),
        rpc_frames_refused: h.rpc_stats.bad_frames.load(Ordering::Relaxed),
        rpc_connections_refused: h.rpc_stats.refused_connections.load(Ordering::Relaxed),
        gossip_datagrams_refused: node.bad_datagrams(),
    }
}

/// This host's metrics for Prometheus: answered here, never redirected, since each
/// host counts its own.
async fn metrics(handle: &Handle) -> Response<Body> {
    let h = handle.clone();
    let standing = handle
        .with_node(move |node, _| {
            let members = node.members();
            let own = members.iter().find(|m| m.id == node.identity().id);
            Standing {
                status: status_view(node, &h),
                hosts: hosts_by_liveness(&members),
                runs_here: node.local_runs().count(),
                free: own.and_then(|m| m.free),
                docker: own.is_some_and(|m| m.docker),
            }
        })
        .await;
    let Ok(standing) = standing else {
        return unavailable("this host is shutting down");
    };
    let mut response = Response::new(full(handle.metrics.render(&standing).into_bytes()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        crate::metrics::CONTENT_TYPE.parse().expect("static header"),
    );
    response
}

/// How many hosts are alive, suspect and down.
fn hosts_by_liveness(members: &[MemberView]) -> [usize; 3] {
    let mut hosts = [0; 3];
    for member in members {
        hosts[match member.state {
            Liveness::Alive => 0,
            Liveness::Suspect => 1,
            Liveness::Down => 2,
        }] += 1;
    }
    hosts
}

async fn members(handle: &Handle) -> Response<Body> {
    match handle.with_node(|node, _| node.members()).await {
        Ok(members) => json_response(StatusCode::OK, &members),
        Err(_) => unavailable("this host is shutting down"),
    }
}

async fn list_jobs(handle: &Handle) -> Response<Body> {
    let jobs = handle
        .with_node(|node, _| {
            node.state()
                .jobs()
                .map(|(_, job)| job.spec.clone())
                .collect::<Vec<JobSpec>>()
        })
        .await;
    match jobs {
        Ok(jobs) => json_response(StatusCode::OK, &jobs),
        Err(_) => unavailable("this host is shutting down"),
    }
}

fn job_name(text: &str) -> Result<JobName, Box<Response<Body>>> {
    JobName::new(text)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, &e.message, Some("name"))))
}

async fn get_job(handle: &Handle, name: String) -> Response<Body> {
    let name = match job_name(&name) {
        Ok(name) => name,
        Err(response) => return *response,
    };
    let lookup = name.clone();
    match handle
        .with_node(move |node, _| node.state().job(&lookup).map(|j| j.spec.clone()))
        .await
    {
        Ok(Some(spec)) => json_response(StatusCode::OK, &spec),
        Ok(None) => not_found(&format!("no job named `{name}`")),
        Err(_) => unavailable("this host is shutting down"),
    }
}

/// The most bytes of an oversized request body read and thrown away before answering
/// `413`, and the longest time spent on it. A client that is still sending when the
/// answer comes and the connection closes would otherwise see a broken pipe instead of
/// the `413`; past these bounds the connection is closed all the same.
const OVERSIZE_DRAIN_BYTES_MAX: usize = 64 * 1024 * 1024;
const OVERSIZE_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads a request body of at most the configured size.
async fn body_bytes(handle: &Handle, mut body: RequestBody) -> Result<Bytes, Box<Response<Body>>> {
    use hyper::body::Body as _;
    let max = handle.config.limits.api_body_bytes_max;
    let mut bytes = Vec::new();
    // A declared length over the limit is refused before reading anything into memory.
    let mut over = body.size_hint().lower() > max as u64;
    while !over {
        match body.frame().await {
            None => return Ok(Bytes::from(bytes)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    over = bytes.len() + data.len() > max;
                    if !over {
                        bytes.extend_from_slice(&data);
                    }
                }
            }
            Some(Err(e)) => {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the request body: {e}"),
                    None,
                )));
            }
        }
    }
    drop(bytes);
    let drain = async {
        let mut drained = 0usize;
        while drained <= OVERSIZE_DRAIN_BYTES_MAX
            && let Some(Ok(frame)) = body.frame().await
        {
            drained += frame.data_ref().map_or(0, Bytes::len);
        }
    };
    let _ = tokio::time::timeout(OVERSIZE_DRAIN_TIMEOUT, drain).await;
    Err(Box::new(error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request body is over the limit of {max} bytes"),
        None,
    )))
}

/// Parses a job spec, naming the field that is wrong, checked against the default
/// bounds.
pub fn parse_job(bytes: &[u8]) -> Result<JobSpec, (String, Option<String>)> {
    parse_job_with(bytes, &rota_core::job::JobLimits::default())
}

/// Parses a job spec, naming the field that is wrong, checked against `limits`.
pub fn parse_job_with(
    bytes: &[u8],
    limits: &rota_core::job::JobLimits,
) -> Result<JobSpec, (String, Option<String>)> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let spec: JobSpec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != "." && !path.is_empty()).then_some(path);
        (e.inner().to_string(), field)
    })?;
    de.end().map_err(|e| (e.to_string(), None))?;
    spec.validate(limits)
        .map_err(|e| (e.message, Some(e.field)))?;
    Ok(spec)
}

async fn put_job(handle: &Handle, req: Req, name: Option<String>) -> Response<Body> {
    let bytes = match body_bytes(handle, req.body).await {
        Ok(bytes) => bytes,
        Err(response) => return *response,
    };
    let spec = match parse_job_with(&bytes, &handle.config.job_limits) {
        Ok(spec) => spec,
        Err((message, field)) => return error(StatusCode::BAD_REQUEST, &message, field.as_deref()),
    };
    if let Some(name) = &name
        && name != spec.name.as_str()
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "the body names job `{}` but the path names `{name}`",
                spec.name
            ),
            Some("name"),
        );
    }
    let now = handle.clock.now();
    let command = Command::PutJob {
        spec: Box::new(spec.clone()),
        replace: name.is_some(),
        at: now.wall,
    };
    match propose(handle, command, &req.path_and_query).await {
        Ok(Outcome::JobCreated) => json_response(StatusCode::CREATED, &spec),
        Ok(Outcome::JobReplaced) => json_response(StatusCode::OK, &spec),
        Ok(outcome) => rejected(outcome),
        Err(response) => *response,
    }
}

enum Verb {
    Delete,
    Pause,
    Resume,
}

async fn simple_write(handle: &Handle, req: Req, name: String, verb: Verb) -> Response<Body> {
    let name = match job_name(&name) {
        Ok(name) => name,
        Err(response) => return *response,
    };
    let at = handle.clock.now().wall;
    let command = match verb {
        Verb::Delete => Command::DeleteJob {
            name: name.clone(),
            at,
        },
        Verb::Pause => Command::PauseJob {
            name: name.clone(),
            at,
        },
        Verb::Resume => Command::ResumeJob {
            name: name.clone(),
            at,
        },
    };
    match propose(handle, command, &req.path_and_query).await {
        Ok(Outcome::Done) => match verb {
            Verb::Delete => empty(StatusCode::NO_CONTENT),
            _ => get_job(handle, name.to_string()).await,
        },
        Ok(outcome) => rejected(outcome),
        Err(response) => *response,
    }
}

/// The header that names a request to run a job now, so that sending it again makes no
/// second run.
pub const TRIGGER_KEY_HEADER: &str = "idempotency-key";

/// The request's `Idempotency-Key`, if it has one.
fn trigger_key(req: &Req) -> Result<Option<TriggerKey>, Box<Response<Body>>> {
    let Some(value) = req.headers.get(TRIGGER_KEY_HEADER) else {
        return Ok(None);
    };
    let bad = |why: &str| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("the Idempotency-Key header {why}"),
            Some("Idempotency-Key"),
        ))
    };
    let text = value.to_str().map_err(|_| bad("must be printable ASCII"))?;
    TriggerKey::new(text).map(Some).map_err(|why| bad(&why))
}

async fn trigger(handle: &Handle, req: Req, name: String) -> Response<Body> {
    let force = req.flag("force");
    let name = match job_name(&name) {
        Ok(name) => name,
        Err(response) => return *response,
    };
    let key = match trigger_key(&req) {
        Ok(key) => key,
        Err(response) => return *response,
    };
    let plan_name = name.clone();
    let planned = handle
        .with_node(move |node, now| node.plan_trigger(now, &plan_name, force, key))
        .await;
    let command = match planned {
        Ok(Ok(Planned::Propose(command))) => command,
        Ok(Ok(Planned::Made(run))) => return made_already(handle, run).await,
        Ok(Err(TriggerError::UnknownJob(_))) => {
            return not_found(&format!("no job named `{name}`"));
        }
        Ok(Err(e @ TriggerError::Busy { .. })) => {
            return error(StatusCode::CONFLICT, &e.to_string(), None);
        }
        Ok(Err(e)) => return unavailable(&e.to_string()),
        Err(_) => return unavailable("this host is shutting down"),
    };
    match propose(handle, command, &req.path_and_query).await {
        Ok(Outcome::Declared { run }) => json_response(
            StatusCode::ACCEPTED,
            &json!({ "id": run.0, "state": "declared" }),
        ),
        Ok(Outcome::Recorded { run, state, reason }) => json_response(
            StatusCode::ACCEPTED,
            &json!({ "id": run.0, "state": state, "reason": reason.as_str() }),
        ),
        Ok(Outcome::Rejected(Rejection::KeyUsed { run, .. })) => made_already(handle, run).await,
        Ok(outcome) => rejected(outcome),
        Err(response) => *response,
    }
}

/// The answer to a request to run a job now whose key already made `run`: that run, as
/// it is now, and no new one.
async fn made_already(handle: &Handle, run: RunId) -> Response<Body> {
    let now = handle
        .with_node(move |node, _| node.state().run(run).map(|r| (r.state, r.reason)))
        .await;
    match now {
        Ok(Some((state, reason))) => json_response(
            StatusCode::OK,
            &json!({
                "id": run.0,
                "state": state,
                "reason": reason.map(Reason::as_str),
                "replayed": true,
            }),
        ),
        // Aged out of the job's history since.
        Ok(None) => json_response(
            StatusCode::OK,
            &json!({ "id": run.0, "state": null, "replayed": true }),
        ),
        Err(_) => unavailable("this host is shutting down"),
    }
}

const NEXT_COUNT_MAX: usize = 100;
const RUNS_LIMIT_MAX: usize = 1000;

fn count_param(
    text: Option<String>,
    field: &str,
    default: usize,
    max: usize,
) -> Result<usize, Box<Response<Body>>> {
    match text {
        None => Ok(default),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                Box::new(error(
                    StatusCode::BAD_REQUEST,
                    &format!("must be a number from 1 to {max}"),
                    Some(field),
                ))
            }),
    }
}

async fn next(handle: &Handle, name: String, count: Option<String>) -> Response<Body> {
    let name = match job_name(&name) {
        Ok(name) => name,
        Err(response) => return *response,
    };
    let count = match count_param(count, "count", 5, NEXT_COUNT_MAX) {
        Ok(count) => count,
        Err(response) => return *response,
    };
    let lookup = name.clone();
    let fires = handle
        .with_node(move |node, now| {
            let job = node.state().job(&lookup)?;
            let spec = &job.spec;
            let mut fires = Vec::new();
            let mut cursor = now.wall.max(job.watermark);
            while fires.len() < count {
                let Some(fire) = spec.schedule.next_after(cursor, spec.timezone, job.anchor) else {
                    break;
                };
                fires.push(NextFire::new(fire, spec.timezone));
                cursor = fire;
            }
            Some(fires)
        })
        .await;
    match fires {
        Ok(Some(fires)) => json_response(StatusCode::OK, &fires),
        Ok(None) => not_found(&format!("no job named `{name}`")),
        Err(_) => unavailable("this host is shutting down"),
    }
}

async fn job_runs(handle: &Handle, name: String, limit: Option<String>) -> Response<Body> {
    let name = match job_name(&name) {
        Ok(name) => name,
        Err(response) => return *response,
    };
    let limit = match count_param(limit, "limit", 20, RUNS_LIMIT_MAX) {
        Ok(limit) => limit,
        Err(response) => return *response,
    };
    let lookup = name.clone();
    let runs = handle
        .with_node(move |node, _| {
            let state = node.state();
            let job = state.job(&lookup)?;
            Some(
                state
                    .runs_of(job)
                    .take(limit)
                    .map(RunView::from)
                    .collect::<Vec<_>>(),
            )
        })
        .await;
    match runs {
        Ok(Some(runs)) => json_response(StatusCode::OK, &runs),
        Ok(None) => not_found(&format!("no job named `{name}`")),
        Err(_) => unavailable("this host is shutting down"),
    }
}

fn run_id(text: &str) -> Result<RunId, Box<Response<Body>>> {
    text.parse::<u64>().map(RunId).map_err(|_| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("`{text}` is not a run id"),
            Some("id"),
        ))
    })
}

/// `POST /v1/runs/{id}/stop`: asks the run's host to stop it. Answers `202` with the
/// run as it is now (still active, `stopping`); its end comes when the host reports it.
/// Sending it again is harmless; a run that has ended gets `409`.
async fn stop_run(handle: &Handle, req: Req, id: String) -> Response<Body> {
    let id = match run_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    // Refused here when the leader's state already says why, with nothing proposed;
    // the state decides again when the command applies.
    let known = handle
        .with_node(move |node, _| node.state().run(id).map(|run| run.is_active()))
        .await;
    match known {
        Ok(Some(true)) => {}
        Ok(Some(false)) => return rejected(Outcome::Rejected(Rejection::RunEnded(id))),
        Ok(None) => {
            return not_found(&format!(
                "no run {id} (runs age out of a job's bounded history)"
            ));
        }
        Err(_) => return unavailable("this host is shutting down"),
    }
    let at = handle.clock.now().wall;
    match propose(
        handle,
        Command::StopRun { run: id, at },
        &req.path_and_query,
    )
    .await
    {
        Ok(Outcome::Done) => match handle
            .with_node(move |node, _| node.state().run(id).map(RunView::from))
            .await
        {
            Ok(Some(run)) => json_response(StatusCode::ACCEPTED, &run),
            // Aged out of its job's history in the meantime.
            Ok(None) => not_found(&format!("no run {id}")),
            Err(_) => unavailable("this host is shutting down"),
        },
        Ok(Outcome::Rejected(Rejection::UnknownRun(_))) => not_found(&format!(
            "no run {id} (runs age out of a job's bounded history)"
        )),
        Ok(outcome) => rejected(outcome),
        Err(response) => *response,
    }
}

async fn get_run(handle: &Handle, id: String) -> Response<Body> {
    let id = match run_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    match handle
        .with_node(move |node, _| node.state().run(id).map(RunView::from))
        .await
    {
        Ok(Some(run)) => json_response(StatusCode::OK, &run),
        Ok(None) => not_found(&format!(
            "no run {id} (runs age out of a job's bounded history)"
        )),
        Err(_) => unavailable("this host is shutting down"),
    }
}

/// Proposes a command and waits for its outcome; a lost leadership becomes a redirect.
async fn propose(
    handle: &Handle,
    command: Command,
    path_and_query: &str,
) -> Result<Outcome, Box<Response<Body>>> {
    let wait = quorum_wait(handle);
    let Ok(proposed) = tokio::time::timeout(wait, handle.propose(command)).await else {
        return Err(Box::new(unavailable(&format!(
            "the write was not committed within {} ms (this host may be cut off from its quorum); it may still take effect, so check before retrying",
            wait.as_millis()
        ))));
    };
    match proposed {
        Ok(outcome) => Ok(outcome),
        Err(ProposeError::NotLeader(_)) => match leadership(handle, path_and_query).await {
            Leadership::Elsewhere(response) => Err(Box::new(response)),
            Leadership::Here => Err(Box::new(unavailable(
                "leadership is changing; retry shortly",
            ))),
        },
        Err(ProposeError::Raft(e)) => Err(Box::new(unavailable(&format!(
            "the write was not committed: {e}"
        )))),
    }
}

fn rejected(outcome: Outcome) -> Response<Body> {
    match outcome {
        Outcome::Rejected(why) => {
            let status = match &why {
                Rejection::UnknownJob(_) | Rejection::UnknownRun(_) => StatusCode::NOT_FOUND,
                Rejection::JobExists(_)
                | Rejection::Busy { .. }
                | Rejection::TooManyJobs { .. } => StatusCode::CONFLICT,
                Rejection::InvalidJob(e) => {
                    return error(StatusCode::BAD_REQUEST, &e.message, Some(&e.field));
                }
                _ => StatusCode::CONFLICT,
            };
            error(status, &why.to_string(), None)
        }
        other => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("unexpected outcome {other:?}"),
            None,
        ),
    }
}

// ----- responses -----

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// A JSON response.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let mut bytes =
        serde_json::to_vec(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
    bytes.push(b'\n');
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("static header"),
    );
    response
}

/// An error as JSON: `{"error": what to fix, "field": which}`.
pub fn error(status: StatusCode, message: &str, field: Option<&str>) -> Response<Body> {
    json_response(status, &json!({ "error": message, "field": field }))
}

fn not_found(message: &str) -> Response<Body> {
    error(StatusCode::NOT_FOUND, message, None)
}

fn not_allowed() -> Response<Body> {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
        None,
    )
}

fn unavailable(message: &str) -> Response<Body> {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message, None);
    response
        .headers_mut()
        .insert(RETRY_AFTER, "1".parse().expect("static header"));
    response
}

fn redirect(api: &str, path_and_query: &str) -> Response<Body> {
    let location = format!("http://{api}{path_and_query}");
    let mut response = json_response(
        StatusCode::FOUND,
        &json!({ "leader": api, "location": location }),
    );
    if let Ok(value) = location.parse() {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// The address a redirect to `addr` names.
pub fn api_location(addr: SocketAddr, path_and_query: &str) -> String {
    format!("http://{addr}{path_and_query}")
}
