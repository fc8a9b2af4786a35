//! Cluster RPC: Raft traffic and the core's host-to-host messages, over TCP.
//!
//! A frame is a 4-byte little-endian length and that many bytes of postcard. Every call
//! has a timeout and every frame a size limit; a frame that does not decode is counted
//! and its connection dropped, never a panic.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use rota_core::host::HostId;
use rota_core::node::Message;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::conn_limit::ConnectionLimiter;
use crate::io::{BoxFuture, BoxStream, Listener, Net};
use crate::raft::TypeConfig;

/// A request from one host to another.
#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// Raft: replicate entries.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft: ask for a vote.
    Vote(VoteRequest<u64>),
    /// Raft: a chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// The core's messages, in the order they were sent.
    Messages {
        /// The sender.
        from: HostId,
        /// The sender's cluster address.
        from_addr: SocketAddr,
        /// The messages.
        messages: Vec<Message>,
    },
    /// Start an election now: the leader hands over before it shuts down.
    Elect,
}

impl Request {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::AppendEntries(_) => "append-entries",
            Request::Vote(_) => "vote",
            Request::InstallSnapshot(_) => "install-snapshot",
            Request::Messages { .. } => "messages",
            Request::Elect => "elect",
        }
    }
}

/// An answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// To `AppendEntries`.
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    /// To `Vote`.
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// To `InstallSnapshot`.
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// Received.
    Done,
    /// Not handled, and why.
    Refused(String),
}

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The peer could not be reached or the connection broke.
    #[error("{addr}: {source}")]
    Io {
        /// The peer.
        addr: SocketAddr,
        /// What failed.
        source: io::Error,
    },
    /// The peer did not answer in time.
    #[error("{addr}: no answer within {timeout:?}")]
    Timeout {
        /// The peer.
        addr: SocketAddr,
        /// The limit.
        timeout: Duration,
    },
    /// A frame was too large or did not decode.
    #[error("{addr}: {detail}")]
    Protocol {
        /// The peer.
        addr: SocketAddr,
        /// What was wrong.
        detail: String,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed or ended.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The frame announced more bytes than allowed.
    #[error("a frame of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Its length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The bytes are not a valid message.
    #[error("undecodable frame: {0}")]
    Decode(postcard::Error),
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(
    stream: &mut BoxStream,
    value: &T,
    max: u32,
) -> io::Result<()> {
    let bytes =
        postcard::to_allocvec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|len| *len <= max)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("frame of {} bytes is over the limit", bytes.len()),
            )
        })?;
    let mut frame = Vec::with_capacity(bytes.len() + 4);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&bytes);
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// Reads one frame of at most `max` bytes.
pub async fn read_frame<T: DeserializeOwned>(
    stream: &mut BoxStream,
    max: u32,
) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut bytes = vec![0u8; len as usize];
    stream.read_exact(&mut bytes).await?;
    decode(&bytes)
}

/// Decodes one frame's bytes (the fuzzers call this directly).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    postcard::from_bytes(bytes).map_err(FrameError::Decode)
}

/// Counters of what the RPC server refused.
#[derive(Debug, Default)]
pub struct RpcStats {
    /// Frames that did not decode or were too large.
    pub bad_frames: AtomicU64,
    /// Connections refused because too many were open.
    pub refused_connections: AtomicU64,
}

/// Answers requests.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request from `peer`.
    fn handle(&self, peer: SocketAddr, request: Request) -> BoxFuture<'_, Response>;
}

/// Limits of the RPC server and client.
#[derive(Debug, Clone, Copy)]
pub struct RpcLimits {
    /// The largest frame.
    pub frame_bytes_max: u32,
    /// How long a call may take; also how long an idle server connection is kept.
    pub timeout: Duration,
    /// The most connections the server holds open.
    pub connections_max: usize,
    /// The most connections the server holds open from one peer address.
    pub connections_per_peer_max: usize,
}

/// Serves cluster RPC on `listener` until the task is dropped.
pub async fn serve(
    listener: Box<dyn Listener>,
    handler: Arc<dyn Handler>,
    limits: RpcLimits,
    stats: Arc<RpcStats>,
) {
    let limiter = ConnectionLimiter::new(limits.connections_max, limits.connections_per_peer_max);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "cluster RPC accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = limiter.admit(peer.ip()) else {
            stats.refused_connections.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let handler = Arc::clone(&handler);
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            serve_connection(stream, peer, handler, limits, stats).await;
            drop(slot);
        });
    }
}

async fn serve_connection(
    mut stream: BoxStream,
    peer: SocketAddr,
    handler: Arc<dyn Handler>,
    limits: RpcLimits,
    stats: Arc<RpcStats>,
) {
    // An idle connection is closed after a while; a client reconnects when it needs to.
    let idle = limits.timeout.saturating_mul(12);
    loop {
        let request: Request =
            match tokio::time::timeout(idle, read_frame(&mut stream, limits.frame_bytes_max)).await
            {
                Err(_) | Ok(Err(FrameError::Io(_))) => return,
                Ok(Err(e)) => {
                    stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, error = %e, "dropped an undecodable cluster RPC frame");
                    return;
                }
                Ok(Ok(request)) => request,
            };
        let response = handler.handle(peer, request).await;
        if write_frame(&mut stream, &response, limits.frame_bytes_max)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Calls peers, reusing a few connections to each.
pub struct RpcClient {
    net: Arc<dyn Net>,
    limits: RpcLimits,
    pools: Mutex<HashMap<SocketAddr, Vec<BoxStream>>>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Idle connections kept per peer.
const POOL_PER_PEER_MAX: usize = 4;

impl RpcClient {
    /// A client over `net`.
    pub fn new(net: Arc<dyn Net>, limits: RpcLimits) -> Self {
        RpcClient {
            net,
            limits,
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `request` to `addr` and waits for the answer, at most `timeout` (or the
    /// default call timeout).
    pub async fn call(
        &self,
        addr: SocketAddr,
        request: &Request,
        timeout: Option<Duration>,
    ) -> Result<Response, RpcError> {
        let timeout = timeout.unwrap_or(self.limits.timeout);
        match tokio::time::timeout(timeout, self.call_inner(addr, request)).await {
            Ok(result) => result,
            Err(_) => Err(RpcError::Timeout { addr, timeout }),
        }
    }

    async fn call_inner(&self, addr: SocketAddr, request: &Request) -> Result<Response, RpcError> {
        let pooled = self
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&addr)
            .and_then(Vec::pop);
        if let Some(stream) = pooled {
            // A pooled connection may have been closed by the peer while idle: on an I/O
            // error, try once more on a fresh one.
            match self.round_trip(addr, stream, request).await {
                Err(RpcError::Io { .. }) => {}
                other => return other,
            }
        }
        let stream = self
            .net
            .connect(addr)
            .await
            .map_err(|source| RpcError::Io { addr, source })?;
        self.round_trip(addr, stream, request).await
    }

    async fn round_trip(
        &self,
        addr: SocketAddr,
        mut stream: BoxStream,
        request: &Request,
    ) -> Result<Response, RpcError> {
        let io = |source| RpcError::Io { addr, source };
        write_frame(&mut stream, request, self.limits.frame_bytes_max)
            .await
            .map_err(io)?;
        let response = match read_frame(&mut stream, self.limits.frame_bytes_max).await {
            Ok(response) => response,
            Err(FrameError::Io(e)) => return Err(io(e)),
            Err(e) => {
                return Err(RpcError::Protocol {
                    addr,
                    detail: e.to_string(),
                });
            }
        };
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = pools.entry(addr).or_default();
        if pool.len() < POOL_PER_PEER_MAX {
            pool.push(stream);
        }
        Ok(response)
    }
}
