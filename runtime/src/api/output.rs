//! A run's output: served by the host that ran it (any other host redirects there),
//! whole or followed live until the run ends.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::CONTENT_TYPE;
use hyper::{Response, StatusCode};
use rota_core::node::{LocalStatus, ReportStatus};
use rota_core::run::{RunId, RunState};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::{
    Body, Leadership, error, leader_api, leadership, not_found, redirect, run_id, unavailable,
};
use crate::daemon::Handle;

/// How often a follower of a running run's output looks for more.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// The most bytes read at once.
const CHUNK_BYTES_MAX: usize = 64 * 1024;

pub(super) async fn serve_output(
    handle: &Handle,
    path_and_query: &str,
    id: &str,
    follow: bool,
) -> Response<Body> {
    let id = match run_id(id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    if let Some(path) = handle.executor.output_path(id) {
        return if follow {
            follow_file(handle, id)
        } else {
            whole_file(&path).await
        };
    }
    // It did not run here: send the client to the host that ran it.
    let me = handle.identity.id;
    let found = handle
        .with_node(move |node, _| {
            let run = node.state().run(id);
            let active = run.is_some_and(|r| r.state.is_active());
            let run = run.map(|r| r.host);
            let api = run
                .flatten()
                .and_then(|h| node.member(h).map(|m| m.identity.api_addr.to_string()));
            (run, api, node.is_ready_leader(), active)
        })
        .await;
    match found {
        Ok((Some(Some(host)), api, _, _)) if host != me => {
            match api.or_else(|| leader_api(handle, host.0)) {
                Some(api) => redirect(&api, path_and_query),
                None => unavailable(&format!(
                    "run {id} ran on host {host}, which this host cannot reach now"
                )),
            }
        }
        // Placed here and not started yet: it has no output so far.
        Ok((Some(Some(_)), _, _, true)) if follow => follow_file(handle, id),
        Ok((Some(Some(_)), _, _, true)) => text_response(super::full(Bytes::new())),
        Ok((Some(_), _, _, _)) => not_found(&format!(
            "run {id} has no output: it never started on a host, or its output aged out"
        )),
        Ok((None, _, true, _)) => not_found(&format!("no run {id}")),
        // This host's replica may lag, or it holds none (a worker): ask the leader.
        Ok((None, _, false, _)) => match leadership(handle, path_and_query).await {
            Leadership::Elsewhere(response) => response,
            Leadership::Here => not_found(&format!("no run {id}")),
        },
        Err(_) => unavailable("this host is shutting down"),
    }
}

fn text_response(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static header"),
    );
    response
}

async fn whole_file(path: &PathBuf) -> Response<Body> {
    match tokio::fs::read(path).await {
        Ok(bytes) => text_response(super::full(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            text_response(super::full(Bytes::new()))
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot read the output: {e}"),
            None,
        ),
    }
}

/// Whether the run is still executing on this host, or is placed here and about to.
async fn executing(handle: &Handle, id: RunId) -> bool {
    let me = handle.identity.id;
    handle
        .with_node(
            move |node, _| match node.local_runs().find(|r| r.id == id) {
                Some(local) => matches!(
                    local.status,
                    LocalStatus::Starting | LocalStatus::Reported(ReportStatus::Started { .. })
                ),
                // Committed for this host, and its dispatch has not arrived yet.
                None => node
                    .state()
                    .run(id)
                    .is_some_and(|r| r.state == RunState::Declared && r.host == Some(me)),
            },
        )
        .await
        .unwrap_or(false)
}

fn follow_file(handle: &Handle, id: RunId) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let handle = handle.clone();
    tokio::spawn(async move {
        let mut offset = 0u64;
        let mut buf = vec![0u8; CHUNK_BYTES_MAX];
        let mut path = None;
        // Stop as soon as the client has gone.
        while !tx.is_closed() {
            // Look at whether it still runs before reading, so that the last read after
            // it ended catches everything it wrote.
            let running = executing(&handle, id).await;
            if path.is_none() {
                path = handle.executor.output_path(id);
            }
            while let Some(path) = &path {
                let n = read_at(path, offset, &mut buf).await.unwrap_or_default();
                if n == 0 {
                    break;
                }
                offset += n as u64;
                if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    return;
                }
            }
            if !running {
                return;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(Frame::data(chunk)), rx))
    });
    text_response(StreamBody::new(stream).boxed())
}

async fn read_at(path: &PathBuf, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    file.read(buf).await
}
