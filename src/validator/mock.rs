//! A simulated CometBFT validator node: it listens for signers the way
//! CometBFT's privval listener does and asks them to sign.
//!
//! The demo drives it, and the integration tests use it as their mock
//! validator. It behaves as CometBFT v0.38 and v1.0 do (ARCHITECTURE.md, "What
//! CometBFT does with signer connections"):
//! - it holds one signer connection; other signers wait in the kernel's
//!   accept queue until the active one is dropped;
//! - it drops the connection only on a read/write timeout, or when a ping
//!   fails; a request that fails otherwise just fails;
//! - a sign request is retried every `retry_interval` up to `retries`
//!   times, except after an error reply, which is final.
//!
//! Every signature it receives is verified against the expected public key
//! and recorded in a [`Checker`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tendermint_proto::google::protobuf::Timestamp;
use tokio::net::{TcpListener, UnixListener};
use tokio::time::{Instant, timeout};

use super::checker::{Checker, Released, verify};
use crate::keys::PublicKey;
use crate::privval::codec::{self, FrameReader, ReadError};
use crate::privval::{Proposal, RemoteError, Request, Response, SignRequest, Version, Vote};
use crate::transport::{self, Stream, Timeouts};

/// Where the validator listens for signers.
pub enum SignerListener {
    /// TCP with SecretConnection, authenticated by the validator's node key.
    Tcp(TcpListener, Box<ed25519_consensus::SigningKey>),
    /// A unix socket, plaintext.
    Unix(UnixListener, PathBuf),
}

impl SignerListener {
    /// Binds TCP on `addr` (use port 0 for any) with a fresh node key.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn tcp(addr: &str) -> std::io::Result<SignerListener> {
        let listener = TcpListener::bind(addr).await?;
        let seed: [u8; 32] = rand::random();
        Ok(SignerListener::Tcp(
            listener,
            Box::new(ed25519_consensus::SigningKey::from(seed)),
        ))
    }

    /// Binds `tcp://host:port` or `unix://path`.
    ///
    /// # Errors
    ///
    /// Another scheme, or an address that cannot be bound.
    pub async fn bind(addr: &str) -> Result<SignerListener, String> {
        let bound = if let Some(path) = addr.strip_prefix("unix://") {
            SignerListener::unix(PathBuf::from(path))
        } else if let Some(host_port) = addr.strip_prefix("tcp://") {
            SignerListener::tcp(host_port).await
        } else {
            return Err(format!("{addr:?}: expected tcp://host:port or unix://path"));
        };
        bound.map_err(|e| format!("cannot listen on {addr}: {e}"))
    }

    /// Binds a unix socket at `path`.
    ///
    /// # Errors
    ///
    /// When the path cannot be bound.
    pub fn unix(path: PathBuf) -> std::io::Result<SignerListener> {
        let _ = std::fs::remove_file(&path);
        Ok(SignerListener::Unix(UnixListener::bind(&path)?, path))
    }

    /// The address signers dial: `tcp://NODE_ID@host:port` or `unix://path`.
    pub fn signer_addr(&self) -> String {
        match self {
            SignerListener::Tcp(listener, key) => {
                let id = transport::node_id(&key.verification_key().to_bytes());
                let local = listener
                    .local_addr()
                    .map_or_else(|_| "0.0.0.0:0".to_string(), |a| a.to_string());
                format!("tcp://{}@{local}", hex::encode(id))
            }
            SignerListener::Unix(_, path) => format!("unix://{}", path.display()),
        }
    }
}

/// Timing of the mock validator. Defaults are CometBFT's.
#[derive(Clone, Debug)]
pub struct ValidatorTiming {
    /// Read/write timeout on the signer connection.
    pub io_timeout: Duration,
    /// Ping period while idle or after a failed request.
    pub ping_interval: Duration,
    /// Pause between retries of one sign request.
    pub retry_interval: Duration,
    /// Attempts per sign request.
    pub retries: u32,
    /// How long to wait for a signer to connect.
    pub accept_timeout: Duration,
}

impl Default for ValidatorTiming {
    fn default() -> ValidatorTiming {
        ValidatorTiming {
            io_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_millis(3_333),
            retry_interval: Duration::from_millis(100),
            retries: 50,
            accept_timeout: Duration::from_secs(3),
        }
    }
}

/// The answer to one sign request after retries.
#[derive(Clone, Debug, PartialEq)]
pub enum SignOutcome {
    /// Signed, verified and recorded.
    Signed {
        /// The signed bytes (carrying the timestamp the signer answered).
        sign_bytes: Vec<u8>,
        /// The signature.
        signature: Vec<u8>,
        /// The timestamp in the reply.
        timestamp: Option<Timestamp>,
        /// Which signer answered (its SecretConnection node id, or "unix").
        via: String,
    },
    /// The signer refused with an error reply (final, as in CometBFT).
    Refused(RemoteError),
    /// No answer after every retry.
    Failed(String),
}

impl SignOutcome {
    /// The outcome in words, and the name of the signer that served it
    /// (its entry in `names`, else its node id).
    pub fn describe(&self, names: &BTreeMap<String, String>) -> (String, Option<String>) {
        match self {
            SignOutcome::Signed { via, .. } => (
                "signed".to_string(),
                Some(names.get(via).cloned().unwrap_or_else(|| via.clone())),
            ),
            SignOutcome::Refused(e) => (format!("REFUSED ({})", e.description), None),
            SignOutcome::Failed(e) => (format!("FAILED ({e})"), None),
        }
    }
}

struct Active {
    frames: FrameReader<tokio::io::ReadHalf<Box<dyn Stream>>>,
    write: tokio::io::WriteHalf<Box<dyn Stream>>,
    peer: String,
    /// A request failed without a timeout: CometBFT keeps such a connection
    /// until its next ping fails.
    broken: bool,
}

/// A mock CometBFT validator node: listens for signers and asks them to
/// sign, with CometBFT's connection handling.
pub struct MockValidator {
    listen: SignerListener,
    chain_id: String,
    version: Version,
    public_key: PublicKey,
    timing: ValidatorTiming,
    checker: Checker,
    active: Option<Active>,
    last_success: Instant,
    /// Whether the chain has vote extensions enabled (see
    /// [`MockValidator::set_vote_extensions`]).
    vote_extensions: bool,
    /// Connections accepted so far.
    pub accepted: u32,
}

enum Exchange {
    Reply(Box<Response>),
    Timeout,
    Failed(String),
}

impl MockValidator {
    /// A validator for `chain_id` expecting signatures by `public_key`.
    pub fn new(
        listen: SignerListener,
        chain_id: &str,
        version: Version,
        public_key: impl Into<PublicKey>,
        timing: ValidatorTiming,
        checker: Checker,
    ) -> MockValidator {
        MockValidator {
            listen,
            chain_id: chain_id.to_string(),
            version,
            public_key: public_key.into(),
            timing,
            checker,
            active: None,
            last_success: Instant::now(),
            vote_extensions: true,
            accepted: 0,
        }
    }

    /// Whether the chain has vote extensions enabled (the default). Without
    /// them CometBFT v0.38 drops a precommit's extension signature instead
    /// of verifying it, so a signer that leaves it out (as tmkms 0.15
    /// does) still serves such a chain.
    pub fn set_vote_extensions(&mut self, enabled: bool) {
        self.vote_extensions = enabled;
    }

    /// The address signers dial.
    pub fn signer_addr(&self) -> String {
        self.listen.signer_addr()
    }

    /// Sets the public key signatures are verified against (e.g. the one
    /// the first `PubKey` reply announced).
    pub fn set_public_key(&mut self, public_key: impl Into<PublicKey>) {
        self.public_key = public_key.into();
    }

    /// The signer currently connected, if any.
    pub fn peer(&self) -> Option<&str> {
        self.active.as_ref().map(|a| a.peer.as_str())
    }

    async fn accept(&mut self) -> Result<(), String> {
        let io = Timeouts {
            connect: self.timing.io_timeout,
            read: self.timing.io_timeout,
            write: self.timing.io_timeout,
            // As CometBFT: its handshake's reads and writes are bounded by
            // the same timeout.
            handshake: self.timing.io_timeout,
        };
        let accepted = timeout(self.timing.accept_timeout, async {
            match &self.listen {
                SignerListener::Tcp(listener, key) => {
                    let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
                    let (stream, peer) = transport::accept_secret_connection(tcp, key, &io)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>((stream, hex::encode(peer)))
                }
                SignerListener::Unix(listener, _) => {
                    let (unix, _) = listener.accept().await.map_err(|e| e.to_string())?;
                    Ok((Box::new(unix) as Box<dyn Stream>, "unix".to_string()))
                }
            }
        })
        .await
        .map_err(|_| "no signer connected".to_string())??;
        let (stream, peer) = accepted;
        let (read, write) = tokio::io::split(stream);
        self.active = Some(Active {
            frames: FrameReader::new(read, codec::DEFAULT_MAX_FRAME),
            write,
            peer,
            broken: false,
        });
        self.accepted += 1;
        self.last_success = Instant::now();
        Ok(())
    }

    /// Drops the active signer connection, as CometBFT does on a timeout.
    pub fn drop_connection(&mut self) {
        self.active = None;
    }

    /// One request and its reply on the active connection.
    async fn exchange(&mut self, request: &[u8]) -> Exchange {
        let Some(active) = self.active.as_mut() else {
            return Exchange::Failed("no connection".into());
        };
        let io_timeout = self.timing.io_timeout;
        match timeout(io_timeout, codec::write_frame(&mut active.write, request)).await {
            Err(_) => return Exchange::Timeout,
            Ok(Err(e)) => return Exchange::Failed(e.to_string()),
            Ok(Ok(())) => {}
        }
        let body = match timeout(io_timeout, active.frames.read_frame()).await {
            Err(_) => return Exchange::Timeout,
            Ok(Ok(Some(body))) => body,
            Ok(Ok(None)) => return Exchange::Failed("signer closed the connection".into()),
            Ok(Err(ReadError::Io(e))) => return Exchange::Failed(e.to_string()),
            Ok(Err(ReadError::Codec(e))) => return Exchange::Failed(e.to_string()),
        };
        match Response::decode(self.version, &body) {
            Ok(response) => Exchange::Reply(Box::new(response)),
            Err(e) => Exchange::Failed(format!("undecodable reply: {e}")),
        }
    }

    /// Sends one request with CometBFT's connection handling, once.
    async fn send_once(&mut self, request: &Request) -> Result<Response, String> {
        if let Some(active) = &self.active {
            // CometBFT's ping loop notices a broken connection one ping
            // interval after the last success and drops it.
            if active.broken && self.last_success.elapsed() >= self.timing.ping_interval {
                self.active = None;
            }
        }
        if self.active.is_none() {
            self.accept().await?;
        }
        match self.exchange(&request.encode(self.version)).await {
            Exchange::Reply(response) => {
                self.last_success = Instant::now();
                Ok(*response)
            }
            Exchange::Timeout => {
                self.active = None;
                Err("timeout".into())
            }
            Exchange::Failed(e) => {
                if let Some(active) = self.active.as_mut() {
                    active.broken = true;
                }
                Err(e)
            }
        }
    }

    /// Pings the signer if the connection has been idle for a ping
    /// interval, dropping it when the ping fails, as CometBFT does.
    pub async fn keep_alive(&mut self) {
        if self.active.is_some()
            && self.last_success.elapsed() >= self.timing.ping_interval
            && self.send_once(&Request::Ping).await.is_err()
        {
            self.active = None;
        }
    }

    /// Asks for the public key.
    ///
    /// # Errors
    ///
    /// No signer, a failed exchange or an error reply.
    pub async fn pub_key(&mut self) -> Result<PublicKey, String> {
        let request = Request::PubKey {
            chain_id: self.chain_id.clone(),
        };
        match self.send_once(&request).await? {
            Response::PubKey { key: Some(key), .. } => Ok(key),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    /// Asks a signer to sign `vote`, retrying as CometBFT does.
    pub async fn sign_vote(&mut self, vote: Vote) -> SignOutcome {
        let request = match SignRequest::from_vote(self.version, self.chain_id.clone(), vote, false)
        {
            Ok(request) => request,
            Err(e) => return SignOutcome::Failed(format!("invalid vote: {e}")),
        };
        self.sign(Request::Sign(request)).await
    }

    /// Asks a signer to sign `proposal`, retrying as CometBFT does.
    pub async fn sign_proposal(&mut self, proposal: Proposal) -> SignOutcome {
        let request = match SignRequest::from_proposal(self.chain_id.clone(), proposal) {
            Ok(request) => request,
            Err(e) => return SignOutcome::Failed(format!("invalid proposal: {e}")),
        };
        self.sign(Request::Sign(request)).await
    }

    /// Sends a raw frame body and returns the reply (for malformed-input
    /// tests). No retries.
    ///
    /// # Errors
    ///
    /// No signer or a failed exchange.
    pub async fn send_raw(&mut self, body: &[u8]) -> Result<Response, String> {
        if self.active.is_none() {
            self.accept().await?;
        }
        match self.exchange(body).await {
            Exchange::Reply(r) => Ok(*r),
            Exchange::Timeout => Err("timeout".into()),
            Exchange::Failed(e) => Err(e),
        }
    }

    async fn sign(&mut self, request: Request) -> SignOutcome {
        let Request::Sign(sign) = &request else {
            return SignOutcome::Failed("not a sign request".into());
        };
        let mut last_error = String::from("no attempt");
        for attempt in 0..self.timing.retries.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.timing.retry_interval).await;
            }
            let response = match self.send_once(&request).await {
                Ok(response) => response,
                Err(e) => {
                    last_error = e;
                    continue;
                }
            };
            if let Some(error) = response.error() {
                return SignOutcome::Refused(error.clone());
            }
            let via = self.peer().unwrap_or("?").to_string();
            return self.check_signed(sign, response, via);
        }
        SignOutcome::Failed(last_error)
    }

    /// Recomputes the sign bytes of what the signer returned, verifies the
    /// signature and records it.
    fn check_signed(&self, sent: &SignRequest, response: Response, via: String) -> SignOutcome {
        let (signed, signature, timestamp, extension) = match response {
            Response::SignedVote { mut vote, .. } => {
                let signature = std::mem::take(&mut vote.signature);
                let extension_signature = std::mem::take(&mut vote.extension_signature);
                let timestamp = vote.timestamp;
                let signed =
                    SignRequest::from_vote(self.version, self.chain_id.clone(), vote, false);
                (signed, signature, timestamp, Some(extension_signature))
            }
            Response::SignedProposal { mut proposal, .. } => {
                let signature = std::mem::take(&mut proposal.signature);
                let timestamp = proposal.timestamp;
                let signed = SignRequest::from_proposal(self.chain_id.clone(), proposal);
                (signed, signature, timestamp, None)
            }
            other => return SignOutcome::Failed(format!("unexpected reply {other:?}")),
        };
        let signed = match signed {
            Ok(signed) => signed,
            Err(e) => return SignOutcome::Failed(format!("signed reply does not decode: {e}")),
        };
        if signed.position != sent.position {
            return SignOutcome::Failed(format!(
                "signer answered {} for a request at {}",
                signed.position, sent.position
            ));
        }
        if let (true, Some(bytes), Some(ext_sig)) = (
            self.vote_extensions,
            &signed.extension_sign_bytes,
            &extension,
        ) && !verify(&self.public_key, bytes, ext_sig)
        {
            return SignOutcome::Failed("invalid vote extension signature".into());
        }
        let ok = self.checker.record(
            &self.public_key,
            Released {
                chain_id: self.chain_id.clone(),
                position: signed.position,
                sign_bytes: signed.sign_bytes.clone(),
                signature: signature.clone(),
            },
        );
        if !ok {
            return SignOutcome::Failed(format!(
                "invalid or conflicting signature at {}",
                signed.position
            ));
        }
        SignOutcome::Signed {
            sign_bytes: signed.sign_bytes,
            signature,
            timestamp,
            via,
        }
    }
}
