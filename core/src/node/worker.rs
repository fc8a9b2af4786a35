//! The worker hat every host wears: start what the leader dispatches (once), enforce
//! run timeouts and the lease, and report each run's fate until the leader
//! acknowledges it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::host::HostId;
use crate::id_table::{IdTable, Keyed};
use crate::job::Concurrency;
use crate::run::{Reason, RunId, RunSpec};
use crate::time::{Mono, Now};

use super::{Effect, Event, ExecutorEvent, Message, NodeConfig, RaftStatus, ReportStatus, Timing};

/// A run this host has been given, as the host tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRun {
    /// The run.
    pub id: RunId,
    /// What this host enforces on the run, from what the leader sent; none for a run
    /// it holds without its spec (its executor reported it before the dispatch came).
    pub limits: Option<RunLimits>,
    /// Its latest status, as reported to the leader.
    pub status: LocalStatus,
    /// When it started, on this host's clock.
    pub started_mono: Option<Mono>,
    /// Why and when this host asked the executor to stop it.
    pub stop: Option<(Reason, Mono)>,
    acked: Acked,
    next_report: Mono,
}

impl Keyed for LocalRun {
    fn key(&self) -> &RunId {
        &self.id
    }
}

impl LocalRun {
    fn new(now: Now, id: RunId, limits: Option<RunLimits>, status: LocalStatus) -> Self {
        LocalRun {
            id,
            limits,
            status,
            started_mono: None,
            stop: None,
            acked: Acked::Nothing,
            next_report: now.mono,
        }
    }
}

/// What a host enforces on a run it executes: the part of the spec it keeps. The rest
/// (the executor spec above all) goes to the executor and is not held twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLimits {
    /// The job's concurrency policy: a host stops `forbid` and `replace` runs when its
    /// lease expires.
    pub concurrency: Concurrency,
    /// The run timeout.
    pub timeout: Option<Duration>,
}

impl RunLimits {
    fn of(spec: &RunSpec) -> Self {
        RunLimits {
            concurrency: spec.concurrency,
            timeout: spec.timeout(),
        }
    }
}

/// A local run's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalStatus {
    /// Handed to the executor, not started yet.
    Starting,
    /// Reported (or to be reported) to the leader.
    Reported(ReportStatus),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Acked {
    Nothing,
    Started,
}

#[derive(Debug)]
pub(super) struct Worker {
    me: HostId,
    timing: Timing,
    ended_max: usize,
    leader: Option<(HostId, u64)>,
    contact: Option<Mono>,
    /// By id: a host is given runs in about the order the leader declared them.
    runs: IdTable<LocalRun>,
    ended: BTreeMap<RunId, ReportStatus>,
    ended_order: VecDeque<RunId>,
    next_housekeeping: Mono,
    /// Runs whose new status is reported at once, without waiting for housekeeping.
    urgent: Vec<RunId>,
}

impl Worker {
    pub(super) fn new(config: &NodeConfig, now: Now) -> Self {
        Worker {
            me: config.identity.id,
            timing: config.timing.clone(),
            ended_max: config.limits.ended_runs_remembered_max.max(1),
            leader: None,
            contact: None,
            runs: IdTable::default(),
            ended: BTreeMap::new(),
            ended_order: VecDeque::new(),
            next_housekeeping: now.mono,
            urgent: Vec::new(),
        }
    }

    pub(super) fn leader(&self) -> Option<(HostId, u64)> {
        self.leader
    }

    pub(super) fn runs(&self) -> impl Iterator<Item = &LocalRun> {
        self.runs.iter().map(|(_, run)| run)
    }

    pub(super) fn poll_timeout(&self) -> Option<Mono> {
        if !self.urgent.is_empty() {
            return Some(Mono::ZERO);
        }
        (!self.runs.is_empty()).then_some(self.next_housekeeping)
    }

    pub(super) fn on_raft(&mut self, now: Now, status: &RaftStatus, me: HostId) {
        let known = self.leader.map_or(0, |(_, t)| t);
        if status.term >= known
            && let Some(leader) = status.leader
        {
            self.leader = Some((leader, status.term));
        }
        if status.is_leader && status.leader == Some(me) {
            // The leader's own lease is its quorum's last acknowledgement: a leader cut
            // off in a minority stops hearing from its quorum, like any host.
            if let Some(acked) = status.quorum_acked {
                self.contact = Some(self.contact.map_or(acked, |c| c.max(acked)));
            }
        }
        let _ = now;
    }

    /// A message from a leader. Answers the reports to send back.
    pub(super) fn on_leader_message(
        &mut self,
        now: Now,
        from: HostId,
        message: Message,
        effects: &mut VecDeque<Effect>,
    ) -> Vec<Message> {
        let Some(term) = message.term() else {
            return Vec::new();
        };
        let known = self.leader.map_or(0, |(_, t)| t);
        if term < known {
            effects.push_back(Effect::Event(Event::StaleLeaderRefused {
                from,
                term,
                known,
            }));
            return Vec::new();
        }
        self.leader = Some((from, term));
        // Only a heartbeat (or a dispatch marked so) renews the lease. The leader renews
        // only while its quorum acknowledges it and only hosts it has not fenced, so it
        // knows when a host's lease has surely run out. Its own lease comes from its
        // quorum instead.
        let renews = matches!(
            message,
            Message::Heartbeat {
                renews_lease: true,
                ..
            } | Message::Dispatch {
                renews_lease: true,
                ..
            }
        );
        if renews && from != self.me {
            self.contact = Some(now.mono);
        }
        match message {
            Message::Dispatch { run, .. } => {
                self.on_dispatch(now, run, effects).into_iter().collect()
            }
            Message::Stop { run, reason, .. } => self
                .on_stop(now, run, reason, effects)
                .into_iter()
                .collect(),
            Message::Query { runs, .. } => {
                runs.into_iter().map(|run| self.report_of(run)).collect()
            }
            Message::Ack { run, finished, .. } => {
                self.on_ack(run, finished);
                Vec::new()
            }
            Message::Heartbeat { term, .. } => vec![Message::HeartbeatAck { term }],
            Message::Report { .. } | Message::HeartbeatAck { .. } => Vec::new(),
        }
    }

    fn on_dispatch(
        &mut self,
        now: Now,
        spec: RunSpec,
        effects: &mut VecDeque<Effect>,
    ) -> Option<Message> {
        let id = spec.id;
        if self.runs.get(id).is_some() || self.ended.contains_key(&id) {
            effects.push_back(Effect::Event(Event::DuplicateDispatch { run: id }));
            return Some(self.report_of(id));
        }
        let limits = Some(RunLimits::of(&spec));
        if now.wall > spec.start_by {
            effects.push_back(Effect::Event(Event::DispatchExpired { run: id }));
            let status = ReportStatus::Finished {
                started_at: None,
                at: now.wall,
                exit_code: None,
                reason: Some(Reason::DispatchLost),
                detail: Some(format!(
                    "the dispatch arrived after the run's start deadline {}",
                    spec.start_by
                )),
            };
            self.runs.insert(LocalRun::new(
                now,
                id,
                limits,
                LocalStatus::Reported(status),
            ));
            return Some(self.report_of(id));
        }
        // The spec moves on to the executor; this host keeps only what it enforces.
        self.runs
            .insert(LocalRun::new(now, id, limits, LocalStatus::Starting));
        effects.push_back(Effect::StartRun(spec));
        None
    }

    fn on_stop(
        &mut self,
        now: Now,
        id: RunId,
        reason: Reason,
        effects: &mut VecDeque<Effect>,
    ) -> Option<Message> {
        if let Some(run) = self.runs.get_mut(id) {
            let executing = matches!(
                run.status,
                LocalStatus::Starting | LocalStatus::Reported(ReportStatus::Started { .. })
            );
            if executing && run.stop.is_none() {
                run.stop = Some((reason, now.mono));
                effects.push_back(Effect::StopRun { run: id, reason });
            }
            return None;
        }
        if self.ended.contains_key(&id) {
            return Some(self.report_of(id));
        }
        // Stopped before it arrived: remember it as ended, so that a dispatch still on
        // its way is not started.
        let status = ReportStatus::Finished {
            started_at: None,
            at: now.wall,
            exit_code: None,
            reason: Some(reason),
            detail: Some("stopped before this host received it".into()),
        };
        self.remember_ended(id, status);
        Some(self.report_of(id))
    }

    fn on_ack(&mut self, id: RunId, finished: bool) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        match (&run.status, finished) {
            (LocalStatus::Reported(status @ ReportStatus::Finished { .. }), true)
            | (LocalStatus::Reported(status @ ReportStatus::Unknown), true) => {
                let status = status.clone();
                self.runs.remove(id);
                self.remember_ended(id, status);
            }
            (LocalStatus::Reported(ReportStatus::Started { .. }), _) => run.acked = Acked::Started,
            // The leader holds the run ended while this host still runs it (the leader
            // decided it was lost): the ack of the end is for a report we did not send.
            _ => {}
        }
    }

    pub(super) fn on_executor(
        &mut self,
        now: Now,
        event: ExecutorEvent,
        effects: &mut VecDeque<Effect>,
    ) {
        match event {
            ExecutorEvent::Adopted { spec, started_at } => {
                let id = spec.id;
                if self.ended.contains_key(&id) {
                    return;
                }
                let Some(local) = self
                    .runs
                    .get_or_insert_with(id, || LocalRun::new(now, id, None, LocalStatus::Starting))
                else {
                    return;
                };
                local.limits = Some(RunLimits::of(&spec));
                if local.status == LocalStatus::Starting {
                    local.status = LocalStatus::Reported(ReportStatus::Started { at: started_at });
                    // Its timeout counts from when it really started.
                    let ran_for = now.wall.saturating_since(started_at);
                    local.started_mono = Some(now.mono.saturating_sub(ran_for));
                    local.next_report = now.mono;
                    self.urgent.push(id);
                }
            }
            ExecutorEvent::Started { run, at } => {
                let Some(local) = self.runs.get_or_insert_with(run, || {
                    LocalRun::new(now, run, None, LocalStatus::Starting)
                }) else {
                    return;
                };
                if local.status == LocalStatus::Starting {
                    local.status = LocalStatus::Reported(ReportStatus::Started { at });
                    local.started_mono = Some(now.mono);
                    local.next_report = now.mono;
                    self.urgent.push(run);
                }
            }
            ExecutorEvent::Exited {
                run,
                at,
                started_at,
                exit_code,
                reason,
                detail,
            } => {
                let local = self.runs.get(run);
                let stop = local.and_then(|l| l.stop.map(|(r, _)| r));
                let started = match local.map(|l| &l.status) {
                    Some(LocalStatus::Reported(ReportStatus::Started { at })) => Some(*at),
                    _ => started_at,
                };
                // A run this host stopped ended because of the stop, whatever code the
                // signal left behind.
                let reason = match (stop, reason) {
                    (Some(stop), None | Some(Reason::Stopped)) => Some(stop),
                    (_, reason) => reason,
                };
                let status = ReportStatus::Finished {
                    started_at: started,
                    at,
                    exit_code,
                    reason,
                    detail,
                };
                self.finish(now, run, status);
            }
            ExecutorEvent::LaunchFailed {
                run,
                at,
                reason,
                detail,
            } => {
                let status = ReportStatus::Finished {
                    started_at: None,
                    at,
                    exit_code: None,
                    reason: Some(reason),
                    detail: Some(detail),
                };
                self.finish(now, run, status);
            }
        }
        let _ = effects;
    }

    fn finish(&mut self, now: Now, id: RunId, status: ReportStatus) {
        if self.ended.contains_key(&id) {
            return;
        }
        match self.runs.get_mut(id) {
            Some(local) => {
                if matches!(
                    local.status,
                    LocalStatus::Reported(ReportStatus::Finished { .. })
                ) {
                    return;
                }
                local.status = LocalStatus::Reported(status);
                local.next_report = now.mono;
            }
            None => self.insert(now, id, None, LocalStatus::Reported(status)),
        }
        // Report at once rather than at the next housekeeping.
        self.urgent.push(id);
    }

    fn insert(&mut self, now: Now, id: RunId, limits: Option<RunLimits>, status: LocalStatus) {
        self.runs.insert(LocalRun::new(now, id, limits, status));
    }

    fn remember_ended(&mut self, id: RunId, status: ReportStatus) {
        if self.ended.insert(id, status).is_none() {
            self.ended_order.push_back(id);
        }
        while self.ended_order.len() > self.ended_max {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }

    fn report_of(&self, id: RunId) -> Message {
        let status = match (self.runs.get(id), self.ended.get(&id)) {
            (
                Some(LocalRun {
                    status: LocalStatus::Reported(s),
                    ..
                }),
                _,
            ) => s.clone(),
            (Some(_), _) => ReportStatus::Starting,
            (None, Some(s)) => s.clone(),
            (None, None) => ReportStatus::Unknown,
        };
        Message::Report { run: id, status }
    }

    /// Housekeeping: timeouts, the lease, and reports owed. Answers reports to send.
    pub(super) fn on_tick(&mut self, now: Now, effects: &mut VecDeque<Effect>) -> Vec<Message> {
        let retry = Duration::from_millis(self.timing.report_retry_ms.max(1));
        let mut reports = Vec::new();
        // New statuses first: each costs one lookup, not a pass over every run.
        for id in std::mem::take(&mut self.urgent) {
            if let Some(run) = self.runs.get_mut(id)
                && let LocalStatus::Reported(status) = &run.status
                && now.mono >= run.next_report
            {
                run.next_report = now.mono + retry;
                reports.push(Message::Report {
                    run: id,
                    status: status.clone(),
                });
            }
        }
        if now.mono < self.next_housekeeping {
            return reports;
        }
        self.next_housekeeping =
            now.mono + Duration::from_millis(self.timing.housekeeping_ms.max(1));
        let lease_lost = self.contact.is_none_or(|c| {
            now.mono.saturating_since(c) > Duration::from_millis(self.timing.lease_ms)
        });
        for run in self.runs.values_mut() {
            let executing = matches!(
                run.status,
                LocalStatus::Starting | LocalStatus::Reported(ReportStatus::Started { .. })
            );
            if executing {
                let concurrency = run.limits.map_or(Concurrency::Forbid, |l| l.concurrency);
                let timeout = run.limits.and_then(|l| l.timeout);
                let timed_out = matches!((run.started_mono, timeout), (Some(s), Some(t)) if now.mono.saturating_since(s) >= t);
                let stop_reason = if timed_out {
                    Some(Reason::Timeout)
                } else if lease_lost && concurrency != Concurrency::Allow {
                    Some(Reason::LeaseExpired)
                } else {
                    None
                };
                match (run.stop, stop_reason) {
                    (None, Some(reason)) => {
                        run.stop = Some((reason, now.mono));
                        effects.push_back(Effect::StopRun {
                            run: run.id,
                            reason,
                        });
                        effects.push_back(Effect::Event(match reason {
                            Reason::Timeout => Event::TimedOut { run: run.id },
                            _ => Event::LeaseExpired { run: run.id },
                        }));
                    }
                    (Some((reason, asked)), _)
                        if now.mono.saturating_since(asked)
                            >= Duration::from_millis(self.timing.stop_retry_ms) =>
                    {
                        // The executor has not reported the exit yet: ask again.
                        run.stop = Some((reason, now.mono));
                        effects.push_back(Effect::StopRun {
                            run: run.id,
                            reason,
                        });
                    }
                    _ => {}
                }
            }
            let owed = match &run.status {
                LocalStatus::Starting => false,
                LocalStatus::Reported(ReportStatus::Started { .. }) => run.acked < Acked::Started,
                LocalStatus::Reported(_) => true,
            };
            if owed && now.mono >= run.next_report {
                run.next_report = now.mono + retry;
                if let LocalStatus::Reported(status) = &run.status {
                    reports.push(Message::Report {
                        run: run.id,
                        status: status.clone(),
                    });
                }
            }
        }
        reports
    }
}
