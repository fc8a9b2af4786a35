//! Copying a command's output from its pipe to the run's `output` file, bounded. The
//! file is made at the first byte: most runs of most jobs print nothing, and a file
//! never made costs nothing to make or to remove.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// The most reads from one pipe each time it is ready, so that a command writing without
/// pause does not hold up the supervisor's other runs.
const READS_PER_READY_MAX: usize = 16;

/// The copy of one command's output: what it keeps, up to a bound, and then one line
/// saying so. It reads the pipe to its end whatever it keeps, so that the command never
/// blocks on a full pipe or dies of a closed one.
pub(super) struct OutputCopy {
    /// The read end of the command's output pipe, not blocking.
    pub pipe: io::PipeReader,
    /// Where the output goes, made at the first byte kept.
    path: PathBuf,
    file: Option<File>,
    bytes_max: u64,
    kept: u64,
    last_byte: u8,
    keeping: bool,
    /// The first write to `file` that failed; the copy goes on reading the pipe.
    write_error: Option<io::Error>,
}

impl OutputCopy {
    pub fn new(pipe: io::PipeReader, path: PathBuf, bytes_max: u64) -> Self {
        OutputCopy {
            pipe,
            path,
            file: None,
            bytes_max,
            kept: 0,
            last_byte: b'\n',
            keeping: true,
            write_error: None,
        }
    }

    /// Copies what the pipe holds now, through `buf`; whether the pipe is still open
    /// (false once every process holding its write end has closed it).
    pub fn pump(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        for _ in 0..READS_PER_READY_MAX {
            match self.pipe.read(buf) {
                Ok(0) => return Ok(false),
                Ok(n) => self.keep(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// The first failed write to the output file, once the copy is over.
    pub fn into_write_error(self) -> Option<io::Error> {
        self.write_error
    }

    fn keep(&mut self, chunk: &[u8]) {
        if !self.keeping {
            return;
        }
        let n = chunk.len();
        if n == 0 {
            return;
        }
        let room = usize::try_from(self.bytes_max.saturating_sub(self.kept)).unwrap_or(usize::MAX);
        let take = n.min(room);
        let bytes_max = self.bytes_max;
        let last_byte = self.last_byte;
        let file = match &mut self.file {
            Some(file) => Ok(file),
            None => File::create(&self.path).map(|file| &mut *self.file.insert(file)),
        };
        let written = file.and_then(|file| {
            file.write_all(&chunk[..take])?;
            if take < n {
                let separator = if take > 0 { chunk[take - 1] } else { last_byte };
                let separator = if separator == b'\n' { "" } else { "\n" };
                writeln!(
                    file,
                    "{separator}[rota: output truncated after {bytes_max} bytes]"
                )
            } else {
                Ok(())
            }
        });
        self.kept = self.kept.saturating_add(take as u64);
        if take > 0 {
            self.last_byte = chunk[take - 1];
        }
        match written {
            Ok(()) => self.keeping = take == n,
            Err(e) => {
                // Keep draining the pipe: a full disk must not block the command.
                self.keeping = false;
                self.write_error = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied(input: &[u8], bytes_max: u64) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output");
        let (reader, mut writer) = io::pipe().unwrap();
        let input = input.to_vec();
        let feeder = std::thread::spawn(move || writer.write_all(&input).unwrap());
        let mut copy = OutputCopy::new(reader, path.clone(), bytes_max);
        // The pipe blocks here, so each pump reads until it has ended.
        let mut buf = [0u8; 3];
        while copy.pump(&mut buf).unwrap() {}
        assert!(copy.into_write_error().is_none());
        feeder.join().unwrap();
        std::fs::read_to_string(path).unwrap_or_else(|e| format!("no file: {e}"))
    }

    #[test]
    fn a_command_printing_nothing_leaves_no_file() {
        assert!(copied(b"", 8).starts_with("no file"));
        assert_eq!(copied(b"x", 8), "x");
    }

    #[test]
    fn output_within_the_bound_is_kept_whole() {
        assert_eq!(copied(b"one\ntwo\n", 8), "one\ntwo\n");
    }

    #[test]
    fn output_beyond_the_bound_ends_with_one_marker_line() {
        assert_eq!(
            copied(b"one\ntwo\nthree\n", 6),
            "one\ntw\n[rota: output truncated after 6 bytes]\n"
        );
        assert_eq!(
            copied(b"one\ntwo\n", 4),
            "one\n[rota: output truncated after 4 bytes]\n"
        );
        assert_eq!(copied(b"x", 0), "[rota: output truncated after 0 bytes]\n");
    }
}
