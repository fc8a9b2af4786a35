//! How the supervisor starts a run's command: its program, arguments, environment and
//! working directory, as the job and the run say.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::unistd::{AccessFlags, access};
use rota_core::job::ExecutorSpec;

use super::super::run_dir::SpecFile;
use crate::executor::run_env;

/// The `PATH` a command gets when the daemon has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// What runs a script the kernel cannot execute, as `execvp` does.
const SHELL: &str = "/bin/sh";

/// How to start the command of a run.
pub(super) struct Launch<'a> {
    /// The program, as the job names it: argument zero.
    pub program: &'a str,
    /// Its arguments.
    args: &'a [String],
    /// Where it is.
    path: PathBuf,
    /// The environment it starts with.
    env: Vec<(String, OsString)>,
    /// Its working directory.
    cwd: PathBuf,
}

impl<'a> Launch<'a> {
    pub fn new(run_dir: &Path, order: &'a SpecFile) -> Result<Self, String> {
        let ExecutorSpec::Process(process) = &*order.spec.executor else {
            return Err("the run is not for the process executor".into());
        };
        let Some((program, args)) = process.command.split_first() else {
            return Err("the job's command is empty".into());
        };
        let cwd = match &process.cwd {
            // `join` keeps an absolute `cwd` as it is.
            Some(cwd) => run_dir.join(cwd),
            None => run_dir.to_path_buf(),
        };
        if !cwd.is_dir() {
            return Err(format!(
                "the working directory {} is not a directory",
                cwd.display()
            ));
        }
        let mut env = base_env();
        env.extend(process.env.iter().map(|(k, v)| (k.clone(), v.into())));
        env.extend(
            run_env(&order.spec, order.host)
                .into_iter()
                .map(|(k, v)| (k, v.into())),
        );
        // The last value of a name counts, as in `Command::envs`.
        let path = env
            .iter()
            .rev()
            .find(|(name, _)| name == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Ok(Self {
            program,
            args,
            path: find_program(program, &path, &cwd),
            env,
            cwd,
        })
    }

    /// Starts the command with its output to `output`. A file the kernel cannot
    /// execute (a script without a `#!` line) is run by `/bin/sh`, as `execvp` does.
    pub fn spawn(&self, output: &io::PipeWriter) -> io::Result<Child> {
        match self.command(false, output)?.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOEXEC) => {
                self.command(true, output)?.spawn()
            }
            spawned => spawned,
        }
    }

    /// The command, or with `by_shell` the shell running the program as a script.
    fn command(&self, by_shell: bool, output: &io::PipeWriter) -> io::Result<Command> {
        let mut command;
        if by_shell {
            command = Command::new(SHELL);
            command.arg(&self.path);
        } else {
            command = Command::new(&self.path);
            command.arg0(self.program);
        }
        command
            .args(self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output.try_clone()?)
            // Its own process group: the daemon signals it, and everything it started,
            // without signalling the supervisor.
            .process_group(0);
        Ok(command)
    }
}

/// Where `program` is, searched as `execvp` does in the directories of `path` (relative
/// ones, and an empty one, from `cwd`) when it names no directory; as it is when it does,
/// or when no executable file of that name is found (the start then fails as it would
/// have, naming it).
///
/// Starting a command by its path lets the standard library start it with
/// `posix_spawn`, which shares the supervisor's memory until the command executes,
/// rather than with `fork`, which copies the supervisor's page tables (of every thread's
/// stack) and runs one at a time in the whole process.
fn find_program(program: &str, path: &OsStr, cwd: &Path) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    std::env::split_paths(path)
        .map(|dir| cwd.join(dir).join(program))
        .find(|candidate| {
            candidate.metadata().is_ok_and(|m| m.is_file())
                && access(candidate, AccessFlags::X_OK).is_ok()
        })
        .unwrap_or_else(|| PathBuf::from(program))
}

/// The environment every command starts from.
fn base_env() -> Vec<(String, OsString)> {
    let mut env = vec![(
        "PATH".to_owned(),
        std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
    )];
    for name in ["HOME", "LANG"] {
        if let Some(value) = std::env::var_os(name) {
            env.push((name.to_owned(), value));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_program_is_found_in_the_path_as_execvp_finds_it() {
        let root = tempfile::tempdir().unwrap();
        let (first, second) = (root.path().join("first"), root.path().join("second"));
        for dir in [&first, &second] {
            std::fs::create_dir(dir).unwrap();
        }
        let write = |path: PathBuf, mode: u32| {
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        // Not executable in the first directory: skipped.
        write(first.join("job"), 0o644);
        write(second.join("job"), 0o755);
        let path = std::env::join_paths([&first, &second]).unwrap();
        assert_eq!(find_program("job", &path, root.path()), second.join("job"));
        // A relative directory of the PATH counts from the working directory.
        assert_eq!(
            find_program("job", OsStr::new("second"), root.path()),
            second.join("job")
        );
        // Named with a directory, or found nowhere: as it is.
        assert_eq!(
            find_program("./job", &path, root.path()),
            PathBuf::from("./job")
        );
        assert_eq!(
            find_program("missing", &path, root.path()),
            PathBuf::from("missing")
        );
    }

    #[test]
    fn the_environment_starts_with_a_path() {
        let env = base_env();
        assert_eq!(env[0].0, "PATH");
        assert!(
            env.iter()
                .all(|(name, _)| ["PATH", "HOME", "LANG"].contains(&name.as_str()))
        );
    }
}
