//! Entry points of the fuzz targets (`fuzz/`) and of the corpus replay
//! (`tests/fuzz_corpus.rs`): one function per kind of bytes that reaches a
//! node from outside, fed exactly as they arrive.
//!
//! Each takes arbitrary bytes and must return without panicking. Where a
//! format can be written back, the functions also check that what was read
//! survives a round trip, and the privval target checks that the double-sign
//! rules only ever grant the requested bytes or stored ones differing in the
//! timestamp alone. A leading selector byte picks the protocol version or
//! message kind where one target covers several.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use openraft::error::InstallSnapshotError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use prost::Message;
use tokio::io::{AsyncRead, ReadBuf};

use crate::cluster::admin::Status;
use crate::cluster::pb;
use crate::cluster::types::{NodeId, TypeConfig, typ::RaftError};
use crate::cluster::{forward, service};
use crate::privval::codec::{FrameReader, ReadError};
use crate::privval::{self, Request, Response, Version, canonical};
use crate::watermark::interchange::ChainState;
use crate::watermark::migrate::{self, Format};
use crate::watermark::{self, Attempt, SignState, Verdict, inspect};

/// A target's entry function: takes any bytes, returns without panicking.
pub type Entry = fn(&[u8]);

/// Every target by name, as `fuzz/` builds them and the replay test runs
/// their corpora (`fuzz/corpus/<name>/`).
pub const TARGETS: &[(&str, Entry)] = &[
    ("privval", privval),
    ("secret_connection", secret_connection),
    ("cluster_raft", cluster_raft),
    ("cluster_forward", cluster_forward),
    ("cluster_admin", cluster_admin),
    ("cluster_threshold", cluster_threshold),
    ("state_file", state_file),
    ("tmkms", tmkms),
    ("interchange", interchange),
    ("config", config),
];

/// Polls a future whose I/O is all in memory (never pending) to the end.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// In-memory bytes handed out at most `step` at a time, as a socket may.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.data.len().min(self.step).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// A validator's side of a privval connection: `[selector, step, frames..]`.
///
/// The selector picks the version (low two bits) and the frame limit (64
/// to 4096 bytes, so oversized frames are common); `step` bounds each read.
/// Every frame goes through what the session does with it: decode, the
/// error reply for a malformed one, and for a sign request the sign bytes,
/// the double-sign rules against the requests before it, and the reply.
pub fn privval(data: &[u8]) {
    let [selector, step, frames @ ..] = data else {
        return;
    };
    let version = Version::ALL[usize::from(selector & 3)];
    let max = 64 * (1 + usize::from(selector >> 2));
    let reader = Trickle {
        data: frames,
        step: usize::from(*step).max(1),
    };
    let mut frames = FrameReader::new(reader, max);
    let mut state = SignState::default();
    loop {
        match ready(frames.read_frame()) {
            Ok(Some(body)) => privval_message(version, &body, &mut state),
            Ok(None) | Err(ReadError::Io(_)) => return,
            Err(ReadError::Codec(e)) => {
                let _ = privval::error_reply_unknown(1, &e.to_string()).encode(version);
            }
        }
    }
}

fn privval_message(version: Version, body: &[u8], state: &mut SignState) {
    // The validator's tools read responses with the same codec.
    if let Ok(response) = Response::decode(version, body) {
        let _ = response.encode(version);
    }
    let request = match Request::decode(version, body) {
        Ok(request) => request,
        Err(e) => {
            if let Some(reply) =
                privval::error_reply_for_malformed(version, body, 1, &e.to_string())
            {
                let _ = reply.encode(version);
            }
            return;
        }
    };
    let again = Request::decode(version, &request.encode(version));
    assert_eq!(
        again.as_ref(),
        Ok(&request),
        "a decoded {version} request must read back the same"
    );
    let _ = privval::error_reply(&request, 3, "refused").encode(version);
    let Request::Sign(sign) = &request else {
        return;
    };
    if let Some(signed) = inspect::signed(&sign.sign_bytes) {
        assert_eq!(
            signed.position, sign.position,
            "sign bytes must read back at the request's position"
        );
    }
    let _ = canonical::timestamp(&sign.sign_bytes);
    let attempt = Attempt {
        extension: None,
        position: sign.position,
        sign_bytes: sign.sign_bytes.clone(),
        origin: None,
    };
    let (verdict, _) = watermark::grant(state, &attempt);
    if let Verdict::Sign(granted) = verdict {
        assert!(
            granted == sign.sign_bytes
                || canonical::same_except_timestamp(&granted, &sign.sign_bytes),
            "a grant may only hand back the requested bytes or stored ones \
             differing in the timestamp"
        );
        let reply = sign.reply(&granted, [7; 64], None).encode(version);
        assert!(
            Response::decode(version, &reply).is_ok(),
            "a signed {version} reply must decode"
        );
    }
}

/// Scripted I/O for a handshake: reads come from the fuzz input, writes
/// are dropped.
struct Scripted<'a>(&'a [u8]);

impl Read for Scripted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Scripted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The listening side of a SecretConnection handshake (protocol v0.34, the
/// one quorumkms speaks): `[selector, bytes..]`.
///
/// Selector 0: `bytes` are everything the peer sends, through the whole
/// handshake and the first encrypted frames (as `transport` runs it).
/// Otherwise `bytes` are a decrypted auth-signature message, decoded and
/// checked against a handshake in progress.
pub fn secret_connection(data: &[u8]) {
    use tendermint_p2p::secret_connection::{Handshake, SecretConnection, Version as Sc};
    let Some((selector, bytes)) = data.split_first() else {
        return;
    };
    let identity = ed25519_consensus::SigningKey::from([9; 32]);
    if *selector == 0 {
        if let Ok(mut sc) = SecretConnection::new(Scripted(bytes), identity, Sc::V0_34) {
            let _ = sc.remote_pubkey();
            let mut buf = vec![0u8; tendermint_p2p::secret_connection::DATA_MAX_SIZE];
            while matches!(sc.read(&mut buf), Ok(n) if n > 0) {}
        }
        return;
    }
    let _ = Sc::V0_34.decode_initial_handshake(bytes);
    let Ok(message) = Sc::V0_34.decode_auth_signature(bytes) else {
        return;
    };
    // The peer's ephemeral key: any point that is not of low order.
    let (_, peer) = Handshake::new(identity.clone(), Sc::V0_34);
    let (mut handshake, _) = Handshake::new(identity, Sc::V0_34);
    if let Ok(awaiting) = handshake.got_key(peer) {
        let _ = awaiting.got_signature(message);
    }
}

/// Node-to-node Raft RPCs as the service and the client decode them:
/// `[selector, json..]`, the JSON inside a `RaftRequest` or `RaftReply`.
/// Selectors 0 to 2: AppendEntries, Vote, InstallSnapshot requests (the
/// server); 3 to 5: their replies (the caller). The same bytes are also
/// decoded as the protobuf envelope.
pub fn cluster_raft(data: &[u8]) {
    let Some((selector, json)) = data.split_first() else {
        return;
    };
    let _ = pb::RaftRequest::decode(json);
    let _ = pb::RaftReply::decode(json);
    match selector % 6 {
        0 => reencode(service::decode::<AppendEntriesRequest<TypeConfig>>(json).ok()),
        1 => reencode(service::decode::<VoteRequest<NodeId>>(json).ok()),
        2 => {
            if let Ok(rpc) = service::decode::<InstallSnapshotRequest<TypeConfig>>(json) {
                let _ = service::check_chunk(&rpc);
                reencode(Some(rpc));
            }
        }
        3 => reencode(
            serde_json::from_slice::<Result<AppendEntriesResponse<NodeId>, RaftError>>(json).ok(),
        ),
        4 => reencode(serde_json::from_slice::<Result<VoteResponse<NodeId>, RaftError>>(json).ok()),
        _ => reencode(
            serde_json::from_slice::<
                Result<InstallSnapshotResponse<NodeId>, RaftError<InstallSnapshotError>>,
            >(json)
            .ok(),
        ),
    }
}

fn reencode<T: serde::Serialize>(value: Option<T>) {
    if let Some(value) = value {
        let _ = serde_json::to_vec(&value);
    }
}

/// Threshold mode's network input, selected by the first byte: a `Share`
/// request and its FROST signing package, a round 1 commitment, a
/// signature share, and a key generation step (JSON). Whatever decodes
/// must encode back to what was read.
pub fn cluster_threshold(data: &[u8]) {
    use frost_ed25519 as frost;
    let Some((selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            let package = match pb::ShareRequest::decode(bytes) {
                Ok(request) => crate::threshold::participant::decode_package(&request.package),
                Err(_) => crate::threshold::participant::decode_package(bytes),
            };
            if let Ok(package) = package
                && let Ok(again) = package.serialize()
            {
                let read = crate::threshold::participant::decode_package(&again).ok();
                assert_eq!(
                    read,
                    Some(package),
                    "a signing package must read back the same"
                );
            }
        }
        1 => {
            if let Ok(commitments) = frost::round1::SigningCommitments::deserialize(bytes)
                && let Ok(again) = commitments.serialize()
            {
                let read = frost::round1::SigningCommitments::deserialize(&again).ok();
                assert_eq!(
                    read,
                    Some(commitments),
                    "commitments must read back the same"
                );
            }
        }
        2 => {
            if let Ok(share) = frost::round2::SignatureShare::deserialize(bytes) {
                let read = frost::round2::SignatureShare::deserialize(&share.serialize()).ok();
                assert_eq!(read, Some(share), "a share must read back the same");
            }
        }
        _ => {
            if let Ok(step) = serde_json::from_slice::<crate::cluster::keygen::Step>(bytes) {
                let again = serde_json::to_vec(&step).expect("a step encodes");
                let read: Option<crate::cluster::keygen::Step> =
                    serde_json::from_slice(&again).ok();
                assert!(read.is_some(), "a key generation step must read back");
            }
        }
    }
}

/// A forwarded command (the leader's side, selector even) or the leader's
/// answer (the follower's side, selector odd): `[selector, protobuf..]`.
pub fn cluster_forward(data: &[u8]) {
    let Some((selector, bytes)) = data.split_first() else {
        return;
    };
    if selector % 2 == 0 {
        if let Ok(request) = pb::ForwardRequest::decode(bytes) {
            let _ = forward::command(&request);
        }
        // The command alone, as JSON.
        let request = pb::ForwardRequest {
            command: bytes.to_vec(),
        };
        if let Ok(command) = forward::command(&request) {
            let again = forward::request(&command).map(|r| forward::command(&r).ok());
            assert_eq!(
                again.ok().flatten(),
                Some(command),
                "a forwarded command must read back the same"
            );
        }
        return;
    }
    let Ok(reply) = pb::ForwardReply::decode(bytes) else {
        return;
    };
    if let Ok(answer) = forward::answer(&reply) {
        let again = forward::reply(&answer).map(|r| forward::answer(&r).ok());
        assert_eq!(
            again.ok().flatten(),
            Some(answer),
            "a forward answer must read back the same"
        );
    }
}

/// The operator's API: requests as the admin service decodes them and
/// replies as the admin client does: `[selector, bytes..]`.
pub fn cluster_admin(data: &[u8]) {
    let Some((selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 10 {
        0 => {
            if let Ok(request) = pb::RaiseRequest::decode(bytes) {
                let _ = serde_json::from_slice::<SignState>(&request.state_json);
            }
        }
        // The state JSON alone, as `raise` reads it.
        1 => {
            if let Ok(state) = serde_json::from_slice::<SignState>(bytes) {
                let json = serde_json::to_vec(&state).expect("a sign state encodes");
                assert_eq!(
                    serde_json::from_slice::<SignState>(&json).ok(),
                    Some(state),
                    "a raised state must read back the same"
                );
            }
        }
        2 => {
            let _ = serde_json::from_slice::<Status>(bytes);
        }
        3 => {
            let _ = serde_json::from_slice::<BTreeMap<String, SignState>>(bytes);
        }
        4 => {
            let _ = pb::AddLearnerRequest::decode(bytes);
        }
        5 => {
            let _ = pb::PromoteRequest::decode(bytes);
        }
        6 => {
            let _ = pb::RemoveRequest::decode(bytes);
        }
        7 => {
            let _ = pb::TransferLeaderRequest::decode(bytes);
        }
        8 => {
            let _ = pb::KeyLossRequest::decode(bytes);
        }
        _ => {
            if let Ok(reply) = pb::StatusReply::decode(bytes) {
                let _ = serde_json::from_slice::<Status>(&reply.json);
            }
            if let Ok(reply) = pb::ExportReply::decode(bytes) {
                let _ = serde_json::from_slice::<BTreeMap<String, SignState>>(&reply.chains_json);
            }
        }
    }
}

/// Reads `text` in `format` as `state import` does, and checks that what
/// was read survives an export in the same format.
fn state_import(data: &[u8], format: Format, chain_id: Option<&str>) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(chains) = migrate::parse(text, format, chain_id) else {
        return;
    };
    for chain in &chains {
        let _ = inspect::signed(&chain.state.sign_bytes);
    }
    let Ok(exported) = migrate::render(&chains, format) else {
        return;
    };
    let again = migrate::parse(&exported, format, chain_id)
        .unwrap_or_else(|e| panic!("an exported {format} file must import: {e}\n{exported}"));
    let positions = |c: &[ChainState]| -> Vec<_> {
        c.iter()
            .map(|c| (c.chain_id.clone(), c.state.position))
            .collect()
    };
    assert_eq!(
        positions(&again),
        positions(&chains),
        "an exported {format} file must import at the same positions"
    );
}

/// A CometBFT `priv_validator_state.json`.
pub fn state_file(data: &[u8]) {
    state_import(data, Format::Cometbft, Some("fuzz-chain"));
}

/// A tmkms state file.
pub fn tmkms(data: &[u8]) {
    state_import(data, Format::Tmkms, Some("fuzz-chain"));
}

/// A quorumkms interchange file, and format detection on any file.
pub fn interchange(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = migrate::detect(text);
        let _ = migrate::parse(text, Format::Auto, Some("fuzz-chain"));
    }
    state_import(data, Format::Interchange, None);
}

/// A `quorumkms.toml`, parsed and validated.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = crate::config::parse(text) {
        let _ = config.validate();
    }
}
