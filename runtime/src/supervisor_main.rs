//! `rota-supervisor <runs dir>`: the process executor's supervisor, as a binary of its
//! own. It does what `rota __supervise <runs dir>` does, and starts faster and takes less
//! memory, since it holds only the supervisor's code. The daemon starts one, which lives
//! across runs, and hands it runs on its standard input.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match (args.next(), args.next()) {
        (Some(dir), None) => runtime::executor::process::supervise_main(std::path::Path::new(&dir)),
        _ => {
            eprintln!(
                "usage: rota-supervisor <runs dir>\n\
                 The rota daemon starts it and hands it the runs of process jobs on its \
                 standard input; it is not meant to be run by hand."
            );
            ExitCode::from(2)
        }
    }
}
