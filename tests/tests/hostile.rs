//! Hostile input beyond fuzzing: limits that hold, slow and greedy clients that cannot
//! starve the others, and a deposed leader's messages that change nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rota_core::host::HostId;
use rota_core::job::JobName;
use rota_core::node::Message;
use rota_core::run::{RunId, RunSpec};
use rota_core::time::Timestamp;
use rota_tests::{Agent, AgentOptions, process_job, wait_until};
use runtime::rpc::{Request, Response};

fn lone_agent(root: &std::path::Path, toml: &str) -> Agent {
    let agent = Agent::start(
        root,
        &[],
        &AgentOptions {
            config_toml: toml.to_owned(),
            ..AgentOptions::default()
        },
    );
    wait_until(Duration::from_secs(30), "the agent to lead", || {
        agent
            .status()
            .filter(|s| s["leader_ready"] == true)
            .map(|_| ())
    });
    agent
}

fn status_ok_within(agent: &Agent, limit: Duration) {
    let started = Instant::now();
    let answer = agent
        .api()
        .request("GET", "/v1/status", None)
        .expect("the API answers");
    assert_eq!(answer.status, 200);
    assert!(
        started.elapsed() < limit,
        "status took {:?}",
        started.elapsed()
    );
}

#[test]
fn limits_hold_and_name_themselves() {
    let root = tempfile::tempdir().unwrap();
    let toml = "jobs_max = 3\n[job_limits]\ncommand_bytes_max = 100\nenv_vars_max = 2\n[limits]\napi_body_bytes_max = 4096\n";
    let agent = lone_agent(root.path(), toml);
    let api = agent.api();
    for i in 0..3 {
        let job = process_job(&format!("j{i}"), "@hourly", "true", "");
        assert_eq!(
            api.follow("POST", "/v1/jobs", Some(&job)).unwrap().status,
            201
        );
    }
    let fourth = api
        .follow(
            "POST",
            "/v1/jobs",
            Some(&process_job("j3", "@hourly", "true", "")),
        )
        .unwrap();
    assert_eq!(fourth.status, 409, "{}", fourth.text);
    assert!(fourth.text.contains("maximum of 3 jobs"), "{}", fourth.text);

    let long = process_job("big", "@hourly", &"x".repeat(200), "");
    let answer = api.follow("PUT", "/v1/jobs/big", Some(&long)).unwrap();
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body["field"], "executor.process.command",
        "{}",
        answer.text
    );

    let env = r#"{"name": "e", "schedule": "@hourly", "executor": {"process": {"command": ["true"], "env": {"A": "1", "B": "2", "C": "3"}}}}"#;
    let answer = api.follow("PUT", "/v1/jobs/e", Some(env)).unwrap();
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body["field"], "executor.process.env",
        "{}",
        answer.text
    );

    let body = format!(r#"{{"name": "b", "pad": "{}"}}"#, "x".repeat(5000));
    assert_eq!(
        api.follow("POST", "/v1/jobs", Some(&body)).unwrap().status,
        413
    );

    // A request head over the limit is refused; the host goes on serving.
    let mut stream = TcpStream::connect(agent.api_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let head = format!(
        "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "y".repeat(100 * 1024)
    );
    let _ = stream.write_all(head.as_bytes());
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "an oversized head was served: {reply}"
    );
    status_ok_within(&agent, Duration::from_secs(2));
    let jobs = api.get("/v1/jobs");
    assert_eq!(
        jobs.body.as_array().unwrap().len(),
        3,
        "refused writes changed nothing"
    );
}

#[test]
fn a_slow_loris_and_a_connection_hog_do_not_starve_other_clients() {
    let root = tempfile::tempdir().unwrap();
    let toml = "[limits]\napi_header_timeout_ms = 2000\napi_connections_per_client_max = 32\n";
    let agent = lone_agent(root.path(), toml);
    let api: SocketAddr = agent.api_addr;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The hog: 200 idle connections from one address.
        let mut hog = Vec::new();
        for _ in 0..200 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.77:0".parse().unwrap()).unwrap();
            if let Ok(stream) = socket.connect(api).await {
                hog.push(stream);
            }
        }
        // The slow loris: a request head a byte at a time, from another address.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.78:0".parse().unwrap()).unwrap();
        let mut loris = socket.connect(api).await.unwrap();
        let slow = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let started = Instant::now();
            for byte in b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: "
                .iter()
                .cycle()
            {
                if loris.write_all(&[*byte]).await.is_err()
                    || started.elapsed() > Duration::from_secs(20)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let mut rest = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(2), loris.read_to_end(&mut rest)).await;
            started.elapsed()
        });
        // Meanwhile everyone else is served promptly.
        for _ in 0..5 {
            let started = Instant::now();
            let answer = tokio::task::spawn_blocking(move || {
                rota_tests::Api::new(api).request("GET", "/v1/status", None)
            })
            .await
            .unwrap()
            .expect("served");
            assert_eq!(answer.status, 200);
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "status took {:?}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // The slow client was cut off by the header timeout, well before it finished.
        let lasted = slow.await.unwrap();
        assert!(
            lasted < Duration::from_secs(10),
            "the slow loris lasted {lasted:?}"
        );
        // Of the hog's connections, at most its share were kept open.
        let mut open = 0;
        for stream in &hog {
            let mut buf = [0u8; 1];
            match stream.try_read(&mut buf) {
                Ok(0) => {}
                _ => open += 1,
            }
        }
        assert!(open <= 32, "{open} of the hog's connections stayed open");
    });
}

fn rpc(addr: SocketAddr, request: &Request) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let bytes = postcard::to_allocvec(request).unwrap();
    stream
        .write_all(&(bytes.len() as u32).to_le_bytes())
        .unwrap();
    stream.write_all(&bytes).unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; u32::from_le_bytes(len) as usize];
    stream.read_exact(&mut reply).unwrap();
    runtime::rpc::decode(&reply).unwrap()
}

#[test]
fn a_deposed_leaders_messages_and_oversized_frames_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let agent = lone_agent(root.path(), "");
    let job = process_job("target", "@manually", "touch started", "");
    assert_eq!(
        agent
            .api()
            .follow("POST", "/v1/jobs", Some(&job))
            .unwrap()
            .status,
        201
    );
    let before = agent.status().unwrap();
    assert!(before["term"].as_u64().unwrap() >= 1);

    // A dispatch from "the leader of term 0": the host knows term 1 or later.
    let spec: serde_json::Value = agent.api().get("/v1/jobs/target").body;
    let spec = runtime::api::parse_job(spec.to_string().as_bytes()).unwrap();
    let run = RunSpec {
        id: RunId(4242),
        job: JobName::new("target").unwrap(),
        scheduled_at: Timestamp::from_secs(1_767_225_600),
        attempt: 1,
        executor: spec.executor,
        timeout_ms: None,
        concurrency: spec.concurrency,
        start_by: Timestamp::MAX,
    };
    let request = Request::Messages {
        from: HostId(99),
        from_addr: "127.0.0.99:7071".parse().unwrap(),
        messages: vec![
            Message::Dispatch {
                term: 0,
                run,
                renews_lease: true,
            },
            Message::Heartbeat {
                term: 0,
                renews_lease: true,
            },
        ],
    };
    assert!(matches!(rpc(agent.cluster_addr, &request), Response::Done));
    wait_until(Duration::from_secs(10), "the refusal to be logged", || {
        std::fs::read_to_string(agent.log_path())
            .ok()
            .filter(|log| log.contains("refused a message from a deposed leader"))
    });
    assert!(
        !agent.data_dir.join("runs").join("4242").exists(),
        "the stale dispatch started a run"
    );
    let after = agent.status().unwrap();
    assert_eq!(
        after["applied_index"], before["applied_index"],
        "the state changed"
    );
    assert_eq!(after["leader_id"], before["leader_id"]);

    // A frame claiming to be far over the limit is refused and counted; so is garbage.
    let mut stream = TcpStream::connect(agent.cluster_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(&(u32::MAX).to_le_bytes()).unwrap();
    let mut buf = [0u8; 1];
    assert!(
        matches!(stream.read(&mut buf), Ok(0) | Err(_)),
        "the connection is closed"
    );
    let mut stream = TcpStream::connect(agent.cluster_addr).unwrap();
    stream.write_all(&8u32.to_le_bytes()).unwrap();
    stream.write_all(&[0xff; 8]).unwrap();
    let refused = wait_until(Duration::from_secs(5), "the frames to be counted", || {
        let n = agent.status()?["rpc_frames_refused"].as_u64()?;
        (n >= 2).then_some(n)
    });
    assert!(refused >= 2);
    status_ok_within(&agent, Duration::from_secs(2));
}
