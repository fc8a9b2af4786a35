//! A small blocking HTTP client for the rota API: it follows the redirects to the leader
//! (or to the host that ran a run) itself, waits out a missing leader for a bounded
//! time, and turns every failure into an error that says what to do about it.

use std::io::{self, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use ureq::http::{Method, Request, Response, StatusCode};

/// The API address used when neither `--api` nor `ROTA_API` is given.
pub const DEFAULT_API: &str = "http://127.0.0.1:7070";

/// The most redirects followed for one request. One is the usual case (a follower
/// pointing at the leader); more than a few means the hosts disagree about who leads.
pub const REDIRECTS_MAX: usize = 5;

/// How long a request keeps retrying while there is no leader (`503`) or a host it was
/// sent to stops answering mid-handover.
const RETRY_BUDGET: Duration = Duration::from_secs(10);

/// The longest single wait between two tries, whatever `Retry-After` asks for, so that
/// a new leader is noticed soon after it is elected.
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(2);

/// The wait between two tries when the server does not say.
const RETRY_PAUSE_DEFAULT: Duration = Duration::from_millis(500);

/// How long to wait for a TCP connection. Loopback refuses at once; this bounds the
/// wait on a host whose packets are dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait for the response headers. A write answers once Raft has
/// committed it, which takes a few round trips, or longer during an election.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// The bound on a whole request-and-answer that is read at once (not a stream).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest JSON answer read. The job list is the largest the API gives.
const JSON_BODY_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// The most bytes of a non-JSON error body quoted in a message.
const ERROR_TEXT_CHARS_MAX: usize = 500;

/// Why a request failed, worded for the person who ran the command.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The `--api` value is not an address this client can use.
    #[error("`{api}` is not a rota API address: {why} (set --api or ROTA_API, e.g. {DEFAULT_API})")]
    BadApi {
        /// What was given.
        api: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Nothing answered at the address given.
    #[error(
        "cannot reach the rota API at {api} ({why}); is an agent running? set --api or ROTA_API"
    )]
    Unreachable {
        /// The address given (`--api`).
        api: String,
        /// Refused, timed out, unknown host...
        why: String,
    },
    /// The host the API redirected to did not answer, even after retrying.
    #[error(
        "{api} sent the request to {target}, which cannot be reached ({why}); the leader may have just failed, retry shortly"
    )]
    RedirectUnreachable {
        /// The address given (`--api`).
        api: String,
        /// Where it redirected to.
        target: String,
        /// Refused, timed out...
        why: String,
    },
    /// There was no leader for as long as the client waited.
    #[error("no leader: {message}")]
    NoLeader {
        /// The server's explanation.
        message: String,
    },
    /// The API answered with an error.
    #[error("{status}: {message}{}", field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default())]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The server's `error`.
        message: String,
        /// The server's `field`, when the error is about one.
        field: Option<String>,
    },
    /// Redirects did not end.
    #[error(
        "more than {REDIRECTS_MAX} redirects (last to {last}); the hosts disagree about the leader, retry shortly"
    )]
    TooManyRedirects {
        /// The last location.
        last: String,
    },
    /// A redirect without a usable `Location`.
    #[error("{url} answered {status} without a usable Location header")]
    BadRedirect {
        /// The URL that redirected.
        url: String,
        /// Its status.
        status: StatusCode,
    },
    /// The exchange failed once it was under way.
    #[error("{method} {url}: {source}")]
    Transport {
        /// The method.
        method: Method,
        /// The URL.
        url: String,
        /// What went wrong.
        source: ureq::Error,
    },
    /// The answer was not what the API promises.
    #[error("{url} answered something that is not the rota API's JSON: {why}")]
    BadAnswer {
        /// The URL.
        url: String,
        /// What was wrong.
        why: String,
    },
    /// Reading a streamed body failed part-way (the host went away, say).
    #[error("lost the stream from {url}: {source}")]
    Stream {
        /// The URL being read.
        url: String,
        /// The read error.
        source: io::Error,
    },
    /// Writing a streamed body out failed (a closed pipe, a full disk).
    #[error("cannot write the output: {0}")]
    Write(io::Error),
}

impl ClientError {
    /// The HTTP status of an API error, if that is what this is.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether nothing could be reached at all, so that trying other requests against
    /// the same API is pointless.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ClientError::BadApi { .. }
                | ClientError::Unreachable { .. }
                | ClientError::RedirectUnreachable { .. }
                | ClientError::NoLeader { .. }
        )
    }
}

/// A JSON answer with its status (`201` created versus `200` replaced matters).
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status (always 2xx).
    pub status: StatusCode,
    /// The body as JSON; `null` when it was empty (`204`).
    pub body: Value,
}

/// A client of one rota API address.
#[derive(Debug)]
pub struct Client {
    /// `http://host:port`, without a trailing slash.
    base: String,
    /// For requests whose answer is read at once.
    agent: ureq::Agent,
    /// For streamed output, which may last as long as a run does: no overall timeout.
    stream_agent: ureq::Agent,
}

impl Client {
    /// A client of the API at `api` (`http://host:port`, or just `host:port`).
    pub fn new(api: &str) -> Result<Client, ClientError> {
        let base = normalize_api(api)?;
        // Redirects and error statuses are handled here, not by ureq: a redirect must
        // re-send a PUT's body, and an error's JSON body names the field to fix.
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .timeout_global(Some(EXCHANGE_TIMEOUT))
            .build()
            .into();
        let stream_agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .build()
            .into();
        Ok(Client {
            base,
            agent,
            stream_agent,
        })
    }

    /// The API address, as normalized.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`, answering the JSON body.
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, path, None).map(|reply| reply.body)
    }

    /// Sends `body` (JSON) with `method` to `path` and answers the JSON reply.
    pub fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        self.json_with_headers(method, path, body, &[])
    }

    /// As [`Client::json`], with `headers` on every sending of the request (each
    /// redirect and retry).
    pub fn json_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, ClientError> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("a JSON value serializes"));
        let (url, response) =
            self.exchange(&self.agent, &method, path, bytes.as_deref(), headers)?;
        let status = response.status();
        let text = response
            .into_body()
            .into_with_config()
            .limit(JSON_BODY_BYTES_MAX)
            .read_to_string()
            .map_err(|source| ClientError::Transport {
                method: method.clone(),
                url: url.clone(),
                source,
            })?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| ClientError::BadAnswer {
                url,
                why: e.to_string(),
            })?
        };
        Ok(Reply { status, body })
    }

    /// `GET path` and copies the body to `out` as it arrives, flushing after every
    /// read, so that a followed run's output shows as it is written. Answers the number
    /// of bytes copied.
    pub fn stream(&self, path: &str, out: &mut dyn Write) -> Result<u64, ClientError> {
        let (url, response) = self.exchange(&self.stream_agent, &Method::GET, path, None, &[])?;
        let mut reader = response.into_body().into_reader();
        let mut buf = [0u8; 16 * 1024];
        let mut copied = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(copied),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(ClientError::Stream { url, source }),
            };
            out.write_all(&buf[..n]).map_err(ClientError::Write)?;
            out.flush().map_err(ClientError::Write)?;
            copied += n as u64;
        }
    }

    /// Sends one request, following redirects and waiting out a missing leader;
    /// answers the final URL and its successful response.
    fn exchange(
        &self,
        agent: &ureq::Agent,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Result<(String, Response<ureq::Body>), ClientError> {
        let deadline = Instant::now() + RETRY_BUDGET;
        'attempt: loop {
            let mut url = format!("{}{path}", self.base);
            for hop in 0..=REDIRECTS_MAX {
                let redirected = hop > 0;
                let response = match send(agent, method, &url, body, headers) {
                    Ok(response) => response,
                    Err(e) => {
                        let Some(why) = unreachable_reason(&e) else {
                            return Err(ClientError::Transport {
                                method: method.clone(),
                                url,
                                source: e,
                            });
                        };
                        if !redirected {
                            return Err(ClientError::Unreachable {
                                api: self.base.clone(),
                                why,
                            });
                        }
                        // The leader it pointed at may have just died; the host we
                        // were given will point at its successor once one is elected.
                        if Instant::now() + RETRY_PAUSE_DEFAULT < deadline {
                            thread::sleep(RETRY_PAUSE_DEFAULT);
                            continue 'attempt;
                        }
                        return Err(ClientError::RedirectUnreachable {
                            api: self.base.clone(),
                            target: origin(&url).to_owned(),
                            why,
                        });
                    }
                };
                let status = response.status();
                if status.is_redirection() {
                    let location = response
                        .headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|l| resolve_location(&url, l));
                    match location {
                        Some(location) => {
                            url = location;
                            continue;
                        }
                        None => return Err(ClientError::BadRedirect { url, status }),
                    }
                }
                if status == StatusCode::SERVICE_UNAVAILABLE
                    || status == StatusCode::TOO_MANY_REQUESTS
                {
                    let pause = retry_after(&response);
                    let error = api_error(response);
                    if Instant::now() + pause < deadline {
                        thread::sleep(pause);
                        continue 'attempt;
                    }
                    return Err(match error {
                        ClientError::Api {
                            status, message, ..
                        } if status == StatusCode::SERVICE_UNAVAILABLE => {
                            ClientError::NoLeader { message }
                        }
                        other => other,
                    });
                }
                if status.is_client_error() || status.is_server_error() {
                    return Err(api_error(response));
                }
                return Ok((url, response));
            }
            return Err(ClientError::TooManyRedirects { last: url });
        }
    }
}

/// Sends one request, with no redirect or retry.
fn send(
    agent: &ureq::Agent,
    method: &Method,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Result<Response<ureq::Body>, ureq::Error> {
    let mut request = Request::builder().method(method.clone()).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match body {
        Some(body) => agent.run(
            request
                .header("content-type", "application/json")
                .body(body)
                .map_err(ureq::Error::Http)?,
        ),
        None => agent.run(request.body(()).map_err(ureq::Error::Http)?),
    }
}

/// Checks the `--api` value and answers it as `http://host:port`.
fn normalize_api(api: &str) -> Result<String, ClientError> {
    let bad = |why| ClientError::BadApi {
        api: api.to_owned(),
        why,
    };
    let given = api.trim();
    if given.starts_with("https://") {
        return Err(bad(
            "this client speaks plain HTTP, as the rota API does; use http://",
        ));
    }
    let authority = match given.split_once("://") {
        Some(("http", rest)) => rest,
        Some(_) => return Err(bad("only http:// addresses are supported")),
        // `host:port` alone is the common way to write an address; accept it.
        None => given,
    };
    let authority = authority.trim_end_matches('/');
    if authority.is_empty() {
        return Err(bad("it names no host"));
    }
    // The API lives at the root of its address; a path here would be silently lost
    // on every redirect, which names only the leader's `host:port`.
    if authority.contains('/') {
        return Err(bad("give only http://host:port, without a path"));
    }
    let base = format!("http://{authority}");
    Ok(base)
}

/// `http://host:port` of a URL.
fn origin(url: &str) -> &str {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    match url[scheme_end..].find('/') {
        Some(i) => &url[..scheme_end + i],
        None => url,
    }
}

/// The absolute URL a `Location` header names, relative to `url`.
fn resolve_location(url: &str, location: &str) -> Option<String> {
    if location.starts_with("http://") {
        Some(location.to_owned())
    } else if location.starts_with('/') {
        Some(format!("{}{location}", origin(url)))
    } else {
        None
    }
}

/// How long a `503`/`429` asks the client to wait, within the bounds this client keeps.
fn retry_after(response: &Response<ureq::Body>) -> Duration {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(RETRY_PAUSE_DEFAULT, Duration::from_secs)
        .clamp(Duration::from_millis(100), RETRY_PAUSE_MAX)
}

/// The API's `{"error", "field"}` answer as an error; any other body is quoted.
fn api_error(response: Response<ureq::Body>) -> ClientError {
    let status = response.status();
    let text = response
        .into_body()
        .into_with_config()
        .limit(1024 * 1024)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    let (message, field) = match serde_json::from_str::<Value>(&text) {
        Ok(json) if json["error"].is_string() => (
            json["error"].as_str().unwrap_or_default().to_owned(),
            json["field"].as_str().map(str::to_owned),
        ),
        _ => {
            let text = text.trim();
            let quoted: String = text.chars().take(ERROR_TEXT_CHARS_MAX).collect();
            let message = if quoted.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no explanation")
                    .to_owned()
            } else {
                quoted
            };
            (message, None)
        }
    };
    ClientError::Api {
        status,
        message,
        field,
    }
}

/// Why nothing answered, if that is what `error` means (as opposed to a failure once
/// the server had answered).
fn unreachable_reason(error: &ureq::Error) -> Option<String> {
    match error {
        ureq::Error::Io(e) => Some(match e.kind() {
            io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            io::ErrorKind::TimedOut => "timed out".to_owned(),
            io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
            io::ErrorKind::AddrNotAvailable => "address not available".to_owned(),
            _ => e.to_string(),
        }),
        ureq::Error::Timeout(_) => Some("timed out".to_owned()),
        ureq::Error::HostNotFound => Some("host not found".to_owned()),
        ureq::Error::ConnectionFailed => Some("connection failed".to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_address_is_normalized_or_refused_with_a_reason() {
        assert_eq!(
            normalize_api("http://10.0.0.1:7070/").unwrap(),
            "http://10.0.0.1:7070"
        );
        assert_eq!(
            normalize_api("10.0.0.1:7070").unwrap(),
            "http://10.0.0.1:7070"
        );
        for bad in ["", "https://a:1", "ftp://a", "http://a:1/v1", "http://"] {
            assert!(normalize_api(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn locations_resolve_against_the_url_that_redirected() {
        let url = "http://127.0.0.2:7070/v1/jobs?x=1";
        assert_eq!(origin(url), "http://127.0.0.2:7070");
        assert_eq!(origin("http://a:1"), "http://a:1");
        assert_eq!(
            resolve_location(url, "http://127.0.0.3:7070/v1/jobs").as_deref(),
            Some("http://127.0.0.3:7070/v1/jobs")
        );
        assert_eq!(
            resolve_location(url, "/v1/runs/4").as_deref(),
            Some("http://127.0.0.2:7070/v1/runs/4")
        );
        assert_eq!(resolve_location(url, "v1/runs"), None);
    }

    #[test]
    fn an_api_error_names_its_field() {
        let e = ClientError::Api {
            status: StatusCode::BAD_REQUEST,
            message: "unknown zone".into(),
            field: Some("timezone".into()),
        };
        assert_eq!(
            e.to_string(),
            "400 Bad Request: unknown zone (field timezone)"
        );
    }
}
