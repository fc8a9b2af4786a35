//! Writes the seed corpora, built from real examples:
//! `cargo run -p rota-fuzz --bin seed_corpus` (from the workspace root).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rota_core::command::{Command, Declare};
use rota_core::host::HostId;
use rota_core::node::{Effect, Input, Message, ReportStatus};
use rota_core::run::{RunId, RunSpec, Trigger};
use rota_core::time::Timestamp;
use runtime::io::Disk;
use runtime::rpc::{Request, Response};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("corpus file");
}

fn job_json(name: &str) -> String {
    format!(
        r#"{{"name": "{name}", "schedule": "*/5 * * * *", "executor": {{"process": {{"command": ["sh", "-c", "echo hi"]}}}}}}"#
    )
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let spec = runtime::api::parse_job(job_json("backup").as_bytes()).expect("valid");

    // Cluster frames.
    let dir = root.join("cluster_frame");
    let put = Command::PutJob {
        spec: Box::new(spec.clone()),
        replace: true,
        at: Timestamp::from_secs(1_767_225_600),
    };
    let declare = Command::Declare(Declare {
        job: spec.name.clone(),
        scheduled_at: Timestamp::from_secs(1_767_225_900),
        attempt: 1,
        trigger: Trigger::Schedule,
        host: Some(HostId(2)),
        term: 3,
        at: Timestamp::from_secs(1_767_225_900),
        key: None,
    });
    let run = RunSpec {
        id: RunId(7),
        job: spec.name.clone(),
        scheduled_at: Timestamp::from_secs(1_767_225_900),
        attempt: 1,
        executor: Arc::clone(&spec.executor),
        timeout_ms: Some(60_000),
        concurrency: spec.concurrency,
        start_by: Timestamp::from_secs(1_767_226_200),
    };
    let messages = vec![
        Message::Dispatch {
            term: 3,
            run,
            renews_lease: true,
        },
        Message::Heartbeat {
            term: 3,
            renews_lease: true,
        },
        Message::Report {
            run: RunId(7),
            status: ReportStatus::Started {
                at: Timestamp::from_secs(1_767_225_901),
            },
        },
        Message::Ack {
            term: 3,
            run: RunId(7),
            finished: false,
        },
        Message::Query {
            term: 3,
            runs: vec![RunId(7), RunId(8)],
        },
    ];
    let request = Request::Messages {
        from: HostId(1),
        from_addr: "127.0.0.1:7071".parse().expect("addr"),
        messages,
    };
    write(
        &dir,
        "messages",
        &postcard::to_allocvec(&request).expect("encodes"),
    );
    write(
        &dir,
        "elect",
        &postcard::to_allocvec(&Request::Elect).expect("encodes"),
    );
    write(
        &dir,
        "done",
        &postcard::to_allocvec(&Response::Done).expect("encodes"),
    );
    write(
        &dir,
        "command-put",
        &postcard::to_allocvec(&put).expect("encodes"),
    );
    write(
        &dir,
        "command-batch",
        &postcard::to_allocvec(&Command::Batch(vec![put.clone(), declare.clone()]))
            .expect("encodes"),
    );
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(3, 1), None);
    write(
        &dir,
        "vote",
        &postcard::to_allocvec(&Request::Vote(vote)).expect("encodes"),
    );

    // Gossip: the datagrams two real nodes exchange while one joins the other.
    let dir = root.join("gossip");
    let (mut a, now) = rota_fuzz::victim();
    let (mut b, _) = rota_fuzz::victim();
    let _ = &mut b;
    a.handle(now, Input::Join("10.9.0.2:7071".parse().expect("addr")));
    let mut n = 0;
    let mut framed = Vec::new();
    while let Some(effect) = a.poll_effect() {
        if let Effect::Gossip { bytes, .. } = effect {
            write(&dir, &format!("datagram-{n}"), &bytes);
            if bytes.len() < 256 {
                framed.push(bytes.len() as u8);
                framed.extend_from_slice(&bytes);
            }
            n += 1;
        }
    }
    write(&dir, "framed", &framed);

    // Job specs: the examples, the issue's example, a docker job, a TOML job.
    let dir = root.join("job_spec");
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for example in ["examples/hello.toml", "examples/weekdays.json"] {
        let bytes = std::fs::read(workspace.join(example)).expect("example");
        write(&dir, example.rsplit('/').next().expect("name"), &bytes);
    }
    write(&dir, "issue-example.json", br#"{"name": "nightly-backup", "schedule": "0 30 2 * * *", "timezone": "Europe/Berlin",
 "executor": {"docker": {"image": "backup:1", "command": ["sh", "-c", "run-backup"], "cpus": 0.5, "memory_mb": 256}},
 "concurrency": "forbid", "missed": "latest", "retries": 2, "timeout_s": 3600, "starting_deadline_s": 300,
 "constraints": {"zone": "a"}, "paused": false}"#);
    write(&dir, "minimal.json", job_json("a").as_bytes());

    // Schedules: a zone byte, then an expression.
    let dir = root.join("schedule");
    let expressions = [
        "*/5 * * * *",
        "0 9 * * 1-5",
        "0 0 1,15 * 5",
        "0 30 2 * * *",
        "*/10 * * * * *",
        "0 0 12 * * * 2027",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@every 90s",
        "@every 1h30m",
        "@at 2026-12-24T18:00:00Z",
        "@manually",
        "0 0 30 2 *",
        "30 2 * * *",
        "0 1 * * SUN",
        "5-7 * * * FRI-SUN",
    ];
    for (i, expr) in expressions.iter().enumerate() {
        let mut bytes = vec![i as u8];
        bytes.extend_from_slice(expr.as_bytes());
        write(&dir, &format!("expr-{i:02}"), &bytes);
    }

    // Storage: a real log segment and snapshot, written by the real stores.
    let dir = root.join("storage");
    let disk = sim::io::SimDisk::new();
    let log_dir = PathBuf::from("/raft/log");
    {
        use openraft::storage::RaftLogStorageExt;
        let mut store = runtime::storage::log::LogStore::open(
            Arc::new(disk.clone()),
            log_dir.clone(),
            Default::default(),
        )
        .expect("an empty log opens");
        let entries: Vec<runtime::raft::types::Entry> = [put, declare]
            .into_iter()
            .enumerate()
            .map(|(i, command)| openraft::Entry {
                log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), i as u64 + 1),
                payload: openraft::EntryPayload::Normal(command),
            })
            .collect();
        futures::executor::block_on(store.blocking_append(entries)).expect("appends");
    }
    for path in disk.list(&log_dir).expect("lists") {
        let bytes = disk.read(&path).expect("reads").expect("exists");
        write(
            &dir,
            &format!(
                "log-{}",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
            ),
            &bytes,
        );
    }

    // Structured and HTTP inputs: bytes the targets decode into sequences; a fixed
    // generator, so the corpus is the same each time it is written.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for target in ["core_inputs", "http_router"] {
        let dir = root.join(target);
        for i in 0..16 {
            let bytes: Vec<u8> = (0..512).map(|_| (next() & 0xff) as u8).collect();
            write(&dir, &format!("random-{i:02}"), &bytes);
        }
    }
    let mut requests = BTreeMap::new();
    requests.insert("status", b"\x00GET\x00\x00".to_vec());
    for (name, bytes) in requests {
        write(&root.join("http_router"), name, &bytes);
    }
    eprintln!("wrote the seed corpora under {}", root.display());
}
