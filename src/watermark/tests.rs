//! The double-sign rules, case by case, then as random streams.

use super::*;
use proptest::prelude::*;

fn pos(height: i64, round: i32, step: Step) -> Position {
    Position {
        height,
        round,
        step,
    }
}

fn attempt(p: Position, bytes: &[u8]) -> Attempt {
    Attempt {
        extension: None,
        position: p,
        sign_bytes: bytes.to_vec(),
        origin: None,
    }
}

fn state_at(p: Position, bytes: &[u8]) -> SignState {
    SignState {
        position: Some(p),
        sign_bytes: bytes.to_vec(),
        signature: None,
        owner: None,
    }
}

/// Canonical prevote sign bytes at height 5 with a timestamp and block hash.
fn prevote(seconds: u8, block: u8) -> Vec<u8> {
    let mut msg = vec![0x08, 0x01];
    msg.extend([0x11, 5, 0, 0, 0, 0, 0, 0, 0]);
    msg.extend([0x19, 0, 0, 0, 0, 0, 0, 0, 0]);
    msg.extend([0x22, 0x02, 0x0a, block]); // block_id { hash }
    msg.extend([0x2a, 0x02, 0x08, seconds]); // timestamp { seconds }
    msg.extend([0x32, 0x01, b'c']);
    let mut out = vec![msg.len() as u8];
    out.extend(msg);
    out
}

fn check(state: &SignState, a: &Attempt, expected: Decision) {
    assert_eq!(decide(state, a), expected, "state {state:?}, attempt {a:?}");
}

#[test]
fn empty_state_grants_anything() {
    check(
        &SignState::default(),
        &attempt(pos(1, 0, Step::Propose), b"x"),
        Decision::Advance,
    );
}

#[test]
fn higher_positions_advance() {
    let s = state_at(pos(5, 1, Step::Prevote), b"a");
    for p in [
        pos(5, 1, Step::Precommit),
        pos(5, 2, Step::Propose),
        pos(6, 0, Step::Propose),
    ] {
        check(&s, &attempt(p, b"b"), Decision::Advance);
    }
}

#[test]
fn regressions_are_refused_with_their_kind() {
    let s = state_at(pos(5, 1, Step::Prevote), b"a");
    check(
        &s,
        &attempt(pos(4, 9, Step::Precommit), b"a"),
        Decision::Refuse(Refusal::HeightRegression { got: 4, last: 5 }),
    );
    check(
        &s,
        &attempt(pos(5, 0, Step::Precommit), b"a"),
        Decision::Refuse(Refusal::RoundRegression {
            height: 5,
            got: 0,
            last: 1,
        }),
    );
    check(
        &s,
        &attempt(pos(5, 1, Step::Propose), b"a"),
        Decision::Refuse(Refusal::StepRegression {
            height: 5,
            round: 1,
            got: Step::Propose,
            last: Step::Prevote,
        }),
    );
}

#[test]
fn identical_bytes_repeat() {
    let p = pos(5, 0, Step::Prevote);
    let s = state_at(p, &prevote(1, 0xaa));
    check(
        &s,
        &attempt(p, &prevote(1, 0xaa)),
        Decision::Repeat {
            sign_bytes: prevote(1, 0xaa),
        },
    );
}

#[test]
fn timestamp_only_change_repeats_the_stored_bytes() {
    let p = pos(5, 0, Step::Prevote);
    let s = state_at(p, &prevote(1, 0xaa));
    check(
        &s,
        &attempt(p, &prevote(2, 0xaa)),
        Decision::Repeat {
            sign_bytes: prevote(1, 0xaa),
        },
    );
}

#[test]
fn any_other_change_conflicts() {
    let p = pos(5, 0, Step::Prevote);
    let s = state_at(p, &prevote(1, 0xaa));
    check(
        &s,
        &attempt(p, &prevote(1, 0xbb)),
        Decision::Refuse(Refusal::ConflictingData { position: p }),
    );
    check(
        &s,
        &attempt(p, b"not canonical"),
        Decision::Refuse(Refusal::ConflictingData { position: p }),
    );
}

#[test]
fn same_position_without_stored_bytes_is_refused() {
    let p = pos(5, 0, Step::Prevote);
    check(
        &state_at(p, b""),
        &attempt(p, &prevote(1, 0xaa)),
        Decision::Refuse(Refusal::NoSignBytes { position: p }),
    );
}

#[test]
fn height_owner_keeps_the_height() {
    let mut s = SignState::default();
    let owned = |p, bytes: &[u8], origin: &str| Attempt {
        extension: None,
        origin: Some(origin.to_string()),
        ..attempt(p, bytes)
    };
    let p1 = pos(7, 0, Step::Propose);
    assert_eq!(
        grant(&mut s, &owned(p1, b"a", "val-a")).0,
        Verdict::Sign(b"a".to_vec())
    );
    assert_eq!(s.owner.as_deref(), Some("val-a"));
    // The other validator node gets a repeat of what was granted...
    assert_eq!(
        grant(&mut s, &owned(p1, b"a", "val-b")).0,
        Verdict::Sign(b"a".to_vec())
    );
    // ...but nothing new at this height.
    let p2 = pos(7, 0, Step::Prevote);
    assert_eq!(
        grant(&mut s, &owned(p2, b"b", "val-b")).0,
        Verdict::Refuse(Refusal::HeightOwned {
            height: 7,
            owner: "val-a".into()
        })
    );
    assert_eq!(
        grant(&mut s, &owned(p2, b"b", "val-a")).0,
        Verdict::Sign(b"b".to_vec())
    );
    // Ownership moves freely at the next height.
    let p3 = pos(8, 0, Step::Propose);
    assert_eq!(
        grant(&mut s, &owned(p3, b"c", "val-b")).0,
        Verdict::Sign(b"c".to_vec())
    );
    assert_eq!(s.owner.as_deref(), Some("val-b"));
}

#[test]
fn grant_reports_when_state_must_be_persisted() {
    let mut s = SignState::default();
    let p = pos(1, 0, Step::Prevote);
    assert_eq!(
        grant(&mut s, &attempt(p, b"a")),
        (Verdict::Sign(b"a".to_vec()), true)
    );
    assert_eq!(
        grant(&mut s, &attempt(p, b"a")),
        (Verdict::Sign(b"a".to_vec()), false)
    );
    let (v, changed) = grant(&mut s, &attempt(p, b"b"));
    assert!(matches!(
        v,
        Verdict::Refuse(Refusal::ConflictingData { .. })
    ));
    assert!(!changed);
}

#[test]
fn raise_never_lowers() {
    let mut s = state_at(pos(10, 0, Step::Precommit), b"a");
    assert!(raise(&mut s, &state_at(pos(9, 0, Step::Precommit), b"x")).is_err());
    assert!(raise(&mut s, &SignState::default()).is_err());
    assert_eq!(s.position, Some(pos(10, 0, Step::Precommit)));
    raise(&mut s, &state_at(pos(11, 0, Step::Propose), b"y")).unwrap();
    assert_eq!(s.position, Some(pos(11, 0, Step::Propose)));
}

fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Propose),
        Just(Step::Prevote),
        Just(Step::Precommit)
    ]
}

/// An attempt over a small space, so collisions at one position are common:
/// heights 1..4, rounds 0..2, two block ids, two timestamps.
fn any_attempt() -> impl Strategy<Value = Attempt> {
    (1i64..4, 0i32..2, any_step(), 0u8..2, 0u8..2).prop_map(|(h, r, step, ts, block)| {
        let mut bytes = prevote(ts, block);
        bytes.extend(h.to_le_bytes()); // distinct positions never share bytes
        bytes.push(r as u8);
        bytes.push(step as u8);
        // Re-frame so the payload stays a single canonical message.
        let body = bytes[1..].to_vec();
        let mut framed = vec![body.len() as u8];
        framed.extend(body);
        attempt(pos(h, r, step), &framed)
    })
}

#[derive(Clone, Debug)]
enum Event {
    Request(Attempt),
    /// Crash and reload from the last persisted state.
    Restart,
}

fn any_event() -> impl Strategy<Value = Event> {
    prop_oneof![8 => any_attempt().prop_map(Event::Request), 1 => Just(Event::Restart)]
}

proptest! {
    /// Random request streams with restarts never sign two different
    /// payloads (beyond a timestamp) for one position, and the persisted
    /// watermark never moves down.
    #[test]
    fn one_payload_per_position(events in prop::collection::vec(any_event(), 1..200)) {
        let mut persisted = SignState::default();
        let mut live = persisted.clone();
        let mut signed: std::collections::BTreeMap<Position, Vec<u8>> = Default::default();
        for event in events {
            match event {
                Event::Restart => live = persisted.clone(),
                Event::Request(a) => {
                    let (verdict, changed) = grant(&mut live, &a);
                    if changed {
                        prop_assert!(live.position >= persisted.position);
                        persisted = live.clone();
                    }
                    if let Verdict::Sign(bytes) = verdict {
                        let first = signed.entry(a.position).or_insert_with(|| bytes.clone());
                        prop_assert_eq!(&*first, &bytes, "two payloads signed at {}", a.position);
                    }
                }
            }
        }
    }
}
