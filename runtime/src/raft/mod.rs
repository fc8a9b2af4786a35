//! The one module that knows openraft: its type configuration, a seeded async runtime,
//! the flat-file log store, the state machine that hands committed entries to the
//! node, and the network that carries Raft's RPCs over cluster RPC.

pub mod network;
pub mod runtime;
pub mod state_machine;
pub mod types;

pub use types::{Peer, TypeConfig};
