//! The supervisor's recorder: a thread that makes the status lines the launcher and the
//! event loop wrote durable, reaps the commands that ended, and then tells the daemon
//! which runs have news.
//!
//! When several lines wait, one `syncfs` of the runs directory's file system covers
//! them all, where each would otherwise cost a sync of its own; under load, syncs are
//! spaced so that several lines do wait. `syncfs` is used only where it reports the
//! errors of the files it writes (Linux 5.8 and later, on a local file system that
//! rota knows), and not for a while after one was slow: it also writes what other
//! programs left unwritten on that file system, and a sync of each line is then cheaper.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use nix::sys::statfs;
use rota_core::run::RunId;

use super::super::run_dir::STATUS_FILE;
use crate::io::{Disk, FsDisk};

/// The word after a run's id on the supervisor's standard output that says the
/// supervisor could not record the run's end.
pub(in crate::executor::process) const LOST: &str = "lost";

/// The most lines made durable by one `syncfs`.
const LINES_PER_SYNC_MAX: usize = 1_024;

/// The least time between two syncs. A line that comes after a quiet spell is synced at
/// once; one that comes sooner waits for the rest of this time, and the lines that come
/// meanwhile are synced with it. On a virtual machine each sync costs exits to the host,
/// several of them for a line synced alone (its data, its inode, its directory, the
/// flush).
const SYNC_INTERVAL_MIN: Duration = Duration::from_millis(5);

/// A `syncfs` that takes longer than this was slowed by writes that are not the
/// supervisor's; each line is then synced alone for [`SYNCFS_BACK_OFF`].
const SYNCFS_SLOW: Duration = Duration::from_millis(100);
const SYNCFS_BACK_OFF: Duration = Duration::from_secs(10);

/// A status line appended to a run's `status.jsonl`, not yet durable.
pub(super) struct Written {
    pub run: RunId,
    /// The run's directory, whose entry for the status file is synced with the first line.
    pub dir: PathBuf,
    /// The status file, to sync; or why the line could not be written.
    pub file: io::Result<Arc<File>>,
    pub step: Step,
}

/// Which line of the run it is.
pub(super) enum Step {
    /// The command has started.
    Started,
    /// The run has ended (or could not start): the last line. The command, if one ran,
    /// is reaped once the line is durable, or once it failed to be: until then its
    /// process group id cannot be reused, so a daemon that signals the group while the
    /// status says the command runs can only reach the command's own processes.
    Ended(Option<Child>),
}

/// Records what `written` brings until every sender is gone; whether every run's end
/// was recorded.
pub(super) fn record(runs_dir: &Path, written: &mpsc::Receiver<Written>) -> bool {
    let mut recorder = Recorder {
        file_system: syncfs_target(runs_dir),
        syncfs_back_off_until: None,
        entries_synced: HashSet::new(),
        every_end_recorded: true,
        news: String::new(),
    };
    let mut last_sync: Option<Instant> = None;
    while let Ok(first) = written.recv() {
        if let Some(next) = last_sync.map(|last| last + SYNC_INTERVAL_MIN) {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        last_sync = Some(Instant::now());
        let mut batch = vec![first];
        batch.extend(written.try_iter().take(LINES_PER_SYNC_MAX - 1));
        recorder.record(batch);
    }
    recorder.every_end_recorded
}

struct Recorder {
    /// A file of the runs directory's file system, to `syncfs` it; none where `syncfs`
    /// is not trusted.
    file_system: Option<File>,
    /// Until when each line is synced alone, after a slow `syncfs`.
    syncfs_back_off_until: Option<Instant>,
    /// The runs whose status file's directory entry is durable.
    entries_synced: HashSet<RunId>,
    every_end_recorded: bool,
    /// What the daemon is told next, whole lines.
    news: String,
}

impl Recorder {
    fn record(&mut self, batch: Vec<Written>) {
        let all_synced = batch.iter().filter(|w| w.file.is_ok()).count() > 1 && self.syncfs();
        for line in batch {
            let durable = line.file.and_then(|file| {
                if !all_synced {
                    file.sync_data()?;
                    if !self.entries_synced.contains(&line.run) {
                        FsDisk.sync_dir(&line.dir)?;
                    }
                }
                Ok(())
            });
            let status_file = || line.dir.join(STATUS_FILE);
            match (line.step, durable) {
                (Step::Started, Ok(())) => {
                    self.entries_synced.insert(line.run);
                    let _ = writeln!(self.news, "{}", line.run);
                }
                // The run goes on; the daemon learns of it at the end.
                (Step::Started, Err(e)) => complain!(
                    "rota supervisor: cannot record the start of the run in {}: {e}",
                    status_file().display()
                ),
                (Step::Ended(child), durable) => {
                    self.entries_synced.remove(&line.run);
                    if let Some(mut child) = child {
                        let _ = child.wait();
                    }
                    match durable {
                        Ok(()) => {
                            let _ = writeln!(self.news, "{}", line.run);
                        }
                        Err(e) => {
                            complain!(
                                "rota supervisor: cannot record the end of the run in {}: {e}",
                                status_file().display()
                            );
                            // The daemon would otherwise wait for an end that never comes.
                            self.every_end_recorded = false;
                            let _ = writeln!(self.news, "{} {LOST}", line.run);
                        }
                    }
                }
            }
            // Lines synced one by one are told one by one.
            if !all_synced {
                self.tell();
            }
        }
        self.tell();
    }

    /// Syncs the runs directory's file system, if `syncfs` is trusted there and has not
    /// been slow of late; whether it did.
    fn syncfs(&mut self) -> bool {
        let Some(file_system) = &self.file_system else {
            return false;
        };
        let now = Instant::now();
        if self.syncfs_back_off_until.is_some_and(|until| now < until) {
            return false;
        }
        let synced = nix::unistd::syncfs(file_system).is_ok();
        let took = now.elapsed();
        if took > SYNCFS_SLOW {
            complain!(
                "rota supervisor: a sync of the runs directory's file system took {} ms; \
                 each status line is synced alone for the next {} s",
                took.as_millis(),
                SYNCFS_BACK_OFF.as_secs()
            );
            self.syncfs_back_off_until = Some(Instant::now() + SYNCFS_BACK_OFF);
        }
        synced
    }

    /// Writes the news to the daemon, in one write. A daemon that is gone is not told.
    fn tell(&mut self) {
        if self.news.is_empty() {
            return;
        }
        let mut out = io::stdout().lock();
        let _ = out
            .write_all(self.news.as_bytes())
            .and_then(|()| out.flush());
        self.news.clear();
    }
}

/// A file of `runs_dir`'s file system to `syncfs`, if `syncfs` reports the errors of
/// the files it writes there: on Linux 5.8 and later, and on a local file system.
fn syncfs_target(runs_dir: &Path) -> Option<File> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    let local = statfs::statfs(runs_dir).is_ok_and(|fs| {
        [
            statfs::EXT2_SUPER_MAGIC,
            statfs::EXT3_SUPER_MAGIC,
            statfs::EXT4_SUPER_MAGIC,
            statfs::XFS_SUPER_MAGIC,
            statfs::BTRFS_SUPER_MAGIC,
            statfs::TMPFS_MAGIC,
        ]
        .contains(&fs.filesystem_type())
    });
    if version < (5, 8) || !local {
        return None;
    }
    File::open(runs_dir).ok()
}
