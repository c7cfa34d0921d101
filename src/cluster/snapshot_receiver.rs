//! Snapshots a leader sends in chunks, put together here rather than by
//! openraft, so that the whole snapshot is read before Raft sees any of it.
//! openraft treats a snapshot its state machine cannot read as a storage
//! failure and stops the node (after it has taken the sender's vote), so a
//! snapshot whose bytes do not decode is refused here, and nothing changes.
//!
//! Chunks are taken as openraft takes them: a chunk of another snapshot
//! starts over, and must then start at offset 0; each chunk is written at
//! its offset; the chunk marked `done` completes the snapshot.

use std::io::Cursor;
use std::sync::Mutex;

use openraft::SnapshotSegmentId;
use openraft::error::{InstallSnapshotError, SnapshotMismatch};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};

use super::state_machine::decode_snapshot;
use super::store::BackendError;
use super::types::TypeConfig;
use super::types::typ::{Raft, RaftError, Snapshot};

/// Why a chunk was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// A chunk of a snapshot not being received, past its start: the
    /// leader starts that snapshot over.
    #[error("{0}")]
    Mismatch(SnapshotMismatch),
    /// The chunk ends past what this node can address.
    #[error("snapshot chunk at offset {offset} does not fit in memory")]
    TooLarge {
        /// The chunk's offset.
        offset: u64,
    },
    /// The whole snapshot is not a state this node can read.
    #[error("snapshot {id} does not decode: {source}")]
    Undecodable {
        /// The snapshot's id.
        id: String,
        /// Why.
        source: BackendError,
    },
}

/// The snapshot being received.
#[derive(Debug)]
struct Partial {
    id: String,
    data: Vec<u8>,
}

/// What a chunk made of the snapshot being received.
#[derive(Debug, PartialEq, Eq)]
enum Received {
    /// More chunks are to come.
    More,
    /// The last chunk: the snapshot's whole data.
    Whole(Vec<u8>),
}

/// Adds `rpc`'s chunk to `partial`.
fn take_chunk(
    partial: &mut Option<Partial>,
    rpc: &InstallSnapshotRequest<TypeConfig>,
) -> Result<Received, ChunkError> {
    let id = &rpc.meta.snapshot_id;
    if partial.as_ref().is_none_or(|p| p.id != *id) {
        if rpc.offset != 0 {
            return Err(ChunkError::Mismatch(SnapshotMismatch {
                expect: SnapshotSegmentId {
                    id: id.clone(),
                    offset: 0,
                },
                got: SnapshotSegmentId {
                    id: id.clone(),
                    offset: rpc.offset,
                },
            }));
        }
        *partial = Some(Partial {
            id: id.clone(),
            data: Vec::new(),
        });
    }
    let too_large = || ChunkError::TooLarge { offset: rpc.offset };
    let start = usize::try_from(rpc.offset).map_err(|_| too_large())?;
    let end = start.checked_add(rpc.data.len()).ok_or_else(too_large)?;
    let Some(current) = partial.as_mut() else {
        return Ok(Received::More);
    };
    if current.data.len() < end {
        current.data.resize(end, 0);
    }
    current.data[start..end].copy_from_slice(&rpc.data);
    if !rpc.done {
        return Ok(Received::More);
    }
    Ok(partial
        .take()
        .map_or(Received::More, |whole| Received::Whole(whole.data)))
}

/// Puts a node's incoming snapshot together and installs it once whole
/// and readable.
#[derive(Debug, Default)]
pub(crate) struct SnapshotReceiver {
    partial: Mutex<Option<Partial>>,
}

/// What [`SnapshotReceiver::receive`] answers the leader: Raft's answer.
pub(crate) type Answer = Result<InstallSnapshotResponse<u64>, RaftError<InstallSnapshotError>>;

impl SnapshotReceiver {
    /// Takes one chunk for `raft`; installs the snapshot when it is whole.
    ///
    /// # Errors
    ///
    /// The chunk does not fit, or the whole snapshot does not decode; the
    /// snapshot is dropped and Raft has seen none of it.
    pub(crate) async fn receive(
        &self,
        raft: &Raft,
        rpc: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<Answer, ChunkError> {
        let my_vote = raft.metrics().borrow().vote;
        if rpc.vote < my_vote {
            // A deposed leader: Raft would refuse the snapshot too.
            return Ok(Ok(InstallSnapshotResponse { vote: my_vote }));
        }
        let received = {
            let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
            let received = take_chunk(&mut partial, &rpc);
            if received.is_err() {
                *partial = None;
            }
            received
        };
        let data = match received {
            Ok(Received::More) => return Ok(Ok(InstallSnapshotResponse { vote: my_vote })),
            Ok(Received::Whole(data)) => data,
            Err(ChunkError::Mismatch(mismatch)) => {
                return Ok(Err(RaftError::APIError(
                    InstallSnapshotError::SnapshotMismatch(mismatch),
                )));
            }
            Err(e) => return Err(e),
        };
        if let Err(source) = decode_snapshot(&data) {
            return Err(ChunkError::Undecodable {
                id: rpc.meta.snapshot_id,
                source,
            });
        }
        let snapshot = Snapshot {
            meta: rpc.meta,
            snapshot: Box::new(Cursor::new(data)),
        };
        Ok(match raft.install_full_snapshot(rpc.vote, snapshot).await {
            Ok(response) => Ok(InstallSnapshotResponse {
                vote: response.vote,
            }),
            Err(fatal) => Err(RaftError::Fatal(fatal)),
        })
    }
}

#[cfg(test)]
mod tests {
    use openraft::{SnapshotMeta, StoredMembership};

    use super::*;

    fn chunk(id: &str, offset: u64, data: &[u8], done: bool) -> InstallSnapshotRequest<TypeConfig> {
        InstallSnapshotRequest {
            vote: openraft::Vote::default(),
            meta: SnapshotMeta {
                last_log_id: None,
                last_membership: StoredMembership::default(),
                snapshot_id: id.into(),
            },
            offset,
            data: data.to_vec(),
            done,
        }
    }

    #[test]
    fn chunks_make_the_whole_snapshot() {
        let mut partial = None;
        assert_eq!(
            take_chunk(&mut partial, &chunk("a", 0, b"hel", false)).unwrap(),
            Received::More
        );
        assert_eq!(
            take_chunk(&mut partial, &chunk("a", 3, b"lo", true)).unwrap(),
            Received::Whole(b"hello".to_vec())
        );
        assert!(partial.is_none(), "a finished snapshot is dropped");
    }

    #[test]
    fn a_single_chunk_is_a_whole_snapshot() {
        let mut partial = None;
        assert_eq!(
            take_chunk(&mut partial, &chunk("a", 0, b"{}", true)).unwrap(),
            Received::Whole(b"{}".to_vec())
        );
    }

    #[test]
    fn another_snapshot_starts_over_at_offset_zero() {
        let mut partial = None;
        take_chunk(&mut partial, &chunk("a", 0, b"old-data", false)).unwrap();
        assert!(matches!(
            take_chunk(&mut partial, &chunk("b", 4, b"xx", true)),
            Err(ChunkError::Mismatch(_))
        ));
        take_chunk(&mut partial, &chunk("b", 0, b"ne", false)).unwrap();
        assert_eq!(
            take_chunk(&mut partial, &chunk("b", 2, b"w", true)).unwrap(),
            Received::Whole(b"new".to_vec()),
            "nothing of snapshot a is left in b"
        );
    }

    #[test]
    fn a_chunk_is_written_at_its_offset() {
        let mut partial = None;
        take_chunk(&mut partial, &chunk("a", 0, b"abcd", false)).unwrap();
        assert_eq!(
            take_chunk(&mut partial, &chunk("a", 2, b"XY", true)).unwrap(),
            Received::Whole(b"abXY".to_vec())
        );
    }
}
