//! A small HTTP client over turmoil's TCP, for the simulated operator that writes to
//! the API.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// An answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Where a redirect points.
    pub location: Option<String>,
    /// The body.
    pub body: String,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// One request, with a timeout.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> io::Result<Answer> {
    let call = async {
        let stream = turmoil::net::TcpStream::connect(addr).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io_err)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string())
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
            .map_err(io_err)?;
        let response = sender.send_request(request).await.map_err(io_err)?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(io_err)?
            .to_bytes();
        Ok(Answer {
            status,
            location,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(3), call)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in 3 s"))?
}

/// A request that follows redirects to the leader (at most 5).
pub async fn follow(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> io::Result<Answer> {
    let (mut addr, mut path) = (addr, path.to_owned());
    for _ in 0..5 {
        let answer = request(addr, method, &path, body, headers).await?;
        let Some(location) = answer.location.as_deref().filter(|_| answer.status == 302) else {
            return Ok(answer);
        };
        let rest = location
            .strip_prefix("http://")
            .ok_or_else(|| io_err("odd location"))?;
        let (host, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        addr = host.parse().map_err(io_err)?;
        path = tail.to_owned();
    }
    Err(io_err("too many redirects"))
}
