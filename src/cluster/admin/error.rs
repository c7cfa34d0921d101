//! [`ClientError`]: why an operator's admin call failed, by what the
//! caller can do about it.

use std::time::Duration;

use tonic::Status as GrpcStatus;

use super::status::LEADER_ADDR;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection to the node.
    #[error("cannot reach {addr}: {}", chain(.source))]
    Unreachable {
        /// The node.
        addr: String,
        /// The cause.
        source: tonic::transport::Error,
    },
    /// No answer within the client's timeout.
    #[error("{addr}: no answer within {after:?}")]
    Timeout {
        /// The node.
        addr: String,
        /// The timeout.
        after: Duration,
    },
    /// The node does not accept the caller's certificate for this call.
    #[error("{addr}: permission denied: {message}")]
    PermissionDenied {
        /// The node.
        addr: String,
        /// The node's explanation.
        message: String,
    },
    /// The node does not lead, and following its hints found no leader.
    #[error("{addr}: {message}")]
    NotLeader {
        /// The node that answered last.
        addr: String,
        /// The leader's address, when the node knows it.
        leader: Option<String>,
        /// The node's explanation.
        message: String,
    },
    /// The node, or its state machine, refused: the change is unsafe, makes
    /// no sense, or (for a raise) the state is not above the watermark.
    #[error("{addr}: {reason}")]
    Refused {
        /// The node.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The node cannot do it now: no leader, no quorum, or the call failed
    /// on the way.
    #[error("{addr}: {}", status_text(.status))]
    Unavailable {
        /// The node.
        addr: String,
        /// The node's (or the transport's) answer.
        status: GrpcStatus,
    },
    /// The answer does not decode.
    #[error("{addr}: undecodable answer: {source}")]
    BadReply {
        /// The node.
        addr: String,
        /// The cause.
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The error for `status`, answered by the node at `addr`.
    pub(crate) fn from_status(addr: &str, status: GrpcStatus) -> ClientError {
        let addr = addr.to_string();
        let message = status.message().to_string();
        match status.code() {
            tonic::Code::PermissionDenied => ClientError::PermissionDenied { addr, message },
            tonic::Code::FailedPrecondition => match leader_hint(&status) {
                Some(leader) => ClientError::NotLeader {
                    addr,
                    leader: Some(leader),
                    message,
                },
                None => ClientError::Refused {
                    addr,
                    reason: message,
                },
            },
            tonic::Code::InvalidArgument => ClientError::Refused {
                addr,
                reason: message,
            },
            _ => ClientError::Unavailable { addr, status },
        }
    }
}

/// The leader's address a not-leader answer carries.
fn leader_hint(status: &GrpcStatus) -> Option<String> {
    status
        .metadata()
        .get(LEADER_ADDR)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A status's message, with the transport's causes when it has them.
fn status_text(status: &GrpcStatus) -> String {
    match std::error::Error::source(status) {
        Some(source) => format!("{}: {}", status.message(), chain(source)),
        None => status.message().to_string(),
    }
}

/// `e` and its causes, on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_their_kind_of_failure() {
        let denied = GrpcStatus::permission_denied("needs an operator certificate");
        assert!(matches!(
            ClientError::from_status("n1:1", denied),
            ClientError::PermissionDenied { .. }
        ));

        let mut not_leader = GrpcStatus::failed_precondition("not the leader");
        not_leader
            .metadata_mut()
            .insert(LEADER_ADDR, "n2:1".parse().expect("metadata"));
        match ClientError::from_status("n1:1", not_leader) {
            ClientError::NotLeader { leader, .. } => assert_eq!(leader.as_deref(), Some("n2:1")),
            other => panic!("{other:?}"),
        }

        let refused = GrpcStatus::failed_precondition("refused: node 4 is not a learner");
        match ClientError::from_status("n1:1", refused) {
            ClientError::Refused { reason, .. } => assert!(reason.contains("not a learner")),
            other => panic!("{other:?}"),
        }

        let no_quorum = GrpcStatus::unavailable("no leader known");
        let e = ClientError::from_status("n1:1", no_quorum);
        assert!(matches!(e, ClientError::Unavailable { .. }));
        assert_eq!(e.to_string(), "n1:1: no leader known");
    }
}
