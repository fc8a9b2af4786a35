//! The files of one run directory, `runs_dir/<run id>/`: what the daemon and the host's
//! supervisor know of a run. Both sides outlive each other, so everything either needs
//! to know about the other's runs is in these files; the supervisor's standard input and
//! output only hand runs over and say which run has news.
//!
//! | file             | written by          | holds |
//! |------------------|---------------------|-------|
//! | `spec.json`      | daemon, atomically  | the run's spec, the host id, the output bound |
//! | `status.jsonl`   | supervisor, appending | pids, start, end, exit code or signal, launch error |
//! | `output`         | supervisor          | the command's stdout and stderr, interleaved, bounded; made at the first byte |
//! | `stop.json`      | daemon, atomically  | that the daemon asked the run to stop, and why |
//! | `supervisor.log` | supervisor (stderr) | a supervisor's own complaints, from when each run had one; still read |

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rota_core::host::HostId;
use rota_core::run::{Reason, RunId, RunSpec};
use rota_core::time::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::io::{Disk, FsDisk};

/// The run's spec, for the supervisor.
pub(super) const SPEC_FILE: &str = "spec.json";
/// The supervisor's account of the run: one whole [`Status`] per line, the last complete
/// line counting. Appended to, never replaced, so that a run costs one file for it.
pub(super) const STATUS_FILE: &str = "status.jsonl";
/// Where supervisors kept their account before `status.jsonl`: one [`Status`], replaced
/// whole. Still read, for runs started before an upgrade.
const OLD_STATUS_FILE: &str = "status.json";
/// The command's output; missing while the command has printed nothing.
pub(super) const OUTPUT_FILE: &str = "output";
/// The daemon's stop request.
pub(super) const STOP_FILE: &str = "stop.json";
/// The standard error of a supervisor of one run, from before supervisors lived across
/// runs (the host's supervisor's goes to the daemon's log).
pub(super) const SUPERVISOR_LOG_FILE: &str = "supervisor.log";

/// What the daemon hands a supervisor in `spec.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct SpecFile {
    /// The host the run executes on (for `ROTA_HOST`).
    pub host: HostId,
    /// The most output bytes kept in `output`.
    pub output_bytes_max: u64,
    /// The run.
    pub spec: RunSpec,
}

/// What a supervisor says about its run in `status.jsonl`. Times are milliseconds since
/// the Unix epoch.
///
/// The supervisor appends it three times at most: as soon as it is up (only `pid`), when
/// the command has started (`child_pid`, `started_at`), and when the command has ended
/// or could not be started (`finished_at`, with `exit_code`, `signal` or `error`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Status {
    /// The supervisor's process id.
    pub pid: u32,
    /// The command's process id, which is also its process group id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_pid: Option<u32>,
    /// When the command started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When the command ended, or when starting it failed: the status is final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// The command's exit code, when it exited by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that killed the command (`SIGTERM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Why the command could not be started, or what else went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Status {
    /// The command's process id and start, once it has started.
    pub fn started(&self) -> Option<(u32, Timestamp)> {
        self.child_pid.zip(self.started_at)
    }

    /// Whether the run has ended (or never started): nothing will change any more.
    pub fn is_final(&self) -> bool {
        self.finished_at.is_some()
    }
}

/// What the daemon records in `stop.json` when it asks a run to stop, so that a
/// restarted daemon still reports the stop as the reason of the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StopFile {
    /// Why the run was stopped.
    pub reason: Reason,
}

/// The directory of `run` under `runs_dir`.
pub(super) fn run_dir(runs_dir: &Path, run: RunId) -> PathBuf {
    runs_dir.join(run.0.to_string())
}

/// The run a directory entry of `runs_dir` belongs to, if it is a run directory.
pub(super) fn run_of(name: &std::ffi::OsStr) -> Option<RunId> {
    let name = name.to_str()?;
    // `u64::from_str` accepts a leading `+`, which `run_dir` never writes.
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok().map(RunId)
}

/// Replaces `dir/name` with `value` as JSON, crash-safely.
pub(super) fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    FsDisk.write_atomic(&dir.join(name), &bytes)
}

/// Writes `dir/name` as JSON (replacing any file of that name), without syncing it to
/// disk: for a file that nothing reads before it is whole, and whose loss in a crash of
/// the machine is harmless, because that crash ends the supervisor too.
pub(super) fn write_json_unsynced<T: Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    std::fs::write(dir.join(name), bytes)
}

/// The supervisor's pen on `status.jsonl`.
#[derive(Debug)]
pub(super) struct StatusLog {
    file: Arc<File>,
}

impl StatusLog {
    /// Creates the run's status file (or opens it, to append).
    pub fn create(dir: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(STATUS_FILE))?;
        Ok(StatusLog {
            file: Arc::new(file),
        })
    }

    /// Appends `status` as one line, in one write: a reader sees the line whole, or
    /// without its newline, which it ignores. The line is not synced: the supervisor's
    /// recorder syncs it (with the directory's entry for the file, the first time).
    pub fn write(&mut self, status: &Status) -> io::Result<()> {
        let mut line = serde_json::to_vec(status).map_err(io::Error::other)?;
        line.push(b'\n');
        (&*self.file).write_all(&line)
    }

    /// The file, to sync.
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }
}

/// The latest status the supervisor of the run in `dir` recorded; none if it recorded
/// none yet.
pub(super) fn read_status_file(dir: &Path) -> io::Result<Option<Status>> {
    let path = dir.join(STATUS_FILE);
    match FsDisk.read(&path)? {
        Some(bytes) => last_status(&bytes).map_err(|e| invalid(&path, e)),
        None => read_json(dir, OLD_STATUS_FILE),
    }
}

/// The last complete line of a status file that reads as a status. A line without its
/// newline is being written and does not count yet.
fn last_status(bytes: &[u8]) -> Result<Option<Status>, serde_json::Error> {
    let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
        return Ok(None);
    };
    let mut last_error = None;
    for line in bytes[..end].rsplit(|b| *b == b'\n') {
        match serde_json::from_slice(line) {
            Ok(status) => return Ok(Some(status)),
            Err(e) => {
                last_error.get_or_insert(e);
            }
        }
    }
    last_error.map_or(Ok(None), Err)
}

/// Reads `dir/name` as JSON; none if the file does not exist.
pub(super) fn read_json<T: DeserializeOwned>(dir: &Path, name: &str) -> io::Result<Option<T>> {
    let path = dir.join(name);
    match FsDisk.read(&path)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| invalid(&path, e)),
    }
}

/// The error of a run file at `path` that does not read.
fn invalid(path: &Path, e: serde_json::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} is not valid: {e}", path.display()),
    )
}

pub(super) use crate::io::clock::system_wall_now as wall_now;

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn only_plain_numbers_are_run_directories() {
        assert_eq!(run_of(OsStr::new("42")), Some(RunId(42)));
        assert_eq!(run_of(OsStr::new("+42")), None);
        assert_eq!(run_of(OsStr::new(".42.tmp")), None);
        assert_eq!(run_of(OsStr::new("")), None);
        assert_eq!(run_of(OsStr::new("99999999999999999999999")), None);
    }

    #[test]
    fn a_status_reads_back_and_leaves_out_what_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let status = Status {
            pid: 10,
            child_pid: Some(11),
            started_at: Some(Timestamp::from_millis(1_700_000_000_123)),
            ..Status::default()
        };
        let mut log = StatusLog::create(dir.path()).unwrap();
        log.write(&Status {
            pid: 10,
            ..Status::default()
        })
        .unwrap();
        log.write(&status).unwrap();
        let text = std::fs::read_to_string(dir.path().join(STATUS_FILE)).unwrap();
        assert!(!text.contains("finished_at"), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(read_status_file(dir.path()).unwrap(), Some(status));
        assert_eq!(
            read_json::<Status>(dir.path(), "missing.json").unwrap(),
            None
        );
    }

    #[test]
    fn a_status_line_being_written_does_not_count_yet() {
        let first = br#"{"pid":10}"#;
        let second = br#"{"pid":10,"child_pid":11,"started_at":5}"#;
        let mut bytes = [&first[..], b"\n", &second[..], b"\n"].concat();
        let whole = last_status(&bytes).unwrap().unwrap();
        assert_eq!(whole.started_at, Some(Timestamp::from_millis(5)));
        bytes.extend_from_slice(br#"{"pid":10,"child_pid":11,"star"#);
        assert_eq!(last_status(&bytes).unwrap(), Some(whole));
        assert_eq!(last_status(&first[..]).unwrap(), None, "no newline yet");
        assert_eq!(last_status(b"").unwrap(), None);
        assert!(last_status(b"not json\n").is_err());
    }

    #[test]
    fn a_status_written_before_the_status_log_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let status = Status {
            pid: 10,
            finished_at: Some(Timestamp::from_millis(7)),
            ..Status::default()
        };
        write_json(dir.path(), OLD_STATUS_FILE, &status).unwrap();
        assert_eq!(read_status_file(dir.path()).unwrap(), Some(status));
    }
}
