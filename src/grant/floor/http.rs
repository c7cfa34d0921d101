//! One HTTP GET of a CometBFT RPC's `/status`, over plain HTTP/1.1 with
//! hyper (already here for gRPC), bounded in time and size.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// The largest `/status` answer read (a real one is a few KiB).
const MAX_BODY: usize = 64 * 1024;

/// A CometBFT RPC address, `http://host[:port][/prefix]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcUrl {
    url: String,
    authority: String,
    path: String,
}

/// Why an RPC address is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} is not an RPC address like http://host:26657 ({reason})")]
pub struct BadUrl {
    url: String,
    reason: &'static str,
}

impl RpcUrl {
    /// Reads `http://host[:port][/prefix]`; the port defaults to 80.
    ///
    /// # Errors
    ///
    /// Another scheme (https is not spoken here), no host, or a bad port.
    pub fn parse(url: &str) -> Result<RpcUrl, BadUrl> {
        let bad = |reason| BadUrl {
            url: url.to_string(),
            reason,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// is supported"))?;
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() || authority.contains(['@', '?', '#', ' ']) {
            return Err(bad("no host"));
        }
        let authority = match authority.rsplit_once(':') {
            // An IPv6 address without a port.
            _ if authority.ends_with(']') => format!("{authority}:80"),
            Some((host, port)) => {
                if host.is_empty() {
                    return Err(bad("no host"));
                }
                if port.parse::<u16>().is_err() {
                    return Err(bad("bad port"));
                }
                authority.to_string()
            }
            None => format!("{authority}:80"),
        };
        Ok(RpcUrl {
            url: url.trim_end_matches('/').to_string(),
            authority,
            path: format!("{}/status", prefix.trim_end_matches('/')),
        })
    }
}

impl std::fmt::Display for RpcUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting failed.
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The HTTP exchange failed.
    #[error("http: {0}")]
    Http(String),
    /// A status other than 200.
    #[error("http status {0}")]
    Status(u16),
}

/// GETs `url`'s `/status` and returns the body.
///
/// # Errors
///
/// No answer within `timeout`, a connection or HTTP failure, a status
/// other than 200, or a body over 64 KiB.
pub async fn get_status(url: &RpcUrl, timeout: Duration) -> Result<Vec<u8>, FetchError> {
    tokio::time::timeout(timeout, get(url))
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

async fn get(url: &RpcUrl) -> Result<Vec<u8>, FetchError> {
    let http = |e: &dyn std::fmt::Display| FetchError::Http(e.to_string());
    let tcp = tokio::net::TcpStream::connect(&url.authority)
        .await
        .map_err(FetchError::Connect)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| http(&e))?;
    // Drives the connection; it ends with the exchange or the timeout.
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(url.path.as_str())
        .header(hyper::header::HOST, url.authority.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| http(&e))?;
    let answer = async {
        let response = sender.send_request(request).await.map_err(|e| http(&e))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| http(&*e))?;
        Ok(body.to_bytes().to_vec())
    }
    .await;
    driver.abort();
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_addresses_read() {
        let url = RpcUrl::parse("http://10.0.0.5:26657").expect("parse");
        assert_eq!(
            (url.authority.as_str(), url.path.as_str()),
            ("10.0.0.5:26657", "/status")
        );
        let url = RpcUrl::parse("http://rpc.example.com/cosmos/").expect("parse");
        assert_eq!(
            (url.authority.as_str(), url.path.as_str()),
            ("rpc.example.com:80", "/cosmos/status")
        );
        assert_eq!(url.to_string(), "http://rpc.example.com/cosmos");
        let url = RpcUrl::parse("http://[::1]:26657").expect("parse");
        assert_eq!(url.authority, "[::1]:26657");
        for bad in [
            "https://10.0.0.5:26657",
            "tcp://10.0.0.5:26657",
            "10.0.0.5:26657",
            "http://",
            "http://:26657",
            "http://host:port",
            "http://host:99999",
            "http://user@host:26657",
        ] {
            assert!(RpcUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
