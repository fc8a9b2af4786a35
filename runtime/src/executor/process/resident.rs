//! The daemon's side of the host's supervisor: starting it, handing it runs, and hearing
//! which run has news. One supervisor lives across many runs, so that a run costs one
//! process start, its command's, not two.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::thread;

use rota_core::run::RunId;
use tokio::sync::watch as signal;

use super::Shared;
use super::run_dir::run_of;
use super::supervisor::LOST;
use super::watch::SUPERVISOR_LOG_QUOTED_BYTES_MAX;

/// The stack of a thread listening to the supervisor.
const THREAD_STACK_BYTES: usize = 64 * 1024;

/// The supervisor this daemon started and hands its runs to.
#[derive(Debug)]
pub(super) struct Resident {
    /// Where runs are handed over, one id per line. Dropping it tells the supervisor to
    /// take no more runs and to exit once its runs have ended.
    requests: ChildStdin,
    life: Arc<Life>,
}

/// What the daemon knows of a supervisor's life.
#[derive(Debug)]
pub(super) struct Life {
    /// Its process id.
    pub pid: u32,
    /// How it ended, once it has.
    ended: signal::Sender<Option<String>>,
    /// The end of what it wrote to its standard error.
    last_words: Mutex<String>,
}

impl Life {
    /// How the supervisor ended, if it has.
    pub fn ended(&self) -> Option<String> {
        self.ended.borrow().clone()
    }

    /// Returns once the supervisor has ended.
    pub async fn wait(&self) {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(Option::is_some).await;
    }

    /// The end of what the supervisor wrote to its standard error, if anything.
    pub fn last_words(&self) -> Option<String> {
        let words = self
            .last_words
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let words = words.trim();
        (!words.is_empty()).then(|| words.to_owned())
    }

    fn hear(&self, line: &str) {
        let mut words = self
            .last_words
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        words.push_str(line);
        words.push('\n');
        if words.len() > SUPERVISOR_LOG_QUOTED_BYTES_MAX {
            let mut cut = words.len() - SUPERVISOR_LOG_QUOTED_BYTES_MAX;
            while !words.is_char_boundary(cut) {
                cut += 1;
            }
            words.drain(..cut);
        }
    }
}

/// Hands `run`, whose directory and spec are written, to the host's supervisor, starting
/// one if there is none or it has ended; the life of the supervisor that took it.
pub(super) fn hand_over(shared: &Arc<Shared>, run: RunId) -> io::Result<Arc<Life>> {
    let mut resident = shared
        .resident
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(current) = resident.as_mut().filter(|r| r.life.ended().is_none()) {
        match request(&mut current.requests, run) {
            Ok(()) => return Ok(Arc::clone(&current.life)),
            Err(e) => tracing::warn!(
                pid = current.life.pid,
                "process executor: the supervisor takes no more runs ({e}); starting another"
            ),
        }
    }
    // A supervisor that is gone, or that takes no more runs: let it go (it finishes the
    // runs it has), and start another.
    *resident = None;
    let mut fresh = start(shared)?;
    let life = Arc::clone(&fresh.life);
    match request(&mut fresh.requests, run) {
        Ok(()) => *resident = Some(fresh),
        // It exited at once, or is about to: the run's watch reports how, with what it
        // said. The next run starts another.
        Err(e) => tracing::warn!(
            pid = life.pid,
            "process executor: the supervisor just started takes no runs ({e})"
        ),
    }
    Ok(life)
}

/// Writes `run`'s id to the supervisor as one line, in one write.
fn request(requests: &mut ChildStdin, run: RunId) -> io::Result<()> {
    requests.write_all(format!("{run}\n").as_bytes())
}

/// Starts `supervisor <leading args> <runs dir>` in a process group of its own, so that
/// it outlives the daemon, with threads that listen to it.
fn start(shared: &Arc<Shared>) -> io::Result<Resident> {
    let config = &shared.config;
    let (program, args) = config
        .supervisor
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no supervisor command"))?;
    let mut child = std::process::Command::new(program)
        .args(args)
        .arg(&config.runs_dir)
        .current_dir(&config.runs_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let (Some(requests), Some(news), Some(complaints)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(io::Error::other("the supervisor's pipes are missing"));
    };
    let life = Arc::new(Life {
        pid: child.id(),
        ended: signal::channel(None).0,
        last_words: Mutex::new(String::new()),
    });
    tracing::info!(pid = life.pid, "process executor: supervisor started");

    let weak = Arc::downgrade(shared);
    spawn("rota supervisor news", move || relay_news(news, &weak))?;
    let heard = Arc::clone(&life);
    spawn("rota supervisor end", move || {
        // Its standard error closes when it exits: all it said is heard by then.
        for line in BufReader::new(complaints).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line);
            tracing::warn!(pid = heard.pid, "process executor: supervisor: {line}");
            heard.hear(&line);
        }
        let how = match child.wait() {
            Ok(status) => status.to_string(),
            Err(e) => format!("cannot be waited for: {e}"),
        };
        tracing::info!(
            pid = heard.pid,
            "process executor: supervisor ended ({how})"
        );
        heard.ended.send_replace(Some(how));
    })?;
    Ok(Resident { requests, life })
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> io::Result<()> {
    thread::Builder::new()
        .name(name.to_owned())
        .stack_size(THREAD_STACK_BYTES)
        .spawn(body)
        .map(drop)
}

/// Wakes the watch of each run the supervisor names on its standard output, marking it
/// lost first if the supervisor says so.
fn relay_news(news: impl Read, shared: &Weak<Shared>) {
    for line in BufReader::new(news).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line);
        let mut words = line.split_whitespace();
        let (Some(run), lost) = (
            words.next().and_then(|w| run_of(OsStr::new(w))),
            words.next(),
        ) else {
            tracing::warn!("process executor: the supervisor said {line:?}, which names no run");
            continue;
        };
        let Some(shared) = shared.upgrade() else {
            break;
        };
        let handle = shared.runs().get(&run).cloned();
        if let Some(handle) = handle {
            if lost == Some(LOST) {
                handle.lost.store(true, Ordering::Relaxed);
            }
            handle.wake.notify_one();
        }
    }
}
