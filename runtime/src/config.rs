//! The daemon's configuration: defaults, then a TOML file (`--config`), then `ROTA_*`
//! environment variables, then flags; every value checked at start-up with an error
//! that names it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use rota_core::job::{JobLimits, check_tag};
use rota_core::node::Timing;
use serde::Deserialize;

/// A configuration value that is wrong: which one, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("config `{field}`: {message}")]
pub struct ConfigError {
    /// The value's name as written in the TOML file (`raft.heartbeat_interval_ms`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Raft's timings and log bounds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// How often the leader sends heartbeats.
    pub heartbeat_interval_ms: u64,
    /// The shortest election timeout.
    pub election_timeout_min_ms: u64,
    /// The longest election timeout.
    pub election_timeout_max_ms: u64,
    /// A snapshot is taken after this many entries; the log before it is then purged,
    /// so disk use stays bounded however long the cluster runs.
    pub snapshot_every_entries: u64,
    /// Entries kept after a snapshot, for followers that lag a little.
    pub entries_kept_after_snapshot: u64,
    /// The largest log segment file.
    pub segment_bytes_max: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_every_entries: 20_000,
            entries_kept_after_snapshot: 2_000,
            segment_bytes_max: 64 * 1024 * 1024,
        }
    }
}

/// Bounds on what crosses the daemon's boundaries.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// The largest cluster RPC frame.
    pub rpc_frame_bytes_max: u32,
    /// How long a cluster RPC may take.
    pub rpc_timeout_ms: u64,
    /// How long a message to a peer may wait to be sent before it is dropped.
    pub message_ttl_ms: u64,
    /// The most cluster RPC connections open at once, from all peers.
    pub rpc_connections_max: usize,
    /// The most cluster RPC connections open at once from one peer address.
    pub rpc_connections_per_peer_max: usize,
    /// The most API connections open at once.
    pub api_connections_max: usize,
    /// The most API connections open at once from one client address.
    pub api_connections_per_client_max: usize,
    /// How long a client may take to send a request's headers.
    pub api_header_timeout_ms: u64,
    /// The largest request head (request line and headers).
    pub api_header_bytes_max: usize,
    /// The largest HTTP request body.
    pub api_body_bytes_max: usize,
    /// The most HTTP requests handled at once.
    pub api_requests_concurrent_max: usize,
    /// The most output kept per run.
    pub output_bytes_max: u64,
    /// Run directories kept on this host.
    pub runs_kept_on_host_max: usize,
    /// The grace period between asking a run to stop and killing it.
    pub stop_grace_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            rpc_frame_bytes_max: 64 * 1024 * 1024,
            rpc_timeout_ms: 5_000,
            message_ttl_ms: 2_000,
            rpc_connections_max: 512,
            rpc_connections_per_peer_max: 64,
            api_connections_max: 1024,
            api_connections_per_client_max: 128,
            api_header_timeout_ms: 10_000,
            api_header_bytes_max: 64 * 1024,
            api_body_bytes_max: 1024 * 1024,
            api_requests_concurrent_max: 256,
            output_bytes_max: 1024 * 1024,
            runs_kept_on_host_max: 1000,
            stop_grace_ms: 10_000,
        }
    }
}

/// How this host reaches its Docker engine, and what it keeps of finished containers.
/// The stop grace period of a container is `limits.stop_grace_ms`, as for a process.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// The engine's Unix socket. Without an engine answering there, the host runs
    /// process jobs only, and says so to the cluster.
    pub socket: PathBuf,
    /// Finished containers kept for debugging (the newest); the others are removed once
    /// their end and output are recorded.
    pub containers_kept_max: usize,
    /// How long one call to the engine may take (a stop takes the grace period more).
    pub request_timeout_ms: u64,
    /// How long an image pull may take in all (each of its progress messages must come
    /// within `request_timeout_ms`).
    pub pull_timeout_ms: u64,
    /// How often the host looks at its engine again: an engine that did not answer at
    /// start-up is taken into use once it does, and one that stops answering is given
    /// up until it answers again. The cluster learns either by gossip.
    pub probe_interval_ms: u64,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            socket: PathBuf::from("/var/run/docker.sock"),
            containers_kept_max: 0,
            request_timeout_ms: 30_000,
            pull_timeout_ms: 600_000,
            probe_interval_ms: 30_000,
        }
    }
}

/// Resource figures this host advertises instead of what it measures, each on its own:
/// for hosts whose measurements mislead (a shared machine whose other tenants should
/// not count) and for tests that must not depend on the load of the machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourcesOverride {
    /// CPU capacity, in thousandths of a core.
    pub cpu_total_milli: Option<u32>,
    /// CPU free, in thousandths of a core.
    pub cpu_free_milli: Option<u32>,
    /// Memory capacity, in MiB.
    pub memory_total_mb: Option<u64>,
    /// Memory free, in MiB.
    pub memory_free_mb: Option<u64>,
    /// Disk capacity, in MiB.
    pub disk_total_mb: Option<u64>,
    /// Disk free, in MiB.
    pub disk_free_mb: Option<u64>,
}

impl ResourcesOverride {
    /// A measured sample with the overridden figures replaced (free capped at total).
    pub fn apply(&self, mut s: rota_core::host::ResourceSample) -> rota_core::host::ResourceSample {
        s.cpu_total_milli = self.cpu_total_milli.unwrap_or(s.cpu_total_milli);
        s.cpu_free_milli = self
            .cpu_free_milli
            .unwrap_or(s.cpu_free_milli)
            .min(s.cpu_total_milli);
        s.memory_total_mb = self.memory_total_mb.unwrap_or(s.memory_total_mb);
        s.memory_free_mb = self
            .memory_free_mb
            .unwrap_or(s.memory_free_mb)
            .min(s.memory_total_mb);
        s.disk_total_mb = self.disk_total_mb.unwrap_or(s.disk_total_mb);
        s.disk_free_mb = self
            .disk_free_mb
            .unwrap_or(s.disk_free_mb)
            .min(s.disk_total_mb);
        s
    }
}

/// The TOML file's shape: every field optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Config::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Config::api_addr`].
    pub api_addr: Option<SocketAddr>,
    /// See [`Config::cluster_addr`].
    pub cluster_addr: Option<SocketAddr>,
    /// See [`Config::advertise_addr`].
    pub advertise_addr: Option<SocketAddr>,
    /// See [`Config::advertise_api_addr`].
    pub advertise_api_addr: Option<SocketAddr>,
    /// See [`Config::join`].
    #[serde(default)]
    pub join: Vec<String>,
    /// See [`Config::bootstrap`].
    pub bootstrap: Option<bool>,
    /// See [`Config::voters`].
    pub voters: Option<u32>,
    /// See [`Config::cluster_name`].
    pub cluster_name: Option<String>,
    /// See [`Config::host_id`].
    pub host_id: Option<u64>,
    /// See [`Config::tags`].
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// See [`Config::log_format`].
    pub log_format: Option<LogFormat>,
    /// See [`Config::resources_interval_ms`].
    pub resources_interval_ms: Option<u64>,
    /// See [`Config::raft`].
    #[serde(default)]
    pub raft: RaftConfig,
    /// See [`Config::limits`].
    #[serde(default)]
    pub limits: LimitsConfig,
    /// See [`Config::timing`].
    pub timing: Option<Timing>,
    /// See [`Config::resources`].
    #[serde(default)]
    pub resources: ResourcesOverride,
    /// See [`Config::runs_kept_per_job_max`].
    pub runs_kept_per_job_max: Option<u32>,
    /// See [`Config::docker`].
    #[serde(default)]
    pub docker: DockerConfig,
    /// See [`Config::jobs_max`].
    pub jobs_max: Option<u64>,
    /// See [`Config::job_limits`].
    #[serde(default)]
    pub job_limits: JobLimits,
}

/// The flags `rota agent` and `rota dev` take; each also reads a `ROTA_*` variable.
#[derive(Clone, Debug, Default, Args)]
pub struct AgentArgs {
    /// A TOML configuration file; flags and ROTA_* variables override it.
    #[arg(long, env = "ROTA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where this host keeps its Raft log, snapshots and run output.
    #[arg(long, env = "ROTA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the HTTP API listens [default: 127.0.0.1:7070].
    #[arg(long, env = "ROTA_API_ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// Where cluster RPC (TCP) and gossip (UDP) listen [default: 127.0.0.1:7071].
    #[arg(long, env = "ROTA_CLUSTER_ADDR")]
    pub cluster_addr: Option<SocketAddr>,
    /// The cluster address peers should dial, when it is not the bound one.
    #[arg(long, env = "ROTA_ADVERTISE_ADDR")]
    pub advertise_addr: Option<SocketAddr>,
    /// The API address redirects should name, when it is not the bound one [default: the
    /// API address, with the advertised host when the API binds to all interfaces].
    #[arg(long, env = "ROTA_ADVERTISE_API_ADDR")]
    pub advertise_api_addr: Option<SocketAddr>,
    /// Join the cluster through this member's cluster address (repeatable).
    #[arg(long, env = "ROTA_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,
    /// Start a new one-host cluster (first start only; later starts rejoin with their data).
    #[arg(long, env = "ROTA_BOOTSTRAP")]
    pub bootstrap: bool,
    /// How many hosts vote in Raft: 1, 3, 5 or 7 [default: 3].
    #[arg(long, env = "ROTA_VOTERS")]
    pub voters: Option<u32>,
    /// This host's id [default: chosen at random on first start and kept].
    #[arg(long, env = "ROTA_HOST_ID")]
    pub host_id: Option<u64>,
    /// A tag for job constraints, `name=value` (repeatable).
    #[arg(long = "tag", env = "ROTA_TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Log format.
    #[arg(long, env = "ROTA_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// The configuration a daemon runs with, every value checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where this host keeps its state.
    pub data_dir: PathBuf,
    /// Where the HTTP API listens.
    pub api_addr: SocketAddr,
    /// Where cluster RPC and gossip listen.
    pub cluster_addr: SocketAddr,
    /// The cluster address peers dial.
    pub advertise_addr: SocketAddr,
    /// The API address clients are redirected to.
    pub advertise_api_addr: SocketAddr,
    /// Members to join through.
    pub join: Vec<SocketAddr>,
    /// Whether to start a new cluster.
    pub bootstrap: bool,
    /// How many hosts vote in Raft.
    pub voters: u32,
    /// The cluster's name (container labels, logs).
    pub cluster_name: String,
    /// This host's id, when fixed by configuration.
    pub host_id: Option<u64>,
    /// This host's tags.
    pub tags: BTreeMap<String, String>,
    /// Log format.
    pub log_format: LogFormat,
    /// How often this host samples its free resources.
    pub resources_interval_ms: u64,
    /// Raft's timings and bounds.
    pub raft: RaftConfig,
    /// Boundary limits.
    pub limits: LimitsConfig,
    /// The core's protocol timings.
    pub timing: Timing,
    /// Resource figures advertised instead of measured ones.
    pub resources: ResourcesOverride,
    /// Ended runs kept per job, cluster-wide (the leader's setting applies).
    pub runs_kept_per_job_max: u32,
    /// The Docker engine.
    pub docker: DockerConfig,
    /// The most jobs the cluster holds (the leader's setting applies).
    pub jobs_max: u64,
    /// Bounds on each job spec: command and environment sizes, retries, durations (the
    /// leader's setting applies).
    pub job_limits: JobLimits,
}

impl Default for Config {
    fn default() -> Self {
        let api_addr: SocketAddr = "127.0.0.1:7070"
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7070)));
        let cluster_addr = SocketAddr::from(([127, 0, 0, 1], 7071));
        Config {
            data_dir: default_data_dir(),
            api_addr,
            cluster_addr,
            advertise_addr: cluster_addr,
            advertise_api_addr: api_addr,
            join: Vec::new(),
            bootstrap: false,
            voters: 3,
            cluster_name: "rota".into(),
            host_id: None,
            tags: BTreeMap::new(),
            log_format: LogFormat::Human,
            resources_interval_ms: 2000,
            raft: RaftConfig::default(),
            limits: LimitsConfig::default(),
            timing: Timing::default(),
            resources: ResourcesOverride::default(),
            runs_kept_per_job_max: 100,
            docker: DockerConfig::default(),
            jobs_max: 100_000,
            job_limits: JobLimits::default(),
        }
    }
}

/// `$XDG_DATA_HOME/rota`, else `~/.local/share/rota`, else `./rota-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("rota");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home).join(".local/share/rota");
    }
    PathBuf::from("rota-data")
}

impl Config {
    /// Builds the configuration from a file (if any), then the flags and variables.
    pub fn load(args: &AgentArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Config::merge(file, args)
    }

    /// Applies flags and variables over a file's values, over the defaults.
    pub fn merge(file: FileConfig, args: &AgentArgs) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let cluster_addr = args
            .cluster_addr
            .or(file.cluster_addr)
            .unwrap_or(defaults.cluster_addr);
        let mut tags = file.tags;
        for tag in &args.tags {
            let (name, value) = tag
                .split_once('=')
                .ok_or_else(|| bad("tags", format!("`{tag}` is not name=value")))?;
            tags.insert(name.trim().to_owned(), value.trim().to_owned());
        }
        let join_texts = if args.join.is_empty() {
            file.join
        } else {
            args.join.clone()
        };
        let mut join = Vec::new();
        for text in join_texts {
            join.push(parse_addr("join", &text)?);
        }
        let api_addr = args.api_addr.or(file.api_addr).unwrap_or(defaults.api_addr);
        let advertise_addr = args
            .advertise_addr
            .or(file.advertise_addr)
            .unwrap_or(cluster_addr);
        let advertise_api_addr = args
            .advertise_api_addr
            .or(file.advertise_api_addr)
            .unwrap_or_else(|| advertised_api(api_addr, advertise_addr));
        let config = Config {
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(defaults.data_dir),
            api_addr,
            cluster_addr,
            advertise_addr,
            advertise_api_addr,
            join,
            bootstrap: args.bootstrap || file.bootstrap.unwrap_or(false),
            voters: args.voters.or(file.voters).unwrap_or(defaults.voters),
            cluster_name: file.cluster_name.unwrap_or(defaults.cluster_name),
            host_id: args.host_id.or(file.host_id),
            tags,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            resources_interval_ms: file
                .resources_interval_ms
                .unwrap_or(defaults.resources_interval_ms),
            raft: file.raft,
            limits: file.limits,
            timing: file.timing.unwrap_or_default(),
            resources: file.resources,
            runs_kept_per_job_max: file
                .runs_kept_per_job_max
                .unwrap_or(defaults.runs_kept_per_job_max),
            docker: file.docker,
            jobs_max: file.jobs_max.unwrap_or(defaults.jobs_max),
            job_limits: file.job_limits,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every value, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("data_dir", "may not be empty"));
        }
        if !matches!(self.voters, 1 | 3 | 5 | 7) {
            return Err(bad(
                "voters",
                format!("must be 1, 3, 5 or 7, got {}", self.voters),
            ));
        }
        if self.advertise_addr.ip().is_unspecified() {
            return Err(bad(
                "advertise_addr",
                format!(
                    "{} cannot be dialled by peers; set advertise_addr to this host's address",
                    self.advertise_addr
                ),
            ));
        }
        if self.advertise_api_addr.ip().is_unspecified() {
            return Err(bad(
                "advertise_api_addr",
                format!(
                    "{} cannot be dialled by clients; set advertise_api_addr",
                    self.advertise_api_addr
                ),
            ));
        }
        if self.advertise_addr.port() == 0 || self.api_addr.port() == 0 {
            return Err(bad(
                "cluster_addr",
                "ports must be fixed (not 0) so that peers can find this host",
            ));
        }
        if self.cluster_name.is_empty()
            || self.cluster_name.len() > 64
            || !self
                .cluster_name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(bad("cluster_name", "1-64 characters of a-z, 0-9 and '-'"));
        }
        if self.host_id == Some(0) {
            return Err(bad("host_id", "0 is reserved; use any other number"));
        }
        let limits = JobLimits::default();
        for (name, value) in &self.tags {
            check_tag(&format!("tags.{name}"), name, value, &limits)
                .map_err(|e| bad(&e.field, e.message))?;
        }
        let tag_bytes: usize = self.tags.iter().map(|(k, v)| k.len() + v.len()).sum();
        if tag_bytes > rota_core::host::HOST_TAGS_BYTES_MAX {
            return Err(bad(
                "tags",
                format!(
                    "at most {} bytes in all (they travel in gossip)",
                    rota_core::host::HOST_TAGS_BYTES_MAX
                ),
            ));
        }
        let r = &self.raft;
        positive("raft.heartbeat_interval_ms", r.heartbeat_interval_ms)?;
        positive("raft.election_timeout_min_ms", r.election_timeout_min_ms)?;
        if r.election_timeout_min_ms <= r.heartbeat_interval_ms {
            return Err(bad(
                "raft.election_timeout_min_ms",
                "must be more than raft.heartbeat_interval_ms",
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err(bad(
                "raft.election_timeout_max_ms",
                "must be more than raft.election_timeout_min_ms",
            ));
        }
        positive("raft.snapshot_every_entries", r.snapshot_every_entries)?;
        if r.segment_bytes_max < 4096 {
            return Err(bad("raft.segment_bytes_max", "at least 4096 bytes"));
        }
        let l = &self.limits;
        if l.rpc_frame_bytes_max < 64 * 1024 {
            return Err(bad("limits.rpc_frame_bytes_max", "at least 65536 bytes"));
        }
        positive("limits.rpc_timeout_ms", l.rpc_timeout_ms)?;
        positive("limits.rpc_connections_max", l.rpc_connections_max as u64)?;
        positive(
            "limits.rpc_connections_per_peer_max",
            l.rpc_connections_per_peer_max as u64,
        )?;
        positive("limits.api_connections_max", l.api_connections_max as u64)?;
        positive(
            "limits.api_connections_per_client_max",
            l.api_connections_per_client_max as u64,
        )?;
        positive("limits.api_header_timeout_ms", l.api_header_timeout_ms)?;
        if l.api_header_bytes_max < 8192 {
            return Err(bad(
                "limits.api_header_bytes_max",
                "at least 8192 bytes (hyper's minimum)",
            ));
        }
        if l.api_body_bytes_max < 1024 {
            return Err(bad("limits.api_body_bytes_max", "at least 1024 bytes"));
        }
        positive(
            "limits.api_requests_concurrent_max",
            l.api_requests_concurrent_max as u64,
        )?;
        positive("limits.output_bytes_max", l.output_bytes_max)?;
        positive(
            "limits.runs_kept_on_host_max",
            l.runs_kept_on_host_max as u64,
        )?;
        if !(1..=100_000).contains(&self.runs_kept_per_job_max) {
            return Err(bad("runs_kept_per_job_max", "between 1 and 100000"));
        }
        if !(1..=10_000_000).contains(&self.jobs_max) {
            return Err(bad("jobs_max", "between 1 and 10000000"));
        }
        let j = &self.job_limits;
        for (field, value) in [
            ("job_limits.command_args_max", j.command_args_max as u64),
            ("job_limits.command_bytes_max", j.command_bytes_max as u64),
            ("job_limits.env_vars_max", j.env_vars_max as u64),
            ("job_limits.env_bytes_max", j.env_bytes_max as u64),
            ("job_limits.string_bytes_max", j.string_bytes_max as u64),
            ("job_limits.duration_s_max", j.duration_s_max),
        ] {
            positive(field, value)?;
        }
        if self.resources_interval_ms < 100 {
            return Err(bad("resources_interval_ms", "at least 100 ms"));
        }
        let t = &self.timing;
        positive("timing.housekeeping_ms", t.housekeeping_ms)?;
        positive("limits.message_ttl_ms", self.limits.message_ttl_ms)?;
        // The leader counts on no message arriving later than this margin after it was
        // sent: a message waits at most its time-to-live, then one call's timeout.
        let delay_max = self.limits.message_ttl_ms + self.limits.rpc_timeout_ms;
        if t.lease_margin_ms < delay_max {
            return Err(bad(
                "timing.lease_margin_ms",
                format!(
                    "must be at least limits.message_ttl_ms + limits.rpc_timeout_ms ({delay_max} ms): the longest a message can take to arrive"
                ),
            ));
        }
        positive("timing.heartbeat_interval_ms", t.heartbeat_interval_ms)?;
        if t.lease_ms < 2 * t.heartbeat_interval_ms {
            return Err(bad(
                "timing.lease_ms",
                "must be at least twice timing.heartbeat_interval_ms",
            ));
        }
        positive("timing.dispatch_timeout_ms", t.dispatch_timeout_ms)?;
        positive("timing.report_retry_ms", t.report_retry_ms)?;
        positive("timing.unreachable_after_ms", t.unreachable_after_ms)?;
        let d = &self.docker;
        if !d.socket.is_absolute() {
            return Err(bad(
                "docker.socket",
                format!(
                    "`{}` is not an absolute path such as /var/run/docker.sock",
                    d.socket.display()
                ),
            ));
        }
        if d.containers_kept_max > 10_000 {
            return Err(bad("docker.containers_kept_max", "at most 10000"));
        }
        if !(100..=600_000).contains(&d.request_timeout_ms) {
            return Err(bad(
                "docker.request_timeout_ms",
                "between 100 and 600000 ms",
            ));
        }
        if d.pull_timeout_ms < d.request_timeout_ms || d.pull_timeout_ms > 86_400_000 {
            return Err(bad(
                "docker.pull_timeout_ms",
                "at least docker.request_timeout_ms and at most 86400000 ms (a day)",
            ));
        }
        if !(100..=3_600_000).contains(&d.probe_interval_ms) {
            return Err(bad(
                "docker.probe_interval_ms",
                "between 100 and 3600000 ms (an hour)",
            ));
        }
        Ok(())
    }
}

/// The API address to advertise: the bound one, unless it binds to every interface,
/// then the advertised cluster host with the API's port.
pub fn advertised_api(api_addr: SocketAddr, advertise_addr: SocketAddr) -> SocketAddr {
    if api_addr.ip().is_unspecified() {
        SocketAddr::new(advertise_addr.ip(), api_addr.port())
    } else {
        api_addr
    }
}

fn positive(field: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(bad(field, "must be more than 0"));
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| bad("config", format!("{}: {e}", path.display())))
}

fn parse_addr(field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    let text = text.trim();
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            bad(
                field,
                format!("`{text}` is not an address such as 127.0.0.1:7071"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_are_loopback_and_valid() {
        let config = Config::merge(FileConfig::default(), &AgentArgs::default()).unwrap();
        assert_eq!(config.api_addr.to_string(), "127.0.0.1:7070");
        assert_eq!(config.cluster_addr.to_string(), "127.0.0.1:7071");
        assert_eq!(config.advertise_addr, config.cluster_addr);
        assert_eq!(config.voters, 3);
    }

    #[test]
    fn flags_override_the_file() {
        let file =
            toml("api_addr = \"127.0.0.1:9000\"\nvoters = 5\n[raft]\nheartbeat_interval_ms = 50\n");
        let args = AgentArgs {
            voters: Some(7),
            tags: vec!["zone=a".into()],
            ..AgentArgs::default()
        };
        let config = Config::merge(file, &args).unwrap();
        assert_eq!(config.api_addr.to_string(), "127.0.0.1:9000");
        assert_eq!(config.voters, 7);
        assert_eq!(config.raft.heartbeat_interval_ms, 50);
        assert_eq!(config.tags.get("zone").map(String::as_str), Some("a"));
    }

    #[test]
    fn every_bad_value_names_itself() {
        let cases: [(&str, AgentArgs, &str); 6] = [
            (
                "",
                AgentArgs {
                    voters: Some(4),
                    ..AgentArgs::default()
                },
                "voters",
            ),
            (
                "",
                AgentArgs {
                    tags: vec!["novalue".into()],
                    ..AgentArgs::default()
                },
                "tags",
            ),
            (
                "",
                AgentArgs {
                    join: vec!["nowhere".into()],
                    ..AgentArgs::default()
                },
                "join",
            ),
            (
                "[raft]\nelection_timeout_min_ms = 50\n",
                AgentArgs::default(),
                "raft.election_timeout_min_ms",
            ),
            (
                "",
                AgentArgs {
                    advertise_addr: Some("0.0.0.0:7071".parse().unwrap()),
                    ..AgentArgs::default()
                },
                "advertise_addr",
            ),
            (
                "[limits]\napi_body_bytes_max = 10\n",
                AgentArgs::default(),
                "limits.api_body_bytes_max",
            ),
        ];
        for (file, args, field) in cases {
            let err = Config::merge(toml(file), &args).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
        for (file, field) in [
            ("[docker]\nsocket = \"docker.sock\"\n", "docker.socket"),
            (
                "[docker]\ncontainers_kept_max = 10001\n",
                "docker.containers_kept_max",
            ),
            (
                "[docker]\nrequest_timeout_ms = 0\n",
                "docker.request_timeout_ms",
            ),
            (
                "[docker]\nrequest_timeout_ms = 5000\npull_timeout_ms = 1000\n",
                "docker.pull_timeout_ms",
            ),
            (
                "[docker]\nprobe_interval_ms = 99\n",
                "docker.probe_interval_ms",
            ),
        ] {
            let err = Config::merge(toml(file), &AgentArgs::default()).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
        let docker = Config::merge(
            toml("[docker]\nsocket = \"/run/podman.sock\"\ncontainers_kept_max = 3\n"),
            &AgentArgs::default(),
        )
        .unwrap()
        .docker;
        assert_eq!(docker.socket, PathBuf::from("/run/podman.sock"));
        assert_eq!(docker.containers_kept_max, 3);
        assert_eq!(docker.request_timeout_ms, 30_000);
        let unknown: Result<FileConfig, _> = toml::from_str("bogus = 1");
        assert!(unknown.unwrap_err().to_string().contains("bogus"));
    }
}
