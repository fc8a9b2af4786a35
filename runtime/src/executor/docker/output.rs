//! A container's output, copied from `docker logs` into the run's `output` file as it
//! comes, so that followers of the run (the API, `rota logs -f`) read it exactly as they
//! read a process run's, and it outlives the container.
//!
//! The file keeps at most `output_bytes_max` bytes, then one line saying it stopped, as
//! a process run's does. The engine's logs of a container always start from its
//! beginning, and the file is always a prefix of them: so when a copy is cut off (the
//! engine hiccuped, the daemon restarted), a new copy skips what the file has already.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;

use super::engine::{Engine, EngineError};

/// How long a cut-off copy waits before it asks the engine again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The run's output file and how far the container's logs have been copied into it.
#[derive(Debug)]
pub(super) struct OutputFile {
    file: File,
    bytes_max: u64,
    /// Bytes of the logs accounted for (kept or dropped); `u64::MAX` when the file was
    /// found truncated already, so that nothing more is kept.
    seen: u64,
    /// Where the current copy is in the logs.
    position: u64,
    /// Bytes kept in the file.
    kept: u64,
    last_byte: u8,
    /// Whether the marker line is written.
    truncated: bool,
    /// Whether a write failed (reported once).
    failed: bool,
}

impl OutputFile {
    /// The output file of a container that has not started: emptied.
    pub fn create(path: &Path, bytes_max: u64) -> io::Result<Self> {
        let file = File::create(path)?;
        Ok(OutputFile {
            file,
            bytes_max,
            seen: 0,
            position: 0,
            kept: 0,
            last_byte: b'\n',
            truncated: false,
            failed: false,
        })
    }

    /// The output file of a container that ran before: what it holds is the start of
    /// the logs, which the next copy skips.
    pub fn resume(path: &Path, bytes_max: u64) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        let truncated = len > bytes_max;
        let last_byte = if len == 0 {
            b'\n'
        } else {
            use std::io::{Read as _, Seek as _, SeekFrom};
            let mut reader = File::open(path)?;
            reader.seek(SeekFrom::Start(len - 1))?;
            let mut byte = [0u8; 1];
            reader.read_exact(&mut byte)?;
            byte[0]
        };
        Ok(OutputFile {
            file,
            bytes_max,
            seen: if truncated { u64::MAX } else { len },
            position: 0,
            kept: len.min(bytes_max),
            last_byte,
            truncated,
            failed: false,
        })
    }

    /// A new copy of the logs begins, from their start.
    pub fn begin(&mut self) {
        self.position = 0;
    }

    /// Takes the next bytes of the logs: what the file has already is skipped, the rest
    /// kept up to the bound, then the marker line.
    pub fn push(&mut self, data: &[u8]) {
        let len = data.len() as u64;
        let skip = self.seen.saturating_sub(self.position).min(len);
        self.position = self.position.saturating_add(len);
        let new = &data[skip as usize..];
        if new.is_empty() {
            return;
        }
        self.seen = self.seen.saturating_add(new.len() as u64);
        if self.truncated || self.failed {
            return;
        }
        let room = self.bytes_max.saturating_sub(self.kept);
        let take = (new.len() as u64).min(room) as usize;
        let mut written = self.file.write_all(&new[..take]);
        if take > 0 {
            self.last_byte = new[take - 1];
        }
        self.kept += take as u64;
        if written.is_ok() && take < new.len() {
            let separator = if self.last_byte == b'\n' { "" } else { "\n" };
            written = writeln!(
                self.file,
                "{separator}[rota: output truncated after {} bytes]",
                self.bytes_max
            );
            self.truncated = true;
        }
        if let Err(e) = written {
            // Keep reading the logs: their end is how the copy knows the container's.
            tracing::warn!("docker executor: cannot write a run's output: {e}");
            self.failed = true;
        }
    }
}

/// The output file, shared by the copy and the run's watch.
pub(super) type SharedOutput = Arc<Mutex<OutputFile>>;

/// Copies the logs of container `name` into `output`, from its start (skipping what
/// `output` has) until it stops; with `follow` false, only what is there now. A copy
/// cut off is begun again; the engine refusing the logs (a logging driver that cannot
/// be read) ends it.
pub(super) async fn copy_logs(engine: Engine, name: String, output: SharedOutput, follow: bool) {
    loop {
        lock(&output).begin();
        let mut logs = engine.logs(&name, follow);
        let mut error: Option<EngineError> = None;
        while let Some(chunk) = logs.next().await {
            match chunk {
                Ok(bytes) => lock(&output).push(&bytes),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        match error {
            None => return,
            Some(e) if e.status().is_some() || !follow => {
                tracing::warn!(container = %name, "docker executor: cannot copy the container's output: {e}");
                return;
            }
            Some(e) => {
                tracing::debug!(container = %name, "docker executor: the output copy was cut off; again: {e}");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

fn lock(output: &SharedOutput) -> std::sync::MutexGuard<'_, OutputFile> {
    output.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(pushes: &[&[u8]], bytes_max: u64) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output");
        let mut out = OutputFile::create(&path, bytes_max).unwrap();
        for data in pushes {
            out.push(data);
        }
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn output_within_the_bound_is_kept_whole() {
        assert_eq!(written(&[b"one\n", b"two\n"], 8), "one\ntwo\n");
    }

    #[test]
    fn output_beyond_the_bound_ends_with_the_process_executors_marker_line() {
        assert_eq!(
            written(&[b"one\ntwo\n", b"three\n"], 6),
            "one\ntw\n[rota: output truncated after 6 bytes]\n"
        );
        assert_eq!(
            written(&[b"one\n", b"two\n"], 4),
            "one\n[rota: output truncated after 4 bytes]\n"
        );
        assert_eq!(
            written(&[b"x"], 0),
            "[rota: output truncated after 0 bytes]\n"
        );
    }

    #[test]
    fn a_copy_begun_again_skips_what_the_file_has() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output");
        let mut out = OutputFile::create(&path, 100).unwrap();
        out.push(b"one\ntw");
        // Cut off; a new copy delivers the logs from their start, in other pieces.
        out.begin();
        out.push(b"on");
        out.push(b"e\ntwo\nthr");
        out.push(b"ee\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\nthree\n");
        // A restarted daemon resumes from the file alone.
        drop(out);
        let mut out = OutputFile::resume(&path, 100).unwrap();
        out.begin();
        out.push(b"one\ntwo\nthree\nfour\n");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "one\ntwo\nthree\nfour\n"
        );
    }

    #[test]
    fn a_truncated_file_resumed_stays_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output");
        let mut out = OutputFile::create(&path, 4).unwrap();
        out.push(b"one\ntwo\n");
        drop(out);
        let before = std::fs::read_to_string(&path).unwrap();
        let mut out = OutputFile::resume(&path, 4).unwrap();
        out.begin();
        out.push(b"one\ntwo\nthree\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }
}
