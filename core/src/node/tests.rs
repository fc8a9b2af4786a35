//! The node's rules, one at a time, on a one-host cluster driven by hand: proposals
//! commit at once, the executor is the test itself.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::command::{Declare, Rejection};
use crate::job::{Concurrency, ExecutorSpec, JobSpec, MissedPolicy, ProcessSpec};
use crate::run::{Run, Trigger, TriggerKey};
use crate::testkit::{job, name, ts};

const ME: HostId = HostId(1);
const OTHER: HostId = HostId(2);

fn addr(id: u64) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, id as u8)), 7071)
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

/// One node and everything it asked for.
struct Driver {
    node: Node,
    now: Now,
    term: u64,
    leading: bool,
    index: u64,
    log: Vec<Command>,
    /// Proposals are held instead of committed while this is set.
    hold_proposals: bool,
    held: Vec<Command>,
    started: Vec<RunSpec>,
    stops: Vec<(RunId, Reason)>,
    sent: Vec<(HostId, Message)>,
    events: Vec<Event>,
}

impl Driver {
    fn new(at: &str) -> Self {
        Driver::with_settings(at, Settings::default())
    }

    /// A node whose configured cluster settings are `settings`.
    fn with_settings(at: &str, settings: Settings) -> Self {
        let now = Now::new(Mono::from_millis(10_000), ts(at));
        let identity = HostIdentity {
            id: ME,
            cluster_addr: addr(1),
            api_addr: addr(1),
            boot: 1,
        };
        let mut config = NodeConfig::new(identity);
        config.settings = settings;
        let node = Node::new(config, 1, now, State::new());
        let mut driver = Driver {
            node,
            now,
            term: 0,
            leading: false,
            index: 0,
            log: Vec::new(),
            hold_proposals: false,
            held: Vec::new(),
            started: Vec::new(),
            stops: Vec::new(),
            sent: Vec::new(),
            events: Vec::new(),
        };
        driver.input(Input::Resources(sample()));
        driver
    }

    /// A one-host cluster led by this node.
    fn leader(at: &str, jobs: &[JobSpec]) -> Self {
        let mut driver = Driver::new(at);
        driver.lead();
        for spec in jobs {
            driver.commit(Command::PutJob {
                spec: Box::new(spec.clone()),
                replace: false,
                at: driver.now.wall,
            });
        }
        driver
    }

    fn status(&self) -> RaftStatus {
        RaftStatus {
            term: self.term,
            leader: self.leading.then_some(ME),
            is_leader: self.leading,
            quorum_acked: self.leading.then_some(self.now.mono),
            voters: vec![ME],
        }
    }

    fn lead(&mut self) {
        self.term += 1;
        self.leading = true;
        self.input(Input::Raft(self.status()));
        assert!(
            self.node.is_ready_leader(),
            "the leader applied its LeaderStart"
        );
    }

    fn step_down(&mut self) {
        self.leading = false;
        self.input(Input::Raft(self.status()));
    }

    fn input(&mut self, input: Input) {
        self.node.handle(self.now, input);
        self.pump();
    }

    fn commit(&mut self, command: Command) -> Outcome {
        self.index += 1;
        self.log.push(command.clone());
        let outcome = self.node.handle_applied(self.now, self.index, &command);
        self.node.state().check_invariants().unwrap();
        self.pump();
        outcome
    }

    fn pump(&mut self) {
        while let Some(effect) = self.node.poll_effect() {
            match effect {
                Effect::Propose(command) if self.hold_proposals || !self.leading => {
                    self.held.push(command)
                }
                Effect::Propose(command) => {
                    self.index += 1;
                    self.log.push(command.clone());
                    self.node.handle_applied(self.now, self.index, &command);
                    self.node.state().check_invariants().unwrap();
                }
                Effect::StartRun(spec) => self.started.push(spec),
                Effect::StopRun { run, reason } => self.stops.push((run, reason)),
                Effect::Send { to, message, .. } => self.sent.push((to, message)),
                Effect::Gossip { .. } => {}
                Effect::Event(event) => self.events.push(event),
            }
        }
    }

    /// Lets `d` pass, waking the node whenever it asked to be.
    fn pass(&mut self, d: Duration) {
        let end = self.now.mono + d;
        loop {
            let next = self
                .node
                .poll_timeout()
                .unwrap_or(end)
                .max(self.now.mono)
                .min(end);
            let step = next
                .saturating_since(self.now.mono)
                .max(Duration::from_millis(1));
            self.now = self
                .now
                .advanced(step.min(end.saturating_since(self.now.mono)));
            if self.leading {
                self.node.handle(self.now, Input::Raft(self.status()));
            }
            self.input(Input::Tick);
            if self.now.mono >= end {
                break;
            }
        }
    }

    /// The executor reports the run started and, optionally, exited with `code`.
    fn execute(&mut self, run: RunId, code: Option<i32>) {
        let at = self.now.wall;
        self.input(Input::Executor(ExecutorEvent::Started { run, at }));
        if let Some(code) = code {
            self.input(Input::Executor(ExecutorEvent::Exited {
                run,
                at,
                started_at: None,
                exit_code: Some(code),
                reason: None,
                detail: None,
            }));
        }
    }

    fn commands<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Command> + 'a {
        self.log
            .iter()
            .flat_map(|c| match c {
                Command::Batch(inner) => inner.iter().collect::<Vec<_>>(),
                other => vec![other],
            })
            .filter(move |c| c.kind() == kind)
    }

    fn declares(&self) -> Vec<Declare> {
        self.commands("declare")
            .filter_map(|c| match c {
                Command::Declare(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    fn missed(&self) -> Vec<(Timestamp, Timestamp, u32, Reason)> {
        self.commands("record-missed")
            .filter_map(|c| match c {
                Command::RecordMissed {
                    first,
                    last,
                    count,
                    reason,
                    ..
                } => Some((*first, *last, *count, *reason)),
                _ => None,
            })
            .collect()
    }
}

// ----- the leader -----

#[test]
fn nothing_is_declared_before_the_leaders_first_entry_applies() {
    let mut d = Driver::new("2026-01-01T00:00:00Z");
    d.term = 1;
    d.leading = true;
    d.hold_proposals = true;
    d.input(Input::Raft(d.status()));
    assert!(!d.node.is_ready_leader());
    assert!(matches!(
        d.held.as_slice(),
        [Command::LeaderStart {
            term: 1,
            leader: ME,
            ..
        }]
    ));
    assert_eq!(
        d.node.plan_trigger(d.now, &name("a"), false, None),
        Err(TriggerError::NotReady)
    );
    // Its LeaderStart proposal was lost: it proposes again, and only then leads.
    d.held.clear();
    d.pass(Duration::from_secs(3));
    assert!(matches!(
        d.held.as_slice(),
        [Command::LeaderStart { term: 1, .. }]
    ));
    d.hold_proposals = false;
    let start = d.held.remove(0);
    d.commit(start);
    assert!(d.node.is_ready_leader());
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, Event::LeaderReady { term: 1, .. }))
    );
}

#[test]
fn a_leader_is_ready_for_writes_only_once_its_settings_are_in_force() {
    let settings = Settings {
        jobs_max: 3,
        ..Settings::default()
    };
    let mut d = Driver::with_settings("2026-01-01T00:00:00Z", settings.clone());
    d.term = 1;
    d.leading = true;
    d.hold_proposals = true;
    d.input(Input::Raft(d.status()));
    let start = d.held.remove(0);
    d.commit(start);
    // Ready to schedule, but a write taken now would be judged by the old settings.
    assert!(!d.node.is_ready_leader());
    assert_eq!(d.held, [Command::SetSettings(settings.clone())]);
    // Its `SetSettings` proposal was lost: it proposes again.
    d.held.clear();
    d.pass(Duration::from_secs(3));
    assert_eq!(d.held, [Command::SetSettings(settings.clone())]);
    d.hold_proposals = false;
    let set = d.held.remove(0);
    d.commit(set);
    assert!(d.node.is_ready_leader());
    assert_eq!(d.node.state().settings(), &settings);
}

#[test]
fn due_fires_are_declared_on_time_and_dispatched_once() {
    let mut d = Driver::leader(
        "2026-01-01T00:00:00Z",
        &[job("a", "*/10 * * * * *"), job("b", "@every 15s")],
    );
    d.pass(Duration::from_secs(31));
    let declares = d.declares();
    let fires: Vec<(String, Timestamp)> = declares
        .iter()
        .map(|x| (x.job.to_string(), x.scheduled_at))
        .collect();
    assert_eq!(
        fires,
        [
            ("a".to_string(), ts("2026-01-01T00:00:10Z")),
            ("b".to_string(), ts("2026-01-01T00:00:15Z")),
            ("a".to_string(), ts("2026-01-01T00:00:20Z")),
            // Jobs due at the same instant go in the order they were queued: `b` was
            // queued for 00:30 at 00:15, `a` at 00:20.
            ("b".to_string(), ts("2026-01-01T00:00:30Z")),
            ("a".to_string(), ts("2026-01-01T00:00:30Z")),
        ]
    );
    assert!(
        declares
            .iter()
            .all(|x| x.host == Some(ME) && x.trigger == Trigger::Schedule && x.term == 1),
        "{declares:?}"
    );
    // Each declared run was handed to the executor once, only after its declaration.
    assert_eq!(d.started.len(), 5);
    assert!(
        d.started
            .iter()
            .all(|s| s.start_by >= s.scheduled_at + Duration::from_secs(300))
    );
}

#[test]
fn a_run_is_dispatched_with_the_executor_its_job_has_when_the_declaration_applies() {
    let mut d = Driver::leader("2026-01-01T00:00:00Z", &[job("a", "*/10 * * * * *")]);
    d.hold_proposals = true;
    d.pass(Duration::from_secs(10));
    let held = std::mem::take(&mut d.held);
    assert_eq!(held.iter().map(Command::len).sum::<usize>(), 1, "{held:?}");
    // The job's command changes after the leader declared the fire and before the
    // declaration applies.
    let mut changed = job("a", "*/10 * * * * *");
    changed.executor = Arc::new(ExecutorSpec::Process(ProcessSpec {
        command: vec!["echo".into(), "changed".into()],
        env: Default::default(),
        cwd: None,
    }));
    d.hold_proposals = false;
    d.commit(Command::PutJob {
        spec: Box::new(changed.clone()),
        replace: true,
        at: d.now.wall,
    });
    for command in held {
        d.commit(command);
    }
    assert_eq!(d.started.len(), 1, "{:?}", d.started);
    assert_eq!(d.started[0].executor, changed.executor);
}

#[test]
fn a_run_goes_from_dispatch_to_committed_end() {
    let mut d = Driver::leader("2026-01-01T00:00:00Z", &[job("a", "*/10 * * * * *")]);
    d.pass(Duration::from_secs(10));
    let run = d.started[0].id;
    d.execute(run, None);
    assert_eq!(d.node.state().run(run).unwrap().state, RunState::Running);
    d.pass(Duration::from_secs(1));
    d.execute(run, Some(0));
    let r = d.node.state().run(run).unwrap();
    assert_eq!((r.state, r.exit_code), (RunState::Succeeded, Some(0)));
    assert!(
        d.node.local_runs().next().is_none(),
        "the host forgot the acknowledged run"
    );
    // A late duplicate dispatch is answered from memory, not run again.
    let spec = d.started[0].clone();
    d.input(Input::Message {
        from: ME,
        addr: addr(1),
        message: Message::Dispatch {
            term: 1,
            run: spec,
            renews_lease: false,
        },
    });
    assert_eq!(d.started.len(), 1);
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, Event::DuplicateDispatch { .. }))
    );
}

#[test]
fn a_batch_is_reacted_to_as_its_commands_would_be_in_entries_of_their_own() {
    let jobs = [
        job("a", "@every 10s"),
        job("b", "@every 10s"),
        job("c", "@every 10s"),
    ];
    let mut batched = Driver::leader("2026-01-01T00:00:00Z", &jobs);
    let mut single = Driver::leader("2026-01-01T00:00:00Z", &jobs);
    for d in [&mut batched, &mut single] {
        d.hold_proposals = true;
        d.pass(Duration::from_secs(10));
    }
    assert_eq!(batched.held, single.held);
    single.held.clear();
    let mut commands: Vec<Command> = batched
        .held
        .drain(..)
        .flat_map(|c| c.members().to_vec())
        .collect();
    assert_eq!(commands.len(), 3, "one declaration per job: {commands:?}");
    // The first declaration again, which the state refuses as a duplicate, and a pause
    // that applies after the declarations it follows.
    commands.push(commands[0].clone());
    commands.push(Command::PauseJob {
        name: name("c"),
        at: batched.now.wall,
    });

    batched.commit(Command::batch(commands.clone()));
    for command in &commands {
        single.commit(command.clone());
    }

    assert_eq!(batched.started.len(), 3, "each declared run started once");
    assert_eq!(batched.started, single.started);
    assert_eq!(batched.sent, single.sent);
    assert_eq!(
        batched.held, single.held,
        "the same commands proposed in reaction"
    );
    let runs = |d: &Driver| -> Vec<Run> { d.node.state().runs().map(|(_, r)| r.clone()).collect() };
    assert_eq!(runs(&batched), runs(&single));
    for d in [&mut batched, &mut single] {
        d.hold_proposals = false;
        d.pass(Duration::from_secs(10));
    }
    assert_eq!(batched.started, single.started, "and the same runs after");
    assert_eq!(
        batched.started.len(),
        5,
        "a and b ran again; c, paused, did not"
    );
}

#[test]
fn a_batch_nested_in_a_batch_is_refused_and_stops_nothing() {
    let mut d = Driver::leader("2026-01-01T00:00:00Z", &[job("a", "@every 10s")]);
    d.pass(Duration::from_secs(10));
    let run = d.started[0].id;
    d.execute(run, None);
    let delete = Command::DeleteJob {
        name: name("a"),
        at: d.now.wall,
    };
    let outcome = d.commit(Command::Batch(vec![Command::Batch(vec![delete])]));
    assert!(
        matches!(&outcome, Outcome::Batch(o) if matches!(o.as_slice(), [Outcome::Rejected(_)])),
        "{outcome:?}"
    );
    assert!(d.node.state().job(&name("a")).is_some(), "the job is kept");
    assert!(d.node.state().run(run).unwrap().is_active());
    assert!(d.stops.is_empty(), "its run was not stopped: {:?}", d.stops);
}

fn leadership_gap(policy: MissedPolicy) -> Driver {
    let mut spec = job("m", "* * * * *");
    spec.missed = policy;
    spec.starting_deadline_s = 300;
    let mut d = Driver::leader("2026-01-01T00:00:30Z", &[spec]);
    d.step_down();
    // Twenty minutes without a leader: fires at 00:01 .. 00:20 pass undeclared.
    d.pass(Duration::from_secs(20 * 60));
    assert!(d.declares().is_empty());
    d.lead();
    d
}

#[test]
fn after_a_leaderless_gap_policy_latest_runs_the_newest_fire_within_the_deadline() {
    let d = leadership_gap(MissedPolicy::Latest);
    let now = d.now.wall;
    assert_eq!(now, ts("2026-01-01T00:20:30Z"));
    // 00:01..00:15 are more than 300 s late; 00:16..00:19 were superseded by 00:20.
    assert_eq!(
        d.missed(),
        [
            (
                ts("2026-01-01T00:01:00Z"),
                ts("2026-01-01T00:15:00Z"),
                15,
                Reason::StartingDeadline
            ),
            (
                ts("2026-01-01T00:16:00Z"),
                ts("2026-01-01T00:19:00Z"),
                4,
                Reason::Superseded
            ),
        ]
    );
    let declares = d.declares();
    assert_eq!(declares.len(), 1);
    assert_eq!(declares[0].scheduled_at, ts("2026-01-01T00:20:00Z"));
    assert_eq!(
        d.node.state().job(&name("m")).unwrap().watermark,
        ts("2026-01-01T00:20:00Z")
    );
}

#[test]
fn after_a_leaderless_gap_policy_skip_runs_nothing_and_records_everything() {
    let d = leadership_gap(MissedPolicy::Skip);
    assert!(d.declares().is_empty());
    assert_eq!(
        d.missed(),
        [
            (
                ts("2026-01-01T00:01:00Z"),
                ts("2026-01-01T00:15:00Z"),
                15,
                Reason::StartingDeadline
            ),
            (
                ts("2026-01-01T00:16:00Z"),
                ts("2026-01-01T00:20:00Z"),
                5,
                Reason::MissedPolicySkip
            ),
        ]
    );
}

#[test]
fn after_a_leaderless_gap_policy_all_runs_each_fire_within_the_deadline() {
    let d = leadership_gap(MissedPolicy::All);
    let fires: Vec<Timestamp> = d.declares().iter().map(|x| x.scheduled_at).collect();
    assert_eq!(
        fires,
        ["00:16", "00:17", "00:18", "00:19", "00:20"].map(|m| ts(&format!("2026-01-01T{m}:00Z")))
    );
    assert_eq!(d.missed().len(), 1);
}

#[test]
fn resuming_a_paused_job_follows_its_missed_policy() {
    let mut d = Driver::leader("2026-01-01T00:00:30Z", &[job("p", "*/10 * * * *")]);
    d.commit(Command::PauseJob {
        name: name("p"),
        at: d.now.wall,
    });
    d.pass(Duration::from_secs(3600));
    assert!(d.declares().is_empty(), "a paused job does not fire");
    d.commit(Command::ResumeJob {
        name: name("p"),
        at: d.now.wall,
    });
    d.pass(Duration::from_secs(1));
    // Resumed at 01:00:30: 01:00 is inside the deadline and runs; the rest are recorded.
    assert_eq!(
        d.declares()
            .iter()
            .map(|x| x.scheduled_at)
            .collect::<Vec<_>>(),
        [ts("2026-01-01T01:00:00Z")]
    );
    assert_eq!(
        d.missed(),
        [(
            ts("2026-01-01T00:10:00Z"),
            ts("2026-01-01T00:50:00Z"),
            5,
            Reason::StartingDeadline
        )]
    );
}

#[test]
fn a_fire_found_later_than_its_deadline_is_recorded_missed() {
    let mut spec = job("late", "* * * * *");
    spec.starting_deadline_s = 0;
    let mut d = Driver::leader("2026-01-01T00:00:30Z", &[spec]);
    // The host is stalled (no ticks) across a fire: it is found 5 s late.
    d.now = d.now.advanced(Duration::from_secs(35));
    d.input(Input::Tick);
    assert!(d.declares().is_empty());
    assert_eq!(
        d.missed(),
        [(
            ts("2026-01-01T00:01:00Z"),
            ts("2026-01-01T00:01:00Z"),
            1,
            Reason::StartingDeadline
        )]
    );
}

#[test]
fn manual_runs_obey_forbid_unless_forced() {
    let mut spec = job("f", "@manually");
    spec.concurrency = Concurrency::Forbid;
    let mut d = Driver::leader("2026-01-01T00:00:00Z", &[spec]);
    let first = proposal(d.node.plan_trigger(d.now, &name("f"), false, None));
    let Outcome::Declared { run } = d.commit(first) else {
        panic!()
    };
    assert_eq!(
        d.node.plan_trigger(d.now, &name("f"), false, None),
        Err(TriggerError::Busy {
            job: name("f"),
            active: run
        })
    );
    let forced = proposal(d.node.plan_trigger(d.now, &name("f"), true, None));
    // Both in the same millisecond: the second is placed one millisecond later.
    let Command::Declare(decl) = &forced else {
        panic!()
    };
    assert_eq!(decl.scheduled_at, d.now.wall + Duration::from_millis(1));
    assert!(matches!(d.commit(forced), Outcome::Declared { .. }));
    assert_eq!(d.started.len(), 2);
    assert_eq!(
        d.node.plan_trigger(d.now, &name("nope"), false, None),
        Err(TriggerError::UnknownJob(name("nope")))
    );
}

/// The declaration a planned manual run proposes.
fn proposal(planned: Result<Planned, TriggerError>) -> Command {
    match planned {
        Ok(Planned::Propose(command)) => command,
        other => panic!("expected a proposal, got {other:?}"),
    }
}

#[test]
fn a_manual_run_requested_again_with_its_key_makes_no_second_run() {
    let mut spec = job("f", "@manually");
    spec.concurrency = Concurrency::Forbid;
    let mut d = Driver::leader("2026-01-01T00:00:00Z", &[spec]);
    let key = |k: &str| Some(TriggerKey::new(k).unwrap());

    // Sent, committed, and sent again (its answer was lost): the same run, even though
    // the job now forbids another.
    let first = proposal(d.node.plan_trigger(d.now, &name("f"), false, key("a")));
    let Outcome::Declared { run } = d.commit(first) else {
        panic!()
    };
    assert_eq!(
        d.node.plan_trigger(d.now, &name("f"), false, key("a")),
        Ok(Planned::Made(run))
    );

    // Sent twice before either is committed (the first timed out, the leader is
    // slow): both are proposed, and applying the second makes nothing.
    let mut twice = || proposal(d.node.plan_trigger(d.now, &name("f"), true, key("b")));
    let (once, again) = (twice(), twice());
    let Outcome::Declared { run: made } = d.commit(once) else {
        panic!()
    };
    assert_eq!(
        d.commit(again),
        Outcome::Rejected(Rejection::KeyUsed {
            key: TriggerKey::new("b").unwrap(),
            run: made,
        })
    );
    assert_eq!(d.started.len(), 2, "runs started: {:?}", d.started);

    // Another key is another request.
    let other = proposal(d.node.plan_trigger(d.now, &name("f"), true, key("c")));
    assert!(matches!(d.commit(other), Outcome::Declared { .. }));
    assert_eq!(d.started.len(), 3);
}

#[test]
fn a_docker_engine_found_or_lost_after_start_changes_where_docker_runs_go() {
    let mut spec = job("boxed", "@manually");
    spec.executor = Arc::new(ExecutorSpec::Docker(
        serde_json::from_str(r#"{"image": "backup:1"}"#).unwrap(),
    ));
    let mut d = Driver::leader("2026-01-01T00:00:00Z", &[spec]);
    let me = |d: &Driver| {
        let members = d.node.members();
        let view = members.iter().find(|m| m.id == ME).unwrap();
        (view.docker, view.resources)
    };
    let trigger = |d: &mut Driver| {
        let declare = proposal(d.node.plan_trigger(d.now, &name("boxed"), true, None));
        d.commit(declare)
    };

    // Started without an engine: the docker run has nowhere to go.
    assert_eq!(me(&d), (false, Some(sample())));
    assert!(matches!(
        trigger(&mut d),
        Outcome::Recorded {
            reason: Reason::NoCapacity,
            ..
        }
    ));

    // The engine answers now: the host says so with the sample it last took, and the
    // next docker run starts here.
    d.input(Input::Docker(true));
    assert_eq!(me(&d), (true, Some(sample())));
    assert!(matches!(trigger(&mut d), Outcome::Declared { .. }));
    assert_eq!(d.started.len(), 1);

    // A fresher sample keeps the engine, and an engine that stops answering is given up.
    let mut fresher = sample();
    fresher.cpu_free_milli = 2500;
    d.input(Input::Resources(fresher));
    assert_eq!(me(&d), (true, Some(fresher)));
    d.input(Input::Docker(false));
    assert_eq!(me(&d), (false, Some(fresher)));
    assert!(matches!(
        trigger(&mut d),
        Outcome::Recorded {
            reason: Reason::NoCapacity,
            ..
        }
    ));
    assert_eq!(d.started.len(), 1);
}

#[test]
fn replace_stops_the_old_run_and_starts_the_new_one_after_it_ends() {
    let mut spec = job("r", "* * * * *");
    spec.concurrency = Concurrency::Replace;
    let mut d = Driver::leader("2026-01-01T00:00:30Z", &[spec]);
    d.pass(Duration::from_secs(31));
    let old = d.started[0].id;
    d.execute(old, None);
    d.pass(Duration::from_secs(60));
    // The 00:02 run is declared, the old one asked to stop, the new one not started yet.
    assert_eq!(d.declares().len(), 2);
    assert_eq!(d.stops, [(old, Reason::Replaced)]);
    assert_eq!(d.started.len(), 1);
    d.input(Input::Executor(ExecutorEvent::Exited {
        run: old,
        at: d.now.wall,
        started_at: None,
        exit_code: Some(143),
        reason: Some(Reason::Stopped),
        detail: None,
    }));
    assert_eq!(
        d.node.state().run(old).unwrap().reason,
        Some(Reason::Replaced)
    );
    assert_eq!(
        d.started.len(),
        2,
        "the replacement started once the old run ended"
    );
}

#[test]
fn failed_runs_are_retried_after_their_backoff_as_new_attempts() {
    let mut spec = job("flaky", "@hourly");
    spec.retries = 1;
    spec.retry_backoff_s = 30;
    let mut d = Driver::leader("2026-01-01T00:59:50Z", &[spec]);
    d.pass(Duration::from_secs(11));
    let first = d.started[0].id;
    d.execute(first, Some(2));
    d.pass(Duration::from_secs(29));
    assert_eq!(d.started.len(), 1, "not before the backoff");
    d.pass(Duration::from_secs(2));
    assert_eq!(d.started.len(), 2);
    let retry = &d.started[1];
    assert_eq!(
        (retry.attempt, retry.scheduled_at),
        (2, ts("2026-01-01T01:00:00Z"))
    );
    let retry = retry.id;
    d.execute(retry, Some(2));
    d.pass(Duration::from_secs(120));
    assert_eq!(d.started.len(), 2, "one retry only");
}

// ----- the worker -----

fn spec_for(
    run: u64,
    concurrency: Concurrency,
    timeout_ms: Option<u64>,
    start_by: Timestamp,
) -> RunSpec {
    let j = job("w", "@hourly");
    RunSpec {
        id: RunId(run),
        job: j.name,
        scheduled_at: ts("2026-01-01T00:00:00Z"),
        attempt: 1,
        executor: j.executor,
        timeout_ms,
        concurrency,
        start_by,
    }
}

fn dispatch(d: &mut Driver, term: u64, spec: RunSpec) {
    d.input(Input::Message {
        from: OTHER,
        addr: addr(2),
        message: Message::Dispatch {
            term,
            run: spec,
            renews_lease: true,
        },
    });
}

#[test]
fn a_dispatch_from_a_deposed_leader_is_refused() {
    let mut d = Driver::new("2026-01-01T00:00:00Z");
    let later = ts("2026-01-01T01:00:00Z");
    dispatch(&mut d, 5, spec_for(1, Concurrency::Allow, None, later));
    assert_eq!(d.started.len(), 1);
    dispatch(&mut d, 4, spec_for(2, Concurrency::Allow, None, later));
    assert_eq!(d.started.len(), 1);
    assert!(d.events.iter().any(|e| matches!(
        e,
        Event::StaleLeaderRefused {
            term: 4,
            known: 5,
            ..
        }
    )));
}

#[test]
fn reports_are_resent_until_acknowledged() {
    let mut d = Driver::new("2026-01-01T00:00:00Z");
    dispatch(
        &mut d,
        1,
        spec_for(7, Concurrency::Allow, None, ts("2026-01-01T01:00:00Z")),
    );
    d.execute(RunId(7), Some(0));
    let reports = |d: &Driver| {
        d.sent
            .iter()
            .filter(|(to, m)| *to == OTHER && matches!(m, Message::Report { run: RunId(7), .. }))
            .count()
    };
    let first = reports(&d);
    assert!(first >= 1);
    d.pass(Duration::from_secs(3));
    let later = reports(&d);
    assert!(later >= first + 2, "resent: {first} then {later}");
    d.input(Input::Message {
        from: OTHER,
        addr: addr(2),
        message: Message::Ack {
            term: 1,
            run: RunId(7),
            finished: true,
        },
    });
    let acked = reports(&d);
    d.pass(Duration::from_secs(5));
    assert_eq!(reports(&d), acked, "no report after the ack");
}

#[test]
fn a_run_past_its_timeout_is_stopped_and_reported_as_timeout() {
    let mut d = Driver::new("2026-01-01T00:00:00Z");
    dispatch(
        &mut d,
        1,
        spec_for(
            3,
            Concurrency::Allow,
            Some(2_000),
            ts("2026-01-01T01:00:00Z"),
        ),
    );
    d.execute(RunId(3), None);
    // Heartbeats keep the lease; the run times out anyway.
    for _ in 0..3 {
        d.pass(Duration::from_millis(900));
        d.input(Input::Message {
            from: OTHER,
            addr: addr(2),
            message: Message::Heartbeat {
                term: 1,
                renews_lease: true,
            },
        });
    }
    assert_eq!(d.stops, [(RunId(3), Reason::Timeout)]);
    d.input(Input::Executor(ExecutorEvent::Exited {
        run: RunId(3),
        at: d.now.wall,
        started_at: None,
        exit_code: Some(137),
        reason: Some(Reason::Stopped),
        detail: None,
    }));
    let last = d.sent.iter().rev().find_map(|(_, m)| match m {
        Message::Report { status, .. } => Some(status.clone()),
        _ => None,
    });
    assert!(
        matches!(
            last,
            Some(ReportStatus::Finished {
                reason: Some(Reason::Timeout),
                exit_code: Some(137),
                ..
            })
        ),
        "{last:?}"
    );
}

#[test]
fn without_a_leader_for_a_lease_period_forbid_runs_stop_and_allow_runs_continue() {
    let mut d = Driver::new("2026-01-01T00:00:00Z");
    let later = ts("2026-01-01T01:00:00Z");
    dispatch(&mut d, 1, spec_for(1, Concurrency::Forbid, None, later));
    dispatch(&mut d, 1, spec_for(2, Concurrency::Allow, None, later));
    dispatch(&mut d, 1, spec_for(3, Concurrency::Replace, None, later));
    for run in 1..=3 {
        d.execute(RunId(run), None);
    }
    d.pass(Duration::from_secs(9));
    assert!(d.stops.is_empty(), "the lease still holds");
    d.pass(Duration::from_secs(2));
    assert_eq!(
        d.stops,
        [
            (RunId(1), Reason::LeaseExpired),
            (RunId(3), Reason::LeaseExpired)
        ]
    );
    assert_eq!(
        d.events
            .iter()
            .filter(|e| matches!(e, Event::LeaseExpired { .. }))
            .count(),
        2
    );
}

#[test]
fn a_dispatch_that_arrives_after_its_start_deadline_is_refused() {
    let mut d = Driver::new("2026-01-01T00:10:00Z");
    dispatch(
        &mut d,
        1,
        spec_for(9, Concurrency::Allow, None, ts("2026-01-01T00:05:00Z")),
    );
    assert!(d.started.is_empty());
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, Event::DispatchExpired { run: RunId(9) }))
    );
    let report = d.sent.iter().find_map(|(_, m)| match m {
        Message::Report {
            run: RunId(9),
            status,
        } => Some(status.clone()),
        _ => None,
    });
    assert!(matches!(
        report,
        Some(ReportStatus::Finished {
            reason: Some(Reason::DispatchLost),
            ..
        })
    ));
    // A stop that overtook its dispatch leaves a tombstone: the dispatch is not run.
    d.input(Input::Message {
        from: OTHER,
        addr: addr(2),
        message: Message::Stop {
            term: 1,
            run: RunId(10),
            reason: Reason::Stopped,
        },
    });
    dispatch(
        &mut d,
        1,
        spec_for(10, Concurrency::Allow, None, ts("2026-01-01T01:00:00Z")),
    );
    assert!(d.started.is_empty());
}

#[test]
fn a_query_is_answered_for_every_run_even_unknown_ones() {
    let mut d = Driver::new("2026-01-01T00:00:00Z");
    dispatch(
        &mut d,
        1,
        spec_for(1, Concurrency::Allow, None, ts("2026-01-01T01:00:00Z")),
    );
    d.execute(RunId(1), None);
    d.sent.clear();
    d.input(Input::Message {
        from: OTHER,
        addr: addr(2),
        message: Message::Query {
            term: 1,
            runs: vec![RunId(1), RunId(2)],
        },
    });
    let statuses: Vec<(RunId, bool)> = d
        .sent
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Report { run, status } => {
                Some((*run, matches!(status, ReportStatus::Unknown)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(statuses, [(RunId(1), false), (RunId(2), true)]);
}

/// A manual run of `job` declared now on `host`, as the leader of `d` would.
fn manual_on(d: &Driver, job: &str, host: HostId) -> Command {
    Command::Declare(Declare {
        job: name(job),
        scheduled_at: d.now.wall,
        attempt: 1,
        trigger: Trigger::Manual { force: false },
        host: Some(host),
        term: d.term,
        at: d.now.wall,
        key: None,
    })
}

#[test]
fn a_host_still_running_a_run_the_cluster_holds_ended_is_told_to_stop() {
    let mut d = Driver::leader("2026-01-01T00:00:00Z", &[job("j", "@manually")]);
    let declare = manual_on(&d, "j", OTHER);
    let Outcome::Declared { run } = d.commit(declare) else {
        panic!()
    };
    d.commit(Command::MarkFinished(crate::command::Finish {
        run,
        host: None,
        started_at: None,
        finished_at: d.now.wall,
        exit_code: None,
        reason: Some(Reason::HostLost),
        detail: None,
    }));
    d.sent.clear();
    d.input(Input::Message {
        from: OTHER,
        addr: addr(2),
        message: Message::Report {
            run,
            status: ReportStatus::Started { at: d.now.wall },
        },
    });
    assert!(
        d.sent
            .iter()
            .any(|(to, m)| *to == OTHER && matches!(m, Message::Stop { run: r, .. } if *r == run)),
        "{:?}",
        d.sent
    );
}

#[test]
fn a_run_stopped_on_request_is_stopped_by_its_host_and_not_retried() {
    let mut spec = job("s", "@manually");
    spec.retries = 2;
    let mut d = Driver::leader("2026-01-01T00:00:00Z", &[spec]);
    let stop = |d: &mut Driver, run: RunId| {
        let at = d.now.wall;
        d.commit(Command::StopRun { run, at })
    };

    // A run declared on another host that has not started it: that host is told to
    // stop it instead of to start it, again until it reports. (First, while the
    // other host, which gossip never shows here, is not yet held lost.)
    d.input(Input::Message {
        from: OTHER,
        addr: addr(2),
        message: Message::HeartbeatAck { term: d.term },
    });
    let declare = manual_on(&d, "s", OTHER);
    let Outcome::Declared { run } = d.commit(declare) else {
        panic!()
    };
    d.sent.clear();
    assert_eq!(stop(&mut d, run), Outcome::Done);
    let told = |d: &Driver| {
        let stops = d
            .sent
            .iter()
            .filter(|(to, m)| {
                *to == OTHER && matches!(m, Message::Stop { run: r, .. } if *r == run)
            })
            .count();
        let dispatches = d
            .sent
            .iter()
            .filter(|(_, m)| matches!(m, Message::Dispatch { .. }))
            .count();
        (stops, dispatches)
    };
    assert_eq!(told(&d), (1, 0), "{:?}", d.sent);
    d.pass(Duration::from_secs(6));
    let (stops, dispatches) = told(&d);
    assert!(stops > 1, "told again: {:?}", d.sent);
    assert_eq!(dispatches, 0, "{:?}", d.sent);
    d.input(Input::Message {
        from: OTHER,
        addr: addr(2),
        message: Message::Report {
            run,
            status: ReportStatus::Finished {
                started_at: None,
                at: d.now.wall,
                exit_code: None,
                reason: Some(Reason::Stopped),
                detail: Some("stopped before this host received it".into()),
            },
        },
    });
    let ended = d.node.state().run(run).unwrap();
    assert_eq!(
        (ended.state, ended.reason, ended.started_at),
        (RunState::Failed, Some(Reason::Stopped), None)
    );

    // A running run: its host stops it, and it ends `stopped`, with no retry.
    let declare = proposal(d.node.plan_trigger(d.now, &name("s"), false, None));
    let Outcome::Declared { run } = d.commit(declare) else {
        panic!()
    };
    d.execute(run, None);
    assert_eq!(d.node.state().run(run).unwrap().state, RunState::Running);
    assert_eq!(stop(&mut d, run), Outcome::Done);
    assert_eq!(d.stops, [(run, Reason::Stopped)]);
    d.input(Input::Executor(ExecutorEvent::Exited {
        run,
        at: d.now.wall,
        started_at: None,
        exit_code: None,
        reason: Some(Reason::Stopped),
        detail: None,
    }));
    let ended = d.node.state().run(run).unwrap();
    assert_eq!(
        (ended.state, ended.reason),
        (RunState::Failed, Some(Reason::Stopped))
    );
    let declared = d.declares().len();
    d.pass(Duration::from_secs(120));
    assert_eq!(d.declares().len(), declared, "a stopped run is not retried");
    assert_eq!(
        stop(&mut d, run),
        Outcome::Rejected(Rejection::RunEnded(run))
    );
    assert_eq!(
        stop(&mut d, RunId(999)),
        Outcome::Rejected(Rejection::UnknownRun(RunId(999)))
    );
}
