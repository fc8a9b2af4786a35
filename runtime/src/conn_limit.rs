//! Bounds on open connections, in all and per peer address, so that one client opening
//! many connections cannot starve the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Counts open connections.
#[derive(Debug)]
pub struct ConnectionLimiter {
    total_max: usize,
    per_peer_max: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Admitted {
    limiter: Arc<ConnectionLimiter>,
    peer: IpAddr,
}

impl ConnectionLimiter {
    /// At most `total_max` connections, and `per_peer_max` from any one address.
    pub fn new(total_max: usize, per_peer_max: usize) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            total_max: total_max.max(1),
            per_peer_max: per_peer_max.max(1),
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// Admits a connection from `peer`, or refuses it when a bound is reached.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Admitted> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let from_peer = open.1.get(&peer).copied().unwrap_or(0);
        if open.0 >= self.total_max || from_peer >= self.per_peer_max {
            return None;
        }
        open.0 += 1;
        open.1.insert(peer, from_peer + 1);
        Some(Admitted {
            limiter: Arc::clone(self),
            peer,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .limiter
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.1.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_hold_in_all_and_per_peer_and_places_come_back() {
        let limiter = ConnectionLimiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limiter.admit(a).unwrap();
        let _second = limiter.admit(a).unwrap();
        assert!(limiter.admit(a).is_none(), "per peer");
        let _third = limiter.admit(b).unwrap();
        assert!(limiter.admit(b).is_none(), "in all");
        drop(first);
        assert!(limiter.admit(a).is_some());
    }
}
