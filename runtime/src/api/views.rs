//! The JSON shapes the API answers with.

use chrono::SecondsFormat;
use rota_core::run::{Run, RunState};
use rota_core::schedule::Tz;
use rota_core::time::Timestamp;
use serde::Serialize;

/// An instant as RFC 3339 UTC.
fn rfc3339(t: Timestamp) -> String {
    t.to_string()
}

/// A run as the API shows it.
#[derive(Debug, Serialize)]
pub struct RunView {
    /// Its id.
    pub id: u64,
    /// Its job.
    pub job: String,
    /// declared / running / succeeded / failed / missed / skipped.
    pub state: RunState,
    /// The host it was placed on.
    pub host: Option<u64>,
    /// The fire time it is for.
    pub scheduled_at: String,
    /// When it started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Its exit code.
    pub exit_code: Option<i32>,
    /// Why it failed, was missed or skipped.
    pub reason: Option<String>,
    /// More about the reason.
    pub detail: Option<String>,
    /// Which attempt.
    pub attempt: u32,
    /// schedule / manual / retry.
    pub trigger: &'static str,
    /// When it was declared.
    pub declared_at: String,
    /// For a record of several missed fires: the last of them.
    pub missed_until: Option<String>,
    /// For a missed record: how many fires it stands for.
    pub missed_count: Option<u32>,
    /// While it is still active: why its host has been asked to stop it (`stopped` on
    /// request, `replaced` by a newer run).
    pub stopping: Option<&'static str>,
}

impl From<&Run> for RunView {
    fn from(run: &Run) -> Self {
        RunView {
            id: run.id.0,
            job: run.job.to_string(),
            state: run.state,
            host: run.host.map(|h| h.0),
            scheduled_at: rfc3339(run.scheduled_at),
            started_at: run.started_at.map(rfc3339),
            finished_at: run.finished_at.map(rfc3339),
            exit_code: run.exit_code,
            reason: run.reason.map(|r| r.as_str().to_owned()),
            detail: run.detail.clone(),
            attempt: run.attempt,
            trigger: match run.trigger {
                rota_core::run::Trigger::Schedule => "schedule",
                rota_core::run::Trigger::Manual { .. } => "manual",
                rota_core::run::Trigger::Retry => "retry",
            },
            declared_at: rfc3339(run.declared_at),
            missed_until: run.missed_until.map(rfc3339),
            missed_count: (run.state == RunState::Missed).then_some(run.missed_count),
            stopping: run.stop.filter(|_| run.is_active()).map(|r| r.as_str()),
        }
    }
}

/// One upcoming fire time.
#[derive(Debug, Serialize)]
pub struct NextFire {
    /// In UTC.
    pub utc: String,
    /// In the job's zone, with its offset.
    pub local: String,
}

impl NextFire {
    /// A fire time shown in UTC and in `zone`.
    pub fn new(at: Timestamp, zone: Tz) -> Self {
        NextFire {
            utc: rfc3339(at),
            local: at
                .to_datetime()
                .with_timezone(&zone)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
        }
    }
}

/// This host, as `GET /v1/status` shows it.
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// Its id.
    pub id: u64,
    /// Its API address.
    pub api_addr: String,
    /// Its cluster address.
    pub cluster_addr: String,
    /// leader / follower / worker.
    pub role: rota_core::node::Role,
    /// Whether it is the leader.
    pub is_leader: bool,
    /// Whether it leads and has taken over from the leader before (its first entry of
    /// the term is applied): only then does it accept writes. A leader not yet ready
    /// answers writes `503`.
    pub leader_ready: bool,
    /// The leader's id, if known.
    pub leader_id: Option<u64>,
    /// The leader's API address (`host:port`), if known.
    pub leader_api: Option<String>,
    /// The Raft term.
    pub term: u64,
    /// How many hosts gossip knows (alive or not).
    pub cluster_size: usize,
    /// How many of them vote in Raft.
    pub voters: usize,
    /// The last Raft entry applied here.
    pub applied_index: u64,
    /// How many jobs the state holds.
    pub jobs: usize,
    /// How many runs are active cluster-wide.
    pub active_runs: usize,
    /// Cluster RPC frames refused since start (too large, or undecodable).
    pub rpc_frames_refused: u64,
    /// Cluster RPC connections refused since start (too many open).
    pub rpc_connections_refused: u64,
    /// Gossip datagrams that did not decode, since start.
    pub gossip_datagrams_refused: u64,
}
