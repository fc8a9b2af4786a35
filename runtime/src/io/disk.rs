//! Files, as the daemon uses them: whole files replaced atomically, and append-only logs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The file operations the daemon needs. Every call is synchronous: writes are small
/// and the callers are the storage tasks, which must not move on before a write is
/// durable anyway.
pub trait Disk: Send + Sync + 'static {
    /// A whole file, or none if it does not exist.
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Replaces a file crash-safely: write a temporary file, fsync it, rename it over
    /// the old one, fsync the directory.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Appends to a file (creating it), without syncing.
    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything written to a file durable.
    fn sync(&self, path: &Path) -> io::Result<()>;
    /// Cuts a file to `len` bytes and syncs it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Removes a file; a missing file is not an error.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// The files directly inside a directory, sorted by name.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes a directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The local file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsDisk;

impl Disk for FsDisk {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        self.sync_dir(dir)
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        file.write_all(bytes)
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.sync_data()
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut paths = Vec::new();
        match fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry?;
                    if entry.file_type()?.is_file() {
                        paths.push(entry.path());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        paths.sort();
        Ok(paths)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vote");
        FsDisk.write_atomic(&path, b"one").unwrap();
        FsDisk.write_atomic(&path, b"two").unwrap();
        assert_eq!(FsDisk.read(&path).unwrap().unwrap(), b"two");
        assert_eq!(FsDisk.list(dir.path()).unwrap(), vec![path.clone()]);
        assert_eq!(FsDisk.read(&dir.path().join("missing")).unwrap(), None);
    }

    #[test]
    fn appends_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        FsDisk.append(&path, b"abc").unwrap();
        FsDisk.append(&path, b"def").unwrap();
        FsDisk.sync(&path).unwrap();
        FsDisk.truncate(&path, 4).unwrap();
        assert_eq!(FsDisk.read(&path).unwrap().unwrap(), b"abcd");
        FsDisk.remove(&path).unwrap();
        FsDisk.remove(&path).unwrap();
    }
}
