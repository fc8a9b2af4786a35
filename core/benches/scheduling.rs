//! What scheduling costs the leader, with 100,000 jobs of mixed schedules (see
//! `workload/mod.rs` for the mix), every job holding a full run history as after a long
//! time of service.
//!
//! Group `leader_1000_due`: each iteration moves the clock one second to an instant at
//! which exactly 1,000 jobs are due, and
//! - `tick` times `handle(now, Input::Tick)` and draining its effects (one proposal of
//!   1,000 `Declare` commands);
//! - `apply` times `handle_applied` of that proposal and draining its effects (the leader
//!   dispatches each run to itself, which answers 1,000 `StartRun`);
//! - `tick_and_apply` times both, so its throughput is declared runs per second;
//! - `finish` times the rest of the runs' lives: the executor reports each run exited,
//!   the worker reports to the leader, which proposes `MarkFinished`; the proposals are
//!   applied as one batch.
//!
//! Every phase runs in every iteration whichever is timed, so the state stays steady:
//! runs end before the next tick, and each `MarkFinished` pushes the oldest run out of
//! its job's history. Instants at which crontab jobs fire are stepped over untimed.
//! After the group, the mean of each phase over all its measured seconds is printed,
//! with declared runs per second, and how much of the time the thread was preempted.
//!
//! Group `state_apply`: `State::apply` of single `Declare`, `MarkStarted` and
//! `MarkFinished` commands, and of a `Batch` of 1,000 declarations, on the same state
//! without a node; its throughput is commands per second.

/// The daemon's allocator (see `runtime/src/main.rs`), so that this measures what it does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rota_core::command::{Command, Declare, Finish, Outcome};
use rota_core::job::JobName;
use rota_core::node::{Effect, ExecutorEvent, Input, Node};
use rota_core::run::{RunId, Trigger};
use rota_core::time::{Now, Timestamp};

mod workload;

use workload::{CRON_SECONDS, DUE_PER_SECOND, JOBS, Log, ME, TERM};

/// Runs `f` and answers how long it took.
#[expect(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "a benchmark measures real time; the core under test still never reads a clock"
)]
fn timed(f: impl FnOnce()) -> Duration {
    let start = std::time::Instant::now();
    f();
    start.elapsed()
}

/// The phases of one second of the leader's life, timed separately.
#[derive(Clone, Copy, Debug)]
struct Phases {
    tick: Duration,
    apply: Duration,
    finish: Duration,
}

/// The only host, leading 100,000 jobs.
struct Leader {
    node: Node,
    now: Now,
    index: u64,
    proposals: Vec<Command>,
    started: Vec<RunId>,
    finishes: Vec<Command>,
    /// The measured seconds so far, and their phases' times summed.
    measured: u32,
    totals: Phases,
}

impl Leader {
    fn new() -> Self {
        let mut log = Log::new();
        log.put_jobs(JOBS);
        log.fill_history();
        let (node, index) = workload::ready_leader(log);
        let mut leader = Leader {
            node,
            now: workload::start(),
            index,
            proposals: Vec::with_capacity(16),
            started: Vec::with_capacity(DUE_PER_SECOND * 8),
            finishes: Vec::with_capacity(DUE_PER_SECOND * 8),
            measured: 0,
            totals: Phases {
                tick: Duration::ZERO,
                apply: Duration::ZERO,
                finish: Duration::ZERO,
            },
        };
        // Settle whatever the take-over owes before anything is measured.
        leader.second();
        leader
    }

    /// One second at which exactly 1,000 runs are declared, stepping over (untimed) the
    /// seconds at which crontab jobs fire too.
    fn measured_second(&mut self) -> Phases {
        loop {
            let next = self.now.wall + Duration::from_secs(1);
            let quiet = !CRON_SECONDS.contains(&next.as_secs_floor().rem_euclid(60));
            let (phases, declared, commands) = self.second();
            if quiet {
                assert_eq!(
                    (declared, commands),
                    (DUE_PER_SECOND, DUE_PER_SECOND),
                    "runs declared and commands proposed at {}",
                    self.now.wall
                );
                self.measured += 1;
                self.totals.tick += phases.tick;
                self.totals.apply += phases.apply;
                self.totals.finish += phases.finish;
                return phases;
            }
        }
    }

    /// Moves the clock one second and lives it: tick, apply what it proposed, end every
    /// run it started. Answers the phases' times, how many runs were declared on a host
    /// for a fire time, and how many commands were proposed.
    fn second(&mut self) -> (Phases, usize, usize) {
        let now = self.now.advanced(Duration::from_secs(1));
        self.now = now;

        let tick = timed(|| {
            phase_tick(|| {
                self.node.handle(now, Input::Tick);
                while let Some(effect) = self.node.poll_effect() {
                    if let Effect::Propose(command) = effect {
                        self.proposals.push(command);
                    }
                }
            })
        });
        // Runs declared with a host; anything else (a run without a host, a missed
        // record, a retry) would make this second other than the one meant.
        let declared = self
            .proposals
            .iter()
            .flat_map(Command::members)
            .filter(|c| {
                matches!(c, Command::Declare(d) if d.host.is_some() && d.trigger == Trigger::Schedule)
            })
            .count();
        let commands: usize = self.proposals.iter().map(Command::len).sum();

        let apply = timed(|| {
            phase_apply(|| {
                for command in &self.proposals {
                    self.index += 1;
                    black_box(self.node.handle_applied(now, self.index, command));
                }
                while let Some(effect) = self.node.poll_effect() {
                    if let Effect::StartRun(spec) = effect {
                        self.started.push(spec.id);
                    }
                }
            })
        });
        self.proposals.clear();

        let finish = timed(|| {
            phase_finish(|| {
                for run in self.started.drain(..) {
                    self.node.handle(
                        now,
                        Input::Executor(ExecutorEvent::Exited {
                            run,
                            at: now.wall,
                            started_at: Some(now.wall),
                            exit_code: Some(0),
                            reason: None,
                            detail: None,
                        }),
                    );
                    while let Some(effect) = self.node.poll_effect() {
                        match effect {
                            Effect::Propose(Command::Batch(commands)) => {
                                self.finishes.extend(commands)
                            }
                            Effect::Propose(command) => self.finishes.push(command),
                            _ => {}
                        }
                    }
                }
                // A runtime would propose them as they come; one entry per thousand is the
                // cheapest it could do.
                let chunk = 1_000;
                while !self.finishes.is_empty() {
                    let rest = self.finishes.split_off(self.finishes.len().min(chunk));
                    let batch = Command::batch(core::mem::replace(&mut self.finishes, rest));
                    self.index += 1;
                    black_box(self.node.handle_applied(now, self.index, &batch));
                    while self.node.poll_effect().is_some() {}
                }
            })
        });

        // Raft's quorum acknowledges the leader again, which keeps its lease (and so
        // the leases of the runs it started on itself) fresh.
        self.node
            .handle(now, Input::Raft(workload::raft_status(now)));
        while self.node.poll_effect().is_some() {}
        (
            Phases {
                tick,
                apply,
                finish,
            },
            declared,
            commands,
        )
    }
}

/// Nanoseconds this thread has spent on a CPU (Linux), to tell how much of the wall
/// time the benchmark was preempted for.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn leader_1000_due(c: &mut Criterion) {
    let mut leader = Leader::new();
    let cpu_before = thread_cpu_ns();
    let wall = timed(|| {
        let mut group = c.benchmark_group("leader_1000_due");
        group
            .sample_size(20)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(10))
            .throughput(Throughput::Elements(DUE_PER_SECOND as u64));
        type Pick = fn(&Phases) -> Duration;
        let picks: [(&str, Pick); 4] = [
            ("tick", |p| p.tick),
            ("apply", |p| p.apply),
            ("tick_and_apply", |p| p.tick + p.apply),
            ("finish", |p| p.finish),
        ];
        for (name, pick) in picks {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| pick(&leader.measured_second())).sum())
            });
        }
        group.finish();
    });
    // The same phases over every second measured above (warm-ups included), so that
    // they add up: the benchmarks above each ran at different simulated times.
    let n = leader.measured.max(1);
    let t = leader.totals;
    let (tick, apply, finish) = (t.tick / n, t.apply / n, t.finish / n);
    let per_run = |d: Duration| d.as_nanos() / DUE_PER_SECOND as u128;
    let rate = |d: Duration| DUE_PER_SECOND as f64 / d.as_secs_f64();
    println!("leader_1000_due: mean over all {n} measured seconds, 1,000 runs declared in each");
    println!(
        "  tick {tick:.3?} + apply {apply:.3?} = {:.3?}: {} ns per declared run, {:.0} declared runs/s",
        tick + apply,
        per_run(tick + apply),
        rate(tick + apply)
    );
    println!(
        "  finish {finish:.3?}: {} ns per run; whole life {} ns per run, {:.0} runs/s",
        per_run(finish),
        per_run(tick + apply + finish),
        rate(tick + apply + finish)
    );
    if let (Some(before), Some(after)) = (cpu_before, thread_cpu_ns()) {
        let on_cpu = Duration::from_nanos(after.saturating_sub(before));
        println!(
            "  this thread was on a CPU for {:.1}% of the group's wall time (less means preempted)",
            100.0 * on_cpu.as_secs_f64() / wall.as_secs_f64()
        );
    }
}

/// The replicated state alone, with 100,000 jobs each holding a full history.
struct Replica {
    log: Log,
    names: Vec<JobName>,
    /// The next job to declare a run of.
    cursor: usize,
    /// A fire time later than every job's watermark.
    wall: Timestamp,
}

/// Which command of a run's life `Replica::round` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Declare,
    DeclareBatch,
    MarkStarted,
    MarkFinished,
}

impl Replica {
    fn new() -> Self {
        let mut log = Log::new();
        log.put_jobs(JOBS);
        log.fill_history();
        log.apply(&Command::LeaderStart {
            nonce: 0,
            term: TERM,
            leader: ME,
            at: workload::START,
        });
        let names = log.state.jobs().map(|(name, _)| name.clone()).collect();
        Replica {
            log,
            names,
            cursor: 0,
            wall: workload::START + Duration::from_secs(1),
        }
    }

    /// Declares, starts and ends one run each of the next `n` jobs; answers the time
    /// `step` took.
    fn round(&mut self, n: usize, step: Step) -> Duration {
        self.wall = self.wall + Duration::from_secs(1);
        let at = self.wall;
        let declares: Vec<Command> = (0..n)
            .map(|k| {
                let job = self.names[(self.cursor + k) % self.names.len()].clone();
                Command::Declare(Declare {
                    job,
                    scheduled_at: at,
                    attempt: 1,
                    // Manual: a scheduled declaration must name the job's next fire,
                    // which a made-up second is not. The schedule check's own cost is
                    // in `leader_1000_due/apply`.
                    trigger: Trigger::Manual { force: true },
                    host: Some(ME),
                    term: TERM,
                    at,
                    key: None,
                })
            })
            .collect();
        self.cursor = (self.cursor + n) % self.names.len();
        let mut runs = Vec::with_capacity(n);
        let mut took = Duration::ZERO;

        if step == Step::DeclareBatch {
            let batch = Command::Batch(declares);
            let mut outcome = Outcome::Done;
            took += timed(|| {
                self.log.index += 1;
                outcome = self.log.state.apply(self.log.index, &batch);
            });
            let Outcome::Batch(outcomes) = outcome else {
                panic!("a batch answers a batch")
            };
            runs.extend(outcomes.iter().map(declared));
        } else {
            let mut outcomes = Vec::with_capacity(n);
            let t = timed(|| {
                for command in &declares {
                    self.log.index += 1;
                    outcomes.push(self.log.state.apply(self.log.index, command));
                }
            });
            if step == Step::Declare {
                took += t;
            }
            runs.extend(outcomes.iter().map(declared));
        }

        let started: Vec<Command> = runs
            .iter()
            .map(|&run| Command::MarkStarted {
                run,
                host: ME,
                started_at: at,
            })
            .collect();
        let t = self.apply_each(&started);
        if step == Step::MarkStarted {
            took += t;
        }

        let finished: Vec<Command> = runs
            .iter()
            .map(|&run| {
                Command::MarkFinished(Finish {
                    run,
                    host: Some(ME),
                    started_at: Some(at),
                    finished_at: at,
                    exit_code: Some(0),
                    reason: None,
                    detail: None,
                })
            })
            .collect();
        let t = self.apply_each(&finished);
        if step == Step::MarkFinished {
            took += t;
        }
        took
    }

    fn apply_each(&mut self, commands: &[Command]) -> Duration {
        let state = &mut self.log.state;
        let index = &mut self.log.index;
        let mut rejected = 0usize;
        let took = timed(|| {
            for command in commands {
                *index += 1;
                rejected += usize::from(state.apply(*index, command).is_rejected());
            }
        });
        assert_eq!(rejected, 0, "commands were refused");
        took
    }
}

fn declared(outcome: &Outcome) -> RunId {
    match outcome {
        Outcome::Declared { run } => *run,
        other => panic!("not declared: {other:?}"),
    }
}

fn state_apply(c: &mut Criterion) {
    let mut replica = Replica::new();
    let mut group = c.benchmark_group("state_apply");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    for (name, step) in [
        ("declare", Step::Declare),
        ("mark_started", Step::MarkStarted),
        ("mark_finished", Step::MarkFinished),
    ] {
        // One iteration is one command, in rounds of at most a thousand.
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut left = iters as usize;
                let mut took = Duration::ZERO;
                while left > 0 {
                    let n = left.min(1_000);
                    took += replica.round(n, step);
                    left -= n;
                }
                took
            })
        });
    }
    // One iteration is one batch of a thousand declarations.
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("declare_batch_1000", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| replica.round(1_000, Step::DeclareBatch))
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, leader_1000_due, state_apply);
criterion_main!(benches);

// Each phase in a function of its own, kept out of line, so that a profile can tell the
// phases apart by the frames of their stacks.
#[inline(never)]
fn phase_tick(f: impl FnOnce()) {
    f()
}

#[inline(never)]
fn phase_apply(f: impl FnOnce()) {
    f()
}

#[inline(never)]
fn phase_finish(f: impl FnOnce()) {
    f()
}
