//! Job files for `rota job apply`: JSON or TOML documents of one job spec each, read
//! from one file or from every such file in a directory.
//!
//! TOML is turned into the same JSON the API takes, so both kinds of file are checked
//! by the one parser on the server and name the same fields in their errors.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rota_core::job::JobName;
use serde_json::{Map, Number, Value};

/// The largest job file read. The server refuses bodies over its own limit anyway;
/// this only keeps a wrong path (a log file, a disk image) from being read whole.
const JOB_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// A job file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}{}", file.display(), field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default())]
pub struct JobFileError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong with it.
    pub message: String,
    /// The field, when the problem is one field.
    pub field: Option<String>,
}

impl JobFileError {
    fn new(file: &Path, message: impl Into<String>, field: Option<&str>) -> Self {
        JobFileError {
            file: file.to_owned(),
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }
}

/// One job read from a file: its name and its spec as JSON.
#[derive(Debug, Clone)]
pub struct JobFile {
    /// Where it was read from (`-` for standard input).
    pub file: PathBuf,
    /// The job's name, checked as the server checks it.
    pub name: JobName,
    /// The spec, as the API takes it.
    pub spec: Value,
}

/// The files `path` stands for: itself, or the `.json` and `.toml` files directly in
/// it (not in subdirectories), sorted by name so that applying is repeatable.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, JobFileError> {
    if path == Path::new("-") {
        return Ok(vec![path.to_owned()]);
    }
    let meta = fs::metadata(path)
        .map_err(|e| JobFileError::new(path, format!("cannot read: {e}"), None))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = fs::read_dir(path)
        .map_err(|e| JobFileError::new(path, format!("cannot list the directory: {e}"), None))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            JobFileError::new(path, format!("cannot list the directory: {e}"), None)
        })?;
        let file = entry.path();
        if Kind::of(&file).is_some() && file.is_file() {
            files.push(file);
        }
    }
    if files.is_empty() {
        return Err(JobFileError::new(
            path,
            "the directory holds no .json or .toml file",
            None,
        ));
    }
    files.sort();
    Ok(files)
}

/// The two formats a job file may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Toml,
}

impl Kind {
    fn of(path: &Path) -> Option<Kind> {
        match path.extension()?.to_str()? {
            "json" => Some(Kind::Json),
            "toml" => Some(Kind::Toml),
            _ => None,
        }
    }
}

/// Reads and parses one job file (`-`: standard input, JSON or TOML).
pub fn read(file: &Path) -> Result<JobFile, JobFileError> {
    let mut bytes = Vec::new();
    let read = if file == Path::new("-") {
        io::stdin()
            .take(JOB_FILE_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
    } else {
        fs::File::open(file).and_then(|f| f.take(JOB_FILE_BYTES_MAX + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| JobFileError::new(file, format!("cannot read: {e}"), None))?;
    if bytes.len() as u64 > JOB_FILE_BYTES_MAX {
        return Err(JobFileError::new(
            file,
            format!("is over {JOB_FILE_BYTES_MAX} bytes; a job file holds one job spec"),
            None,
        ));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| JobFileError::new(file, "is not UTF-8 text", None))?;
    let spec = match Kind::of(file) {
        Some(Kind::Json) => parse_json(&text).map_err(|e| JobFileError::new(file, e, None))?,
        Some(Kind::Toml) => parse_toml(&text).map_err(|e| JobFileError::new(file, e, None))?,
        // Standard input has no extension: take whichever of the two it parses as.
        None if file == Path::new("-") => parse_json(&text)
            .or_else(|json_error| {
                parse_toml(&text).map_err(|toml_error| {
                    format!("is neither JSON ({json_error}) nor TOML ({toml_error})")
                })
            })
            .map_err(|e| JobFileError::new(file, e, None))?,
        None => {
            return Err(JobFileError::new(
                file,
                "is not a job file: name it *.json or *.toml",
                None,
            ));
        }
    };
    let name = match spec.get("name") {
        Some(Value::String(name)) => name,
        Some(_) => {
            return Err(JobFileError::new(file, "must be a string", Some("name")));
        }
        None => {
            return Err(JobFileError::new(
                file,
                "the job has no name; add a `name`",
                Some("name"),
            ));
        }
    };
    // Checked here as well as on the server because the name goes into the URL path:
    // a name the server would refuse could otherwise address some other endpoint.
    let name = JobName::new(name)
        .map_err(|e| JobFileError::new(file, e.message, Some(e.field.as_str())))?;
    Ok(JobFile {
        file: file.to_owned(),
        name,
        spec,
    })
}

/// A JSON document that must be an object.
fn parse_json(text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"))?;
    if !value.is_object() {
        return Err("must hold one job spec, a JSON object".to_owned());
    }
    Ok(value)
}

/// A TOML document, as the JSON the API takes.
pub fn parse_toml(text: &str) -> Result<Value, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("is not valid TOML: {}", e.message()))?;
    toml_to_json(toml::Value::Table(table), "")
}

/// Converts a TOML value to JSON. Dates become their RFC 3339 text; `path` names the
/// value in errors.
fn toml_to_json(value: toml::Value, path: &str) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::Number(i.into()),
        toml::Value::Float(f) => Value::Number(Number::from_f64(f).ok_or_else(|| {
            format!("`{path}` is {f}, which JSON (and so a job spec) cannot hold")
        })?),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| toml_to_json(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => {
            let mut map = Map::new();
            for (k, v) in table {
                let inner = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                map.insert(k, toml_to_json(v, &inner)?);
            }
            Value::Object(map)
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn toml_becomes_the_json_the_api_takes() {
        let text = r#"
name = "backup"
schedule = "0 3 * * *"
timezone = "Europe/Paris"
retries = 2

[executor.process]
command = ["sh", "-c", "echo hi"]
env = { A = "1" }

[resources]
cpus = 0.5
"#;
        assert_eq!(
            parse_toml(text).unwrap(),
            json!({
                "name": "backup",
                "schedule": "0 3 * * *",
                "timezone": "Europe/Paris",
                "retries": 2,
                "executor": {"process": {"command": ["sh", "-c", "echo hi"], "env": {"A": "1"}}},
                "resources": {"cpus": 0.5}
            })
        );
    }

    #[test]
    fn a_float_json_cannot_hold_is_named() {
        let e = parse_toml("name = \"x\"\n[resources]\ncpus = nan\n").unwrap_err();
        assert!(e.contains("`resources.cpus`"), "{e}");
    }

    #[test]
    fn a_file_without_a_good_name_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("a.json", "{\"schedule\": \"@every 1s\"}", "no name"),
            ("b.json", "{\"name\": 3}", "must be a string"),
            ("c.toml", "name = \"Bad/Name\"", "may only hold"),
            ("d.json", "[1, 2]", "one job spec"),
            ("e.json", "{", "not valid JSON"),
            ("f.toml", "name = ", "not valid TOML"),
            ("g.yaml", "name: x", "*.json or *.toml"),
        ];
        for (file, text, why) in cases {
            let path = dir.path().join(file);
            fs::write(&path, text).unwrap();
            let e = read(&path).unwrap_err().to_string();
            assert!(e.starts_with(&path.display().to_string()), "{e}");
            assert!(e.contains(why), "{file}: {e}");
        }
    }

    #[test]
    fn a_directory_stands_for_its_json_and_toml_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["b.toml", "a.json", "notes.txt", "c.json"] {
            fs::write(dir.path().join(file), "").unwrap();
        }
        fs::create_dir(dir.path().join("sub.json")).unwrap();
        let names: Vec<String> = files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.json", "b.toml", "c.json"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(files(empty.path()).is_err());
    }
}
