//! A command a follower forwards to the leader, and the leader's answer
//! as it travels: the applied [`Outcome`], or a typed [`ForwardError`].
//!
//! The command and the outcome travel as JSON (like Raft's own messages);
//! the reply is a protobuf `oneof` (`ForwardReply` in
//! `proto/cluster.proto`), so a reply that is neither an outcome nor a known
//! failure does not decode.

use super::pb;
use super::pb::forward_reply::Result as Answer;
use super::types::{Command, Member, NodeId, Outcome};

/// Why the leader did not apply a forwarded command. The causes are the
/// leader's own errors, which reach the follower as their messages.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The callee does not lead; here is who it thinks does.
    #[error("not the leader")]
    NotLeader {
        /// The leader, if known.
        leader: Option<(NodeId, Member)>,
    },
    /// The leader could not make the entry durable.
    #[error("storage failure on the leader: {0}")]
    Storage(String),
    /// The leader could not commit (lost leadership, shutting down).
    #[error("{0}")]
    Unavailable(String),
}

/// The leader's answer to a forwarded command.
pub type ForwardResult = Result<Outcome, ForwardError>;

/// Why a forward request or reply does not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The JSON of a command or an outcome is malformed.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A reply with no answer in it.
    #[error("the reply holds no result")]
    Empty,
    /// A forwarded batch: only the leader groups commands, from the ones
    /// proposed or forwarded to it one by one.
    #[error("a batch cannot be forwarded; forward its commands one by one")]
    Batch,
}

/// The request carrying `command`.
///
/// # Errors
///
/// The command cannot be encoded (it always can).
pub fn request(command: &Command) -> Result<pb::ForwardRequest, serde_json::Error> {
    Ok(pb::ForwardRequest {
        command: serde_json::to_vec(command)?,
    })
}

/// The command a request carries.
///
/// # Errors
///
/// The bytes are not a command.
pub fn command(request: &pb::ForwardRequest) -> Result<Command, DecodeError> {
    match serde_json::from_slice(&request.command)? {
        Command::Batch(_) => Err(DecodeError::Batch),
        command => Ok(command),
    }
}

/// The reply carrying `result`.
///
/// # Errors
///
/// The outcome cannot be encoded (it always can).
pub fn reply(result: &ForwardResult) -> Result<pb::ForwardReply, serde_json::Error> {
    let answer = match result {
        Ok(outcome) => Answer::Outcome(serde_json::to_vec(outcome)?),
        Err(ForwardError::NotLeader { leader }) => Answer::NotLeader(pb::NotLeader {
            leader: leader.as_ref().map(|(id, member)| pb::Leader {
                id: *id,
                addr: member.addr.clone(),
            }),
        }),
        Err(ForwardError::Storage(cause)) => Answer::Storage(cause.clone()),
        Err(ForwardError::Unavailable(cause)) => Answer::Unavailable(cause.clone()),
    };
    Ok(pb::ForwardReply {
        result: Some(answer),
    })
}

/// The answer a reply carries.
///
/// # Errors
///
/// The reply is not an answer, is empty, or its outcome is malformed.
pub fn answer(reply: &pb::ForwardReply) -> Result<ForwardResult, DecodeError> {
    Ok(match reply.result.clone().ok_or(DecodeError::Empty)? {
        Answer::Outcome(json) => Ok(serde_json::from_slice(&json)?),
        Answer::NotLeader(not_leader) => Err(ForwardError::NotLeader {
            leader: not_leader.leader.map(|l| (l.id, Member { addr: l.addr })),
        }),
        Answer::Storage(cause) => Err(ForwardError::Storage(cause)),
        Answer::Unavailable(cause) => Err(ForwardError::Unavailable(cause)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermark::{Refusal, Verdict};

    #[test]
    fn every_answer_survives_the_wire() {
        let answers: Vec<ForwardResult> = vec![
            Ok(Outcome::Granted(Verdict::Sign(b"bytes".to_vec()))),
            Ok(Outcome::Raised(Err(Refusal::HeightRegression {
                got: 1,
                last: 2,
            }))),
            Err(ForwardError::NotLeader { leader: None }),
            Err(ForwardError::NotLeader {
                leader: Some((
                    2,
                    Member {
                        addr: "n2:1".into(),
                    },
                )),
            }),
            Err(ForwardError::Storage("disk full".into())),
            Err(ForwardError::Unavailable("commit timed out".into())),
        ];
        for sent in answers {
            let received = answer(&reply(&sent).expect("encode")).expect("decode");
            assert_eq!(received, sent);
        }
    }

    #[test]
    fn a_forwarded_batch_is_refused_and_a_single_command_is_not() {
        let raise = Command::Raise {
            chain_id: "c".into(),
            state: Default::default(),
            by: Default::default(),
        };
        let single = request(&raise).expect("encode");
        assert_eq!(command(&single).expect("decode"), raise);
        let batch = request(&Command::Batch(vec![raise])).expect("encode");
        assert!(matches!(command(&batch), Err(DecodeError::Batch)));
    }

    #[test]
    fn an_empty_reply_does_not_decode() {
        let empty = pb::ForwardReply { result: None };
        assert!(matches!(answer(&empty), Err(DecodeError::Empty)));
    }
}
