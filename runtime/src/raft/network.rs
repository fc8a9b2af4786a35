//! Raft's RPCs carried over cluster RPC.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::types::{Peer, TypeConfig};
use crate::rpc::{Request, Response, RpcClient, RpcError};

/// Makes a connection to each Raft peer.
#[derive(Debug, Clone)]
pub struct Network {
    client: Arc<RpcClient>,
}

impl Network {
    /// Raft's network over `client`.
    pub fn new(client: Arc<RpcClient>) -> Self {
        Network { client }
    }
}

/// The connection to one peer.
#[derive(Debug)]
pub struct PeerClient {
    client: Arc<RpcClient>,
    target: u64,
    addr: Option<SocketAddr>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &Peer) -> PeerClient {
        PeerClient {
            client: Arc::clone(&self.client),
            target,
            addr: node.cluster_addr.parse().ok(),
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<u64, Peer, E>>;

impl PeerClient {
    async fn call<E: std::error::Error>(
        &self,
        request: Request,
        option: &RPCOption,
    ) -> RpcResult<Response, E> {
        let Some(addr) = self.addr else {
            let e = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the peer's cluster address is not an address",
            );
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        match self
            .client
            .call(addr, &request, Some(option.hard_ttl()))
            .await
        {
            Ok(response) => Ok(response),
            // Only a peer that cannot be reached at all is `Unreachable`: openraft then
            // stops replicating to it for a backoff. A slow answer is a plain network
            // error, retried on the next heartbeat; backing off after one would starve a
            // busy but healthy follower of heartbeats and make it call an election.
            Err(e @ RpcError::Io { .. }) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e @ (RpcError::Timeout { .. } | RpcError::Protocol { .. })) => {
                Err(RPCError::Network(NetworkError::new(&e)))
            }
        }
    }

    fn unexpected<E: std::error::Error>(&self, response: &Response) -> RPCError<u64, Peer, E> {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "peer {} answered with the wrong kind of response: {response:?}",
                self.target
            ),
        );
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    /// After a peer was unreachable: try again soon, then less and less often, at most
    /// every half second (openraft's constant default), so that a peer whose connection
    /// broke once is not cut off from heartbeats for longer than an election timeout.
    fn backoff(&self) -> Backoff {
        Backoff::new(
            [50, 100, 200, 400]
                .into_iter()
                .chain(std::iter::repeat(500))
                .map(Duration::from_millis),
        )
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, RaftError<u64>> {
        match self.call(Request::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(Ok(r)) => Ok(r),
            Response::AppendEntries(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
        match self.call(Request::InstallSnapshot(rpc), &option).await? {
            Response::InstallSnapshot(Ok(r)) => Ok(r),
            Response::InstallSnapshot(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, RaftError<u64>> {
        match self.call(Request::Vote(rpc), &option).await? {
            Response::Vote(Ok(r)) => Ok(r),
            Response::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(self.unexpected(&other)),
        }
    }
}
