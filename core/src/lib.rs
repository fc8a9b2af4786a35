//! `rota-core`: the whole brain of a rota host as a pure state machine.
//!
//! Nothing here does I/O. A [`node::Node`] is fed inputs with the time they arrived and
//! answers effects for the runtime to perform; the replicated [`state::State`] is
//! changed only by applying [`command::Command`]s that Raft committed. See
//! `DESIGN.md` for the life of a run.
#![deny(missing_docs)]

pub mod command;
pub mod host;
mod id_table;
pub mod job;
pub mod membership;
pub mod node;
pub mod placement;
pub mod run;
pub mod schedule;
pub mod state;
pub mod time;

#[cfg(test)]
mod testkit;

/// Hashing with a fixed seed, for maps that are looked up on every command: one hash
/// instead of a comparison per level of a tree, and a replay of the same inputs iterates
/// them in the same order (a random seed would not). foldhash rather than the standard
/// SipHash: hashing job names with SipHash was a sixth of a tick.
pub(crate) type FixedHash = foldhash::fast::FixedState;
