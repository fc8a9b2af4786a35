//! `sim`: whole rota clusters under turmoil, with faults, and checkers that read their
//! history. Filled in by the simulator work; the package exists so that
//! `cargo test -p sim` is the command from the start.
