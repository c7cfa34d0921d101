//! Malformed and oversized frames get error replies and the node keeps
//! serving on the same connection.

use crate::support::{Single, Transport};
use quorumkms::privval::Version;
use quorumkms::validator::SignOutcome;

#[tokio::test]
async fn garbage_gets_an_error_and_the_node_keeps_serving() {
    let mut s = Single::start(Version::V0_38, Transport::Unix).await;
    for body in [
        &[0xff, 0xff, 0xff][..],         // not protobuf
        &[0x0a, 0x05, 0x01][..],         // truncated pub key request
        &[0x9a, 0x05, 0x00][..],         // unknown oneof field
        &[0x1a, 0x03, 0x0a, 0x01, 0x08], // sign vote request with a broken vote
    ] {
        let reply = s.validator.send_raw(body).await.expect("a reply");
        let error = reply
            .error()
            .unwrap_or_else(|| panic!("no error for {body:?}: {reply:?}"));
        assert_eq!(error.code, quorumkms::session::code::MALFORMED, "{error:?}");
    }
    let signed = s.validator.sign_vote(s.prevote(1, 0, 0, 0)).await;
    assert!(matches!(signed, SignOutcome::Signed { .. }), "{signed:?}");
    assert_eq!(s.validator.accepted, 1);
}

#[tokio::test]
async fn an_oversized_frame_is_refused_without_losing_the_connection() {
    let mut s = Single::start(Version::V0_38, Transport::Tcp).await;
    // 2 MiB: over the default 1 MiB limit.
    let body = vec![0u8; 2 << 20];
    let reply = s.validator.send_raw(&body).await.expect("a reply");
    let error = reply.error().expect("an error reply");
    assert!(
        error.description.contains("too large") || error.description.contains("exceeds"),
        "{error:?}"
    );
    let signed = s.validator.sign_vote(s.prevote(1, 0, 0, 0)).await;
    assert!(matches!(signed, SignOutcome::Signed { .. }), "{signed:?}");
    assert_eq!(s.validator.accepted, 1);
}
