use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::command::{Declare, Finish};
use crate::job::Concurrency;
use crate::testkit::{job, name, ts};

const H1: HostId = HostId(1);
const H2: HostId = HostId(2);

/// A state with leader term 1 and the given jobs, created at 2026-01-01T00:00:00Z.
fn state_with(jobs: &[JobSpec]) -> (State, u64) {
    let mut state = State::new();
    let mut index = 1;
    let out = state.apply(
        index,
        &Command::LeaderStart {
            nonce: 0,
            term: 1,
            leader: H1,
            at: ts("2026-01-01T00:00:00Z"),
        },
    );
    assert_eq!(out, Outcome::Done);
    for spec in jobs {
        index += 1;
        let out = state.apply(
            index,
            &Command::PutJob {
                spec: Box::new(spec.clone()),
                replace: false,
                at: ts("2026-01-01T00:00:00Z"),
            },
        );
        assert_eq!(out, Outcome::JobCreated);
    }
    (state, index)
}

fn declare(job: &str, at: &str, attempt: u32, trigger: Trigger, host: Option<HostId>) -> Command {
    Command::Declare(Declare {
        job: name(job),
        scheduled_at: ts(at),
        attempt,
        trigger,
        host,
        term: 1,
        at: ts(at),
        key: None,
    })
}

/// A manual declaration carrying trigger key `key`.
fn keyed(job: &str, at: &str, key: &str) -> Command {
    let Command::Declare(d) = declare(job, at, 1, Trigger::Manual { force: true }, Some(H1)) else {
        unreachable!()
    };
    Command::Declare(Declare {
        key: Some(TriggerKey::new(key).unwrap()),
        ..d
    })
}

#[test]
fn a_trigger_key_makes_one_run_while_the_job_remembers_it() {
    let (mut state, mut index) = state_with(&[job("m", "@manually")]);
    let mut apply = |state: &mut State, command: &Command| {
        index += 1;
        state.apply(index, command)
    };
    let Outcome::Declared { run } = apply(&mut state, &keyed("m", "2026-01-01T00:00:01Z", "k"))
    else {
        panic!()
    };
    // Sent again later, by another leader even: refused, naming the run it made.
    let again = keyed("m", "2026-01-01T00:00:05Z", "k");
    let used = Outcome::Rejected(Rejection::KeyUsed {
        key: TriggerKey::new("k").unwrap(),
        run,
    });
    assert_eq!(apply(&mut state, &again), used);
    assert_eq!(state.job(&name("m")).unwrap().active, [run]);

    // Only a manual run carries a key.
    let Command::Declare(scheduled) = keyed("m", "2026-01-01T00:00:06Z", "s") else {
        unreachable!()
    };
    let scheduled = Command::Declare(Declare {
        trigger: Trigger::Schedule,
        ..scheduled
    });
    assert!(matches!(
        apply(&mut state, &scheduled),
        Outcome::Rejected(Rejection::Malformed(_))
    ));

    // The job remembers its latest keys: once the first is the oldest past the bound,
    // it is forgotten, and the others are still known.
    for n in 0..TRIGGER_KEYS_KEPT_PER_JOB {
        let at = ts("2026-01-01T00:01:00Z") + Duration::from_millis(n as u64);
        let command = match keyed("m", "2026-01-01T00:00:00Z", &format!("n{n}")) {
            Command::Declare(d) => Command::Declare(Declare {
                scheduled_at: at,
                at,
                ..d
            }),
            _ => unreachable!(),
        };
        assert!(matches!(
            apply(&mut state, &command),
            Outcome::Declared { .. }
        ));
    }
    let job = state.job(&name("m")).unwrap();
    assert_eq!(job.trigger_keys.len(), TRIGGER_KEYS_KEPT_PER_JOB);
    assert_eq!(job.run_for_key(&TriggerKey::new("k").unwrap()), None);
    assert!(job.run_for_key(&TriggerKey::new("n0").unwrap()).is_some());
    assert!(state.check_invariants().is_ok());
}

fn finish(
    run: RunId,
    host: Option<HostId>,
    code: Option<i32>,
    reason: Option<Reason>,
    at: &str,
) -> Command {
    Command::MarkFinished(Finish {
        run,
        host,
        started_at: None,
        finished_at: ts(at),
        exit_code: code,
        reason,
        detail: None,
    })
}

/// Creates `replace` job `name` with `retries`, declares its fires at 00:01 (on H1)
/// and 00:02 (on H2), and answers the first run, now being replaced.
fn replaced_run(state: &mut State, i: &mut u64, name: &str, retries: u32) -> RunId {
    let mut spec = job(name, "* * * * *");
    spec.concurrency = Concurrency::Replace;
    spec.retries = retries;
    apply(
        state,
        i,
        &Command::PutJob {
            spec: Box::new(spec),
            replace: false,
            at: ts("2026-01-01T00:00:00Z"),
        },
    );
    let old = declared(&apply(
        state,
        i,
        &declare(name, "2026-01-01T00:01:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    declared(&apply(
        state,
        i,
        &declare(name, "2026-01-01T00:02:00Z", 1, Trigger::Schedule, Some(H2)),
    ));
    old
}

fn apply(state: &mut State, index: &mut u64, command: &Command) -> Outcome {
    *index += 1;
    let out = state.apply(*index, command);
    state.check_invariants().unwrap();
    out
}

fn declared(out: &Outcome) -> RunId {
    match out {
        Outcome::Declared { run } => *run,
        other => panic!("expected a declaration, got {other:?}"),
    }
}

#[test]
fn jobs_are_created_replaced_and_refused_by_the_rules() {
    let (mut state, mut i) = state_with(&[job("a", "@hourly")]);
    let again = Command::PutJob {
        spec: Box::new(job("a", "@daily")),
        replace: false,
        at: ts("2026-01-01T01:00:00Z"),
    };
    assert_eq!(
        apply(&mut state, &mut i, &again),
        Outcome::Rejected(Rejection::JobExists(name("a")))
    );
    let replace = Command::PutJob {
        spec: Box::new(job("a", "@daily")),
        replace: true,
        at: ts("2026-01-01T01:00:00Z"),
    };
    assert_eq!(apply(&mut state, &mut i, &replace), Outcome::JobReplaced);
    let record = state.job(&name("a")).unwrap();
    assert_eq!(record.spec.schedule.source(), "@daily");
    assert_eq!(record.created_at, ts("2026-01-01T00:00:00Z"));
    // A new schedule counts from the write: nothing before it is owed.
    assert_eq!(record.anchor, ts("2026-01-01T01:00:00Z"));
    assert_eq!(record.watermark, ts("2026-01-01T01:00:00Z"));

    let mut bad = job("b", "@daily");
    bad.retries = 10_000;
    let out = apply(
        &mut state,
        &mut i,
        &Command::PutJob {
            spec: Box::new(bad),
            replace: false,
            at: ts("2026-01-01T01:00:00Z"),
        },
    );
    assert!(matches!(out, Outcome::Rejected(Rejection::InvalidJob(e)) if e.field == "retries"));

    let settings = Settings {
        jobs_max: 1,
        ..Settings::default()
    };
    apply(&mut state, &mut i, &Command::SetSettings(settings));
    let out = apply(
        &mut state,
        &mut i,
        &Command::PutJob {
            spec: Box::new(job("c", "@daily")),
            replace: false,
            at: ts("2026-01-01T01:00:00Z"),
        },
    );
    assert_eq!(out, Outcome::Rejected(Rejection::TooManyJobs { max: 1 }));
    assert_eq!(state.jobs().len(), 1);
}

#[test]
fn a_fire_time_is_declared_at_most_once_and_advances_the_watermark() {
    let (mut state, mut i) = state_with(&[job("a", "@hourly")]);
    let d = declare("a", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, Some(H1));
    let run = declared(&apply(&mut state, &mut i, &d));
    assert_eq!(
        state.job(&name("a")).unwrap().watermark,
        ts("2026-01-01T01:00:00Z")
    );
    assert_eq!(
        apply(&mut state, &mut i, &d),
        Outcome::Rejected(Rejection::Duplicate)
    );
    // An earlier fire is spent too: the watermark only moves forward.
    let earlier = declare("a", "2026-01-01T00:30:00Z", 1, Trigger::Schedule, Some(H1));
    assert_eq!(
        apply(&mut state, &mut i, &earlier),
        Outcome::Rejected(Rejection::Duplicate)
    );
    let r = state.run(run).unwrap();
    assert_eq!(
        (r.state, r.host, r.attempt),
        (RunState::Declared, Some(H1), 1)
    );
    assert_eq!(state.active_count(), 1);
}

#[test]
fn only_the_current_terms_declarations_apply() {
    let (mut state, mut i) = state_with(&[job("a", "@hourly")]);
    apply(
        &mut state,
        &mut i,
        &Command::LeaderStart {
            nonce: 0,
            term: 2,
            leader: H2,
            at: ts("2026-01-01T00:10:00Z"),
        },
    );
    let old = declare("a", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, Some(H1));
    assert_eq!(
        apply(&mut state, &mut i, &old),
        Outcome::Rejected(Rejection::StaleTerm {
            term: 1,
            current: 2
        })
    );
    let stale_start = Command::LeaderStart {
        nonce: 0,
        term: 1,
        leader: H1,
        at: ts("2026-01-01T00:20:00Z"),
    };
    assert!(apply(&mut state, &mut i, &stale_start).is_rejected());
    assert_eq!(state.term(), 2);
    assert_eq!(state.leader(), Some(H2));
}

#[test]
fn forbid_records_a_skip_while_a_run_is_active_and_force_overrides_it() {
    let mut spec = job("a", "* * * * *");
    spec.concurrency = Concurrency::Forbid;
    let (mut state, mut i) = state_with(&[spec]);
    let first = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T00:01:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    let out = apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T00:02:00Z", 1, Trigger::Schedule, Some(H2)),
    );
    let Outcome::Recorded {
        run: skipped,
        state: RunState::Skipped,
        reason: Reason::ConcurrencyForbid,
    } = out
    else {
        panic!("expected a skip, got {out:?}");
    };
    assert_eq!(
        state.job(&name("a")).unwrap().watermark,
        ts("2026-01-01T00:02:00Z")
    );
    assert!(
        state
            .run(skipped)
            .unwrap()
            .detail
            .as_deref()
            .unwrap()
            .contains(&first.to_string())
    );

    let manual = declare(
        "a",
        "2026-01-01T00:02:30Z",
        1,
        Trigger::Manual { force: false },
        Some(H2),
    );
    assert_eq!(
        apply(&mut state, &mut i, &manual),
        Outcome::Rejected(Rejection::Busy {
            job: name("a"),
            active: first
        })
    );
    let forced = declare(
        "a",
        "2026-01-01T00:02:30Z",
        1,
        Trigger::Manual { force: true },
        Some(H2),
    );
    declared(&apply(&mut state, &mut i, &forced));
    assert_eq!(state.job(&name("a")).unwrap().active.len(), 2);
}

#[test]
fn replace_asks_the_active_run_to_stop_and_makes_the_new_one_wait() {
    let mut spec = job("a", "* * * * *");
    spec.concurrency = Concurrency::Replace;
    let (mut state, mut i) = state_with(&[spec]);
    let old = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T00:01:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    let new = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T00:02:00Z", 1, Trigger::Schedule, Some(H2)),
    ));
    assert_eq!(state.run(old).unwrap().stop, Some(Reason::Replaced));
    assert_eq!(state.run(new).unwrap().waits_for, vec![old]);
    // The host reports the stopped run's exit; it ended because it was replaced.
    apply(
        &mut state,
        &mut i,
        &finish(
            old,
            Some(H1),
            Some(143),
            Some(Reason::Stopped),
            "2026-01-01T00:02:01Z",
        ),
    );
    let r = state.run(old).unwrap();
    assert_eq!(
        (r.state, r.reason),
        (RunState::Failed, Some(Reason::Replaced))
    );
}

#[test]
fn a_run_stopped_on_request_ends_stopped_keeps_an_earlier_reason_and_owes_no_retry() {
    let mut spec = job("a", "* * * * *");
    spec.retries = 2;
    spec.retry_backoff_s = 0;
    let (mut state, mut i) = state_with(&[spec]);
    let stop = |run| Command::StopRun {
        run,
        at: ts("2026-01-01T00:01:05Z"),
    };
    let run = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T00:01:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    assert_eq!(apply(&mut state, &mut i, &stop(run)), Outcome::Done);
    assert_eq!(state.run(run).unwrap().stop, Some(Reason::Stopped));
    // Asked again: the same request, nothing more.
    assert_eq!(apply(&mut state, &mut i, &stop(run)), Outcome::Done);
    // Killed by the signal: exit code 137, and still `stopped`, with no retry owed.
    apply(
        &mut state,
        &mut i,
        &finish(run, Some(H1), Some(137), None, "2026-01-01T00:01:06Z"),
    );
    let r = state.run(run).unwrap();
    assert_eq!(
        (r.state, r.reason),
        (RunState::Failed, Some(Reason::Stopped))
    );
    assert!(
        state.job(&name("a")).unwrap().retries.is_empty(),
        "no retry is owed"
    );
    assert_eq!(
        apply(&mut state, &mut i, &stop(run)),
        Outcome::Rejected(Rejection::RunEnded(run))
    );
    assert_eq!(
        apply(&mut state, &mut i, &stop(RunId(99))),
        Outcome::Rejected(Rejection::UnknownRun(RunId(99)))
    );

    // A run already being replaced keeps that reason.
    let old = replaced_run(&mut state, &mut i, "b", 0);
    assert_eq!(apply(&mut state, &mut i, &stop(old)), Outcome::Done);
    assert_eq!(state.run(old).unwrap().stop, Some(Reason::Replaced));
}

#[test]
fn a_run_asked_to_stop_that_ends_otherwise_keeps_its_reason_and_owes_no_retry() {
    let mut spec = job("a", "* * * * *");
    spec.retries = 2;
    spec.retry_backoff_s = 0;
    let (mut state, mut i) = state_with(&[spec]);
    let ended = |state: &State, run| {
        let r = state.run(run).unwrap();
        (r.state, r.reason, r.detail.clone())
    };
    // Asked to stop, then its host is lost before it could stop it.
    let lost = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T00:01:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    let stop = Command::StopRun {
        run: lost,
        at: ts("2026-01-01T00:01:05Z"),
    };
    assert_eq!(apply(&mut state, &mut i, &stop), Outcome::Done);
    let mut host_lost = finish(
        lost,
        None,
        None,
        Some(Reason::HostLost),
        "2026-01-01T00:01:30Z",
    );
    if let Command::MarkFinished(f) = &mut host_lost {
        f.detail = Some("host 1 stopped answering".into());
    }
    apply(&mut state, &mut i, &host_lost);
    assert_eq!(
        ended(&state, lost),
        (
            RunState::Failed,
            Some(Reason::HostLost),
            Some(
                "not tried again: it had been asked to stop (stopped); host 1 stopped answering"
                    .into()
            )
        )
    );
    assert!(
        state.job(&name("a")).unwrap().retries.is_empty(),
        "a run asked to stop is not tried again"
    );

    // The same end without a request to stop owes a retry, as before.
    let plain = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T00:02:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    apply(
        &mut state,
        &mut i,
        &finish(
            plain,
            None,
            None,
            Some(Reason::HostLost),
            "2026-01-01T00:02:30Z",
        ),
    );
    assert_eq!(ended(&state, plain).2, None);
    assert_eq!(state.job(&name("a")).unwrap().retries.len(), 1);

    // A run being replaced that times out first is not tried again either: its retry
    // would replace the newer fire's run.
    let old = replaced_run(&mut state, &mut i, "b", 1);
    apply(
        &mut state,
        &mut i,
        &finish(
            old,
            Some(H1),
            None,
            Some(Reason::Timeout),
            "2026-01-01T00:02:01Z",
        ),
    );
    let (state_, reason, detail) = ended(&state, old);
    assert_eq!((state_, reason), (RunState::Failed, Some(Reason::Timeout)));
    assert_eq!(
        detail.as_deref(),
        Some("not tried again: it had been asked to stop (replaced)")
    );
    assert!(state.job(&name("b")).unwrap().retries.is_empty());
}

#[test]
fn under_replace_a_newer_fire_replaces_the_retries_owed_to_older_ones() {
    let mut spec = job("a", "* * * * *");
    spec.concurrency = Concurrency::Replace;
    spec.retries = 2;
    spec.retry_backoff_s = 30;
    let (mut state, mut i) = state_with(&[spec]);
    let first = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T00:01:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    apply(
        &mut state,
        &mut i,
        &finish(first, Some(H1), Some(1), None, "2026-01-01T00:01:40Z"),
    );
    assert_eq!(state.job(&name("a")).unwrap().retries.len(), 1);
    // The next fire comes before the retry is due; it is refused capacity first, which
    // replaces nothing: the retry is still owed.
    let refused = apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T00:02:00Z", 1, Trigger::Schedule, None),
    );
    assert!(
        matches!(
            refused,
            Outcome::Recorded {
                reason: Reason::NoCapacity,
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(state.job(&name("a")).unwrap().retries.len(), 2);
    // The fire after is declared: the retries of both older fires are gone, and the
    // run each would have retried says why.
    let newer = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T00:03:00Z", 1, Trigger::Schedule, Some(H2)),
    ));
    assert!(state.job(&name("a")).unwrap().retries.is_empty());
    let detail = state.run(first).unwrap().detail.clone();
    assert_eq!(
        detail,
        Some(format!(
            "not tried again: run {newer}, of a later fire, replaced it"
        ))
    );
    // A retry the leader proposed before it knew is refused, and the newer run stays.
    assert_eq!(
        apply(
            &mut state,
            &mut i,
            &declare("a", "2026-01-01T00:01:00Z", 2, Trigger::Retry, Some(H1)),
        ),
        Outcome::Rejected(Rejection::NoPendingRetry)
    );
    assert_eq!(state.run(newer).unwrap().stop, None);
}

#[test]
fn under_replace_a_retry_of_a_newer_fire_replaces_the_retries_of_older_ones() {
    let mut spec = job("a", "* * * * *");
    spec.concurrency = Concurrency::Replace;
    spec.retries = 2;
    let (mut state, mut i) = state_with(&[spec]);
    let owed = |state: &State| -> Vec<(Timestamp, u32)> {
        let mut owed: Vec<_> = state
            .job(&name("a"))
            .unwrap()
            .retries
            .iter()
            .map(|r| (r.scheduled_at, r.attempt))
            .collect();
        owed.sort();
        owed
    };
    let (a, b) = ("2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z");
    // Both fires and A's first retry find no capacity: A's third and B's second
    // attempts are owed.
    apply(
        &mut state,
        &mut i,
        &declare("a", a, 1, Trigger::Schedule, None),
    );
    apply(
        &mut state,
        &mut i,
        &declare("a", b, 1, Trigger::Schedule, None),
    );
    apply(
        &mut state,
        &mut i,
        &declare("a", a, 2, Trigger::Retry, None),
    );
    assert_eq!(owed(&state), [(ts(a), 3), (ts(b), 2)]);
    // B's retry runs: A's is dropped, so that it cannot replace B's run later.
    let newer = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", b, 2, Trigger::Retry, Some(H1)),
    ));
    assert!(owed(&state).is_empty());
    assert_eq!(
        apply(
            &mut state,
            &mut i,
            &declare("a", a, 3, Trigger::Retry, Some(H2))
        ),
        Outcome::Rejected(Rejection::NoPendingRetry)
    );
    assert_eq!(state.run(newer).unwrap().stop, None);
}

#[test]
fn exit_codes_decide_success_and_failures_owe_retries_with_backoff() {
    let mut spec = job("a", "@hourly");
    spec.retries = 2;
    spec.retry_backoff_s = 30;
    let (mut state, mut i) = state_with(&[spec]);
    let run = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    apply(
        &mut state,
        &mut i,
        &Command::MarkStarted {
            run,
            host: H1,
            started_at: ts("2026-01-01T01:00:01Z"),
        },
    );
    apply(
        &mut state,
        &mut i,
        &finish(run, Some(H1), Some(3), None, "2026-01-01T01:00:05Z"),
    );
    let r = state.run(run).unwrap();
    assert_eq!(
        (r.state, r.exit_code, r.reason),
        (RunState::Failed, Some(3), Some(Reason::ExitCode))
    );
    let retries = &state.job(&name("a")).unwrap().retries;
    assert_eq!(
        retries.as_slice(),
        [PendingRetry {
            scheduled_at: ts("2026-01-01T01:00:00Z"),
            attempt: 2,
            not_before: ts("2026-01-01T01:00:35Z")
        }]
    );

    // A retry needs its pending entry, and consumes it.
    let wrong = declare("a", "2026-01-01T01:00:00Z", 3, Trigger::Retry, Some(H1));
    assert_eq!(
        apply(&mut state, &mut i, &wrong),
        Outcome::Rejected(Rejection::NoPendingRetry)
    );
    let retry = declare("a", "2026-01-01T01:00:00Z", 2, Trigger::Retry, Some(H2));
    let second = declared(&apply(&mut state, &mut i, &retry));
    assert_eq!(
        apply(&mut state, &mut i, &retry),
        Outcome::Rejected(Rejection::NoPendingRetry)
    );
    apply(
        &mut state,
        &mut i,
        &finish(second, Some(H2), Some(1), None, "2026-01-01T01:01:00Z"),
    );
    assert_eq!(state.job(&name("a")).unwrap().retries[0].attempt, 3);
    assert_eq!(
        state.job(&name("a")).unwrap().retries[0].not_before,
        ts("2026-01-01T01:02:00Z")
    );
    let third = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T01:00:00Z", 3, Trigger::Retry, Some(H2)),
    ));
    apply(
        &mut state,
        &mut i,
        &finish(third, Some(H2), Some(1), None, "2026-01-01T01:03:00Z"),
    );
    // Two retries were allowed: no fourth attempt.
    assert!(state.job(&name("a")).unwrap().retries.is_empty());

    let ok = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T02:00:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    apply(
        &mut state,
        &mut i,
        &finish(ok, Some(H1), Some(0), None, "2026-01-01T02:00:01Z"),
    );
    assert_eq!(state.run(ok).unwrap().state, RunState::Succeeded);
}

#[test]
fn a_lost_host_is_recorded_and_retried_only_when_the_job_allows() {
    let mut retrying = job("r", "@hourly");
    retrying.retries = 1;
    let (mut state, mut i) = state_with(&[job("a", "@hourly"), retrying]);
    let a = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    let r = declared(&apply(
        &mut state,
        &mut i,
        &declare("r", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    for run in [a, r] {
        apply(
            &mut state,
            &mut i,
            &finish(
                run,
                None,
                None,
                Some(Reason::HostLost),
                "2026-01-01T01:00:30Z",
            ),
        );
        assert_eq!(state.run(run).unwrap().reason, Some(Reason::HostLost));
    }
    assert!(state.job(&name("a")).unwrap().retries.is_empty());
    assert_eq!(state.job(&name("r")).unwrap().retries.len(), 1);
}

#[test]
fn no_capacity_is_recorded_as_a_failure() {
    let (mut state, mut i) = state_with(&[job("a", "@hourly")]);
    let out = apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, None),
    );
    let Outcome::Recorded {
        run,
        state: RunState::Failed,
        reason: Reason::NoCapacity,
    } = out
    else {
        panic!("{out:?}");
    };
    assert!(!state.run(run).unwrap().is_active());
    assert_eq!(state.active_count(), 0);
}

#[test]
fn lowering_retries_drops_the_retries_no_longer_owed() {
    let mut spec = job("a", "@hourly");
    spec.retries = 1;
    let (mut state, mut i) = state_with(&[spec.clone()]);
    apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, None),
    );
    let owed = &state.job(&name("a")).unwrap().retries;
    assert_eq!(owed.len(), 1, "the failed attempt owes a retry: {owed:?}");

    spec.retries = 0;
    let out = apply(
        &mut state,
        &mut i,
        &Command::PutJob {
            spec: Box::new(spec),
            replace: true,
            at: ts("2026-01-01T01:00:01Z"),
        },
    );
    assert_eq!(out, Outcome::JobReplaced);
    assert!(state.job(&name("a")).unwrap().retries.is_empty());
    state.check_invariants().unwrap();
}

#[test]
fn reports_about_other_hosts_or_ended_runs_change_nothing() {
    let (mut state, mut i) = state_with(&[job("a", "@hourly")]);
    let run = declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    let wrong = Command::MarkStarted {
        run,
        host: H2,
        started_at: ts("2026-01-01T01:00:01Z"),
    };
    assert!(matches!(
        apply(&mut state, &mut i, &wrong),
        Outcome::Rejected(Rejection::WrongHost { .. })
    ));
    apply(
        &mut state,
        &mut i,
        &finish(run, Some(H1), Some(0), None, "2026-01-01T01:00:05Z"),
    );
    let before = state.clone();
    assert_eq!(
        apply(
            &mut state,
            &mut i,
            &finish(run, Some(H1), Some(1), None, "2026-01-01T01:00:09Z")
        ),
        Outcome::Rejected(Rejection::RunEnded(run))
    );
    let late_start = Command::MarkStarted {
        run,
        host: H1,
        started_at: ts("2026-01-01T01:00:01Z"),
    };
    assert_eq!(
        apply(&mut state, &mut i, &late_start),
        Outcome::Rejected(Rejection::RunEnded(run))
    );
    assert_eq!(
        apply(
            &mut state,
            &mut i,
            &finish(RunId(999), Some(H1), Some(0), None, "2026-01-01T01:00:09Z")
        ),
        Outcome::Rejected(Rejection::UnknownRun(RunId(999)))
    );
    assert_eq!(state.runs().len(), before.runs().len());
    assert_eq!(state.run(run), before.run(run));
}

#[test]
fn history_is_bounded_and_drops_the_oldest_first() {
    let (mut state, mut i) = state_with(&[job("a", "* * * * *")]);
    let settings = Settings {
        runs_kept_per_job_max: 3,
        ..Settings::default()
    };
    apply(&mut state, &mut i, &Command::SetSettings(settings));
    let mut runs = Vec::new();
    for minute in 1..=5 {
        let at = format!("2026-01-01T00:{minute:02}:00Z");
        let run = declared(&apply(
            &mut state,
            &mut i,
            &declare("a", &at, 1, Trigger::Schedule, Some(H1)),
        ));
        apply(
            &mut state,
            &mut i,
            &finish(run, Some(H1), Some(0), None, &at),
        );
        runs.push(run);
    }
    let kept: Vec<RunId> = state
        .job(&name("a"))
        .unwrap()
        .history
        .iter()
        .copied()
        .collect();
    assert_eq!(kept, runs[2..]);
    assert!(state.run(runs[0]).is_none());
    // The watermark still refuses the dropped fires.
    let again = declare("a", "2026-01-01T00:01:00Z", 1, Trigger::Schedule, Some(H1));
    assert_eq!(
        apply(&mut state, &mut i, &again),
        Outcome::Rejected(Rejection::Duplicate)
    );
}

#[test]
fn missed_fires_are_recorded_as_one_range() {
    let (mut state, mut i) = state_with(&[job("a", "* * * * *")]);
    let missed = Command::RecordMissed {
        job: name("a"),
        first: ts("2026-01-01T00:01:00Z"),
        last: ts("2026-01-01T00:10:00Z"),
        count: 10,
        reason: Reason::StartingDeadline,
        at: ts("2026-01-01T00:20:00Z"),
    };
    let Outcome::Recorded { run, .. } = apply(&mut state, &mut i, &missed) else {
        panic!()
    };
    let r = state.run(run).unwrap();
    assert_eq!(
        (r.state, r.missed_count, r.missed_until),
        (RunState::Missed, 10, Some(ts("2026-01-01T00:10:00Z")))
    );
    assert_eq!(
        apply(&mut state, &mut i, &missed),
        Outcome::Rejected(Rejection::Duplicate)
    );
    let inside = declare("a", "2026-01-01T00:05:00Z", 1, Trigger::Schedule, Some(H1));
    assert_eq!(
        apply(&mut state, &mut i, &inside),
        Outcome::Rejected(Rejection::Duplicate)
    );
    let bad = Command::RecordMissed {
        job: name("a"),
        first: ts("2026-01-01T00:30:00Z"),
        last: ts("2026-01-01T00:20:00Z"),
        count: 2,
        reason: Reason::StartingDeadline,
        at: ts("2026-01-01T00:40:00Z"),
    };
    assert!(matches!(
        apply(&mut state, &mut i, &bad),
        Outcome::Rejected(Rejection::Malformed(_))
    ));
}

#[test]
fn pause_blocks_declarations_and_resume_remembers_when() {
    let (mut state, mut i) = state_with(&[job("a", "@hourly")]);
    apply(
        &mut state,
        &mut i,
        &Command::PauseJob {
            name: name("a"),
            at: ts("2026-01-01T00:10:00Z"),
        },
    );
    let d = declare("a", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, Some(H1));
    assert_eq!(
        apply(&mut state, &mut i, &d),
        Outcome::Rejected(Rejection::Paused(name("a")))
    );
    apply(
        &mut state,
        &mut i,
        &Command::ResumeJob {
            name: name("a"),
            at: ts("2026-01-01T03:10:00Z"),
        },
    );
    let record = state.job(&name("a")).unwrap();
    assert_eq!(
        (record.spec.paused, record.resumed_at),
        (false, Some(ts("2026-01-01T03:10:00Z")))
    );
    declared(&apply(&mut state, &mut i, &d));
}

#[test]
fn deleting_a_job_takes_its_runs_with_it() {
    let (mut state, mut i) = state_with(&[job("a", "@hourly"), job("b", "@hourly")]);
    declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    let b = declared(&apply(
        &mut state,
        &mut i,
        &declare("b", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    apply(
        &mut state,
        &mut i,
        &Command::DeleteJob {
            name: name("a"),
            at: ts("2026-01-01T01:30:00Z"),
        },
    );
    assert!(state.job(&name("a")).is_none());
    assert_eq!(state.runs().len(), 1);
    assert_eq!(
        state.active_runs().map(|r| r.id).collect::<Vec<_>>(),
        vec![b]
    );
    let again = Command::DeleteJob {
        name: name("a"),
        at: ts("2026-01-01T01:31:00Z"),
    };
    assert_eq!(
        apply(&mut state, &mut i, &again),
        Outcome::Rejected(Rejection::UnknownJob(name("a")))
    );
}

#[test]
fn a_batch_applies_in_order_and_refuses_nesting() {
    let (mut state, mut i) = state_with(&[job("a", "@hourly")]);
    let batch = Command::Batch(vec![
        declare("a", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, Some(H1)),
        declare("a", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, Some(H1)),
        Command::Batch(vec![]),
    ]);
    let Outcome::Batch(outcomes) = apply(&mut state, &mut i, &batch) else {
        panic!()
    };
    assert!(matches!(outcomes[0], Outcome::Declared { .. }));
    assert_eq!(outcomes[1], Outcome::Rejected(Rejection::Duplicate));
    assert!(matches!(
        outcomes[2],
        Outcome::Rejected(Rejection::Malformed(_))
    ));
}

#[test]
fn a_snapshot_is_the_same_state() {
    let (mut state, mut i) = state_with(&[job("a", "@hourly"), job("b", "*/5 * * * *")]);
    declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    let bytes = postcard::to_allocvec(&state).unwrap();
    let back: State = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, state);
    back.check_invariants().unwrap();
}

// ----- properties -----

fn arb_command() -> impl Strategy<Value = Command> {
    let jobs = prop::sample::select(vec!["a", "b", "c"]);
    let minute = 0u32..30;
    let host = prop::option::weighted(0.9, prop::sample::select(vec![H1, H2]));
    let reason = prop::sample::select(vec![
        Reason::ExitCode,
        Reason::HostLost,
        Reason::Timeout,
        Reason::Stopped,
        Reason::LaunchFailed,
    ]);
    let at = |m: u32| Timestamp::from_secs(1_767_225_600 + i64::from(m) * 60);
    prop_oneof![
        (
            jobs.clone(),
            prop::sample::select(vec![
                Concurrency::Allow,
                Concurrency::Forbid,
                Concurrency::Replace
            ]),
            0u32..3,
            any::<bool>(),
            minute.clone()
        )
            .prop_map(move |(j, c, retries, replace, m)| {
                let mut spec = job(j, "* * * * *");
                spec.concurrency = c;
                spec.retries = retries;
                spec.retry_backoff_s = 0;
                Command::PutJob {
                    spec: Box::new(spec),
                    replace,
                    at: at(m),
                }
            }),
        (
            jobs.clone(),
            minute.clone(),
            1u32..4,
            prop::sample::select(vec![
                Trigger::Schedule,
                Trigger::Retry,
                Trigger::Manual { force: false },
                Trigger::Manual { force: true }
            ]),
            host,
            1u64..3,
            prop::option::of(0u8..3)
        )
            .prop_map(
                move |(j, m, attempt, trigger, host, term, key)| Command::Declare(Declare {
                    job: name(j),
                    scheduled_at: at(m),
                    attempt,
                    trigger,
                    host,
                    term,
                    at: at(m),
                    key: key.map(|k| TriggerKey::new(&format!("key-{k}")).unwrap()),
                })
            ),
        (0u64..40, prop::sample::select(vec![H1, H2]), minute.clone()).prop_map(
            move |(r, h, m)| Command::MarkStarted {
                run: RunId(r),
                host: h,
                started_at: at(m)
            }
        ),
        (
            0u64..40,
            prop::option::of(prop::sample::select(vec![H1, H2])),
            prop::option::of(-1i32..3),
            prop::option::of(reason),
            minute.clone()
        )
            .prop_map(
                move |(r, h, code, reason, m)| Command::MarkFinished(Finish {
                    run: RunId(r),
                    host: h,
                    started_at: None,
                    finished_at: at(m),
                    exit_code: code,
                    reason,
                    detail: None
                })
            ),
        (jobs.clone(), minute.clone(), 0u32..3, 0u32..4).prop_map(move |(j, m, span, count)| {
            Command::RecordMissed {
                job: name(j),
                first: at(m),
                last: at(m + span),
                count,
                reason: Reason::StartingDeadline,
                at: at(m),
            }
        }),
        (jobs.clone(), minute.clone()).prop_map(move |(j, m)| Command::PauseJob {
            name: name(j),
            at: at(m)
        }),
        (jobs.clone(), minute.clone()).prop_map(move |(j, m)| Command::ResumeJob {
            name: name(j),
            at: at(m)
        }),
        (jobs, minute.clone()).prop_map(move |(j, m)| Command::DeleteJob {
            name: name(j),
            at: at(m)
        }),
        (1u64..3, minute).prop_map(move |(term, m)| Command::LeaderStart {
            nonce: 0,
            term,
            leader: H1,
            at: at(m)
        }),
        (1u32..5).prop_map(|kept| Command::SetSettings(Settings {
            runs_kept_per_job_max: kept,
            ..Settings::default()
        })),
        (0u64..40, 0u32..30).prop_map(move |(r, m)| Command::StopRun {
            run: RunId(r),
            at: at(m)
        }),
    ]
}

/// A sequence of commands in which some are repeated and some moved later, as a log
/// written by several leaders with retried proposals might hold them.
fn arb_log() -> impl Strategy<Value = Vec<Command>> {
    (
        prop::collection::vec(arb_command(), 1..60),
        prop::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
            0..20,
        ),
    )
        .prop_map(|(mut log, repeats)| {
            for (from, to) in repeats {
                let command = log[from.index(log.len())].clone();
                let at = to.index(log.len() + 1);
                log.insert(at, command);
            }
            log
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_log_keeps_the_invariants_and_never_declares_a_fire_twice(log in arb_log()) {
        let mut state = State::new();
        // Every trigger key that made a run, per series of a job: each makes one run.
        let mut keys_used = BTreeSet::new();
        // Everything ever declared, including runs since dropped from the bounded history
        // and runs of jobs deleted and created again (a new job is a new series).
        let mut declared = BTreeSet::new();
        let mut generation = std::collections::BTreeMap::new();
        for (index, command) in log.iter().enumerate() {
            let before = state.clone();
            let outcome = state.apply(index as u64 + 1, command);
            prop_assert!(state.check_invariants().is_ok(), "{:?} after {command:?}", state.check_invariants());
            if outcome.is_rejected() {
                // A rejected command changes nothing but the applied index.
                let mut expected = before.clone();
                expected.applied_index = state.applied_index;
                prop_assert_eq!(&state, &expected);
            }
            for (command, outcome) in crate::node::flatten(command, &outcome) {
                match (command, outcome) {
                    (Command::PutJob { .. }, Outcome::JobCreated) => {
                        if let Command::PutJob { spec, .. } = command {
                            *generation.entry(spec.name.clone()).or_insert(0u32) += 1;
                        }
                    }
                    (Command::Declare(d), Outcome::Declared { .. } | Outcome::Recorded { .. }) => {
                        let kind = matches!(d.trigger, Trigger::Manual { .. });
                        let key = (d.job.clone(), generation.get(&d.job).copied(), d.scheduled_at, d.attempt, kind);
                        prop_assert!(declared.insert(key), "declared twice: {d:?}");
                        if let Some(key) = &d.key {
                            let used = (d.job.clone(), generation.get(&d.job).copied(), key.clone());
                            prop_assert!(keys_used.insert(used), "a trigger key made two runs: {d:?}");
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn retry_delay_is_counted_from_the_failure() {
    let mut spec = job("a", "@hourly");
    spec.retries = 1;
    assert_eq!(spec.retry_delay(1), Duration::from_secs(10));
}

#[test]
fn a_declaration_or_record_that_would_pass_over_a_fire_is_refused() {
    let (mut state, mut i) = state_with(&[job("a", "* * * * *")]);
    // 00:01 is next; 00:02 would pass over it.
    let skip = declare("a", "2026-01-01T00:02:00Z", 1, Trigger::Schedule, Some(H1));
    assert_eq!(
        apply(&mut state, &mut i, &skip),
        Outcome::Rejected(Rejection::NotNextFire {
            expected: Some(ts("2026-01-01T00:01:00Z"))
        })
    );
    let missed = Command::RecordMissed {
        job: name("a"),
        first: ts("2026-01-01T00:02:00Z"),
        last: ts("2026-01-01T00:03:00Z"),
        count: 2,
        reason: Reason::StartingDeadline,
        at: ts("2026-01-01T00:05:00Z"),
    };
    assert!(matches!(
        apply(&mut state, &mut i, &missed),
        Outcome::Rejected(Rejection::NotNextFire { .. })
    ));
    assert_eq!(
        state.job(&name("a")).unwrap().watermark,
        ts("2026-01-01T00:00:00Z")
    );
    declared(&apply(
        &mut state,
        &mut i,
        &declare("a", "2026-01-01T00:01:00Z", 1, Trigger::Schedule, Some(H1)),
    ));
    declared(&apply(&mut state, &mut i, &skip));
}

#[test]
fn a_state_with_no_run_id_left_refuses_new_runs_and_changes_nothing() {
    let (mut state, mut i) = state_with(&[job("a", "@hourly")]);
    state.next_run = u64::MAX;
    let before = state.clone();
    let d = declare("a", "2026-01-01T01:00:00Z", 1, Trigger::Schedule, Some(H1));
    let missed = Command::RecordMissed {
        job: name("a"),
        first: ts("2026-01-01T01:00:00Z"),
        last: ts("2026-01-01T01:00:00Z"),
        count: 1,
        reason: Reason::StartingDeadline,
        at: ts("2026-01-01T01:00:00Z"),
    };
    for command in [d, missed] {
        i += 1;
        assert_eq!(
            state.apply(i, &command),
            Outcome::Rejected(Rejection::Malformed("no run id is left".into()))
        );
    }
    assert_eq!(state.job(&name("a")), before.job(&name("a")));
    assert_eq!(state.runs().len(), 0);
}
