//! The checkers, run on every seed's history. As Jepsen checks Chronos: each expected
//! fire time is matched against what the executors actually ran, not against rota's own
//! records, which are only trusted for saying why a fire did not run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rota_core::job::{Concurrency, JobName};
use rota_core::run::{Reason, Run, RunId, RunState, Trigger, TriggerKey};
use rota_core::state::State;
use rota_core::time::Timestamp;

use crate::executor::TruthRun;
use crate::plan::{EPOCH, Write};
use crate::world::{History, PAUSE_AFTER_HEAL_MS};

/// What the checkers found.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Broken rules, each a readable sentence.
    pub violations: Vec<String>,
    /// Fire times matched against the ground truth.
    pub fires_checked: usize,
    /// Fire times rota did not run but recorded with a reason (missed, skipped, failed).
    pub recorded_not_run: usize,
    /// Faults that fired.
    pub faults_fired: usize,
}

/// How late a start may be past the job's starting deadline: clock skew and steps the
/// plan puts on a host, plus dispatch.
const LATENESS_SLACK: Duration = Duration::from_secs(25);

fn sim_ms(t: Timestamp) -> i64 {
    t.as_millis() - EPOCH.as_millis()
}

/// Checks one seed's history.
pub fn check(h: &History) -> Report {
    let mut report = Report::default();
    let mut fail = |what: String| report.violations.push(what);

    // Every planned fault fired.
    let mut fired = 0;
    for f in &h.fired {
        if f.what.starts_with("NOT FIRED") {
            fail(format!("a fault never fired: {}", f.what));
        } else if !f.what.starts_with("SKIPPED") {
            fired += 1;
        }
    }
    let planned = h.plan.faults.len();
    if fired
        + h.fired
            .iter()
            .filter(|f| f.what.starts_with("SKIPPED"))
            .count()
        < planned
    {
        fail(format!("{planned} faults planned, {fired} fired"));
    }

    let Some(reference) = reference_state(h) else {
        fail("no host is up at the end to read the state from".into());
        return report;
    };

    // 7. Every voter converged to the same state.
    let mut distinct: BTreeMap<&Vec<u8>, Vec<usize>> = BTreeMap::new();
    for (host, bytes) in &h.state_bytes {
        distinct.entry(bytes).or_default().push(*host);
    }
    if distinct.len() > 1 {
        let summary: Vec<String> = h
            .states
            .iter()
            .map(|(host, s)| {
                format!(
                    "h{host}: applied {} with {} runs",
                    s.applied_index(),
                    s.runs().len()
                )
            })
            .collect();
        fail(format!(
            "replicas differ at the end: {}",
            summary.join("; ")
        ));
    }

    // 1. No duplicate start.
    let mut starts: BTreeMap<(JobName, Timestamp, u32), Vec<&TruthRun>> = BTreeMap::new();
    // A manual run is its own fire, whatever its time: key runs by what made them too.
    let manual = |r: &TruthRun| {
        reference
            .run(r.run)
            .is_some_and(|run| matches!(run.trigger, Trigger::Manual { .. }))
    };
    for run in h.truth.iter().filter(|r| !manual(r)) {
        starts
            .entry((run.job.clone(), run.scheduled_at, run.attempt))
            .or_default()
            .push(run);
    }
    for ((job, at, attempt), runs) in &starts {
        if runs.len() > 1 {
            fail(format!(
                "fire {at} of {job} attempt {attempt} started {} times: {:?}",
                runs.len(),
                runs.iter()
                    .map(|r| (r.host, r.run, r.started_ms))
                    .collect::<Vec<_>>()
            ));
        }
    }
    let mut by_fire: BTreeMap<(JobName, Timestamp), usize> = BTreeMap::new();
    for run in h.truth.iter().filter(|r| !manual(r)) {
        *by_fire
            .entry((run.job.clone(), run.scheduled_at))
            .or_default() += 1;
    }
    for ((job, at), n) in &by_fire {
        let retries = reference.job(job).map_or(0, |j| j.spec.retries);
        if retries == 0 && *n > 1 {
            fail(format!(
                "fire {at} of {job}, which allows no retries, started {n} times"
            ));
        }
    }

    // 3. Forbid (and replace) hold: no two runs of one job overlap.
    for (name, job) in reference.jobs() {
        if job.spec.concurrency == Concurrency::Allow {
            continue;
        }
        // A manual run asked with `force` may overlap by design.
        let forced = |r: &TruthRun| {
            reference
                .run(r.run)
                .is_some_and(|run| run.trigger == Trigger::Manual { force: true })
        };
        let runs = runs_by_start(h, name, |r| !forced(r));
        for pair in runs.windows(2) {
            let end = pair[0].ended_ms.unwrap_or(u64::MAX);
            if end > pair[1].started_ms {
                fail(format!(
                    "{:?} job {name} overlapped: run {} on h{} from {} ms to {:?} and run {} on h{} from {} ms",
                    job.spec.concurrency,
                    pair[0].run,
                    pair[0].host.0 - 1,
                    pair[0].started_ms,
                    pair[0].ended_ms,
                    pair[1].run,
                    pair[1].host.0 - 1,
                    pair[1].started_ms
                ));
            }
        }
    }

    // 3b. Under replace the newest fire wins: no scheduled run (or retry) starts after
    // a run of a later fire of the same job started.
    for (name, job) in reference.jobs() {
        if job.spec.concurrency != Concurrency::Replace {
            continue;
        }
        let runs = runs_by_start(h, name, |r| !manual(r));
        let mut newest: Option<&TruthRun> = None;
        for run in runs {
            if let Some(newer) = newest.filter(|n| n.scheduled_at > run.scheduled_at) {
                fail(format!(
                    "replace job {name}: run {} of fire {} attempt {} started at {} ms, after run {} of the later fire {} started at {} ms",
                    run.run,
                    run.scheduled_at,
                    run.attempt,
                    run.started_ms,
                    newer.run,
                    newer.scheduled_at,
                    newer.started_ms
                ));
            } else {
                newest = Some(run);
            }
        }
    }

    // 4. No run is left declared; no run is left on a host lost for good.
    for run in reference.active_runs() {
        let lost_host = run
            .host
            .is_some_and(|h_| h.lost.contains(&((h_.0 - 1) as usize)));
        if run.state == RunState::Declared || lost_host {
            fail(format!(
                "run {} of {} ({} attempt {}) is still {:?} on {:?} at the end",
                run.id, run.job, run.scheduled_at, run.attempt, run.state, run.host
            ));
        }
    }

    // 5. Acknowledged writes survive.
    for ack in &h.acked {
        if ack.what == "create"
            && let Ok(name) = JobName::new(&ack.job)
            && reference.job(&name).is_none()
        {
            fail(format!(
                "job {} was acknowledged at {} ms but is gone",
                ack.job, ack.at_ms
            ));
        }
    }

    // 6. A trigger sent again makes no second run: a job has no more manual runs than
    // triggers were asked of it, and the key of each acknowledged one names its run.
    let mut asked: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, write) in &h.plan.writes {
        if let Write::Trigger { job } = write {
            *asked.entry(h.plan.jobs[*job].name.as_str()).or_default() += 1;
        }
    }
    for (name, job) in reference.jobs() {
        let manual = reference
            .runs_of(job)
            .filter(|r| matches!(r.trigger, Trigger::Manual { .. }))
            .count();
        let asked = asked.get(name.as_str()).copied().unwrap_or(0);
        if manual > asked {
            fail(format!(
                "job {name} has {manual} manual runs for {asked} triggers"
            ));
        }
    }
    // 8. A run asked to stop (acknowledged) has ended by the end, and is not tried
    // again, whatever ended it (its host may have died first). One recorded stopped
    // before it started never ran.
    for ack in h.acked.iter().filter(|a| a.what == "stop") {
        let Some(run) = ack.run.and_then(|id| reference.run(RunId(id))) else {
            // Aged out of its job's bounded history: it ended.
            continue;
        };
        if run.is_active() {
            fail(format!(
                "run {} of {} was asked to stop at {} ms and is still {:?} at the end",
                run.id, run.job, ack.at_ms, run.state
            ));
            continue;
        }
        let retried = reference.runs().any(|(_, r)| {
            r.job == run.job
                && r.scheduled_at == run.scheduled_at
                && r.trigger == Trigger::Retry
                && r.attempt > run.attempt
        });
        if retried {
            fail(format!(
                "run {} of {} was asked to stop and ended {:?}, yet was tried again",
                run.id, run.job, run.reason
            ));
        }
        if run.reason != Some(Reason::Stopped) {
            continue;
        }
        if run.started_at.is_none() && h.truth.iter().any(|t| t.run == run.id) {
            fail(format!(
                "run {} of {} is recorded stopped before it started, yet it ran",
                run.id, run.job
            ));
        }
    }

    for ack in h.acked.iter().filter(|a| a.what == "trigger") {
        let (Ok(name), Some(Ok(key))) = (
            JobName::new(&ack.job),
            ack.key.as_deref().map(TriggerKey::new),
        ) else {
            fail(format!(
                "trigger of {} acknowledged without a valid key",
                ack.job
            ));
            continue;
        };
        if let Some(job) = reference.job(&name)
            && job.run_for_key(&key).is_none()
        {
            fail(format!(
                "trigger {key} of {name} was acknowledged at {} ms but names no run",
                ack.at_ms
            ));
        }
    }

    // 2. Nothing lost silently.
    let end_wall = EPOCH + Duration::from_millis(h.plan.heal_ms + PAUSE_AFTER_HEAL_MS);
    for (name, job) in reference.jobs() {
        let records: Vec<&Run> = reference.runs_of(job).collect();
        let mut cursor = job.created_at;
        let mut checked = 0usize;
        while let Some(fire) = job
            .spec
            .schedule
            .next_after(cursor, job.spec.timezone, job.anchor)
        {
            // Fires after the final pause are not owed; nor are those of a job paused at
            // the end, after its pause.
            let paused_from = job.paused_at.unwrap_or(Timestamp::MAX);
            if fire >= end_wall || fire >= paused_from {
                break;
            }
            cursor = fire;
            checked += 1;
            if checked > 100_000 {
                break;
            }
            let started = starts.get(&(name.clone(), fire, 1)).and_then(|r| r.first());
            if let Some(run) = started {
                let lateness = run.started_ms as i64 - sim_ms(fire);
                let allowed = (job.spec.starting_deadline() + LATENESS_SLACK).as_millis() as i64;
                if lateness > allowed {
                    fail(format!(
                        "fire {fire} of {name} started {lateness} ms late (deadline {} s)",
                        job.spec.starting_deadline_s
                    ));
                }
                continue;
            }
            let recorded = records.iter().any(|r| {
                let covers = match r.missed_until {
                    Some(until) => r.scheduled_at <= fire && fire <= until,
                    None => r.scheduled_at == fire,
                };
                covers && r.trigger == Trigger::Schedule && r.reason.is_some()
            });
            if recorded {
                report.recorded_not_run += 1;
            } else {
                let near: Vec<String> = records
                    .iter()
                    .filter(|r| {
                        r.scheduled_at.saturating_since(fire) < Duration::from_secs(10)
                            && fire.saturating_since(r.scheduled_at) < Duration::from_secs(10)
                    })
                    .map(|r| {
                        format!(
                            "run {} {} {:?} {:?} {:?} until {:?}",
                            r.id, r.scheduled_at, r.trigger, r.state, r.reason, r.missed_until
                        )
                    })
                    .collect();
                fail(format!(
                    "fire {fire} of {name} ({}, missed {:?}) neither ran nor was recorded with a reason; records near it: {near:?}",
                    job.spec.schedule.source(),
                    job.spec.missed
                ));
            }
        }
        report.fires_checked += checked;
    }

    // 6. Liveness: after healing there is a leader, and fires run on time again.
    if !h.leader_at_end {
        fail("no leader at the end, long after every fault healed".into());
    }
    // Runs held up by a host lost in the faults are settled once its lease has surely
    // expired (unreachable 5 s, lease 10 s, margin 8 s, an election): lateness is held to
    // its bound from then on.
    let from = EPOCH + Duration::from_millis(h.plan.heal_ms + 30_000);
    let to = EPOCH + Duration::from_millis(h.plan.heal_ms + PAUSE_AFTER_HEAL_MS - 2_000);
    let late: Vec<String> = h
        .truth
        .iter()
        .filter(|r| r.attempt == 1 && r.scheduled_at >= from && r.scheduled_at < to)
        .filter(|r| {
            reference
                .job(&r.job)
                .is_some_and(|j| !j.spec.schedule.is_manual())
        })
        // A fire that passed while its job was paused runs late on purpose, when the
        // job resumes (missed policy `latest` or `all`).
        .filter(|r| {
            reference
                .job(&r.job)
                .and_then(|j| j.resumed_at)
                .is_none_or(|resumed| r.scheduled_at > resumed)
        })
        .filter(|r| r.started_ms as i64 - sim_ms(r.scheduled_at) > 2_000)
        .map(|r| {
            format!(
                "{} {} ({} ms late)",
                r.job,
                r.scheduled_at,
                r.started_ms as i64 - sim_ms(r.scheduled_at)
            )
        })
        .collect();
    if !late.is_empty() {
        fail(format!(
            "after healing, runs still start late: {}",
            late.join(", ")
        ));
    }
    let resumed: BTreeSet<&JobName> = h
        .truth
        .iter()
        .filter(|r| r.scheduled_at >= from && r.scheduled_at < to)
        .map(|r| &r.job)
        .collect();
    if resumed.is_empty() {
        fail("after healing, no run started: scheduling did not resume".into());
    }
    report.faults_fired = fired;
    report
}

/// The runs of job `name` that actually started and that `keep` keeps, in the order
/// they started.
fn runs_by_start<'h>(
    h: &'h History,
    name: &JobName,
    keep: impl Fn(&TruthRun) -> bool,
) -> Vec<&'h TruthRun> {
    let mut runs: Vec<&TruthRun> = h
        .truth
        .iter()
        .filter(|r| &r.job == name && keep(r))
        .collect();
    runs.sort_by_key(|r| r.started_ms);
    runs
}

/// The state the checks read: the most advanced replica at the end.
fn reference_state(h: &History) -> Option<&State> {
    h.states.values().max_by_key(|s| s.applied_index())
}
