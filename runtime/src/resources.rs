//! Sampling this host's free CPU, memory and disk, for placement.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rota_core::host::ResourceSample;
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, RefreshKind, System};

/// Reads this host's resources.
pub trait ResourceProbe: Send + Sync + 'static {
    /// A fresh sample.
    fn sample(&self) -> ResourceSample;
}

/// The operating system's view, through sysinfo; disk is the file system holding the
/// data directory.
pub struct SystemProbe {
    system: Mutex<Option<System>>,
    data_dir: PathBuf,
}

impl std::fmt::Debug for SystemProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemProbe")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl SystemProbe {
    /// A probe for the file system holding `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        // Without /proc (or on an unsupported system) the probe reports nothing free,
        // and placement passes this host over rather than guessing.
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .ok();
        // CPU usage is measured between two refreshes: take the first now.
        let mut system = system;
        if let Some(system) = system.as_mut() {
            system.refresh_cpu_usage();
        }
        SystemProbe {
            system: Mutex::new(system),
            data_dir: data_dir
                .canonicalize()
                .unwrap_or_else(|_| data_dir.to_path_buf()),
        }
    }
}

const MIB: u64 = 1024 * 1024;

impl ResourceProbe for SystemProbe {
    fn sample(&self) -> ResourceSample {
        let mut guard = self
            .system
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(system) = guard.as_mut() else {
            return ResourceSample::default();
        };
        // CPU usage is measured between two refreshes; the sampler calls this every few
        // seconds, so each sample covers the interval since the last.
        system.refresh_cpu_usage();
        system.refresh_memory();
        let cpus = system.cpus().len().max(1) as u32;
        let cpu_total_milli = cpus.saturating_mul(1000);
        let usage = f64::from(system.global_cpu_usage()).clamp(0.0, 100.0) / 100.0;
        let cpu_free_milli = (f64::from(cpu_total_milli) * (1.0 - usage)) as u32;
        let memory_total_mb = system.total_memory() / MIB;
        let memory_free_mb = (system.available_memory() / MIB).min(memory_total_mb);
        drop(guard);
        let (disk_total_mb, disk_free_mb) = disk_of(&self.data_dir);
        ResourceSample {
            cpu_total_milli,
            cpu_free_milli: cpu_free_milli.min(cpu_total_milli),
            memory_total_mb,
            memory_free_mb,
            disk_total_mb,
            disk_free_mb: disk_free_mb.min(disk_total_mb),
        }
    }
}

/// Total and available MiB of the file system with the longest mount point holding `dir`.
fn disk_of(dir: &Path) -> (u64, u64) {
    let Ok(disks) = Disks::new_with_refreshed_list() else {
        return (0, 0);
    };
    disks
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map_or((0, 0), |d| {
            (d.total_space() / MIB, d.available_space() / MIB)
        })
}

/// A probe that always answers the same sample (tests and the simulator).
#[derive(Debug, Clone, Copy)]
pub struct FixedProbe(pub ResourceSample);

impl ResourceProbe for FixedProbe {
    fn sample(&self) -> ResourceSample {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_sample_is_consistent_and_sees_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let probe = SystemProbe::new(dir.path());
        let sample = probe.sample();
        assert!(sample.is_consistent(), "{sample:?}");
        assert!(sample.cpu_total_milli >= 1000);
        assert!(sample.memory_total_mb > 0);
        assert!(
            sample.disk_total_mb > 0,
            "no file system found for {:?}",
            dir.path()
        );
    }
}
