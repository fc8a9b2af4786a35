//! The rota daemon and its command-line client: the core's effects mapped onto tokio
//! sockets, flat files, openraft, executors and HTTP.
//!
//! The daemon ([`daemon`]) owns one core `Node` in one task and feeds it every input;
//! it decides nothing itself. Everything it touches goes through [`io`] (clock, sockets,
//! files) and [`executor`] traits, so the simulator can run the same code.

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod conn_limit;
pub mod daemon;
pub mod executor;
pub mod gossip;
pub mod io;
pub mod metrics;
pub mod raft;
pub mod resources;
pub mod rpc;
pub mod storage;
