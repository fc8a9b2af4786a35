//! Many seeds, each a whole cluster under faults, checked.
//!
//! `SIM_SEEDS=N` runs N seeds (default 200) from `SIM_FROM` (default 1); `SIM_SEED=S`
//! replays one; `SIM_THREADS` sets the parallelism (default: the machine's cores).

use std::time::{Duration, Instant};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn seeds() {
    // SIM_LOG=debug (or any filter) shows the daemons' logs for replaying one seed.
    if let Ok(filter) = std::env::var("SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let seeds: Vec<u64> = match env::<u64>("SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let from = env::<u64>("SIM_FROM").unwrap_or(1);
            (from..from.saturating_add(env::<u64>("SIM_SEEDS").unwrap_or(200))).collect()
        }
    };
    let threads = env::<usize>("SIM_THREADS")
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let started = Instant::now();
    let chunks: Vec<Vec<u64>> = (0..threads)
        .map(|t| seeds.iter().copied().skip(t).step_by(threads).collect())
        .collect();
    let outcomes: Vec<Result<sim::Outcome, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || chunk.into_iter().map(sim::run_seed).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a seed thread panicked"))
            .collect()
    });
    let wall = started.elapsed();
    let mut failures = Vec::new();
    let (mut faults, mut fires, mut recorded, mut simulated) = (0, 0, 0, Duration::ZERO);
    let mut marks = std::collections::BTreeMap::new();
    for outcome in &outcomes {
        match outcome {
            Err(e) => failures.push(e.clone()),
            Ok(o) => {
                faults += o.report.faults_fired;
                fires += o.report.fires_checked;
                recorded += o.report.recorded_not_run;
                simulated += o.history.sim_elapsed;
                for (k, v) in &o.history.marks {
                    *marks.entry(*k).or_insert(0u64) += v;
                }
                if !o.report.violations.is_empty() {
                    failures.push(o.explain());
                }
            }
        }
    }
    let violations: usize = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .map(|o| o.report.violations.len())
        .sum();
    println!(
        "sim: {} seeds, {faults} faults fired, {fires} fires checked ({recorded} recorded not run), {violations} violations, {:.0}x real time",
        seeds.len(),
        simulated.as_secs_f64() / wall.as_secs_f64()
    );
    println!("sim: coverage marks {marks:?}");
    for failure in failures.iter().take(3) {
        eprintln!("{failure}");
    }
    // Every failing seed, one line each, to replay them one by one.
    for outcome in outcomes.iter().filter_map(|o| o.as_ref().ok()) {
        if let Some(first) = outcome.report.violations.first() {
            let first: String = first.chars().take(160).collect();
            println!(
                "sim: seed {} failed ({} violations): {first}",
                outcome.seed,
                outcome.report.violations.len()
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed",
        failures.len(),
        seeds.len()
    );
}
