//! The supervisor's recorder: a thread that makes the status lines the event loop wrote
//! durable, then tells the daemon which runs have news and reaps the commands that
//! ended. When several lines wait, one `syncfs` of the runs directory's file system
//! covers them all, where each would otherwise cost a sync of its own; under load, syncs
//! are spaced so that several lines do wait.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rota_core::run::RunId;

use super::super::run_dir::STATUS_FILE;
use crate::io::{Disk, FsDisk};

/// The word after a run's id on the supervisor's standard output that says the
/// supervisor could not record the run's end.
pub(in crate::executor::process) const LOST: &str = "lost";

/// The most lines made durable by one sync, so that the daemon hears of the first of a
/// long queue without waiting for the last.
const LINES_PER_SYNC_MAX: usize = 1_024;

/// The least time between two syncs. A line that comes after a quiet spell is synced at
/// once; one that comes sooner waits for the rest of this time, and the lines that come
/// meanwhile are synced with it. On a virtual machine each sync costs exits to the host,
/// several of them for a line synced alone (its data, its inode, its directory, the
/// flush).
const SYNC_INTERVAL_MIN: Duration = Duration::from_millis(5);

/// A status line the event loop appended to a run's `status.jsonl`, not yet durable.
pub(super) struct Written {
    pub run: RunId,
    /// The run's directory, whose entry for the status file is synced with the first line.
    pub dir: PathBuf,
    /// The status file, to sync; or why the line could not be written.
    pub file: io::Result<File>,
    pub step: Step,
}

/// Which line of the run it is.
pub(super) enum Step {
    /// The command has started.
    Started,
    /// The run has ended (or could not start): the last line. The command, if one ran,
    /// is reaped once the line is durable, and not before: until then its process group
    /// id cannot be reused, so a daemon that signals the group while the status says the
    /// command runs can only reach the command's own processes.
    Ended(Option<Child>),
}

/// Records what `written` brings until the event loop closes it; whether every run's end
/// was recorded.
pub(super) fn record(runs_dir: &Path, written: &mpsc::Receiver<Written>) -> bool {
    // `syncfs` needs any file of the file system; without one, each line is synced alone.
    let file_system = File::open(runs_dir)
        .inspect_err(|e| {
            complain!(
                "rota supervisor: cannot open {} ({e}); each status line is synced alone",
                runs_dir.display()
            );
        })
        .ok();
    let mut entries_synced = HashSet::new();
    let mut every_end_recorded = true;
    let mut news = String::new();
    let mut last_sync: Option<Instant> = None;
    while let Ok(first) = written.recv() {
        if let Some(next) = last_sync.map(|last| last + SYNC_INTERVAL_MIN) {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        last_sync = Some(Instant::now());
        let mut batch = vec![first];
        batch.extend(written.try_iter().take(LINES_PER_SYNC_MAX - 1));
        let files = batch.iter().filter(|w| w.file.is_ok()).count();
        let all_synced = files > 1
            && file_system
                .as_ref()
                .is_some_and(|fs| nix::unistd::syncfs(fs).is_ok());
        for line in batch {
            let durable = line.file.and_then(|file| {
                if !all_synced {
                    file.sync_data()?;
                    if !entries_synced.contains(&line.run) {
                        FsDisk.sync_dir(&line.dir)?;
                    }
                }
                Ok(())
            });
            let status_file = || line.dir.join(STATUS_FILE);
            match (line.step, durable) {
                (Step::Started, Ok(())) => {
                    entries_synced.insert(line.run);
                    news.push_str(&format!("{}\n", line.run));
                }
                // The run goes on; the daemon learns of it at the end.
                (Step::Started, Err(e)) => complain!(
                    "rota supervisor: cannot record the start of the run in {}: {e}",
                    status_file().display()
                ),
                (Step::Ended(child), durable) => {
                    entries_synced.remove(&line.run);
                    match durable {
                        Ok(()) => news.push_str(&format!("{}\n", line.run)),
                        Err(e) => {
                            complain!(
                                "rota supervisor: cannot record the end of the run in {}: {e}",
                                status_file().display()
                            );
                            // The daemon would otherwise wait for an end that never comes.
                            every_end_recorded = false;
                            news.push_str(&format!("{} {LOST}\n", line.run));
                        }
                    }
                    if let Some(mut child) = child {
                        let _ = child.wait();
                    }
                }
            }
        }
        tell(&news);
        news.clear();
    }
    every_end_recorded
}

/// Writes `news` (whole lines) to the daemon, in one write. A daemon that is gone is not
/// told.
fn tell(news: &str) {
    if news.is_empty() {
        return;
    }
    let mut out = io::stdout().lock();
    let _ = out.write_all(news.as_bytes()).and_then(|()| out.flush());
}
