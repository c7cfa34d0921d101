//! Reading a node's metrics endpoint.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP GET on `addr` (host:port): (status line, body).
pub async fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to metrics");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    (status, body.to_string())
}

/// The value of the first sample of `metric` whose labels contain every
/// `label="value"` in `labels`.
pub fn sample(body: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(metric)
                && line[metric.len()..].starts_with(['{', ' '])
                && labels.iter().all(|l| line.contains(l))
        })
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}
