//! Node selection: which host runs a run.
//!
//! A host is eligible when it matches the job's constraints and executor, has the run's
//! requested resources free, and keeps at least a quarter of each of its CPU, memory and
//! disk free. Among eligible hosts the one with the most free resources (the sum of its
//! free fractions) wins; ties go to the lowest host id so that every leader would choose
//! alike. Free resources are counted after subtracting what the leader has just placed
//! on the host and gossip does not show yet, so a burst spreads out.

use std::collections::BTreeMap;

use crate::host::{HostId, HostInfo};
use crate::job::Request;

/// The least fraction of each resource a host must keep free to be eligible.
pub const FREE_FRACTION_MIN: f64 = 0.25;

/// Resources placed on a host and not yet reflected in its gossip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// CPU, in thousandths of a core.
    pub milli_cpus: u64,
    /// Memory, in MiB.
    pub memory_mb: u64,
    /// Disk, in MiB.
    pub disk_mb: u64,
}

impl Pending {
    /// Adds one run's request.
    pub fn add(&mut self, r: &Request) {
        self.milli_cpus = self.milli_cpus.saturating_add(u64::from(r.milli_cpus));
        self.memory_mb = self.memory_mb.saturating_add(r.memory_mb);
        self.disk_mb = self.disk_mb.saturating_add(r.disk_mb);
    }

    /// Removes one run's request.
    pub fn remove(&mut self, r: &Request) {
        self.milli_cpus = self.milli_cpus.saturating_sub(u64::from(r.milli_cpus));
        self.memory_mb = self.memory_mb.saturating_sub(r.memory_mb);
        self.disk_mb = self.disk_mb.saturating_sub(r.disk_mb);
    }
}

/// A host as placement sees it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// The host.
    pub id: HostId,
    /// What it last gossiped.
    pub info: &'a HostInfo,
    /// What has been placed on it since.
    pub pending: Pending,
}

/// What a run needs from its host.
#[derive(Clone, Copy, Debug)]
pub struct Need<'a> {
    /// Its resources.
    pub request: Request,
    /// Whether it needs a Docker engine.
    pub docker: bool,
    /// Tags the host must carry with these values.
    pub constraints: &'a BTreeMap<String, String>,
}

/// A candidate's free resources after pending placements and this run, as fractions of
/// capacity; none when the host cannot take the run at all.
pub fn free_after(need: &Need<'_>, c: &Candidate<'_>) -> Option<[f64; 3]> {
    if need.docker && !c.info.docker {
        return None;
    }
    if !need
        .constraints
        .iter()
        .all(|(tag, value)| c.info.tags.get(tag) == Some(value))
    {
        return None;
    }
    let s = &c.info.resources;
    let left = |total: u64, free: u64, pending: u64, request: u64| -> Option<f64> {
        let free = free.min(total).checked_sub(pending)?.checked_sub(request)?;
        (total > 0).then(|| free as f64 / total as f64)
    };
    let cpu = left(
        u64::from(s.cpu_total_milli),
        u64::from(s.cpu_free_milli),
        c.pending.milli_cpus,
        u64::from(need.request.milli_cpus),
    )?;
    let memory = left(
        s.memory_total_mb,
        s.memory_free_mb,
        c.pending.memory_mb,
        need.request.memory_mb,
    )?;
    let disk = left(
        s.disk_total_mb,
        s.disk_free_mb,
        c.pending.disk_mb,
        need.request.disk_mb,
    )?;
    Some([cpu, memory, disk])
}

/// Whether the candidate may take the run.
pub fn is_eligible(need: &Need<'_>, c: &Candidate<'_>) -> bool {
    free_after(need, c).is_some_and(|f| f.iter().all(|x| *x >= FREE_FRACTION_MIN))
}

/// The eligible candidate with the most free resources, or none.
pub fn choose<'a>(
    need: &Need<'_>,
    candidates: impl IntoIterator<Item = Candidate<'a>>,
) -> Option<HostId> {
    let mut best: Option<(f64, HostId)> = None;
    for c in candidates {
        let Some(free) = free_after(need, &c) else {
            continue;
        };
        if free.iter().any(|x| *x < FREE_FRACTION_MIN) {
            continue;
        }
        let score: f64 = free.iter().sum();
        let better = match best {
            None => true,
            Some((best_score, best_id)) => {
                score > best_score || (score == best_score && c.id < best_id)
            }
        };
        if better {
            best = Some((score, c.id));
        }
    }
    best.map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::host::ResourceSample;

    fn info(cpu_free: u32, mem_free: u64, disk_free: u64, docker: bool) -> HostInfo {
        HostInfo {
            resources: ResourceSample {
                cpu_total_milli: 4000,
                cpu_free_milli: cpu_free,
                memory_total_mb: 8192,
                memory_free_mb: mem_free,
                disk_total_mb: 100_000,
                disk_free_mb: disk_free,
            },
            tags: BTreeMap::new(),
            docker,
        }
    }

    fn need(constraints: &BTreeMap<String, String>) -> Need<'_> {
        Need {
            request: Request::NOMINAL,
            docker: false,
            constraints,
        }
    }

    #[test]
    fn the_host_with_most_free_wins_and_ties_go_to_the_lowest_id() {
        let none = BTreeMap::new();
        let a = info(2000, 4000, 50_000, false);
        let b = info(3000, 4000, 50_000, false);
        let cands = [
            Candidate {
                id: HostId(1),
                info: &a,
                pending: Pending::default(),
            },
            Candidate {
                id: HostId(2),
                info: &b,
                pending: Pending::default(),
            },
            Candidate {
                id: HostId(3),
                info: &b,
                pending: Pending::default(),
            },
        ];
        assert_eq!(choose(&need(&none), cands), Some(HostId(2)));
    }

    #[test]
    fn a_host_under_a_quarter_free_of_anything_is_not_eligible() {
        let none = BTreeMap::new();
        let busy_disk = info(4000, 8000, 20_000, false);
        let fine = info(1200, 2500, 30_000, false);
        let cands = [
            Candidate {
                id: HostId(1),
                info: &busy_disk,
                pending: Pending::default(),
            },
            Candidate {
                id: HostId(2),
                info: &fine,
                pending: Pending::default(),
            },
        ];
        assert_eq!(choose(&need(&none), cands), Some(HostId(2)));
        assert_eq!(choose(&need(&none), [cands[0]]), None);
    }

    #[test]
    fn constraints_and_docker_are_matched() {
        let mut tagged = info(2000, 4000, 50_000, false);
        tagged.tags.insert("zone".into(), "a".into());
        let docker = info(4000, 8000, 90_000, true);
        let zone_a = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let cands = [
            Candidate {
                id: HostId(1),
                info: &tagged,
                pending: Pending::default(),
            },
            Candidate {
                id: HostId(2),
                info: &docker,
                pending: Pending::default(),
            },
        ];
        assert_eq!(choose(&need(&zone_a), cands), Some(HostId(1)));
        let none = BTreeMap::new();
        let docker_need = Need {
            docker: true,
            ..need(&none)
        };
        assert_eq!(choose(&docker_need, cands), Some(HostId(2)));
        let both = Need {
            docker: true,
            ..need(&zone_a)
        };
        assert_eq!(choose(&both, cands), None);
    }

    #[test]
    fn pending_placements_spread_a_burst() {
        let none = BTreeMap::new();
        let a = info(3000, 6000, 60_000, false);
        let b = info(2980, 6000, 60_000, false);
        let mut pending = [Pending::default(), Pending::default()];
        let mut counts = [0, 0];
        for _ in 0..20 {
            let cands = [
                Candidate {
                    id: HostId(1),
                    info: &a,
                    pending: pending[0],
                },
                Candidate {
                    id: HostId(2),
                    info: &b,
                    pending: pending[1],
                },
            ];
            let chosen = choose(&need(&none), cands).unwrap();
            let i = (chosen.0 - 1) as usize;
            pending[i].add(&Request::NOMINAL);
            counts[i] += 1;
        }
        assert!(counts[0] >= 8 && counts[1] >= 8, "{counts:?}");
    }

    prop_compose! {
        fn arb_info()(cpu_total in 0u32..8000, cpu_free in 0u32..8000, mem_total in 0u64..16_000,
                      mem_free in 0u64..16_000, disk_total in 0u64..100_000, disk_free in 0u64..100_000,
                      docker: bool, zone in 0u8..3) -> HostInfo {
            let mut tags = BTreeMap::new();
            tags.insert("zone".to_string(), zone.to_string());
            HostInfo {
                resources: ResourceSample {
                    cpu_total_milli: cpu_total, cpu_free_milli: cpu_free.min(cpu_total),
                    memory_total_mb: mem_total, memory_free_mb: mem_free.min(mem_total),
                    disk_total_mb: disk_total, disk_free_mb: disk_free.min(disk_total),
                },
                tags,
                docker,
            }
        }
    }

    proptest! {
        #[test]
        fn choose_returns_an_eligible_host_with_maximal_free_or_none_only_when_none_is_eligible(
            infos in prop::collection::vec(arb_info(), 0..8),
            pendings in prop::collection::vec((0u64..2000, 0u64..4000, 0u64..10_000), 8),
            cpu in 0u32..2000, mem in 0u64..4000, docker: bool, zone in prop::option::of(0u8..3),
        ) {
            let constraints: BTreeMap<String, String> =
                zone.map(|z| ("zone".to_string(), z.to_string())).into_iter().collect();
            let need = Need { request: Request { milli_cpus: cpu, memory_mb: mem, disk_mb: 0 }, docker, constraints: &constraints };
            let cands: Vec<Candidate<'_>> = infos.iter().enumerate().map(|(i, info)| Candidate {
                id: HostId(i as u64 + 1),
                info,
                pending: Pending { milli_cpus: pendings[i].0, memory_mb: pendings[i].1, disk_mb: pendings[i].2 },
            }).collect();
            let eligible: Vec<&Candidate<'_>> = cands.iter().filter(|c| is_eligible(&need, c)).collect();
            match choose(&need, cands.iter().copied()) {
                None => prop_assert!(eligible.is_empty()),
                Some(id) => {
                    let chosen = cands.iter().find(|c| c.id == id).unwrap();
                    prop_assert!(is_eligible(&need, chosen));
                    let score = |c: &Candidate<'_>| free_after(&need, c).unwrap().iter().sum::<f64>();
                    for other in &eligible {
                        prop_assert!(score(chosen) >= score(other));
                        if score(chosen) == score(other) { prop_assert!(chosen.id <= other.id); }
                    }
                    // Independently of `free_after`: every fraction really is at least a quarter.
                    let s = &chosen.info.resources;
                    let p = chosen.pending;
                    prop_assert!((u64::from(s.cpu_free_milli) as f64 - p.milli_cpus as f64 - f64::from(cpu)) >= 0.25 * f64::from(s.cpu_total_milli));
                    prop_assert!((s.memory_free_mb as f64 - p.memory_mb as f64 - mem as f64) >= 0.25 * s.memory_total_mb as f64);
                    prop_assert!((s.disk_free_mb as f64 - p.disk_mb as f64) >= 0.25 * s.disk_total_mb as f64);
                }
            }
        }
    }
}
