//! Unit tests for the cluster module: config validation, the pure apply
//! function, and openraft's storage conformance suite on both backends.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use tokio::sync::watch;

use super::config::{
    Config, Peer, default_election_timeout_max_ms, default_election_timeout_min_ms,
    default_grant_timeout_ms, default_heartbeat_interval_ms,
};
use super::state_machine::{AppliedState, StateMachine};
use super::store::{Backend, LogStore, MemBackend, RedbBackend};
use super::types::TypeConfig;
use super::types::typ::StorageError;

fn config(peers: &[(u64, &str)]) -> Config {
    Config {
        node_id: 1,
        listen: "127.0.0.1:7001".into(),
        peers: peers
            .iter()
            .map(|(id, addr)| Peer {
                id: *id,
                addr: addr.to_string(),
            })
            .collect(),
        data_dir: "/tmp/x".into(),
        election_timeout_min_ms: default_election_timeout_min_ms(),
        election_timeout_max_ms: default_election_timeout_max_ms(),
        heartbeat_interval_ms: default_heartbeat_interval_ms(),
        grant_timeout_ms: default_grant_timeout_ms(),
        tls: None,
        insecure_plaintext: false,
    }
}

#[test]
fn valid_configs_pass() {
    assert_eq!(config(&[(1, "127.0.0.1:7001")]).validate(), Ok(()));
    let mut three = config(&[(1, "a:1"), (2, "b:2"), (3, "c:3")]);
    three.insecure_plaintext = true;
    assert_eq!(three.validate(), Ok(()));
}

fn tls_files() -> super::tls::TlsConfig {
    super::tls::TlsConfig::new("ca.pem".into(), "node-1.pem".into(), "node-1.key".into())
}

#[test]
fn plaintext_off_loopback_is_refused_unless_asked_for() {
    let mut c = config(&[
        (1, "10.0.0.1:7100"),
        (2, "10.0.0.2:7100"),
        (3, "10.0.0.3:7100"),
    ]);
    c.listen = "0.0.0.0:7100".into();
    let text = c.validate().unwrap_err().join("\n");
    for needle in [
        "tls: required",
        "0.0.0.0:7100, 10.0.0.1:7100, 10.0.0.2:7100, 10.0.0.3:7100 are not loopback",
        "quorumkms cluster certs",
        "insecure_plaintext = true",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
    // Asked for by name, it runs.
    c.insecure_plaintext = true;
    assert_eq!(c.validate(), Ok(()));
    // With TLS, it runs; both at once is a mistake.
    c.tls = Some(tls_files());
    let text = c.validate().unwrap_err().join("\n");
    assert!(text.contains("contradicts tls"), "{text}");
    c.insecure_plaintext = false;
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn plaintext_needs_every_address_on_loopback() {
    // One host: loopback listen and peers run without TLS.
    for addrs in [
        ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"],
        ["localhost:7001", "[::1]:7002", "127.0.0.2:7003"],
    ] {
        let mut c = config(&[(1, addrs[0]), (2, addrs[1]), (3, addrs[2])]);
        c.listen = addrs[0].into();
        assert_eq!(c.validate(), Ok(()), "{addrs:?}");
    }
    // A loopback listener whose peers are elsewhere would dial them in
    // plaintext; a host name could resolve anywhere.
    for remote in ["10.0.0.2:7002", "signer-2.example:7002", "[::]:7002"] {
        let c = config(&[(1, "127.0.0.1:7001"), (2, remote), (3, "127.0.0.1:7003")]);
        let text = c.validate().unwrap_err().join("\n");
        assert!(
            text.contains(&format!("{remote} is not loopback")),
            "{text}"
        );
    }
}

#[test]
fn every_problem_is_reported() {
    let mut c = config(&[(2, "a:1"), (2, "a:1"), (3, "nope")]);
    c.insecure_plaintext = true;
    c.election_timeout_min_ms = 400;
    c.grant_timeout_ms = 6000;
    let problems = c.validate().unwrap_err();
    let text = problems.join("\n");
    for needle in [
        "id 1 is not listed",
        "id 2 is listed twice",
        "address a:1 is listed twice",
        "\"nope\" is not host:port",
        "election_timeout_min_ms (400) must be below",
        "grant_timeout_ms (6000) must be at most",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
}

#[test]
fn two_node_clusters_are_refused() {
    let mut c = config(&[(1, "a:1"), (2, "b:2")]);
    c.insecure_plaintext = true;
    assert!(c.validate().is_err());
}

#[test]
fn config_rejects_unknown_fields_and_fills_defaults() {
    let toml_text = r#"
        node_id = 1
        listen = "127.0.0.1:7001"
        data_dir = "/var/lib/quorumkms"
        peers = [{ id = 1, addr = "127.0.0.1:7001" }]
    "#;
    let c: Config = toml::from_str(toml_text).unwrap();
    assert_eq!(c.grant_timeout_ms, 2000);
    assert_eq!(c.heartbeat_interval_ms, 50);
    let bad = format!("{toml_text}\nsurprise = 1\n");
    assert!(toml::from_str::<Config>(&bad).is_err());
}

struct Builder<F>(F);

impl<F> StoreBuilder<TypeConfig, LogStore, StateMachine, Option<tempfile::TempDir>> for Builder<F>
where
    F: Fn() -> (Option<tempfile::TempDir>, Arc<dyn Backend>) + Send + Sync,
{
    async fn build(
        &self,
    ) -> Result<(Option<tempfile::TempDir>, LogStore, StateMachine), StorageError> {
        let (guard, backend) = (self.0)();
        let (tx, _) = watch::channel(Arc::new(AppliedState::default()));
        let sm = StateMachine::open(backend.clone(), tx)
            .map_err(|e| openraft::StorageIOError::read_state_machine(&e))?;
        Ok((guard, LogStore::new(backend), sm))
    }
}

#[test]
fn memory_store_passes_openraft_suite() {
    let builder = Builder(|| (None, Arc::new(MemBackend::new()) as Arc<dyn Backend>));
    Suite::test_all(builder).unwrap();
}

#[test]
fn redb_store_passes_openraft_suite() {
    let builder = Builder(|| {
        let dir = tempfile::tempdir().unwrap();
        let backend = RedbBackend::open(&dir.path().join("raft.redb")).unwrap();
        (Some(dir), Arc::new(backend) as Arc<dyn Backend>)
    });
    Suite::test_all(builder).unwrap();
}

#[cfg(feature = "sled")]
#[test]
fn sled_store_passes_openraft_suite() {
    let builder = Builder(|| {
        let dir = tempfile::tempdir().unwrap();
        let backend = super::store_sled::SledBackend::open(&dir.path().join("raft.sled")).unwrap();
        (Some(dir), Arc::new(backend) as Arc<dyn Backend>)
    });
    Suite::test_all(builder).unwrap();
}

/// A grant of a prevote at `height` (round 0) of `chain` for `bytes`.
pub(crate) fn prevote_grant(chain: &str, height: i64, bytes: &[u8]) -> super::types::Command {
    use crate::watermark::{Attempt, Position, Step};
    super::types::Command::Grant {
        chain_id: chain.into(),
        attempt: Attempt {
            extension: None,
            position: Position {
                height,
                round: 0,
                step: Step::Prevote,
            },
            sign_bytes: bytes.to_vec(),
            origin: None,
        },
        served: None,
    }
}

#[test]
fn apply_is_deterministic_and_answers_every_entry() {
    use super::state_machine::apply;
    use super::types::Outcome;
    use crate::watermark::{Refusal, Verdict};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    let log_id = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
    let grant = |height, bytes: &str| prevote_grant("c", height, bytes.as_bytes());
    let entries: Vec<Entry<TypeConfig>> = vec![
        Entry {
            log_id: log_id(1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(2),
            payload: EntryPayload::Normal(grant(5, "a")),
        },
        Entry {
            log_id: log_id(3),
            payload: EntryPayload::Normal(grant(5, "b")),
        },
        Entry {
            log_id: log_id(4),
            payload: EntryPayload::Normal(grant(4, "a")),
        },
    ];
    let run = || {
        let mut state = AppliedState::default();
        let outcomes: Vec<Outcome> = entries.iter().map(|e| apply(&mut state, e)).collect();
        (state, outcomes)
    };
    let (state, outcomes) = run();
    assert_eq!(run(), (state.clone(), outcomes.clone()));
    assert_eq!(state.last_applied, Some(log_id(4)));
    assert_eq!(outcomes[0], Outcome::None);
    assert_eq!(outcomes[1], Outcome::Granted(Verdict::Sign(b"a".to_vec())));
    assert!(matches!(
        outcomes[2],
        Outcome::Granted(Verdict::Refuse(Refusal::ConflictingData { .. }))
    ));
    assert!(matches!(
        outcomes[3],
        Outcome::Granted(Verdict::Refuse(Refusal::HeightRegression { .. }))
    ));
}

#[test]
fn a_batch_applies_its_commands_as_entries_of_their_own_would() {
    use super::state_machine::apply;
    use super::types::{Command, Outcome};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    let log_id = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
    let grant = |chain: &str, height, bytes: &str| prevote_grant(chain, height, bytes.as_bytes());
    // Two chains, a conflict and a regression inside one batch: each
    // command must see what the ones before it did.
    let commands = vec![
        grant("c", 5, "a"),
        grant("d", 9, "x"),
        grant("c", 5, "b"),
        grant("c", 4, "a"),
        grant("c", 6, "a"),
    ];
    let mut one_by_one = AppliedState::default();
    let singles: Vec<Outcome> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let entry = Entry::<TypeConfig> {
                log_id: log_id(i as u64 + 1),
                payload: EntryPayload::Normal(c.clone()),
            };
            apply(&mut one_by_one, &entry)
        })
        .collect();
    let mut batched = AppliedState::default();
    let batch = Entry::<TypeConfig> {
        log_id: log_id(5),
        payload: EntryPayload::Normal(Command::Batch(commands)),
    };
    let outcome = apply(&mut batched, &batch);
    assert_eq!(outcome, Outcome::Batch(singles));
    assert_eq!(batched.chains, one_by_one.chains);
    assert_eq!(batched.last_applied, Some(log_id(5)));
}

#[test]
fn a_raise_records_who_made_it_and_a_floor_fills_only_an_empty_chain() {
    use super::state_machine::apply;
    use super::types::{Command, Outcome, RaiseRecord, Raiser};
    use crate::watermark::{Position, SignState, Step};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    let at = |height| Position {
        height,
        round: 0,
        step: Step::Precommit,
    };
    let raise = |index, chain: &str, height, by: Raiser| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command::Raise {
            chain_id: chain.into(),
            state: SignState {
                position: Some(at(height)),
                ..SignState::default()
            },
            by,
        }),
    };
    let floor = Raiser::Floor {
        source: "rpc http://127.0.0.1:26657".into(),
    };
    let mut state = AppliedState::default();
    assert_eq!(
        apply(&mut state, &raise(1, "a", 1000, floor.clone())),
        Outcome::Raised(Ok(()))
    );
    assert_eq!(
        state.raises["a"],
        RaiseRecord {
            by: floor.clone(),
            index: 1,
            position: Some(at(1000)),
        }
    );
    // A later floor finds a watermark and changes nothing, even if higher.
    apply(&mut state, &raise(2, "a", 2000, floor.clone()));
    assert_eq!(state.chains["a"].position, Some(at(1000)));
    assert_eq!(state.raises["a"].index, 1);
    // An operator's raise still applies and replaces the record.
    let alice = Raiser::Operator {
        serial: "0abc".into(),
        subject: "quorumkms operator alice".into(),
    };
    apply(&mut state, &raise(3, "a", 3000, alice.clone()));
    assert_eq!(state.chains["a"].position, Some(at(3000)));
    assert_eq!(
        (state.raises["a"].by.clone(), state.raises["a"].index),
        (alice, 3)
    );
}

#[test]
fn raises_and_states_from_before_the_record_still_decode() {
    use super::types::{Command, Raiser};

    let old_raise = r#"{"Raise":{"chain_id":"a","state":{"position":null,"sign_bytes":[],"signature":null,"owner":null}}}"#;
    let command: Command = serde_json::from_str(old_raise).expect("an old raise decodes");
    assert!(matches!(
        command,
        Command::Raise {
            by: Raiser::Unrecorded,
            ..
        }
    ));
    let old_state = serde_json::to_value(AppliedState::default()).expect("encode");
    let mut old_state = old_state.as_object().expect("an object").clone();
    old_state.remove("raises");
    let state: AppliedState =
        serde_json::from_value(serde_json::Value::Object(old_state)).expect("an old state decodes");
    assert!(state.raises.is_empty());
}

#[test]
fn grants_record_who_served_them_and_old_grants_still_decode() {
    use super::state_machine::apply;
    use super::types::{Command, Served};
    use crate::watermark::{Attempt, Position, Step};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    // A grant logged before grants named their node.
    let old = r#"{"Grant":{"chain_id":"c","attempt":{"position":{"height":3,"round":0,"step":"Prevote"},"sign_bytes":[1],"origin":"v1"}}}"#;
    let command: Command = serde_json::from_str(old).expect("an old grant decodes");
    assert!(matches!(command, Command::Grant { served: None, .. }));
    let mut state = AppliedState::default();
    let entry = |index, command| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(command),
    };
    apply(&mut state, &entry(1, command));
    let record = state.last_signed.get("c").expect("recorded").clone();
    assert_eq!((record.node, record.at_ms, record.index), (None, None, 1));
    assert_eq!(record.validator.as_deref(), Some("v1"));

    let at = |height| Position {
        height,
        round: 0,
        step: Step::Precommit,
    };
    let grant = |height, node| Command::Grant {
        chain_id: "c".into(),
        attempt: Attempt {
            extension: None,
            position: at(height),
            sign_bytes: vec![height as u8],
            origin: None,
        },
        served: Some(Served {
            node,
            at_ms: Some(1000),
        }),
    };
    apply(&mut state, &entry(2, grant(4, 2)));
    let record = state.last_signed.get("c").expect("recorded").clone();
    assert_eq!(
        (record.node, record.at_ms, record.index),
        (Some(2), Some(1000), 2)
    );
    assert_eq!(record.position, at(4));
    // A refusal is no signature: the record stays.
    apply(&mut state, &entry(3, grant(3, 3)));
    assert_eq!(state.last_signed.get("c"), Some(&record));
    // A grant names its node only when it has one to name.
    let json = serde_json::to_string(&grant(5, 1)).expect("encode");
    assert!(
        json.contains(r#""served":{"node":1,"at_ms":1000}"#),
        "{json}"
    );

    let mut old_state = serde_json::to_value(AppliedState::default()).expect("encode");
    old_state
        .as_object_mut()
        .expect("object")
        .remove("last_signed");
    let state: AppliedState = serde_json::from_value(old_state).expect("an old state decodes");
    assert!(state.last_signed.is_empty());
}

/// A snapshot built from the state at index 10 that finishes after a
/// snapshot at index 20 was installed must not replace it: the stored
/// snapshot would fall behind the log purged up to 20.
async fn a_late_build_keeps_the_newer_installed_snapshot(backend: Arc<dyn Backend>) {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

    use super::types::typ::SnapshotMeta;

    let log_id = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
    let (tx, _) = watch::channel(Arc::new(AppliedState::default()));
    let mut sm = StateMachine::open(backend, tx).unwrap();
    let entries: Vec<Entry<TypeConfig>> = (1..=10)
        .map(|index| Entry {
            log_id: log_id(index),
            payload: EntryPayload::Blank,
        })
        .collect();
    sm.apply(entries).await.unwrap();
    let mut builder = sm.get_snapshot_builder().await;

    let installed = AppliedState {
        last_applied: Some(log_id(20)),
        ..AppliedState::default()
    };
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(20)),
        last_membership: installed.membership.clone(),
        snapshot_id: "installed-20".into(),
    };
    let data = serde_json::to_vec(&installed).unwrap();
    sm.install_snapshot(&meta, Box::new(std::io::Cursor::new(data)))
        .await
        .unwrap();

    let built = builder.build_snapshot().await.unwrap();
    assert_eq!(built.meta.last_log_id, Some(log_id(10)));
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(current.meta.last_log_id, Some(log_id(20)));
    assert_eq!(current.meta.snapshot_id, "installed-20");

    // A build that is newer than what is stored replaces it.
    let entries: Vec<Entry<TypeConfig>> = (21..=30)
        .map(|index| Entry {
            log_id: log_id(index),
            payload: EntryPayload::Blank,
        })
        .collect();
    sm.apply(entries).await.unwrap();
    let built = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(current.meta, built.meta);
    assert_eq!(current.meta.last_log_id, Some(log_id(30)));
}

#[tokio::test]
async fn memory_store_keeps_the_newer_snapshot() {
    a_late_build_keeps_the_newer_installed_snapshot(Arc::new(MemBackend::new())).await;
}

#[tokio::test]
async fn redb_store_keeps_the_newer_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RedbBackend::open(&dir.path().join("raft.redb")).unwrap();
    a_late_build_keeps_the_newer_installed_snapshot(Arc::new(backend)).await;
}

#[cfg(feature = "sled")]
#[tokio::test]
async fn sled_store_keeps_the_newer_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let backend = super::store_sled::SledBackend::open(&dir.path().join("raft.sled")).unwrap();
    a_late_build_keeps_the_newer_installed_snapshot(Arc::new(backend)).await;
}

/// The applied state is written only every `APPLIED_WRITE_EVERY` entries,
/// so a reopened state machine starts from the newer of that record and
/// the snapshot (openraft applies the committed entries past it again).
async fn reopens_from_the_newer_of_its_applied_record_and_snapshot(backend: Arc<dyn Backend>) {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

    use super::state_machine::APPLIED_WRITE_EVERY;

    let log_id = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
    let open = || {
        let (tx, rx) = watch::channel(Arc::new(AppliedState::default()));
        (StateMachine::open(backend.clone(), tx).unwrap(), rx)
    };
    let apply_one_by_one = async |sm: &mut StateMachine, indexes: std::ops::RangeInclusive<u64>| {
        for index in indexes {
            let entry = Entry::<TypeConfig> {
                log_id: log_id(index),
                payload: EntryPayload::Blank,
            };
            sm.apply([entry]).await.unwrap();
        }
    };
    let last = APPLIED_WRITE_EVERY + 8;

    let (mut sm, published) = open();
    apply_one_by_one(&mut sm, 1..=last).await;
    assert_eq!(published.borrow().last_applied, Some(log_id(last)));
    drop(sm);
    // Written after the first entry, then APPLIED_WRITE_EVERY later.
    let (mut sm, published) = open();
    let stored = 1 + APPLIED_WRITE_EVERY;
    assert_eq!(published.borrow().last_applied, Some(log_id(stored)));
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(stored)));

    apply_one_by_one(&mut sm, stored + 1..=last).await;
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    drop(sm);
    // The snapshot is newer than the applied record.
    let (mut sm, published) = open();
    assert_eq!(published.borrow().last_applied, Some(log_id(last)));
    apply_one_by_one(&mut sm, last + 1..=last + 5).await;
    drop(sm);
    let (_sm, published) = open();
    assert_eq!(published.borrow().last_applied, Some(log_id(last)));
}

#[tokio::test]
async fn memory_store_reopens_from_the_newer_record() {
    reopens_from_the_newer_of_its_applied_record_and_snapshot(Arc::new(MemBackend::new())).await;
}

#[tokio::test]
async fn redb_store_reopens_from_the_newer_record() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RedbBackend::open(&dir.path().join("raft.redb")).unwrap();
    reopens_from_the_newer_of_its_applied_record_and_snapshot(Arc::new(backend)).await;
}
