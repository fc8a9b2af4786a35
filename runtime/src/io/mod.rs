//! The I/O the daemon does, each behind a small trait: the production wiring here is the
//! only place that names tokio sockets, the file system or the system clock, so that the
//! simulator can supply its own of each.

pub mod clock;
pub mod disk;
pub mod net;

use std::sync::Arc;

pub use clock::{Clock, SystemClock};
pub use disk::{Disk, FsDisk};
pub use net::{BoxFuture, BoxStream, Listener, Net, TokioNet, UdpSocket};

/// Everything a daemon reaches the world through, apart from its executor.
#[derive(Clone)]
pub struct Io {
    /// Both clocks.
    pub clock: Arc<dyn Clock>,
    /// Sockets.
    pub net: Arc<dyn Net>,
    /// Files.
    pub disk: Arc<dyn Disk>,
}

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").finish_non_exhaustive()
    }
}

impl Io {
    /// The real world: the system clock, tokio sockets, the local file system.
    pub fn production() -> Self {
        Io {
            clock: Arc::new(SystemClock::new()),
            net: Arc::new(TokioNet),
            disk: Arc::new(FsDisk),
        }
    }
}
