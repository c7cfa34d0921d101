//! Unit tests for request decoding, validation and replies.

use super::response::{Kind, error_for};
use super::*;
use tendermint_proto::v0_38::types::PartSetHeader;

fn block_id() -> BlockId {
    BlockId {
        hash: vec![0xab; 32],
        part_set_header: Some(PartSetHeader {
            total: 1,
            hash: vec![0xcd; 32],
        }),
    }
}

fn ts(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 5 }
}

fn vote(msg_type: SignedMsgType, nil: bool, extension: &[u8]) -> Vote {
    Vote {
        r#type: msg_type as i32,
        height: 10,
        round: 1,
        block_id: (!nil).then(block_id),
        timestamp: Some(ts(1_700_000_000)),
        validator_address: vec![1; 20],
        validator_index: 3,
        extension: extension.to_vec(),
        ..Vote::default()
    }
}

fn proposal() -> Proposal {
    Proposal {
        r#type: SignedMsgType::Proposal as i32,
        height: 10,
        round: 2,
        pol_round: -1,
        block_id: Some(block_id()),
        timestamp: Some(ts(1_700_000_000)),
        signature: Vec::new(),
    }
}

fn vote_body(version: Version, vote: Vote, skip: bool) -> Vec<u8> {
    version.encode(&Wire::SignVoteRequest {
        vote: Some(vote),
        chain_id: "chain".into(),
        skip_extension_signing: skip,
    })
}

fn proposal_body(version: Version, proposal: Proposal) -> Vec<u8> {
    version.encode(&Wire::SignProposalRequest {
        proposal: Some(proposal),
        chain_id: "chain".into(),
    })
}

fn sign(request: Request) -> SignRequest {
    match request {
        Request::Sign(s) => s,
        other => panic!("not a sign request: {other:?}"),
    }
}

fn malformed_reason(result: Result<Request, CodecError>) -> String {
    match result {
        Err(CodecError::Malformed(reason)) => reason,
        other => panic!("expected malformed, got {other:?}"),
    }
}

#[test]
fn version_names_round_trip() {
    for v in Version::ALL {
        assert_eq!(v.to_string().parse::<Version>(), Ok(v));
        let json = serde_json::to_string(&v).expect("serialize");
        assert_eq!(json, format!("\"{v}\""));
        assert_eq!(
            serde_json::from_str::<Version>(&json).expect("deserialize"),
            v
        );
    }
    assert_eq!("0.38".parse::<Version>(), Ok(Version::V0_38));
    assert!("v0.35".parse::<Version>().is_err());
}

#[test]
fn precommit_gets_extension_sign_bytes_in_v0_38_and_v1() {
    for version in [Version::V0_38, Version::V1_0] {
        let v = vote(SignedMsgType::Precommit, false, b"ext");
        let req =
            sign(Request::decode(version, &vote_body(version, v.clone(), false)).expect("decode"));
        assert_eq!(req.chain_id, "chain");
        assert_eq!(
            req.position,
            Position {
                height: 10,
                round: 1,
                step: Step::Precommit
            }
        );
        assert_eq!(req.sign_bytes, sign_bytes::vote("chain", &v));
        assert_eq!(
            req.extension_sign_bytes,
            Some(sign_bytes::vote_extension("chain", &v))
        );
        // An empty extension is still signed for a non-nil precommit.
        let v = vote(SignedMsgType::Precommit, false, b"");
        let req = sign(Request::decode(version, &vote_body(version, v, false)).expect("decode"));
        assert!(req.extension_sign_bytes.is_some());
    }
}

#[test]
fn no_extension_sign_bytes_before_v0_38_or_for_prevotes_and_nil_precommits() {
    for version in [Version::V0_34, Version::V0_37] {
        let v = vote(SignedMsgType::Precommit, false, b"");
        let req = sign(Request::decode(version, &vote_body(version, v, false)).expect("decode"));
        assert_eq!(req.extension_sign_bytes, None);
    }
    for (t, nil) in [
        (SignedMsgType::Prevote, false),
        (SignedMsgType::Precommit, true),
    ] {
        let v = vote(t, nil, b"");
        let req = sign(
            Request::decode(Version::V0_38, &vote_body(Version::V0_38, v, false)).expect("decode"),
        );
        assert_eq!(req.extension_sign_bytes, None);
    }
}

#[test]
fn unexpected_extensions_are_refused() {
    for (t, nil) in [
        (SignedMsgType::Prevote, false),
        (SignedMsgType::Precommit, true),
    ] {
        let body = vote_body(Version::V0_38, vote(t, nil, b"ext"), false);
        let reason = malformed_reason(Request::decode(Version::V0_38, &body));
        assert!(reason.contains("unexpected vote extension"), "{reason}");
    }
}

#[test]
fn v1_skip_extension_signing() {
    let body = vote_body(
        Version::V1_0,
        vote(SignedMsgType::Precommit, false, b"ext"),
        true,
    );
    let req = sign(Request::decode(Version::V1_0, &body).expect("decode"));
    assert!(req.skip_extension_signing());
    assert_eq!(req.extension_sign_bytes, None);
    // FilePV checks nothing about extensions when it does not sign them.
    let body = vote_body(
        Version::V1_0,
        vote(SignedMsgType::Prevote, false, b"ext"),
        true,
    );
    assert!(Request::decode(Version::V1_0, &body).is_ok());
    // The flag survives a round trip.
    let req = Request::decode(Version::V1_0, &body).expect("decode");
    assert_eq!(req.encode(Version::V1_0), body);
}

#[test]
fn v0_34_ignores_extension_fields_on_the_wire() {
    // A v0.38 encoding with an extension, read as v0.34: fields 9 and 10 are
    // unknown there, so the vote has no extension.
    let v = vote(SignedMsgType::Precommit, false, b"ext");
    let body = vote_body(Version::V0_38, v, false);
    let req = sign(Request::decode(Version::V0_34, &body).expect("decode"));
    assert_eq!(req.vote().map(|v| v.extension.len()), Some(0));
    assert_eq!(req.extension_sign_bytes, None);
}

#[test]
fn wrong_types_are_refused() {
    let mut v = vote(SignedMsgType::Prevote, false, b"");
    v.r#type = SignedMsgType::Proposal as i32;
    let reason = malformed_reason(Request::decode(
        Version::V0_38,
        &vote_body(Version::V0_38, v, false),
    ));
    assert!(reason.contains("type 32"), "{reason}");
    let mut v = vote(SignedMsgType::Prevote, false, b"");
    v.r#type = 0;
    assert!(Request::decode(Version::V0_38, &vote_body(Version::V0_38, v, false)).is_err());

    let mut p = proposal();
    p.r#type = SignedMsgType::Prevote as i32;
    let reason = malformed_reason(Request::decode(
        Version::V0_37,
        &proposal_body(Version::V0_37, p),
    ));
    assert!(reason.contains("type 1"), "{reason}");
}

#[test]
fn negative_heights_rounds_and_pol_rounds_are_refused() {
    let mut v = vote(SignedMsgType::Prevote, false, b"");
    v.height = -1;
    assert!(
        malformed_reason(Request::decode(
            Version::V0_34,
            &vote_body(Version::V0_34, v, false)
        ))
        .contains("height")
    );
    let mut v = vote(SignedMsgType::Prevote, false, b"");
    v.round = -1;
    assert!(
        malformed_reason(Request::decode(
            Version::V0_34,
            &vote_body(Version::V0_34, v, false)
        ))
        .contains("round")
    );
    let mut p = proposal();
    p.round = -2;
    assert!(Request::decode(Version::V1_0, &proposal_body(Version::V1_0, p)).is_err());
    let mut p = proposal();
    p.pol_round = -2;
    assert!(Request::decode(Version::V1_0, &proposal_body(Version::V1_0, p)).is_err());
    // Height 0 is accepted (the watermark decides about it).
    let mut p = proposal();
    p.height = 0;
    assert!(Request::decode(Version::V1_0, &proposal_body(Version::V1_0, p)).is_ok());
}

#[test]
fn bad_timestamps_and_block_ids_are_refused() {
    let mut v = vote(SignedMsgType::Prevote, false, b"");
    v.timestamp = Some(Timestamp {
        seconds: 0,
        nanos: -1,
    });
    assert!(Request::decode(Version::V0_38, &vote_body(Version::V0_38, v, false)).is_err());
    let mut v = vote(SignedMsgType::Prevote, false, b"");
    v.timestamp = Some(Timestamp {
        seconds: sign_bytes::GO_ZERO_TIME_SECONDS - 1,
        nanos: 0,
    });
    assert!(Request::decode(Version::V0_38, &vote_body(Version::V0_38, v, false)).is_err());
    let mut p = proposal();
    p.block_id = Some(BlockId {
        hash: vec![1; 31],
        part_set_header: None,
    });
    let reason = malformed_reason(Request::decode(
        Version::V0_38,
        &proposal_body(Version::V0_38, p),
    ));
    assert!(reason.contains("31 bytes"), "{reason}");
}

#[test]
fn missing_vote_or_proposal_is_refused() {
    let body = Version::V0_38.encode(&Wire::SignVoteRequest {
        vote: None,
        chain_id: "c".into(),
        skip_extension_signing: false,
    });
    assert!(malformed_reason(Request::decode(Version::V0_38, &body)).contains("without a vote"));
    let body = Version::V1_0.encode(&Wire::SignProposalRequest {
        proposal: None,
        chain_id: "c".into(),
    });
    assert!(malformed_reason(Request::decode(Version::V1_0, &body)).contains("without a proposal"));
}

#[test]
fn responses_unknown_fields_and_garbage_are_malformed() {
    for version in Version::ALL {
        let pong = Response::pong().encode(version);
        assert!(malformed_reason(Request::decode(version, &pong)).contains("ping_response"));
        // Field 11 (unknown in every version), empty message.
        assert_eq!(
            malformed_reason(Request::decode(version, &[0x5a, 0x00])),
            "unknown message field 11"
        );
        assert_eq!(
            malformed_reason(Request::decode(version, &[])),
            "empty message"
        );
        assert!(Request::decode(version, &[0x1a, 0x05, 0x01]).is_err());
        assert!(Request::decode(version, &[0xff; 12]).is_err());
    }
    // Sign-bytes requests exist only in v1.0.
    assert_eq!(
        Request::decode(Version::V1_0, &[0x4a, 0x02, 0x0a, 0x00]),
        Ok(Request::SignRawBytes { bytes: Vec::new() })
    );
    assert_eq!(
        malformed_reason(Request::decode(Version::V0_38, &[0x4a, 0x02, 0x0a, 0x00])),
        "unknown message field 9"
    );
}

#[test]
fn requests_round_trip_in_every_version() {
    for version in Version::ALL {
        let mut requests = vec![
            Request::Ping,
            Request::PubKey {
                chain_id: "chain".into(),
            },
            Request::Sign(
                SignRequest::from_proposal("chain".into(), proposal()).expect("proposal"),
            ),
            Request::Sign(
                SignRequest::from_vote(
                    version,
                    "chain".into(),
                    vote(SignedMsgType::Prevote, false, b""),
                    false,
                )
                .expect("vote"),
            ),
        ];
        if version == Version::V1_0 {
            requests.push(Request::SignRawBytes { bytes: vec![1, 2] });
        }
        for req in requests {
            let body = req.encode(version);
            assert_eq!(
                Request::decode(version, &body).as_ref(),
                Ok(&req),
                "{version}"
            );
        }
    }
}

#[test]
fn from_vote_refuses_extension_fields_in_old_versions() {
    let v = vote(SignedMsgType::Precommit, false, b"ext");
    assert!(SignRequest::from_vote(Version::V0_37, "c".into(), v.clone(), false).is_err());
    let v0 = vote(SignedMsgType::Precommit, false, b"");
    assert!(SignRequest::from_vote(Version::V0_38, "c".into(), v0, true).is_err());
    assert!(SignRequest::from_vote(Version::V0_38, "c".into(), v, false).is_ok());
}

#[test]
fn vote_reply_carries_the_granted_timestamp_and_signatures() {
    let v = vote(SignedMsgType::Precommit, false, b"ext");
    let req =
        SignRequest::from_vote(Version::V0_38, "chain".into(), v.clone(), false).expect("vote");
    // The granted bytes are stored ones with an earlier timestamp.
    let mut earlier = v.clone();
    earlier.timestamp = Some(ts(1_600_000_000));
    let granted = sign_bytes::vote("chain", &earlier);
    let reply = req.reply(&granted, [7; 64], Some([8; 64]));
    let Response::SignedVote {
        vote: signed,
        error,
    } = &reply
    else {
        panic!("not a vote reply: {reply:?}");
    };
    assert_eq!(error, &None);
    assert_eq!(signed.timestamp, earlier.timestamp);
    assert_eq!(signed.signature, vec![7; 64]);
    assert_eq!(signed.extension_signature, vec![8; 64]);
    assert_eq!(signed.extension, b"ext".to_vec());
    assert_eq!(sign_bytes::vote("chain", signed), granted);
    // It survives encoding in its version.
    let decoded = Response::decode(Version::V0_38, &reply.encode(Version::V0_38)).expect("decode");
    assert_eq!(decoded, reply);
}

#[test]
fn vote_reply_extension_signature_rules() {
    // A prevote in v0.38: the signer owns the extension signature and clears it.
    let mut v = vote(SignedMsgType::Prevote, false, b"");
    v.extension_signature = vec![9; 64];
    let req = SignRequest::from_vote(Version::V0_38, "c".into(), v.clone(), false).expect("vote");
    let Response::SignedVote { vote: signed, .. } = req.reply(&req.sign_bytes, [1; 64], None)
    else {
        panic!("not a vote reply");
    };
    assert!(signed.extension_signature.is_empty());
    // v1.0 with skip_extension_signing: echoed untouched.
    let req = SignRequest::from_vote(Version::V1_0, "c".into(), v, true).expect("vote");
    let Response::SignedVote { vote: signed, .. } = req.reply(&req.sign_bytes, [1; 64], None)
    else {
        panic!("not a vote reply");
    };
    assert_eq!(signed.extension_signature, vec![9; 64]);
}

#[test]
fn proposal_reply_carries_the_granted_timestamp() {
    let p = proposal();
    let req = SignRequest::from_proposal("chain".into(), p.clone()).expect("proposal");
    assert_eq!(req.position.step, Step::Propose);
    assert_eq!(req.proposal(), Some(&p));
    assert_eq!(req.vote(), None);
    let mut earlier = p.clone();
    earlier.timestamp = Some(ts(1));
    let granted = sign_bytes::proposal("chain", &earlier);
    let Response::SignedProposal {
        proposal: signed,
        error,
    } = req.reply(&granted, [3; 64], None)
    else {
        panic!("not a proposal reply");
    };
    assert_eq!(error, None);
    assert_eq!(signed.timestamp, earlier.timestamp);
    assert_eq!(signed.signature, vec![3; 64]);
}

#[test]
fn error_replies_match_the_request_kind() {
    let vote_req = Request::Sign(
        SignRequest::from_vote(
            Version::V0_34,
            "c".into(),
            vote(SignedMsgType::Prevote, true, b""),
            false,
        )
        .expect("vote"),
    );
    let proposal_req =
        Request::Sign(SignRequest::from_proposal("c".into(), proposal()).expect("proposal"));
    let cases = [
        (Request::Ping, Response::Pong),
        (
            Request::PubKey {
                chain_id: "c".into(),
            },
            error_for(Kind::PubKey, 2, "no"),
        ),
        (vote_req, error_for(Kind::Vote, 2, "no")),
        (proposal_req, error_for(Kind::Proposal, 2, "no")),
        (
            Request::SignRawBytes { bytes: vec![] },
            error_for(Kind::Bytes, 2, "no"),
        ),
    ];
    for (req, want) in cases {
        let got = error_reply(&req, 2, "no");
        assert_eq!(got, want);
        if !matches!(req, Request::Ping) {
            assert_eq!(
                got.error(),
                Some(&RemoteError {
                    code: 2,
                    description: "no".into()
                })
            );
        }
    }
}

#[test]
fn malformed_bodies_still_get_replies_of_their_kind() {
    let mut bad_vote = vote(SignedMsgType::Prevote, false, b"");
    bad_vote.height = -5;
    let body = vote_body(Version::V0_38, bad_vote, false);
    assert!(Request::decode(Version::V0_38, &body).is_err());
    let reply = error_reply_for_malformed(Version::V0_38, &body, 1, "bad").expect("reply");
    assert!(matches!(reply, Response::SignedVote { error: Some(_), .. }));
    // Truncated proposal request: the first key is still readable.
    let body = proposal_body(Version::V0_34, proposal());
    let reply = error_reply_for_malformed(Version::V0_34, &body[..5], 1, "bad").expect("reply");
    assert!(matches!(
        reply,
        Response::SignedProposal { error: Some(_), .. }
    ));
    assert!(matches!(
        error_reply_for_malformed(Version::V1_0, &[0x0a, 0xff], 1, "bad"),
        Some(Response::PubKey {
            key: None,
            error: Some(_)
        })
    ));
    assert!(matches!(
        error_reply_for_malformed(Version::V1_0, &[0x4a, 0x01], 1, "bad"),
        Some(Response::SignedBytes { .. })
    ));
    assert_eq!(
        error_reply_for_malformed(Version::V0_38, &[0x4a, 0x01], 1, "bad"),
        None
    );
    assert_eq!(
        error_reply_for_malformed(Version::V0_38, &[0x12, 0x00], 1, "bad"),
        None
    );
    assert_eq!(
        error_reply_for_malformed(Version::V0_38, &[], 1, "bad"),
        None
    );
}

#[test]
fn responses_are_refused_as_responses_when_they_are_requests() {
    let body = Request::Ping.encode(Version::V0_38);
    assert!(matches!(
        Response::decode(Version::V0_38, &body),
        Err(CodecError::Malformed(reason)) if reason.contains("ping_request")
    ));
}

mod key_types {
    use crate::keys::{KeyType, PublicKey};
    use crate::privval::{Response, Version};

    fn secp() -> PublicKey {
        let bytes =
            hex::decode("02950e1cdfcb133d6024109fd489f734eeb4502418e538c28481f22bce276f248c")
                .unwrap();
        PublicKey::from_type_and_bytes(KeyType::Secp256k1, &bytes).unwrap()
    }

    /// v1.0 `PubKeyResponse`: field 3 the raw key, field 4 its type name.
    #[test]
    fn v1_pub_key_response_carries_secp256k1() {
        let key = secp();
        let body = Response::pub_key(key).encode(Version::V1_0);
        // Message.pub_key_response (field 2) { pub_key_bytes (3), pub_key_type (4) }
        let mut inner = vec![0x1a, 33];
        inner.extend_from_slice(key.as_bytes());
        inner.extend_from_slice(&[0x22, 9]);
        inner.extend_from_slice(b"secp256k1");
        let mut expected = vec![0x12, inner.len() as u8];
        expected.extend_from_slice(&inner);
        assert_eq!(body, expected);
        assert_eq!(
            Response::decode(Version::V1_0, &body).unwrap(),
            Response::pub_key(key)
        );
        let ed = Response::pub_key([5u8; 32]).encode(Version::V1_0);
        assert!(ed.windows(7).any(|w| w == b"ed25519"));
    }

    #[test]
    fn bad_keys_in_a_reply_do_not_decode() {
        let mut body = Response::pub_key(secp()).encode(Version::V1_0);
        // Corrupt the point's prefix byte.
        body[4] = 0x07;
        assert!(Response::decode(Version::V1_0, &body).is_err());
        for version in [Version::V0_34, Version::V0_37, Version::V0_38] {
            let body = Response::pub_key(secp()).encode(version);
            assert_eq!(
                Response::decode(version, &body).unwrap(),
                Response::pub_key(secp())
            );
        }
    }

    #[test]
    fn only_v1_takes_secp256k1() {
        for version in Version::ALL {
            assert!(version.supports_key_type(KeyType::Ed25519));
            assert_eq!(
                version.supports_key_type(KeyType::Secp256k1),
                version == Version::V1_0
            );
        }
    }
}
