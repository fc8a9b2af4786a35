//! The simulator's I/O: turmoil's sockets, a clock on turmoil's time that a fault can
//! step or skew, and an in-memory disk that loses unsynced writes on a crash and can
//! be told to fail a write.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rota_core::time::{Mono, Now, Timestamp};
use runtime::io::net::{BoxFuture, BoxStream, Listener, Net, UdpSocket};
use runtime::io::{Clock, Disk};

/// turmoil's simulated network.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilNet;

struct TurmoilListener(turmoil::net::TcpListener);

impl Listener for TurmoilListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok((Box::new(stream) as BoxStream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

struct TurmoilUdp(turmoil::net::UdpSocket);

impl UdpSocket for TurmoilUdp {
    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>> {
        Box::pin(self.0.send_to(buf, to))
    }

    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> BoxFuture<'a, io::Result<(usize, SocketAddr)>> {
        Box::pin(self.0.recv_from(buf))
    }
}

impl Net for TurmoilNet {
    fn listen(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TurmoilListener(listener)) as Box<dyn Listener>)
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(stream) as BoxStream)
        })
    }

    fn bind_udp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn UdpSocket>>> {
        Box::pin(async move {
            let socket = turmoil::net::UdpSocket::bind(addr).await?;
            Ok(Box::new(TurmoilUdp(socket)) as Box<dyn UdpSocket>)
        })
    }
}

/// A fault on one host's wall clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockFault {
    /// A step: added to every reading.
    pub offset_ms: i64,
    /// A skew: parts per million the clock runs fast (positive) or slow.
    pub skew_ppm: i64,
}

/// Monotonic time is turmoil's; wall time is the simulation's epoch plus that, plus
/// whatever step and skew a fault has put on this host.
#[derive(Debug, Clone)]
pub struct SimClock {
    origin: tokio::time::Instant,
    /// Milliseconds of simulated time at `origin` since the simulation began.
    origin_elapsed_ms: u64,
    epoch: Timestamp,
    fault: Arc<Mutex<ClockFault>>,
}

impl SimClock {
    /// A clock for a host started `elapsed` into a simulation that began at `epoch`.
    pub fn new(
        epoch: Timestamp,
        elapsed: std::time::Duration,
        fault: Arc<Mutex<ClockFault>>,
    ) -> Self {
        SimClock {
            origin: tokio::time::Instant::now(),
            origin_elapsed_ms: elapsed.as_millis() as u64,
            epoch,
            fault,
        }
    }
}

impl Clock for SimClock {
    fn now(&self) -> Now {
        let since = self.origin.elapsed().as_millis() as u64;
        let elapsed = self.origin_elapsed_ms + since;
        let fault = *self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        let skew = (elapsed as i64).saturating_mul(fault.skew_ppm) / 1_000_000;
        let wall = Timestamp::from_millis(
            self.epoch.as_millis() + elapsed as i64 + fault.offset_ms + skew,
        );
        // Monotonic time counts from this host's start, as a real clock would.
        Now::new(Mono::from_millis(since + 1), wall)
    }
}

#[derive(Debug, Default, Clone)]
struct SimFile {
    /// What survives a crash.
    durable: Vec<u8>,
    /// What a reader sees (durable plus unsynced writes).
    current: Vec<u8>,
    /// Whether the file's existence is durable (its directory was synced since it was
    /// created).
    created_durably: bool,
}

/// An in-memory disk for one host, shared across its crashes and restarts.
#[derive(Debug, Default, Clone)]
pub struct SimDisk {
    inner: Arc<Mutex<DiskState>>,
}

#[derive(Debug, Default)]
struct DiskState {
    files: BTreeMap<PathBuf, SimFile>,
    /// Fail this many of the next writes (appends, atomic writes, truncations).
    fail_writes: u32,
    /// Writes failed so far by the fault.
    failed: u32,
}

impl SimDisk {
    /// A fresh, empty disk.
    pub fn new() -> Self {
        SimDisk::default()
    }

    /// A crash: every write not synced is lost, and files never made durable vanish.
    pub fn crash(&self) {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        state.files.retain(|_, f| f.created_durably);
        for file in state.files.values_mut() {
            file.current = file.durable.clone();
        }
    }

    /// Makes the next `n` writes fail with an I/O error.
    pub fn fail_next_writes(&self, n: u32) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fail_writes = n;
    }

    /// How many writes the fault has failed.
    pub fn failed_writes(&self) -> u32 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failed
    }

    fn with<T>(&self, f: impl FnOnce(&mut DiskState) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl DiskState {
    fn write_fault(&mut self) -> io::Result<()> {
        if self.fail_writes > 0 {
            self.fail_writes -= 1;
            self.failed += 1;
            return Err(io::Error::other("simulated disk write failure"));
        }
        Ok(())
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl Disk for SimDisk {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        Ok(self.with(|s| s.files.get(path).map(|f| f.current.clone())))
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.with(|s| {
            s.write_fault()?;
            // Temporary file, fsync, rename, fsync the directory: durable at once.
            s.files.insert(
                path.to_path_buf(),
                SimFile {
                    durable: bytes.to_vec(),
                    current: bytes.to_vec(),
                    created_durably: true,
                },
            );
            Ok(())
        })
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.with(|s| {
            s.write_fault()?;
            s.files
                .entry(path.to_path_buf())
                .or_default()
                .current
                .extend_from_slice(bytes);
            Ok(())
        })
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        self.with(|s| {
            let file = s.files.get_mut(path).ok_or_else(|| not_found(path))?;
            file.durable = file.current.clone();
            Ok(())
        })
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.with(|s| {
            s.write_fault()?;
            let file = s.files.get_mut(path).ok_or_else(|| not_found(path))?;
            file.current.truncate(len as usize);
            file.durable = file.current.clone();
            Ok(())
        })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.with(|s| {
            s.files.remove(path);
            Ok(())
        })
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(self.with(|s| {
            s.files
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .cloned()
                .collect()
        }))
    }

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.with(|s| {
            for (path, file) in s.files.iter_mut() {
                if path.parent() == Some(dir) {
                    file.created_durably = true;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loses_exactly_the_unsynced_writes() {
        let disk = SimDisk::new();
        let dir = Path::new("/d");
        let log = dir.join("log");
        disk.append(&log, b"one").unwrap();
        disk.sync(&log).unwrap();
        disk.sync_dir(dir).unwrap();
        disk.append(&log, b"two").unwrap();
        let fresh = dir.join("fresh");
        disk.append(&fresh, b"never synced").unwrap();
        disk.write_atomic(&dir.join("vote"), b"v").unwrap();
        assert_eq!(disk.read(&log).unwrap().unwrap(), b"onetwo");
        disk.crash();
        assert_eq!(disk.read(&log).unwrap().unwrap(), b"one");
        assert_eq!(disk.read(&fresh).unwrap(), None);
        assert_eq!(disk.read(&dir.join("vote")).unwrap().unwrap(), b"v");
    }

    #[test]
    fn a_failing_write_fails_and_changes_nothing() {
        let disk = SimDisk::new();
        let path = Path::new("/d/f");
        disk.fail_next_writes(1);
        assert!(disk.append(path, b"x").is_err());
        assert_eq!(disk.read(path).unwrap(), None);
        disk.append(path, b"y").unwrap();
        assert_eq!(disk.failed_writes(), 1);
    }
}
