//! `rota-supervisor <run dir>`: the process executor's supervisor of one run, as a
//! binary of its own. It does what `rota __supervise <run dir>` does, and starts faster,
//! since it holds only the supervisor's code; the daemon starts one per run.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match (args.next(), args.next()) {
        (Some(dir), None) => runtime::executor::process::supervise_main(std::path::Path::new(&dir)),
        _ => {
            eprintln!(
                "usage: rota-supervisor <run dir>\n\
                 The rota daemon starts it, one per run of a process job; it is not meant \
                 to be run by hand."
            );
            ExitCode::from(2)
        }
    }
}
