//! `rota`: the daemon (`agent`, `dev`) and the command-line client, in one binary.

use std::process::ExitCode;

/// A leader's state is hundreds of megabytes of small blocks (tree nodes, runs, job
/// records), made and freed at every tick; mimalloc serves them faster than the system
/// allocator (BENCHMARKS.md, core section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use runtime::config::{AgentArgs, Config};

#[derive(Debug, Parser)]
#[command(name = "rota", version, about = "rota: cron for a whole cluster")]
struct Cli {
    /// `--api` and `--output`, used by the client commands (the daemon ignores them).
    #[command(flatten)]
    client: runtime::cli::ClientOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a rota host: `--bootstrap` starts a new cluster, `--join ADDR` joins one.
    Agent(AgentArgs),
    /// Run a one-host cluster on the local defaults, with a demo job.
    Dev(AgentArgs),
    /// Supervise the runs the daemon hands over on standard input (started by the
    /// daemon, not by people).
    #[command(name = "__supervise", hide = true)]
    Supervise {
        /// The directory holding the run directories.
        dir: std::path::PathBuf,
    },
    /// The client commands, which talk to a host's HTTP API.
    #[command(flatten)]
    Client(runtime::cli::ClientCommand),
}

fn main() -> ExitCode {
    // The supervisor: spare it building the whole command line's parser.
    let mut args = std::env::args_os().skip(1);
    if let (Some(sub), Some(dir), None) = (args.next(), args.next(), args.next())
        && sub == runtime::executor::process::SUPERVISE_SUBCOMMAND
    {
        return runtime::executor::process::supervise_main(std::path::Path::new(&dir));
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Supervise { dir } => runtime::executor::process::supervise_main(&dir),
        Command::Agent(args) => daemon(args, false),
        Command::Dev(args) => daemon(args, true),
        Command::Client(command) => runtime::cli::run(&cli.client, command),
    }
}

fn daemon(args: AgentArgs, dev: bool) -> ExitCode {
    let config = match Config::load(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("rota: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rota: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        if dev {
            runtime::agent::run_dev(config).await
        } else {
            runtime::agent::run_agent(config).await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rota: {e:#}");
            ExitCode::FAILURE
        }
    }
}
