//! A stand-in for a CometBFT RPC's `/status`, on loopback, for tests of a
//! chain's floor: it answers the latest height it is set to, or, while
//! down, closes every connection unanswered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running fake RPC; stops when dropped.
pub struct FakeRpc {
    url: String,
    height: Arc<AtomicI64>,
    up: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl FakeRpc {
    /// Serves `chain_id` at latest height `height` on a free loopback port.
    ///
    /// # Errors
    ///
    /// The listener cannot be bound.
    pub async fn start(chain_id: &str, height: i64) -> std::io::Result<FakeRpc> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let latest = Arc::new(AtomicI64::new(height));
        let up = Arc::new(AtomicBool::new(true));
        let (chain_id, served, serving) = (chain_id.to_string(), latest.clone(), up.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                if !serving.load(Ordering::SeqCst) {
                    continue;
                }
                let body = status_json(&chain_id, served.load(Ordering::SeqCst));
                tokio::spawn(async move {
                    // Read the request head; its contents do not matter.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(FakeRpc {
            url,
            height: latest,
            up,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Answers `height` from now on.
    pub fn set_height(&self, height: i64) {
        self.height.store(height, Ordering::SeqCst);
    }

    /// Answers (true) or closes connections unanswered (false).
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

impl Drop for FakeRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `/status` answer as CometBFT v0.38 writes it (the fields a floor
/// reads, and a few around them).
fn status_json(chain_id: &str, height: i64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":-1,"result":{{"node_info":{{"network":"{chain_id}","version":"0.38.17","moniker":"fake"}},"sync_info":{{"latest_block_hash":"","latest_block_height":"{height}","latest_block_time":"2024-01-01T00:00:00Z","catching_up":false}},"validator_info":{{"voting_power":"10"}}}}}}"#
    )
}
