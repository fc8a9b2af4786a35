//! A small deterministic multi-node harness around the core alone: no Raft library (an
//! in-memory log that commits in order, and a harness that elects leaders), an
//! in-memory network with delays, and a fake executor that keeps the ground truth of
//! what ran. It runs 3 to 5 nodes for hours of simulated time with leader crashes and
//! checks the rules from the executor's side: no fire ran twice, every fire ran or was
//! recorded with a reason, `forbid` runs never overlapped, and every replica converged.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rota_core::command::{Command, Outcome};
use rota_core::host::{HostId, HostIdentity, ResourceSample};
use rota_core::job::{
    Concurrency, ExecutorSpec, JobName, JobSpec, MissedPolicy, ProcessSpec, Resources,
};
use rota_core::node::{Effect, ExecutorEvent, Input, Message, Node, NodeConfig, RaftStatus};
use rota_core::run::{Reason, RunId, RunSpec, RunState, Trigger};
use rota_core::schedule::{Schedule, Tz};
use rota_core::state::State;
use rota_core::time::{Mono, Now, Timestamp};

const START_WALL: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn addr(id: u64, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8)), port)
}

#[derive(Debug)]
enum Item {
    Gossip {
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    Message {
        from: HostId,
        to: HostId,
        message: Message,
    },
    Exec {
        host: HostId,
        boot: u64,
        event: ExecutorEvent,
    },
    Commit {
        from: HostId,
        term: u64,
        command: Command,
    },
}

/// What the fake executor saw: the ground truth.
#[derive(Debug, Clone)]
struct Start {
    job: JobName,
    scheduled_at: Timestamp,
    attempt: u32,
    from: Mono,
    to: Option<Mono>,
}

struct Host {
    node: Option<Node>,
    boot: u64,
    applied: usize,
    /// Runs the executor started on this host, by run id (the executor is idempotent).
    started: BTreeMap<RunId, usize>,
}

struct Sim {
    now: Now,
    rng: Xoshiro256PlusPlus,
    hosts: BTreeMap<HostId, Host>,
    queue: BinaryHeap<Reverse<(Mono, u64, usize)>>,
    items: BTreeMap<usize, Item>,
    seq: u64,
    log: Vec<Command>,
    reference: State,
    outcomes: Vec<(Command, Outcome)>,
    term: u64,
    leader: Option<HostId>,
    truth: Vec<Start>,
    events: BTreeMap<&'static str, u64>,
    seed: u64,
    durations_ms: BTreeMap<JobName, (u64, u64)>,
    exit_codes: BTreeMap<JobName, i32>,
}

impl Sim {
    fn new(seed: u64, hosts: u64) -> Self {
        let now = Now::new(Mono::from_millis(1_000), Timestamp::from_millis(START_WALL));
        let mut sim = Sim {
            now,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            hosts: BTreeMap::new(),
            queue: BinaryHeap::new(),
            items: BTreeMap::new(),
            seq: 0,
            log: Vec::new(),
            reference: State::new(),
            outcomes: Vec::new(),
            term: 0,
            leader: None,
            truth: Vec::new(),
            events: BTreeMap::new(),
            seed,
            durations_ms: BTreeMap::new(),
            exit_codes: BTreeMap::new(),
        };
        for id in 1..=hosts {
            sim.hosts.insert(
                HostId(id),
                Host {
                    node: None,
                    boot: 0,
                    applied: 0,
                    started: BTreeMap::new(),
                },
            );
            sim.start_host(HostId(id));
        }
        sim.elect();
        sim
    }

    fn identity(&self, id: HostId) -> HostIdentity {
        HostIdentity {
            id,
            cluster_addr: addr(id.0, 7071),
            api_addr: addr(id.0, 7070),
            boot: self.hosts[&id].boot,
        }
    }

    fn start_host(&mut self, id: HostId) {
        let boot = {
            let host = self.hosts.get_mut(&id).unwrap();
            host.boot += 1;
            host.applied = 0;
            host.boot
        };
        let config = NodeConfig::new(self.identity(id));
        let mut node = Node::new(
            config,
            self.seed ^ (id.0 << 32) ^ boot,
            self.now,
            State::new(),
        );
        // A restarted host recovers its state from its log.
        for (index, command) in self.log.iter().enumerate() {
            node.handle_applied(self.now, index as u64 + 1, command);
        }
        while node.poll_effect().is_some() {}
        let host = self.hosts.get_mut(&id).unwrap();
        host.applied = self.log.len();
        host.node = Some(node);
        self.input(id, Input::Resources(sample()));
        if id != HostId(1) {
            self.input(id, Input::Join(addr(1, 7071)));
        } else {
            self.input(id, Input::Join(addr(2, 7071)));
        }
        self.input(id, Input::Raft(self.status_for(id)));
    }

    fn crash(&mut self, id: HostId) {
        let host = self.hosts.get_mut(&id).unwrap();
        host.node = None;
        // Its runs die with it (a process executor's children); their end is now.
        let now = self.now.mono;
        for index in host.started.values() {
            if self.truth[*index].to.is_none() {
                self.truth[*index].to = Some(now);
            }
        }
        if self.leader == Some(id) {
            self.leader = None;
        }
    }

    fn status_for(&self, id: HostId) -> RaftStatus {
        RaftStatus {
            term: self.term,
            leader: self.leader,
            is_leader: self.leader == Some(id),
            quorum_acked: (self.leader == Some(id)).then_some(self.now.mono),
            voters: self.hosts.keys().copied().collect(),
        }
    }

    fn elect(&mut self) {
        let live: Vec<HostId> = self
            .hosts
            .iter()
            .filter(|(_, h)| h.node.is_some())
            .map(|(id, _)| *id)
            .collect();
        let leader = live[self.rng.random_range(0..live.len())];
        self.term += 1;
        self.leader = Some(leader);
        for id in live {
            self.input(id, Input::Raft(self.status_for(id)));
        }
    }

    fn push(&mut self, at: Mono, item: Item) {
        self.seq += 1;
        let key = self.seq as usize;
        self.items.insert(key, item);
        self.queue.push(Reverse((at, self.seq, key)));
    }

    fn input(&mut self, id: HostId, input: Input) {
        let now = self.now;
        let Some(node) = self.hosts.get_mut(&id).and_then(|h| h.node.as_mut()) else {
            return;
        };
        node.handle(now, input);
        self.drain(id);
    }

    fn delay(&mut self, min_ms: u64, max_ms: u64) -> Mono {
        self.now.mono + Duration::from_millis(self.rng.random_range(min_ms..=max_ms))
    }

    fn drain(&mut self, id: HostId) {
        loop {
            let Some(effect) = self
                .hosts
                .get_mut(&id)
                .and_then(|h| h.node.as_mut())
                .and_then(Node::poll_effect)
            else {
                return;
            };
            match effect {
                Effect::Gossip { to, bytes } => {
                    let at = self.delay(1, 5);
                    self.push(at, Item::Gossip { to, bytes });
                }
                Effect::Send { to, message, .. } => {
                    let at = self.delay(1, 10);
                    self.push(
                        at,
                        Item::Message {
                            from: id,
                            to,
                            message,
                        },
                    );
                }
                Effect::Propose(command) => {
                    let at = self.delay(2, 6);
                    let term = self.term;
                    self.push(
                        at,
                        Item::Commit {
                            from: id,
                            term,
                            command,
                        },
                    );
                }
                Effect::StartRun(spec) => self.start_run(id, spec),
                Effect::StopRun { run, .. } => {
                    let boot = self.hosts[&id].boot;
                    if self.hosts[&id].started.contains_key(&run) {
                        let at = self.delay(20, 80);
                        let event = ExecutorEvent::Exited {
                            run,
                            at: Timestamp::EPOCH,
                            started_at: None,
                            exit_code: Some(143),
                            reason: Some(Reason::Stopped),
                            detail: None,
                        };
                        self.push(
                            at,
                            Item::Exec {
                                host: id,
                                boot,
                                event,
                            },
                        );
                    }
                }
                Effect::Event(event) => {
                    *self.events.entry(event.name()).or_default() += 1;
                }
            }
        }
    }

    fn start_run(&mut self, id: HostId, spec: RunSpec) {
        let boot = self.hosts[&id].boot;
        if self.hosts[&id].started.contains_key(&spec.id) {
            // The engine refuses a second container of the same name.
            return;
        }
        self.truth.push(Start {
            job: spec.job.clone(),
            scheduled_at: spec.scheduled_at,
            attempt: spec.attempt,
            from: self.now.mono,
            to: None,
        });
        let index = self.truth.len() - 1;
        self.hosts
            .get_mut(&id)
            .unwrap()
            .started
            .insert(spec.id, index);
        let started = self.delay(5, 20);
        self.push(
            started,
            Item::Exec {
                host: id,
                boot,
                event: ExecutorEvent::Started {
                    run: spec.id,
                    at: Timestamp::EPOCH,
                },
            },
        );
        let (lo, hi) = self
            .durations_ms
            .get(&spec.job)
            .copied()
            .unwrap_or((50, 500));
        let ends = started + Duration::from_millis(self.rng.random_range(lo..=hi));
        let code = self.exit_codes.get(&spec.job).copied().unwrap_or(0);
        let event = ExecutorEvent::Exited {
            run: spec.id,
            at: Timestamp::EPOCH,
            started_at: None,
            exit_code: Some(code),
            reason: None,
            detail: None,
        };
        self.push(
            ends,
            Item::Exec {
                host: id,
                boot,
                event,
            },
        );
    }

    fn commit(&mut self, from: HostId, term: u64, command: Command) {
        if self.leader != Some(from) || term != self.term {
            self.input(from, Input::ProposalFailed(command));
            return;
        }
        self.log.push(command.clone());
        let index = self.log.len() as u64;
        let outcome = self.reference.apply(index, &command);
        self.reference.check_invariants().unwrap();
        self.outcomes.push((command, outcome));
        let ids: Vec<HostId> = self.hosts.keys().copied().collect();
        for id in ids {
            self.catch_up(id);
        }
    }

    fn catch_up(&mut self, id: HostId) {
        let now = self.now;
        loop {
            let host = self.hosts.get_mut(&id).unwrap();
            let Some(node) = host.node.as_mut() else {
                return;
            };
            if host.applied >= self.log.len() {
                return;
            }
            let index = host.applied;
            host.applied += 1;
            let outcome = node.handle_applied(now, index as u64 + 1, &self.log[index]);
            assert_eq!(
                &outcome, &self.outcomes[index].1,
                "host {id:?} applied entry {index} differently"
            );
            self.drain(id);
        }
    }

    /// Runs until `until` (simulated time since start), calling `fault` once a second.
    fn run(&mut self, until: Duration, mut fault: impl FnMut(&mut Sim)) {
        let end = self.now.mono + until;
        let mut next_second = self.now.mono;
        let mut next_sample = self.now.mono;
        while self.now.mono < end {
            let mut next = self
                .queue
                .peek()
                .map_or(end, |Reverse((at, _, _))| *at)
                .min(next_second)
                .min(next_sample);
            for host in self.hosts.values() {
                if let Some(t) = host.node.as_ref().and_then(Node::poll_timeout) {
                    next = next.min(t);
                }
            }
            let next = next.max(self.now.mono).min(end);
            let step = next.saturating_since(self.now.mono);
            self.now = self.now.advanced(step);
            if self.now.mono >= next_second {
                next_second = self.now.mono + Duration::from_secs(1);
                fault(self);
                // The leader's quorum acknowledges it.
                if let Some(leader) = self.leader {
                    self.input(leader, Input::Raft(self.status_for(leader)));
                }
            }
            if self.now.mono >= next_sample {
                next_sample = self.now.mono + Duration::from_secs(5);
                let ids: Vec<HostId> = self.hosts.keys().copied().collect();
                for id in ids {
                    self.input(id, Input::Resources(sample()));
                }
            }
            while let Some(Reverse((at, _, key))) = self.queue.peek().copied() {
                if at > self.now.mono {
                    break;
                }
                self.queue.pop();
                let item = self.items.remove(&key).unwrap();
                self.deliver(item);
            }
            let due: Vec<HostId> = self
                .hosts
                .iter()
                .filter(|(_, h)| {
                    h.node
                        .as_ref()
                        .and_then(Node::poll_timeout)
                        .is_some_and(|t| t <= self.now.mono)
                })
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                self.input(id, Input::Tick);
            }
        }
    }

    fn deliver(&mut self, item: Item) {
        match item {
            Item::Gossip { to, bytes } => {
                if let Some(id) = self.hosts.keys().copied().find(|id| addr(id.0, 7071) == to) {
                    self.input(id, Input::Gossip(bytes));
                }
            }
            Item::Message { from, to, message } => self.input(
                to,
                Input::Message {
                    from,
                    addr: addr(from.0, 7071),
                    message,
                },
            ),
            Item::Exec {
                host,
                boot,
                mut event,
            } => {
                if self.hosts[&host].boot != boot || self.hosts[&host].node.is_none() {
                    return;
                }
                let wall = self.now.wall;
                match &mut event {
                    ExecutorEvent::Started { run, at } => {
                        *at = wall;
                        let _ = run;
                    }
                    ExecutorEvent::Exited { run, at, .. } => {
                        *at = wall;
                        let index = self.hosts[&host].started[run];
                        if self.truth[index].to.is_some() {
                            return;
                        }
                        self.truth[index].to = Some(self.now.mono);
                    }
                    ExecutorEvent::LaunchFailed { at, .. } => *at = wall,
                    ExecutorEvent::Adopted { .. } => {}
                }
                self.input(host, Input::Executor(event));
            }
            Item::Commit {
                from,
                term,
                command,
            } => self.commit(from, term, command),
        }
    }

    fn put_job(&mut self, spec: JobSpec) {
        let leader = self.leader.expect("a leader");
        let command = Command::PutJob {
            spec: Box::new(spec),
            replace: false,
            at: self.now.wall,
        };
        let term = self.term;
        self.commit(leader, term, command);
    }

    // ----- checks -----

    fn run_keys(&self) -> BTreeMap<RunId, (JobName, Timestamp, u32, Trigger)> {
        let mut keys = BTreeMap::new();
        for (command, outcome) in &self.outcomes {
            for (c, o) in rota_core::node::flatten(command, outcome) {
                if let (
                    Command::Declare(d),
                    Outcome::Declared { run } | Outcome::Recorded { run, .. },
                ) = (c, o)
                {
                    keys.insert(*run, (d.job.clone(), d.scheduled_at, d.attempt, d.trigger));
                }
            }
        }
        keys
    }

    fn check_no_duplicates(&self) {
        let mut seen = BTreeSet::new();
        for start in &self.truth {
            assert!(
                seen.insert((start.job.clone(), start.scheduled_at, start.attempt)),
                "seed {}: {} at {} attempt {} started twice",
                self.seed,
                start.job,
                start.scheduled_at,
                start.attempt
            );
        }
    }

    /// Every fire of `spec` between its creation and `until` ran or was recorded.
    fn check_accounted(
        &self,
        spec: &JobSpec,
        created: Timestamp,
        until: Timestamp,
    ) -> (usize, usize) {
        let started: BTreeSet<Timestamp> = self
            .truth
            .iter()
            .filter(|s| s.job == spec.name && s.attempt == 1)
            .map(|s| s.scheduled_at)
            .collect();
        let mut recorded: BTreeSet<Timestamp> = BTreeSet::new();
        let mut ranges = Vec::new();
        let keys = self.run_keys();
        for (command, outcome) in &self.outcomes {
            for (c, o) in rota_core::node::flatten(command, outcome) {
                match (c, o) {
                    (
                        Command::RecordMissed {
                            job, first, last, ..
                        },
                        Outcome::Recorded { .. },
                    ) if *job == spec.name => ranges.push((*first, *last)),
                    (Command::Declare(d), Outcome::Recorded { .. }) if d.job == spec.name => {
                        recorded.insert(d.scheduled_at);
                    }
                    (Command::MarkFinished(f), Outcome::Done) if f.reason.is_some() => {
                        if let Some((job, at, 1, Trigger::Schedule)) = keys.get(&f.run)
                            && *job == spec.name
                        {
                            recorded.insert(*at);
                        }
                    }
                    _ => {}
                }
            }
        }
        let (mut ran, mut not_run) = (0, 0);
        let mut cursor = created;
        while let Some(fire) = spec.schedule.next_after(cursor, spec.timezone, created) {
            if fire > until {
                break;
            }
            cursor = fire;
            if started.contains(&fire) {
                ran += 1;
                continue;
            }
            let in_range = ranges.iter().any(|(a, b)| *a <= fire && fire <= *b);
            assert!(
                in_range || recorded.contains(&fire),
                "seed {}: fire {} of {} neither ran nor was recorded",
                self.seed,
                fire,
                spec.name
            );
            not_run += 1;
        }
        (ran, not_run)
    }

    fn check_forbid(&self, job: &JobName) {
        let mut runs: Vec<&Start> = self.truth.iter().filter(|s| &s.job == job).collect();
        runs.sort_by_key(|s| s.from);
        for pair in runs.windows(2) {
            let end = pair[0].to.unwrap_or(Mono::from_millis(u64::MAX));
            assert!(
                end <= pair[1].from,
                "seed {}: forbid job {job} overlapped: {:?} and {:?}",
                self.seed,
                pair[0],
                pair[1]
            );
        }
    }

    fn check_converged(&self) {
        let reference = postcard::to_allocvec(&self.reference).unwrap();
        for (id, host) in &self.hosts {
            if let Some(node) = &host.node {
                assert_eq!(
                    postcard::to_allocvec(node.state()).unwrap(),
                    reference,
                    "seed {}: host {id:?} diverged",
                    self.seed
                );
            }
        }
        let stuck: Vec<RunId> = self
            .reference
            .active_runs()
            .filter(|r| r.state == RunState::Declared)
            .map(|r| r.id)
            .collect();
        assert!(
            stuck.is_empty(),
            "seed {}: runs still declared at the end: {stuck:?}",
            self.seed
        );
    }
}

fn sample() -> ResourceSample {
    ResourceSample {
        cpu_total_milli: 4000,
        cpu_free_milli: 3000,
        memory_total_mb: 8192,
        memory_free_mb: 6000,
        disk_total_mb: 100_000,
        disk_free_mb: 80_000,
    }
}

fn job(name: &str, schedule: &str) -> JobSpec {
    JobSpec {
        name: JobName::new(name).unwrap(),
        schedule: Schedule::parse(schedule).unwrap(),
        timezone: Tz::UTC,
        executor: std::sync::Arc::new(ExecutorSpec::Process(ProcessSpec {
            command: vec!["true".into()],
            env: BTreeMap::new(),
            cwd: None,
        })),
        concurrency: Concurrency::Allow,
        missed: MissedPolicy::Latest,
        retries: 0,
        retry_backoff_s: 1,
        retry_backoff_max_s: 10,
        timeout_s: None,
        starting_deadline_s: 60,
        constraints: BTreeMap::new(),
        resources: Resources::default(),
        paused: false,
    }
}

fn workload(sim: &mut Sim) -> Vec<(JobSpec, Timestamp)> {
    let mut specs = vec![
        job("every-7s", "*/7 * * * * *"),
        job("every-13s", "@every 13s"),
        job("minutely", "* * * * *"),
        job("berlin-quarter", "0 */15 * * * *"),
    ];
    specs[3].timezone = Tz::Europe__Berlin;
    let mut forbid = job("forbid-5s", "*/5 * * * * *");
    forbid.concurrency = Concurrency::Forbid;
    sim.durations_ms.insert(forbid.name.clone(), (1000, 9000));
    specs.push(forbid);
    let mut flaky = job("flaky", "*/20 * * * * *");
    flaky.retries = 2;
    sim.exit_codes.insert(flaky.name.clone(), 1);
    specs.push(flaky);
    let mut replace = job("replace-10s", "*/10 * * * * *");
    replace.concurrency = Concurrency::Replace;
    sim.durations_ms
        .insert(replace.name.clone(), (5000, 15_000));
    specs.push(replace);
    let created = sim.now.wall;
    for spec in &specs {
        sim.put_job(spec.clone());
    }
    specs.into_iter().map(|s| (s, created)).collect()
}

#[test]
fn a_quiet_cluster_runs_every_fire_exactly_once() {
    let mut sim = Sim::new(7, 3);
    sim.run(Duration::from_secs(5), |_| {});
    let jobs = workload(&mut sim);
    sim.run(Duration::from_secs(3600), |_| {});
    let until = sim.now.wall - Duration::from_secs(60);
    sim.check_no_duplicates();
    for (spec, created) in &jobs {
        let (ran, not_run) = sim.check_accounted(spec, *created, until);
        match spec.concurrency {
            // A forbid job's fires during a long run are skipped (and recorded).
            Concurrency::Forbid => assert!(
                ran > 100 && not_run > 0,
                "{}: {ran} ran, {not_run} not",
                spec.name
            ),
            _ => assert_eq!(
                not_run, 0,
                "{}: {not_run} fires did not run in a quiet cluster",
                spec.name
            ),
        }
        if spec.concurrency == Concurrency::Forbid {
            sim.check_forbid(&spec.name);
        }
    }
    // The flaky job's failures were retried twice each.
    let retries = sim
        .truth
        .iter()
        .filter(|s| s.job.as_str() == "flaky" && s.attempt > 1)
        .count();
    let firsts = sim
        .truth
        .iter()
        .filter(|s| s.job.as_str() == "flaky" && s.attempt == 1)
        .count();
    assert_eq!(retries, 2 * firsts, "retries of the flaky job");
    sim.check_converged();
    assert_eq!(sim.events.get("became-leader"), Some(&1));
}

fn crash_leader_sometimes(sim: &mut Sim, down: &mut BTreeMap<HostId, Mono>) {
    let now = sim.now.mono;
    // Restart crashed hosts after their downtime.
    let back: Vec<HostId> = down
        .iter()
        .filter(|(_, until)| **until <= now)
        .map(|(id, _)| *id)
        .collect();
    for id in back {
        down.remove(&id);
        sim.start_host(id);
    }
    if sim.leader.is_none() {
        sim.elect();
        return;
    }
    // About once every five minutes, crash the leader for 5 to 60 seconds; the others
    // elect a new one after an election timeout (the next second).
    if down.len() < (sim.hosts.len() - 1) / 2 && sim.rng.random_range(0..300) == 0 {
        let leader = sim.leader.unwrap();
        let downtime = Duration::from_secs(sim.rng.random_range(5..60));
        sim.crash(leader);
        down.insert(leader, now + downtime);
        *sim.events.entry("crash").or_default() += 1;
    }
}

#[test]
fn leader_crashes_lose_nothing_and_run_nothing_twice() {
    for seed in 1..=4 {
        let hosts = 3 + seed % 3;
        let mut sim = Sim::new(seed, hosts);
        sim.run(Duration::from_secs(5), |_| {});
        let jobs = workload(&mut sim);
        let mut down = BTreeMap::new();
        sim.run(Duration::from_secs(3 * 3600), |sim| {
            crash_leader_sometimes(sim, &mut down)
        });
        // Heal: restart everyone and let the cluster settle.
        let ids: Vec<HostId> = down.keys().copied().collect();
        for id in ids {
            sim.start_host(id);
        }
        if sim.leader.is_none() {
            sim.elect();
        }
        let until = sim.now.wall;
        sim.run(Duration::from_secs(120), |_| {});
        sim.check_no_duplicates();
        let mut not_run_total = 0;
        for (spec, created) in &jobs {
            let (_, not_run) = sim.check_accounted(spec, *created, until);
            not_run_total += not_run;
            if spec.concurrency == Concurrency::Forbid {
                sim.check_forbid(&spec.name);
            }
        }
        sim.check_converged();
        let crashes = sim.events.get("crash").copied().unwrap_or(0);
        assert!(crashes >= 5, "seed {seed}: only {crashes} crashes fired");
        // Without partitions every host hears a leader well within its lease.
        assert_eq!(sim.events.get("lease-expired"), None, "seed {seed}");
        assert!(
            sim.events.get("inherited-dispatch").copied().unwrap_or(0)
                + sim.events.get("leader-ready").copied().unwrap_or(0)
                > crashes
        );
        eprintln!(
            "seed {seed}: {hosts} hosts, {crashes} leader crashes, {} runs, {not_run_total} fires recorded not run, events {:?}",
            sim.truth.len(),
            sim.events
        );
    }
}

#[test]
fn a_new_leader_places_runs_on_hosts_that_answered_it_not_on_the_leader_that_died() {
    let mut sim = Sim::new(11, 3);
    sim.run(Duration::from_secs(5), |_| {});
    // Six runs every second: enough that placement spreads them over every host.
    for i in 0..6 {
        sim.put_job(job(&format!("every-second-{i}"), "* * * * * *"));
    }
    sim.run(Duration::from_secs(30), |_| {});
    let old = sim.leader.expect("a leader");
    let declared_on = |sim: &Sim, from: usize, term: u64| -> Vec<Option<HostId>> {
        sim.log[from..]
            .iter()
            .flat_map(|c| match c {
                Command::Batch(inner) => inner.iter().collect::<Vec<_>>(),
                other => vec![other],
            })
            .filter_map(|c| match c {
                Command::Declare(d) if d.term == term => Some(d.host),
                _ => None,
            })
            .collect()
    };
    // Before the crash the old leader took its share of the runs.
    let before = declared_on(&sim, 0, sim.term);
    assert!(
        before.contains(&Some(old)),
        "the leader ran nothing itself: {before:?}"
    );

    sim.crash(old);
    sim.elect();
    let from = sim.log.len();
    // Gossip has not yet found the crashed host down: only this leader's own
    // heartbeats, unanswered, tell it apart from the live ones.
    sim.run(Duration::from_secs(3), |_| {});
    let after = declared_on(&sim, from, sim.term);
    assert!(after.len() >= 12, "the new leader declared {after:?}");
    assert!(
        !after.contains(&Some(old)),
        "the new leader placed runs on the host that died: {after:?}"
    );
    assert!(
        !after.contains(&None),
        "runs failed for lack of capacity: {after:?}"
    );
}
