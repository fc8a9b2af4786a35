//! The command-line client: `rota status`, `rota members`, `rota job …`, `rota runs`,
//! `rota logs`. It talks to any host's HTTP API (`--api`, or `ROTA_API`), follows the
//! redirects to the leader itself, and prints tables for people or the API's JSON for
//! scripts (`--output json`).
//!
//! Exit codes: 0 on success, 1 on any error (the message says what to fix), 2 for a
//! command line clap refuses; `rota job run NAME --wait` exits with the run's own exit
//! code instead.

pub mod client;
pub mod job_file;
pub mod table;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use rand08::RngCore;
use rand08::rngs::OsRng;
use rota_core::job::JobName;
use rota_core::run::TriggerKey;
use serde_json::{Value, json};
use ureq::http::{Method, StatusCode};

use client::{Client, ClientError, DEFAULT_API};

use crate::api::TRIGGER_KEY_HEADER;
use job_file::JobFileError;

/// How often `job run --wait` looks at a run that has not started or not ended yet.
const RUN_POLL: Duration = Duration::from_millis(200);

/// Options every client command takes.
#[derive(Debug, Clone, Args)]
pub struct ClientOptions {
    /// The API of any host of the cluster (`http://host:port`).
    #[arg(long, global = true, env = "ROTA_API", default_value = DEFAULT_API, value_name = "URL")]
    pub api: String,
    /// `table` for people, `json` (the API's own answers) for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns, or `key  value` lines.
    Table,
    /// The API's JSON, pretty-printed.
    Json,
}

/// The client's commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Show how the host at --api sees the cluster.
    Status,
    /// List the cluster's hosts: liveness, role, free resources, tags.
    Members,
    /// Define, inspect and trigger jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// List a job's recent runs, newest first.
    Runs {
        /// The job.
        #[arg(value_parser = job_name)]
        name: JobName,
        /// How many runs to list.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Print a run's output.
    Logs {
        /// The run's id (from `rota runs` or `rota job run`).
        run_id: u64,
        /// Keep printing as the run writes, until it ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Stop a run: its host terminates the command, then kills it after the grace
    /// period; a run not started yet is never started. It ends `stopped`, and is not
    /// retried.
    Stop {
        /// The run's id (from `rota runs` or `rota job run`).
        run_id: u64,
        /// Wait until it has ended, and print how.
        #[arg(short, long)]
        wait: bool,
    },
}

/// `rota job …`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Create or replace jobs from a JSON or TOML file, or every such file in a
    /// directory (`-` reads one job from standard input).
    Apply {
        /// The file or directory.
        #[arg(short = 'f', long = "file", value_name = "PATH")]
        path: PathBuf,
    },
    /// List the jobs.
    #[command(alias = "list")]
    Ls,
    /// Print a job's spec (JSON).
    Get {
        /// The job.
        #[arg(value_parser = job_name)]
        name: JobName,
    },
    /// Delete a job.
    #[command(alias = "delete")]
    Rm {
        /// The job.
        #[arg(value_parser = job_name)]
        name: JobName,
    },
    /// Stop a job from firing on its schedule (it can still be run by hand).
    Pause {
        /// The job.
        #[arg(value_parser = job_name)]
        name: JobName,
    },
    /// Let a paused job fire on its schedule again.
    Resume {
        /// The job.
        #[arg(value_parser = job_name)]
        name: JobName,
    },
    /// Run a job now.
    Run {
        /// The job.
        #[arg(value_parser = job_name)]
        name: JobName,
        /// Stream the run's output, then exit with its exit code.
        #[arg(long)]
        wait: bool,
        /// Run even if the job forbids overlapping runs and one is active.
        #[arg(long)]
        force: bool,
        /// Names this request (its `Idempotency-Key`): sending it again with the same key
        /// answers the run it made rather than making another. A fresh key is made when
        /// none is given, so the client's own retries never run the job twice.
        #[arg(long, value_parser = trigger_key)]
        key: Option<TriggerKey>,
    },
    /// Show a job's next fire times.
    Next {
        /// The job.
        #[arg(value_parser = job_name)]
        name: JobName,
        /// How many.
        #[arg(long, default_value_t = 5)]
        count: u32,
    },
}

/// Checks a job name on the command line as the server would, since it goes into the
/// URL path.
fn job_name(text: &str) -> Result<JobName, String> {
    JobName::new(text).map_err(|e| e.message)
}

/// Checks a trigger key on the command line as the server would.
fn trigger_key(text: &str) -> Result<TriggerKey, String> {
    TriggerKey::new(text)
}

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A job file could not be used.
    #[error(transparent)]
    JobFile(#[from] JobFileError),
    /// Some job files were not applied; each was reported as it failed.
    #[error("{failed} of {total} job files were not applied")]
    NotApplied {
        /// How many failed.
        failed: usize,
        /// How many there were.
        total: usize,
    },
    /// The API answered a shape this client does not understand.
    #[error("the API answered without {what}: {answer}")]
    UnexpectedAnswer {
        /// What was missing.
        what: &'static str,
        /// The answer.
        answer: Value,
    },
    /// Standard output could not be written.
    #[error("cannot write to standard output: {0}")]
    Stdout(#[from] io::Error),
    /// The system gave no randomness for a request's key.
    #[error("cannot draw a random key for the request ({0}); give one with --key")]
    NoRandomKey(String),
    /// A request to run a job now failed in a way that may still have made the run.
    #[error(
        "{source}\nthe run may have been made: send the request again with `--key {key}` to get its run rather than a second one"
    )]
    RunUnsure {
        /// Why it failed.
        source: ClientError,
        /// The request's key.
        key: TriggerKey,
    },
}

/// Runs one client command and answers the process's exit code; errors are printed to
/// standard error as `rota: …`.
pub fn run(options: &ClientOptions, command: ClientCommand) -> ExitCode {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = Client::new(&options.api)
        .map_err(CliError::from)
        .and_then(|client| execute(&client, options.output, command, &mut out));
    match result {
        Ok(code) => code,
        // The reader went away (`rota logs 7 | head`): nothing is left to tell it.
        Err(CliError::Stdout(e) | CliError::Client(ClientError::Write(e)))
            if e.kind() == io::ErrorKind::BrokenPipe =>
        {
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("rota: {e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(
    client: &Client,
    output: Output,
    command: ClientCommand,
    out: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    match command {
        ClientCommand::Status => {
            let status = client.get("/v1/status")?;
            show(out, output, &status, table::status)?;
        }
        ClientCommand::Members => {
            let members = client.get("/v1/members")?;
            show(out, output, &members, table::members)?;
        }
        ClientCommand::Runs { name, limit } => {
            let runs = client.get(&format!("/v1/jobs/{name}/runs?limit={limit}"))?;
            show(out, output, &runs, table::runs)?;
        }
        ClientCommand::Logs { run_id, follow } => {
            if follow {
                // A run that is declared but not started yet has no output to follow;
                // wait for it rather than fail.
                follow_output(client, run_id, out)?;
            } else {
                client.stream(&format!("/v1/runs/{run_id}/output"), out)?;
            }
        }
        ClientCommand::Stop { run_id, wait } => {
            let reply = client.json(Method::POST, &format!("/v1/runs/{run_id}/stop"), None)?;
            if !wait {
                show(out, output, &reply.body, |run| {
                    format!("run {run_id} {}: asked its host to stop it\n", summary(run))
                })?;
                return Ok(ExitCode::SUCCESS);
            }
            let run = ended_run(client, run_id)?;
            show(out, output, &run, |run| {
                format!("run {run_id} {}\n", summary(run))
            })?;
        }
        ClientCommand::Job(command) => return job(client, output, command, out),
    }
    Ok(ExitCode::SUCCESS)
}

fn job(
    client: &Client,
    output: Output,
    command: JobCommand,
    out: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    match command {
        JobCommand::Apply { path } => return apply(client, output, &path, out),
        JobCommand::Ls => {
            let jobs = client.get("/v1/jobs")?;
            show(out, output, &jobs, table::jobs)?;
        }
        JobCommand::Get { name } => {
            // A spec is a document people edit and apply again: JSON either way.
            let spec = client.get(&format!("/v1/jobs/{name}"))?;
            show(out, Output::Json, &spec, |_| String::new())?;
        }
        JobCommand::Rm { name } => {
            client.json(Method::DELETE, &format!("/v1/jobs/{name}"), None)?;
            // The API answers 204 with no body, so there is no JSON to pass on.
            if output == Output::Table {
                writeln!(out, "deleted {name}")?;
            }
        }
        JobCommand::Pause { name } => {
            let spec = client.json(Method::POST, &format!("/v1/jobs/{name}/pause"), None)?;
            show(out, output, &spec.body, |_| format!("paused {name}\n"))?;
        }
        JobCommand::Resume { name } => {
            let spec = client.json(Method::POST, &format!("/v1/jobs/{name}/resume"), None)?;
            show(out, output, &spec.body, |_| format!("resumed {name}\n"))?;
        }
        JobCommand::Next { name, count } => {
            let fires = client.get(&format!("/v1/jobs/{name}/next?count={count}"))?;
            show(out, output, &fires, table::next_fires)?;
        }
        JobCommand::Run {
            name,
            wait,
            force,
            key,
        } => {
            let query = if force { "?force=true" } else { "" };
            let key = match key {
                Some(key) => key,
                None => fresh_trigger_key()?,
            };
            let reply = client
                .json_with_headers(
                    Method::POST,
                    &format!("/v1/jobs/{name}/run{query}"),
                    None,
                    &[(TRIGGER_KEY_HEADER, key.as_str())],
                )
                .map_err(|source| run_failed(source, key))?;
            let Some(id) = reply.body["id"].as_u64() else {
                return Err(CliError::UnexpectedAnswer {
                    what: "a run id",
                    answer: reply.body,
                });
            };
            if wait {
                return wait_for_run(client, id, out);
            }
            show(out, output, &reply.body, |run| {
                let earlier = if run["replayed"] == true {
                    " (made earlier for this key)"
                } else {
                    ""
                };
                format!("run {id} {}{earlier}\n", summary(run))
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Why a request to run a job now failed: when the request may have reached the leader,
/// with the key to send it again under.
fn run_failed(source: ClientError, key: TriggerKey) -> CliError {
    match source {
        // Refused by the API, or never sent: no run was made. A request that timed out
        // or lost its connection may have been sent.
        ClientError::Api { .. } | ClientError::BadApi { .. } => CliError::Client(source),
        ClientError::Unreachable { ref why, .. } if why == "connection refused" => {
            CliError::Client(source)
        }
        source => CliError::RunUnsure { source, key },
    }
}

/// A key no other request is expected to have: 128 random bits from the system.
fn fresh_trigger_key() -> Result<TriggerKey, CliError> {
    let mut bits = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut bits)
        .map_err(|e| CliError::NoRandomKey(e.to_string()))?;
    let key = format!("cli-{:032x}", u128::from_le_bytes(bits));
    Ok(TriggerKey::new(&key).expect("a hexadecimal key is valid"))
}

/// Prints `value` as pretty JSON, or as `table` makes it.
fn show(
    out: &mut dyn Write,
    output: Output,
    value: &Value,
    table: impl FnOnce(&Value) -> String,
) -> Result<(), CliError> {
    match output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
            writeln!(out)?;
        }
        Output::Table => out.write_all(table(value).as_bytes())?,
    }
    Ok(())
}

/// `rota job apply`: every file is tried; failures are reported as they happen and
/// make the command fail at the end, unless nothing can be reached at all.
fn apply(
    client: &Client,
    output: Output,
    path: &Path,
    out: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let files = job_file::files(path)?;
    let mut failed = 0;
    let mut applied = Vec::new();
    for file in &files {
        let job = match job_file::read(file) {
            Ok(job) => job,
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
                continue;
            }
        };
        let reply = client.json(
            Method::PUT,
            &format!("/v1/jobs/{}", job.name),
            Some(&job.spec),
        );
        match reply {
            Ok(reply) => {
                let action = if reply.status == StatusCode::CREATED {
                    "created"
                } else {
                    "updated"
                };
                match output {
                    Output::Table => writeln!(out, "{action} {}", job.name)?,
                    Output::Json => applied.push(json!({
                        "file": file.display().to_string(),
                        "action": action,
                        "job": reply.body,
                    })),
                }
            }
            // The next file would meet the same wall.
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(ClientError::Api { message, field, .. }) => {
                let field = field.map(|f| format!(" (field {f})")).unwrap_or_default();
                eprintln!("{}: {message}{field}", file.display());
                failed += 1;
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                failed += 1;
            }
        }
    }
    if output == Output::Json {
        show(out, output, &Value::Array(applied), |_| String::new())?;
    }
    if failed > 0 {
        return Err(CliError::NotApplied {
            failed,
            total: files.len(),
        });
    }
    Ok(ExitCode::SUCCESS)
}

/// `rota job run NAME --wait` once the run is declared: streams its output as it runs,
/// then answers its exit code.
fn wait_for_run(client: &Client, id: u64, out: &mut dyn Write) -> Result<ExitCode, CliError> {
    eprintln!("run {id}");
    match follow_output(client, id, out) {
        Ok(()) => {}
        // The host running it may have died; the run's record will say so, and it is
        // what decides the exit code.
        Err(CliError::Client(e @ ClientError::Stream { .. })) => {
            eprintln!("rota: {e}; waiting for the run to end");
        }
        Err(e) => return Err(e),
    }
    let run = ended_run(client, id)?;
    eprintln!("run {id} {}", summary(&run));
    Ok(ExitCode::from(exit_code(&run)))
}

/// Run `id` once it has ended, asking every [`RUN_POLL`] until then.
fn ended_run(client: &Client, id: u64) -> Result<Value, CliError> {
    loop {
        let run = client.get(&format!("/v1/runs/{id}"))?;
        if !is_active(&run) {
            return Ok(run);
        }
        thread::sleep(RUN_POLL);
    }
}

/// Follows a run's output until the run ends. The output does not exist until the
/// run has started on its host (the API answers `404` until then), so that is waited
/// for; a run that ends without ever starting has no output to show.
fn follow_output(client: &Client, id: u64, out: &mut dyn Write) -> Result<(), CliError> {
    let path = format!("/v1/runs/{id}/output?follow=true");
    let mut seen_ended = false;
    loop {
        match client.stream(&path, out) {
            Ok(_) => return Ok(()),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                if seen_ended {
                    return Ok(());
                }
                let run = client.get(&format!("/v1/runs/{id}"))?;
                if is_active(&run) {
                    thread::sleep(RUN_POLL);
                } else {
                    // It may have started and ended between the two requests: ask for
                    // its output once more before deciding it has none.
                    seen_ended = true;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether a run may still be (or come to be) executing.
fn is_active(run: &Value) -> bool {
    matches!(run["state"].as_str(), Some("declared" | "running"))
}

/// `succeeded (exit 0)`, `failed (exit 3, exit-code)`, `failed (timeout: …)`.
fn summary(run: &Value) -> String {
    let state = run["state"].as_str().unwrap_or("?");
    let mut parts = Vec::new();
    if let Some(code) = run["exit_code"].as_i64() {
        parts.push(format!("exit {code}"));
    }
    if let Some(reason) = run["reason"].as_str() {
        match run["detail"].as_str() {
            Some(detail) if !detail.is_empty() => parts.push(format!("{reason}: {detail}")),
            _ => parts.push(reason.to_owned()),
        }
    }
    if parts.is_empty() {
        state.to_owned()
    } else {
        format!("{state} ({})", parts.join(", "))
    }
}

/// The exit code `job run --wait` ends with: the run's own, when it has one a process
/// can exit with; otherwise 0 for a success and 1 for anything else (a timeout, a lost
/// host, a skipped or missed run).
fn exit_code(run: &Value) -> u8 {
    if run["state"] == "succeeded" {
        return 0;
    }
    match run["exit_code"].as_i64().map(u8::try_from) {
        Some(Ok(code)) if code != 0 => code,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_request_that_may_have_been_made_says_how_to_send_it_again() {
        let key = fresh_trigger_key().unwrap();
        assert_ne!(key, fresh_trigger_key().unwrap());
        let unsure = run_failed(
            ClientError::NoLeader {
                message: "the write was not committed within 1000 ms".into(),
            },
            key.clone(),
        );
        let text = unsure.to_string();
        assert!(
            text.contains(&format!("--key {key}")) && text.contains("not committed"),
            "{text}"
        );
        // Nothing was sent: nothing to send again. A timeout may have come after the
        // request was sent.
        let unreachable = |why: &str| {
            run_failed(
                ClientError::Unreachable {
                    api: DEFAULT_API.into(),
                    why: why.into(),
                },
                key.clone(),
            )
            .to_string()
        };
        assert!(!unreachable("connection refused").contains("--key"));
        assert!(unreachable("timed out").contains("--key"));
    }

    #[test]
    fn a_waited_run_exits_with_its_own_code_when_it_has_one() {
        let run = |state: &str, code: Value| json!({"state": state, "exit_code": code});
        assert_eq!(exit_code(&run("succeeded", json!(0))), 0);
        assert_eq!(exit_code(&run("failed", json!(3))), 3);
        assert_eq!(exit_code(&run("failed", json!(255))), 255);
        assert_eq!(exit_code(&run("failed", Value::Null)), 1);
        assert_eq!(exit_code(&run("failed", json!(-9))), 1);
        assert_eq!(exit_code(&run("failed", json!(300))), 1);
        assert_eq!(exit_code(&run("failed", json!(0))), 1);
        assert_eq!(exit_code(&run("skipped", Value::Null)), 1);
    }

    #[test]
    fn a_summary_says_how_the_run_ended() {
        assert_eq!(
            summary(&json!({"state": "failed", "exit_code": 3, "reason": "exit-code"})),
            "failed (exit 3, exit-code)"
        );
        assert_eq!(
            summary(
                &json!({"state": "failed", "exit_code": null, "reason": "timeout", "detail": "ran over 5s"})
            ),
            "failed (timeout: ran over 5s)"
        );
        assert_eq!(summary(&json!({"state": "declared"})), "declared");
    }
}
