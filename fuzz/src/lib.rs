//! Fuzz targets over every byte that crosses a trust boundary into rota: peers' frames
//! and gossip, operators' job specs, schedules and HTTP requests, and its own files.
//!
//! Each target is a plain function from bytes. libFuzzer drives them through the
//! harnesses in `fuzz_targets/` (`cargo fuzz run <target> --features libfuzzer`);
//! `tests/corpus.rs` replays every corpus through them on the stable toolchain, so a
//! crash the fuzzers once found stays fixed. None may panic, hang, or change replicated
//! state from input that is not a committed command.

mod core_inputs;
mod http;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rota_core::command::Command;
use rota_core::host::{HostId, HostIdentity, ResourceSample};
use rota_core::node::{Input, Message, Node, NodeConfig};
use rota_core::schedule::{Schedule, Tz};
use rota_core::state::State;
use rota_core::time::{Mono, Now, Timestamp};
use runtime::io::Disk;
use runtime::rpc::{Request, Response};
use runtime::storage::log::{LogConfig, LogStore};
use runtime::storage::snapshot::SnapshotStore;
use sim::io::SimDisk;

pub use core_inputs::core_inputs;
pub use http::http_router;

/// A fuzz target.
pub type Target = fn(&[u8]);

/// The targets by name, for the corpus replay.
pub const TARGETS: [(&str, Target); 7] = [
    ("cluster_frame", cluster_frame),
    ("gossip", gossip),
    ("job_spec", job_spec),
    ("schedule", schedule),
    ("storage", storage),
    ("core_inputs", core_inputs),
    ("http_router", http_router),
];

/// Cluster RPC: every request and response type, every core message and command,
/// decoded from arbitrary bytes.
pub fn cluster_frame(data: &[u8]) {
    let _ = runtime::rpc::decode::<Request>(data);
    let _ = runtime::rpc::decode::<Response>(data);
    let _ = postcard::from_bytes::<Message>(data);
    if let Ok(command) = postcard::from_bytes::<Command>(data) {
        // Whatever decodes applies without panicking and keeps the state sound.
        let mut state = State::new();
        state.apply(1, &command);
        state
            .check_invariants()
            .expect("a decoded command breaks no invariant");
    }
}

fn addr(host: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 0, host)), 7071)
}

/// A node with a few jobs and runs in its state, as a target's victim.
pub fn victim() -> (Node, Now) {
    let now = Now::new(
        Mono::from_millis(1_000),
        Timestamp::from_secs(1_767_225_600),
    );
    let identity = HostIdentity {
        id: HostId(1),
        cluster_addr: addr(1),
        api_addr: addr(1),
        boot: 1,
    };
    let mut state = State::new();
    let mut index = 0;
    let mut apply = |state: &mut State, command: Command| {
        index += 1;
        state.apply(index, &command);
    };
    apply(
        &mut state,
        Command::LeaderStart {
            term: 1,
            leader: HostId(1),
            nonce: 1,
            at: now.wall,
        },
    );
    for (name, schedule) in [
        ("every-minute", "* * * * *"),
        ("hourly", "@hourly"),
        ("by-hand", "@manually"),
    ] {
        let json = format!(
            r#"{{"name": "{name}", "schedule": "{schedule}", "executor": {{"process": {{"command": ["true"]}}}}}}"#
        );
        let spec = runtime::api::parse_job(json.as_bytes()).expect("a valid job");
        apply(
            &mut state,
            Command::PutJob {
                spec: Box::new(spec),
                replace: false,
                at: now.wall,
            },
        );
    }
    let node = Node::new(NodeConfig::new(identity), 7, now, state);
    (node, now)
}

/// Splits bytes into datagrams: each a one-byte length, then that many bytes.
fn datagrams(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let len = (len as usize).min(rest.len());
        out.push(&rest[..len]);
        data = &rest[len..];
        if out.len() >= 64 {
            break;
        }
    }
    out
}

/// Gossip: datagrams (SWIM and rota's host updates) into a running node. Gossip never
/// changes the replicated state.
pub fn gossip(data: &[u8]) {
    let (mut node, now) = victim();
    node.handle(now, Input::Resources(ResourceSample::default()));
    let before = postcard::to_allocvec(node.state()).expect("a state encodes");
    // Whole input as one datagram, then split into several.
    node.handle(now, Input::Gossip(data.to_vec()));
    for (i, datagram) in datagrams(data).into_iter().enumerate() {
        node.handle(
            now.advanced(Duration::from_millis(i as u64 * 10)),
            Input::Gossip(datagram.to_vec()),
        );
        while node.poll_effect().is_some() {}
    }
    node.handle(now.advanced(Duration::from_secs(5)), Input::Tick);
    while node.poll_effect().is_some() {}
    assert_eq!(
        postcard::to_allocvec(node.state()).expect("a state encodes"),
        before
    );
    node.state()
        .check_invariants()
        .expect("gossip breaks no invariant");
    let _ = node.members();
}

/// Job specs as JSON (the API) and TOML (job files): parsing and validation; whatever
/// is accepted survives a round trip through Raft's encoding.
pub fn job_spec(data: &[u8]) {
    let mut candidates = vec![data.to_vec()];
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(json) = runtime::cli::job_file::parse_toml(text)
    {
        candidates.push(serde_json::to_vec(&json).expect("JSON encodes"));
    }
    for bytes in candidates {
        if let Ok(spec) = runtime::api::parse_job(&bytes) {
            let raft = postcard::to_allocvec(&spec).expect("a spec encodes");
            let back: rota_core::job::JobSpec =
                postcard::from_bytes(&raft).expect("a spec decodes");
            assert_eq!(back, spec);
            let json = serde_json::to_vec(&spec).expect("a spec encodes");
            assert_eq!(runtime::api::parse_job(&json).map_err(|e| e.0), Ok(spec));
        }
    }
}

const ZONES: [Tz; 8] = [
    Tz::UTC,
    Tz::America__New_York,
    Tz::Europe__Berlin,
    Tz::Australia__Sydney,
    Tz::Australia__Lord_Howe,
    Tz::America__Havana,
    Tz::Asia__Kolkata,
    Tz::Pacific__Chatham,
];

/// The longest one `next_after` may take, even for a schedule that never fires.
const NEXT_AFTER_TIME_MAX: Duration = Duration::from_millis(250);

/// Schedules and zones: parsing and `next_after`, which must answer quickly and move
/// forward.
pub fn schedule(data: &[u8]) {
    let Some((&zone, rest)) = data.split_first() else {
        return;
    };
    let zone = ZONES[zone as usize % ZONES.len()];
    let _ = rota_core::schedule::parse_zone(&String::from_utf8_lossy(rest));
    let Ok(schedule) = Schedule::parse(&String::from_utf8_lossy(rest)) else {
        return;
    };
    let mut after = Timestamp::from_secs(1_700_000_000 + i64::from(data.len() as u32) * 7919);
    let anchor = Timestamp::from_secs(1_600_000_000);
    for _ in 0..8 {
        let started = Instant::now();
        let next = schedule.next_after(after, zone, anchor);
        assert!(
            started.elapsed() < NEXT_AFTER_TIME_MAX,
            "next_after of {:?} took {:?}",
            schedule.source(),
            started.elapsed()
        );
        match next {
            Some(next) => {
                assert!(
                    next > after,
                    "{:?}: {next} is not after {after}",
                    schedule.source()
                );
                after = next;
            }
            None => break,
        }
    }
}

/// The Raft log and snapshots recovered from arbitrary file contents: they recover or
/// refuse with an error, never panic or read out of bounds.
pub fn storage(data: &[u8]) {
    let disk = SimDisk::new();
    let log_dir = PathBuf::from("/raft/log");
    // The bytes as one segment; and, split at a point the input chooses, as a second
    // segment and the vote file.
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let (first, second) = data.split_at(split);
    let _ = disk.write_atomic(&log_dir.join("log-00000000000000000001.seg"), data);
    let store = LogStore::open(
        Arc::new(disk.clone()),
        log_dir.clone(),
        LogConfig::default(),
    );
    if let Ok(mut store) = store {
        use openraft::RaftLogReader;
        use openraft::storage::RaftLogStorage;
        let _ = futures::executor::block_on(store.get_log_state());
        let _ = futures::executor::block_on(store.try_get_log_entries(0..u64::MAX));
        let _ = futures::executor::block_on(store.read_vote());
    }
    let disk = SimDisk::new();
    let _ = disk.write_atomic(&log_dir.join("log-00000000000000000001.seg"), first);
    let _ = disk.write_atomic(&log_dir.join("log-00000000000000000002.seg"), second);
    let _ = disk.write_atomic(&log_dir.join("vote"), second);
    let _ = disk.write_atomic(&log_dir.join("purged"), first);
    let _ = LogStore::open(Arc::new(disk.clone()), log_dir, LogConfig::default());

    let snap_dir = PathBuf::from("/raft/snapshots");
    let _ = disk.write_atomic(&snap_dir.join("snapshot-1-5.bin"), data);
    let snapshots = SnapshotStore::new(Arc::new(disk), snap_dir);
    if let Ok(Some((_, bytes))) = snapshots.load_latest() {
        // A snapshot that passes its checksum may still hold anything: decoding it must
        // not panic either.
        let _ = postcard::from_bytes::<State>(&bytes).map(|s| s.check_invariants());
    }
}
