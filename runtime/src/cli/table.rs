//! What the client prints for people: the API's JSON laid out as aligned columns, or
//! as `key  value` lines for a single record.
//!
//! Everything here reads `serde_json::Value` rather than the server's types, so that a
//! field the server adds later is simply not shown instead of breaking the client, and
//! a field it drops shows as `-`.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde_json::Value;

/// Columns of text, each as wide as its widest cell, separated by two spaces.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells show empty, extra cells are dropped.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as lines of text, each ending in a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w - width(cell)));
            }
            // Padding after the last column is invisible and only gets in the way of
            // tools that compare lines.
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The width of a cell as a terminal shows it, near enough: one column per character.
fn width(text: &str) -> usize {
    text.chars().count()
}

/// `key  value` lines, keys aligned.
pub fn key_values(pairs: &[(String, String)]) -> String {
    let key_width = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        out.push_str(key);
        out.extend(std::iter::repeat_n(' ', key_width - width(key) + 2));
        out.push_str(value);
        out.push('\n');
    }
    out
}

/// A JSON value as a cell: strings bare, `null` or missing as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(map) if map.is_empty() => "-".to_owned(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// An RFC 3339 instant shortened to whole seconds in UTC, for a table.
fn instant(value: &Value) -> String {
    match value.as_str().and_then(parse_instant) {
        Some(t) => t
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        None => cell(value),
    }
}

fn parse_instant(text: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(text).ok()
}

/// How long from `start` to `end`, as people read it (`850ms`, `12s`, `3m05s`).
fn elapsed(start: &Value, end: &Value) -> String {
    let (Some(start), Some(end)) = (
        start.as_str().and_then(parse_instant),
        end.as_str().and_then(parse_instant),
    ) else {
        return "-".to_owned();
    };
    let ms = (end - start).num_milliseconds().max(0);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// The order `rota status` shows a host's fields in; others the server adds follow.
const STATUS_KEYS: [&str; 14] = [
    "id",
    "role",
    "is_leader",
    "leader_ready",
    "leader_id",
    "leader_api",
    "term",
    "api_addr",
    "cluster_addr",
    "cluster_size",
    "voters",
    "applied_index",
    "jobs",
    "active_runs",
];

/// `GET /v1/status` as `key  value` lines.
pub fn status(status: &Value) -> String {
    let mut pairs: Vec<(String, String)> = STATUS_KEYS
        .iter()
        .map(|k| ((*k).to_owned(), cell(&status[*k])))
        .collect();
    if let Some(map) = status.as_object() {
        for (k, v) in map {
            if !STATUS_KEYS.contains(&k.as_str()) {
                pairs.push((k.clone(), cell(v)));
            }
        }
    }
    key_values(&pairs)
}

/// `GET /v1/members` as a table.
pub fn members(members: &Value) -> String {
    let mut table = Table::new(&[
        "ID",
        "API",
        "CLUSTER",
        "STATE",
        "ROLE",
        "DOCKER",
        "FREE CPU/MEM/DISK",
        "TAGS",
    ]);
    for m in rows(members) {
        let free = match m["free"].as_array() {
            Some(fractions) => fractions
                .iter()
                .map(|f| {
                    f.as_f64()
                        .map_or("?".to_owned(), |f| format!("{:.0}%", f * 100.0))
                })
                .collect::<Vec<_>>()
                .join("/"),
            None => "-".to_owned(),
        };
        table.row(vec![
            cell(&m["id"]),
            cell(&m["api_addr"]),
            cell(&m["cluster_addr"]),
            cell(&m["state"]),
            cell(&m["role"]),
            if m["docker"] == true { "yes" } else { "no" }.to_owned(),
            free,
            cell(&m["tags"]),
        ]);
    }
    table.render()
}

/// What runs a job, in a few words: `process: sh -c …` or `docker: image`.
fn executor(spec: &Value) -> String {
    const COMMAND_CHARS_MAX: usize = 40;
    let executor = &spec["executor"];
    if let Some(docker) = executor.get("docker") {
        return format!("docker: {}", cell(&docker["image"]));
    }
    if let Some(process) = executor.get("process") {
        let command = process["command"]
            .as_array()
            .map(|args| {
                args.iter()
                    .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        // A table row stays one line: a command that runs long or spans lines is cut.
        let one_line = command.replace(['\n', '\r', '\t'], " ");
        let shown: String = one_line.chars().take(COMMAND_CHARS_MAX).collect();
        let ellipsis = if shown.len() < one_line.len() {
            "…"
        } else {
            ""
        };
        return format!("process: {shown}{ellipsis}");
    }
    cell(executor)
}

/// `GET /v1/jobs` as a table.
pub fn jobs(jobs: &Value) -> String {
    let mut table = Table::new(&[
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "CONCURRENCY",
        "STATE",
        "EXECUTOR",
    ]);
    for job in rows(jobs) {
        table.row(vec![
            cell(&job["name"]),
            cell(&job["schedule"]),
            cell(&job["timezone"]),
            cell(&job["concurrency"]),
            if job["paused"] == true {
                "paused"
            } else {
                "active"
            }
            .to_owned(),
            executor(job),
        ]);
    }
    table.render()
}

/// `GET /v1/jobs/{name}/runs` as a table.
pub fn runs(runs: &Value) -> String {
    let mut table = Table::new(&[
        "ID",
        "STATE",
        "TRIGGER",
        "ATTEMPT",
        "HOST",
        "SCHEDULED",
        "STARTED",
        "TOOK",
        "EXIT",
        "REASON",
    ]);
    for run in rows(runs) {
        let reason = match (&run["reason"], run["missed_count"].as_u64()) {
            (reason, Some(n)) if n > 1 => format!("{} ({n} fires)", cell(reason)),
            (Value::Null, _) if run["stopping"].is_string() => {
                format!("stopping: {}", cell(&run["stopping"]))
            }
            (reason, _) => cell(reason),
        };
        table.row(vec![
            cell(&run["id"]),
            cell(&run["state"]),
            cell(&run["trigger"]),
            cell(&run["attempt"]),
            cell(&run["host"]),
            instant(&run["scheduled_at"]),
            instant(&run["started_at"]),
            elapsed(&run["started_at"], &run["finished_at"]),
            cell(&run["exit_code"]),
            reason,
        ]);
    }
    table.render()
}

/// `GET /v1/jobs/{name}/next` as a table.
pub fn next_fires(fires: &Value) -> String {
    let mut table = Table::new(&["UTC", "LOCAL"]);
    for fire in rows(fires) {
        table.row(vec![cell(&fire["utc"]), cell(&fire["local"])]);
    }
    table.render()
}

fn rows(list: &Value) -> &[Value] {
    list.as_array().map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_with_no_trailing_spaces() {
        let mut table = Table::new(&["ID", "NAME", "X"]);
        table.row(vec!["1".into(), "backup-nightly".into(), String::new()]);
        table.row(vec!["12345".into(), "é".into()]);
        assert_eq!(
            table.render(),
            "ID     NAME            X\n\
             1      backup-nightly\n\
             12345  é\n"
        );
    }

    #[test]
    fn key_values_align_their_keys() {
        let out = key_values(&[("id".into(), "1".into()), ("leader_api".into(), "-".into())]);
        assert_eq!(out, "id          1\nleader_api  -\n");
    }

    #[test]
    fn cells_show_missing_values_as_a_dash() {
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&json!({})), "-");
        assert_eq!(cell(&json!({"zone": "a", "ssd": "yes"})), "ssd=yes,zone=a");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(cell(&json!(true)), "true");
    }

    #[test]
    fn a_run_row_shows_its_duration_and_exit() {
        let out = runs(&json!([{
            "id": 7, "state": "failed", "trigger": "manual", "attempt": 0, "host": 2,
            "scheduled_at": "2025-01-02T03:04:05.678Z",
            "started_at": "2025-01-02T03:04:06Z",
            "finished_at": "2025-01-02T03:05:08.500Z",
            "exit_code": 3, "reason": "exit-code", "missed_count": null
        }]));
        let line = out.lines().nth(1).unwrap();
        assert!(line.starts_with("7   failed  manual"), "{line}");
        assert!(line.contains("2025-01-02T03:04:05Z"), "{line}");
        assert!(line.contains("1m02s"), "{line}");
        assert!(line.ends_with("3     exit-code"), "{line}");

        // A run still being stopped says so, until its end has a reason of its own.
        let out = runs(&json!([{
            "id": 8, "state": "running", "trigger": "schedule", "attempt": 1, "host": 2,
            "scheduled_at": "2025-01-02T03:04:05Z", "started_at": "2025-01-02T03:04:06Z",
            "finished_at": null, "exit_code": null, "reason": null, "stopping": "stopped"
        }]));
        let line = out.lines().nth(1).unwrap();
        assert!(line.ends_with("stopping: stopped"), "{line}");
    }

    #[test]
    fn a_long_command_is_cut_to_one_line() {
        let spec = json!({"executor": {"process": {"command": ["sh", "-c", "echo a\necho b; sleep 1000000000000000000000000000000000"]}}});
        let shown = executor(&spec);
        assert!(shown.starts_with("process: sh -c echo a echo b"), "{shown}");
        assert!(shown.ends_with('…'), "{shown}");
    }
}
