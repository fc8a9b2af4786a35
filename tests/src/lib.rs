//! A harness for end-to-end tests of real `rota` processes on loopback addresses.
//!
//! Each agent gets its own address in 127.0.0.0/8 (unique across the tests of one run),
//! its own data directory, and its log in that directory. Agents are killed when
//! dropped, so a failing test leaves no process behind; a failing test also prints the
//! tail of every agent's log.

use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Loopback addresses handed out so far (127.0.x.y), so that tests running at the same
/// time never share a port.
static NEXT_ADDR: AtomicU32 = AtomicU32::new(0);

fn fresh_ip() -> Ipv4Addr {
    // Start away from 127.0.0.1, which a developer's own `rota dev` may be using, and
    // spread by process id so that two test binaries running at once do not collide.
    let base = (std::process::id() % 200) * 256 + 2;
    let n = base + NEXT_ADDR.fetch_add(1, Ordering::Relaxed);
    Ipv4Addr::new(
        127,
        1 + (n / 65_536 % 250) as u8,
        (n / 256 % 256) as u8,
        (n % 254 + 1) as u8,
    )
}

/// The `rota` binary (with `rota-supervisor` beside it), built if it is not there yet.
pub fn rota_binary() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.as_ref() {
        return path.clone();
    }
    // Test executables live in target/<profile>/deps; the binary in target/<profile>.
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf();
    let binary = profile_dir.join("rota");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "runtime", "--bin", "rota"])
        .args(["--bin", "rota-supervisor"])
        .args(if profile_dir.ends_with("release") {
            &["--release"][..]
        } else {
            &[][..]
        })
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the rota binary failed");
    assert!(
        binary.exists(),
        "{} missing after the build",
        binary.display()
    );
    *built = Some(binary.clone());
    binary
}

/// Asks `f` every 50 ms until it answers something, for at most `timeout`.
fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `f` answers something, at most `timeout`; panics naming `what` if not.
pub fn wait_until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll(timeout, f).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Watches `f` for all of `window`, panicking naming `what` if it ever answers
/// something: for what must not happen.
pub fn never_within<T: std::fmt::Debug>(
    window: Duration,
    what: &str,
    f: impl FnMut() -> Option<T>,
) {
    if let Some(value) = poll(window, f) {
        panic!("{what} within {window:?}: {value:?}");
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The `Location` header, if any.
    pub location: Option<String>,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The body, as JSON when it is JSON (else a JSON string).
    pub body: Value,
    /// The body as text.
    pub text: String,
}

/// A small HTTP client for one agent's API. It does not follow redirects by itself.
#[derive(Clone)]
pub struct Api {
    /// `http://host:port`.
    pub base: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish()
    }
}

impl Api {
    /// A client for the API at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Api {
            base: format!("http://{addr}"),
            agent,
        }
    }

    /// Sends one request to a path or a full URL.
    pub fn request(
        &self,
        method: &str,
        path_or_url: &str,
        body: Option<&str>,
    ) -> Result<Answer, String> {
        self.request_with_headers(method, path_or_url, body, &[])
    }

    /// Sends one request to a path or a full URL, with `headers`.
    pub fn request_with_headers(
        &self,
        method: &str,
        path_or_url: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let result = match body {
            Some(body) => self.agent.run(
                request
                    .header("content-type", "application/json")
                    .body(body.to_owned())
                    .map_err(|e| e.to_string())?,
            ),
            None => self.agent.run(request.body(()).map_err(|e| e.to_string())?),
        };
        let mut response = result.map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header("location");
        let retry_after = header("retry-after");
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        Ok(Answer {
            status,
            location,
            retry_after,
            body,
            text,
        })
    }

    /// Sends a request and follows redirects (at most 5), as the CLI does.
    pub fn follow(&self, method: &str, path: &str, body: Option<&str>) -> Result<Answer, String> {
        self.follow_with_headers(method, path, body, &[])
    }

    /// As [`Api::follow`], with `headers` on every request.
    pub fn follow_with_headers(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let mut answer = self.request_with_headers(method, path, body, headers)?;
        for _ in 0..5 {
            match (answer.status, &answer.location) {
                (301 | 302 | 307 | 308, Some(location)) => {
                    let location = location.clone();
                    answer = self.request_with_headers(method, &location, body, headers)?;
                }
                _ => break,
            }
        }
        Ok(answer)
    }

    /// GET, following redirects; panics on a transport error.
    pub fn get(&self, path: &str) -> Answer {
        self.follow("GET", path, None)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// How to start one agent.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Extra TOML for its configuration file.
    pub config_toml: String,
    /// Tags (`name=value`).
    pub tags: Vec<String>,
    /// How many voters the cluster has.
    pub voters: u32,
}

/// One `rota agent` process.
#[derive(Debug)]
pub struct Agent {
    /// Where its API listens.
    pub api_addr: SocketAddr,
    /// Where its cluster RPC and gossip listen.
    pub cluster_addr: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Agent {
    /// Starts an agent in a fresh data directory under `root`: bootstrapping a cluster
    /// when `join` is empty, joining through `join` otherwise.
    pub fn start(root: &Path, join: &[SocketAddr], options: &AgentOptions) -> Agent {
        let ip = fresh_ip();
        let api_addr = SocketAddr::from((ip, 7070));
        let cluster_addr = SocketAddr::from((ip, 7071));
        let data_dir = root.join(ip.to_string());
        fs::create_dir_all(&data_dir).expect("data dir");
        let config = data_dir.join("rota.toml");
        // Advertised resources are fixed so that placement does not depend on how busy
        // the machine running the tests is (tests that exercise placement set their own).
        let resources = if options.config_toml.contains("[resources]") {
            ""
        } else {
            "[resources]\ncpu_total_milli = 4000\ncpu_free_milli = 3000\nmemory_total_mb = 8192\nmemory_free_mb = 6000\ndisk_total_mb = 100000\ndisk_free_mb = 80000\n"
        };
        let toml = format!(
            "resources_interval_ms = 500\n{}\n{resources}",
            options.config_toml
        );
        fs::write(&config, toml).expect("config file");
        let mut args = vec![
            "agent".to_owned(),
            "--config".into(),
            config.display().to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--api-addr".into(),
            api_addr.to_string(),
            "--cluster-addr".into(),
            cluster_addr.to_string(),
            "--voters".into(),
            options.voters.max(1).to_string(),
        ];
        if join.is_empty() {
            args.push("--bootstrap".into());
        }
        for addr in join {
            args.push("--join".into());
            args.push(addr.to_string());
        }
        for tag in &options.tags {
            args.push("--tag".into());
            args.push(tag.clone());
        }
        let mut agent = Agent {
            api_addr,
            cluster_addr,
            data_dir,
            args,
            child: None,
        };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("agent log");
        let child = Command::new(rota_binary())
            .args(&self.args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("starting rota agent");
        self.child = Some(child);
    }

    /// The agent's log file.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("agent.log")
    }

    /// Its API client.
    pub fn api(&self) -> Api {
        Api::new(self.api_addr)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the process, in KiB (from /proc).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `kill -9` of the host's supervisors, which outlive the daemon, and of the
    /// commands they run (each in a process group of its own): what a host lost for good
    /// loses.
    pub fn kill_supervisors(&self) {
        let runs_dir = self.data_dir.join("runs");
        let pids = |args: &[&str]| -> Vec<String> {
            Command::new("pgrep")
                .args(args)
                .output()
                .map(|out| {
                    String::from_utf8_lossy(&out.stdout)
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        // The supervisor's command line ends with the runs directory.
        let pattern = format!("{}$", runs_dir.display());
        for supervisor in pids(&["-f", &pattern]) {
            for command in pids(&["-P", &supervisor]) {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{command}")])
                    .status();
            }
            let _ = Command::new("kill").args(["-KILL", &supervisor]).status();
        }
    }

    /// SIGTERM, then waits for the process to end (SIGKILL after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again on the same data directory and addresses (it rejoins
    /// with its data; `--bootstrap` is ignored once the cluster exists).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs the agent's command line once more in the foreground and answers its exit
    /// status and output (for start-up failures).
    pub fn run_foreground(&self, timeout: Duration) -> (Option<i32>, String) {
        let mut child = Command::new(rota_binary())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting rota agent");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut output = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut output);
        }
        (status.and_then(|s| s.code()), output)
    }

    /// `GET /v1/status` of this agent (no redirect), if it answers.
    pub fn status(&self) -> Option<Value> {
        let answer = self.api().request("GET", "/v1/status", None).ok()?;
        (answer.status == 200).then_some(answer.body)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        self.kill_supervisors();
        if std::thread::panicking() {
            let log = fs::read_to_string(self.log_path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "----- last lines of the log of agent {} -----",
                self.api_addr
            );
            for line in tail.iter().rev() {
                let _ = writeln!(err, "{line}");
            }
        }
    }
}

/// Test timings: short leases and detection so that failure tests take seconds.
pub const FAST_TIMING: &str = "[timing]\nlease_ms = 3000\nlease_margin_ms = 1500\nunreachable_after_ms = 2000\nheartbeat_interval_ms = 500\n[limits]\nrpc_timeout_ms = 1000\nmessage_ttl_ms = 500\n";

/// Several agents forming one cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The agents, the first of which bootstrapped the cluster.
    pub agents: Vec<Agent>,
    /// Where their data directories are (removed when dropped).
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` agents, all voters, and waits until they form one cluster with a
    /// leader that has taken over (and so accepts writes).
    pub fn start(n: usize, options: &AgentOptions) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = AgentOptions {
            voters: if options.voters == 0 {
                n as u32
            } else {
                options.voters
            },
            ..options.clone()
        };
        let first = Agent::start(dir.path(), &[], &options);
        let seed = first.cluster_addr;
        let mut agents = vec![first];
        for _ in 1..n {
            agents.push(Agent::start(dir.path(), &[seed], &options));
        }
        let cluster = Cluster { agents, dir };
        let voters = options.voters.min(n as u32) as u64;
        wait_until(Duration::from_secs(60), "the cluster to form", || {
            let statuses: Vec<Value> = cluster.agents.iter().filter_map(Agent::status).collect();
            let formed = statuses.len() == n
                && statuses
                    .iter()
                    .all(|s| s["leader_id"].is_u64() && s["voters"].as_u64() == Some(voters))
                && statuses.iter().any(|s| s["leader_ready"] == true);
            formed.then_some(())
        });
        cluster
    }

    /// The index of the current leader, waiting for one that has taken over.
    pub fn leader(&self) -> usize {
        wait_until(Duration::from_secs(30), "a leader", || {
            self.agents
                .iter()
                .position(|a| a.status().is_some_and(|s| s["leader_ready"] == true))
        })
    }

    /// An API client for agent `i`.
    pub fn api(&self, i: usize) -> Api {
        self.agents[i].api()
    }
}

/// A process job's JSON, running `script` with `sh -c`.
pub fn process_job(name: &str, schedule: &str, script: &str, extra: &str) -> String {
    process_job_argv(name, schedule, &["sh", "-c", script], extra)
}

/// A process job's JSON, running `command` (program and arguments) as it is.
pub fn process_job_argv(name: &str, schedule: &str, command: &[&str], extra: &str) -> String {
    let command = serde_json::to_string(command).expect("json");
    format!(
        r#"{{"name": "{name}", "schedule": "{schedule}", "executor": {{"process": {{"command": {command}}}}}{extra}}}"#
    )
}

/// The image the docker tests and benchmarks run: nothing but Debian's static busybox
/// (`FROM scratch`), built from local files by [`docker_test_image`], since no registry
/// can be assumed.
pub const DOCKER_TEST_IMAGE: &str = "rota-test-busybox:1";

/// Whether a Docker engine answers the `docker` command line. Where none does, the
/// docker tests say so loudly and pass, unless `ROTA_REQUIRE_DOCKER=1`, under which a
/// missing engine fails them (`test` names the test, for the message).
pub fn docker_or_skip(test: &str) -> bool {
    static ANSWER: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    let answer = ANSWER.get_or_init(|| {
        match Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
            }
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(e) => Err(format!("cannot run the `docker` command: {e}")),
        }
    });
    match answer {
        Ok(_) => true,
        Err(why) => {
            let required = std::env::var("ROTA_REQUIRE_DOCKER").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{test}: ROTA_REQUIRE_DOCKER=1 but no Docker engine answers: {why}"
            );
            // Past the test harness's capture of `eprintln!`, so that it shows.
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED: no Docker engine ({test}): {why}"
            );
            false
        }
    }
}

/// Runs `docker <args>`; its standard output, trimmed, or its standard error as the
/// error.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `docker {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "`docker {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The containers (ids, running or not) whose labels match `filter` (`key=value`).
pub fn docker_containers(filter: &str) -> Vec<String> {
    docker(&["ps", "-aq", "--filter", &format!("label={filter}")])
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Removes, when dropped, every container of the rota cluster it names (a test's own
/// cluster name), so that a test leaves none behind, passing or failing.
#[derive(Debug)]
pub struct DockerCleanup(pub String);

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let ids = docker_containers(&format!("rota.cluster={}", self.0));
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            if let Err(e) = docker(&args) {
                eprintln!("cannot remove the test's containers: {e}");
            }
        }
    }
}

/// A cluster name no other test (of this run or a concurrent one) uses, so that
/// container names and labels never collide on the shared engine.
pub fn unique_cluster_name(test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let test: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(20)
        .collect();
    format!("t-{test}-{}-{n}-{:x}", std::process::id(), nanos % 0x10000)
}

/// Builds [`DOCKER_TEST_IMAGE`] once per test run, if the engine does not have it:
/// Debian's `busybox-static` (installed with apt-get if missing) in an image of its
/// own. Panics, saying why, if that is not possible.
pub fn docker_test_image() -> &'static str {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        if docker(&["image", "inspect", DOCKER_TEST_IMAGE]).is_ok() {
            return Ok(());
        }
        let busybox = static_busybox()?;
        let context = tempfile::tempdir().map_err(|e| format!("a build directory: {e}"))?;
        fs::copy(&busybox, context.path().join("busybox"))
            .map_err(|e| format!("copying {}: {e}", busybox.display()))?;
        fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nENV PATH=/bin\n",
        )
        .map_err(|e| format!("writing the Dockerfile: {e}"))?;
        let context_arg = context.path().display().to_string();
        docker(&["build", "--quiet", "-t", DOCKER_TEST_IMAGE, &context_arg])?;
        Ok(())
    });
    if let Err(why) = built {
        panic!("cannot build the docker test image {DOCKER_TEST_IMAGE}: {why}");
    }
    DOCKER_TEST_IMAGE
}

/// Debian's statically linked busybox, installing `busybox-static` if it is missing.
fn static_busybox() -> Result<PathBuf, String> {
    let path = PathBuf::from("/bin/busybox");
    let installed = || {
        Command::new("dpkg-query")
            .args(["-W", "-f", "${Status}", "busybox-static"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
    };
    if installed() && path.exists() {
        return Ok(path);
    }
    let apt = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`apt-get {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    if let Err(first) = apt(&["install", "-y", "busybox-static"]) {
        // The package lists may be missing or stale.
        apt(&["update"]).map_err(|e| format!("{first}; then {e}"))?;
        apt(&["install", "-y", "busybox-static"])
            .map_err(|e| format!("installing busybox-static (needs root and apt): {e}"))?;
    }
    if !installed() || !path.exists() {
        return Err("busybox-static is installed, yet /bin/busybox is missing".into());
    }
    Ok(path)
}

/// A docker job's JSON: `script` run by the image's `sh -c`.
pub fn docker_job(
    name: &str,
    image: &str,
    script: &str,
    docker_extra: &str,
    extra: &str,
) -> String {
    let command = serde_json::to_string(&["sh", "-c", script]).expect("json");
    format!(
        r#"{{"name": "{name}", "schedule": "@manually", "executor": {{"docker": {{"image": "{image}", "command": {command}{docker_extra}}}}}{extra}}}"#
    )
}
