//! `sim`: whole rota clusters under turmoil, with faults, and checkers that read their
//! history. `cargo test -p sim` runs the seeds.

pub mod check;
pub mod executor;
pub mod http;
pub mod io;
pub mod plan;
pub mod world;

use std::time::{Duration, Instant};

pub use check::Report;
pub use plan::Plan;
pub use world::History;

/// One seed's outcome.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Its history.
    pub history: History,
    /// What the checkers found.
    pub report: Report,
    /// Wall time the seed took.
    pub wall: Duration,
}

/// Runs and checks one seed.
pub fn run_seed(seed: u64) -> Result<Outcome, String> {
    run_plan(Plan::from_seed(seed))
}

/// Runs and checks one plan (a seed's, or a scenario written by hand).
pub fn run_plan(plan: Plan) -> Result<Outcome, String> {
    let started = Instant::now();
    let seed = plan.seed;
    let history = world::run(plan)?;
    let report = check::check(&history);
    Ok(Outcome {
        seed,
        history,
        report,
        wall: started.elapsed(),
    })
}

impl History {
    /// Everything that happened, as bytes: two runs of one seed must give the same.
    pub fn fingerprint(&self) -> String {
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            self.truth, self.fired, self.acked, self.state_bytes, self.marks
        )
    }
}

impl Outcome {
    /// A readable account of a failing seed: the violations, how to replay it, and a
    /// timeline of faults and run events.
    pub fn explain(&self) -> String {
        let mut out = format!("seed {} failed:\n", self.seed);
        for v in &self.report.violations {
            out.push_str(&format!("  VIOLATION: {v}\n"));
        }
        out.push_str(&format!(
            "replay: SIM_SEED={} cargo test --release -p sim -- --nocapture\n",
            self.seed
        ));
        out.push_str(&format!(
            "plan: {} hosts, {} voters\n",
            self.history.plan.hosts, self.history.plan.voters
        ));
        let mut timeline: Vec<(u64, String)> = Vec::new();
        for f in &self.history.fired {
            timeline.push((f.at_ms, format!("FAULT {}", f.what)));
        }
        for a in &self.history.acked {
            timeline.push((a.at_ms, format!("ack   {} {}", a.what, a.job)));
        }
        for r in &self.history.truth {
            timeline.push((
                r.started_ms,
                format!(
                    "run   {} {} attempt {} on h{} ({} .. {:?})",
                    r.job,
                    r.scheduled_at,
                    r.attempt,
                    r.host.0 - 1,
                    r.started_ms,
                    r.ended_ms
                ),
            ));
        }
        timeline.sort();
        for (at, line) in timeline {
            out.push_str(&format!("{:>8} ms  {line}\n", at));
        }
        out
    }
}
