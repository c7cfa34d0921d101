use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::cluster::certs;
use crate::cluster::transport::Transport;

fn files(dir: &Path, stem: &str) -> TlsConfig {
    TlsConfig::new(
        dir.join("ca.pem"),
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    )
}

/// A CA with node certificates 1 to 3 and an operator's.
fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    certs::init_ca(dir.path()).expect("CA");
    for id in 1..=3 {
        certs::node(dir.path(), id, &[]).expect("node");
    }
    certs::operator(dir.path(), "ops").expect("operator");
    dir
}

/// `client` dials a listener serving `server` and exchanges a byte:
/// what the server learned of the client, or `None` when either side
/// refused the other.
async fn handshake(server: &TlsConfig, client: &TlsConfig) -> Option<PeerInfo> {
    let server = TlsTransport::from_config(server).expect("server identity");
    let client = TlsTransport::from_config(client).expect("client identity");
    let mut listener = server.bind("127.0.0.1:0".into()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serve = tokio::spawn(async move {
        let (mut io, info) = listener.accept_peer().await.expect("accept");
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await.expect("read");
        io.write_all(&byte).await.expect("write");
        info
    });
    let echoed = async {
        let mut io = client.connect(addr).await.ok()?;
        // With TLS 1.3 the server judges the client's certificate after
        // the client has finished: a refusal shows on the first read.
        io.write_all(b"x").await.ok()?;
        let mut byte = [0u8; 1];
        (io.read(&mut byte).await.ok()? == 1).then_some(())
    };
    let echoed = tokio::time::timeout(Duration::from_secs(20), echoed)
        .await
        .expect("the handshake ends");
    match echoed {
        Some(()) => Some(serve.await.expect("server task")),
        None => {
            serve.abort();
            None
        }
    }
}

#[tokio::test]
async fn a_node_certificate_names_its_node() {
    let pki = pki();
    let server = files(pki.path(), "node-1");
    let node = handshake(&server, &files(pki.path(), "node-2"))
        .await
        .expect("node 2 served");
    assert_eq!(
        node,
        PeerInfo {
            tls: true,
            node: true,
            operator: false,
            node_id: Some(2),
            serial: Some(certs::serial_of(&pki.path().join("node-2.pem")).expect("serial")),
            subject: Some("quorumkms node 2".into()),
        }
    );
    let operator = handshake(&server, &files(pki.path(), "operator-ops"))
        .await
        .expect("operator served");
    assert_eq!(
        operator,
        PeerInfo {
            tls: true,
            node: false,
            operator: true,
            node_id: None,
            serial: Some(certs::serial_of(&pki.path().join("operator-ops.pem")).expect("serial")),
            subject: Some("quorumkms operator ops".into()),
        }
    );
}

fn request_from(info: PeerInfo) -> tonic::Request<()> {
    let mut request = tonic::Request::new(());
    request.extensions_mut().insert(info);
    request
}

#[tokio::test]
async fn a_node_certificate_without_an_id_is_refused_with_the_fix() {
    let pki = pki();
    certs::node_without_id(pki.path(), "node-old").expect("old cert");
    let old = files(pki.path(), "node-old");
    let info = handshake(&files(pki.path(), "node-1"), &old)
        .await
        .expect("a valid certificate passes the handshake");
    assert!(info.node && info.node_id.is_none(), "{info:?}");
    let refused = require(&request_from(info), Role::Node).expect_err("no id");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(
        refused
            .message()
            .contains("quorumkms cluster certs node --id"),
        "{refused:?}"
    );
    // A node will not start with it either.
    let identity = Identity::load(&old).expect("load");
    let error = identity.check_node(&old, 4).expect_err("no id");
    assert!(matches!(error, TlsError::NoNodeId { node_id: 4, .. }));
    assert!(error.to_string().contains("--id 4"), "{error}");
}

#[test]
fn a_raft_sender_must_be_the_certificate_holder() {
    let node_2 = PeerInfo {
        tls: true,
        node: true,
        operator: false,
        node_id: Some(2),
        ..PeerInfo::default()
    };
    let peer = require(&request_from(node_2), Role::Node).expect("a node");
    assert!(require_sender(&peer, Some(2)).is_ok());
    for claimed in [Some(3), Some(1), None] {
        let refused = require_sender(&peer, claimed).expect_err("another node");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    }
    // Plaintext (loopback or insecure_plaintext) checks nobody.
    assert!(require_sender(&PeerInfo::default(), Some(3)).is_ok());
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_by_the_server() {
    let pki = pki();
    let other = tempfile::tempdir().expect("tempdir");
    certs::init_ca(other.path()).expect("other CA");
    certs::operator(other.path(), "mallory").expect("foreign cert");
    // Loading it against our CA fails its own check...
    let mut foreign = files(other.path(), "operator-mallory");
    foreign.ca = pki.path().join("ca.pem");
    assert!(matches!(
        Identity::load(&foreign),
        Err(TlsError::OwnRefused { .. })
    ));
    // ...and a client that presents it anyway is refused by the node.
    let ours = Identity::load(&files(pki.path(), "operator-ops")).expect("ours");
    let theirs = Identity::load(&files(other.path(), "operator-mallory")).expect("theirs");
    let mallory = Identity {
        chain: theirs.chain,
        key: theirs.key,
        ..ours
    };
    let server = TlsTransport::from_config(&files(pki.path(), "node-1")).expect("server");
    let mut listener = server.bind("127.0.0.1:0".into()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serve = tokio::spawn(async move { listener.accept_peer().await.map(|(_, info)| info) });
    let client = TlsTransport::dialing(&mallory).expect("client");
    let refused = async {
        let mut io = client.connect(addr).await?;
        io.write_all(b"x").await?;
        let mut byte = [0u8; 1];
        io.read(&mut byte).await
    };
    let read = tokio::time::timeout(Duration::from_secs(20), refused)
        .await
        .expect("the handshake ends");
    assert!(!matches!(read, Ok(1)), "a foreign certificate was served");
    assert!(!serve.is_finished());
    serve.abort();
}

#[tokio::test]
async fn callers_who_never_handshake_do_not_lock_out_a_node() {
    let pki = pki();
    let server = TlsTransport::from_config(&files(pki.path(), "node-1")).expect("server");
    let mut listener = server.bind("127.0.0.1:0".into()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("source"))
            .expect("bind source");
        stalled.push(
            socket
                .connect(addr.parse().expect("addr"))
                .await
                .expect("connect"),
        );
    }
    let client = TlsTransport::from_config(&files(pki.path(), "node-2")).expect("client");
    let dial = tokio::spawn(async move {
        let mut io = client.connect(addr).await.expect("handshake");
        io.write_all(b"x").await.expect("write");
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await.expect("echo");
    });
    let (mut io, info) = tokio::time::timeout(Duration::from_secs(30), listener.accept_peer())
        .await
        .expect("served in time")
        .expect("accepted");
    assert_eq!(info.node_id, Some(2));
    let mut byte = [0u8; 1];
    io.read_exact(&mut byte).await.expect("read");
    io.write_all(&byte).await.expect("echo");
    dial.await.expect("client");
    drop(stalled);
}

#[tokio::test]
async fn revoked_serials_are_refused_by_either_side() {
    let pki = pki();
    let serial = certs::serial_of(&pki.path().join("node-2.pem")).expect("serial");
    // Written by hand: upper case, colons, a leading zero byte.
    let spelled = format!("00:{}", serial.to_uppercase());
    let mut server = files(pki.path(), "node-1");
    server.revoked = vec![spelled.clone()];
    assert_eq!(handshake(&server, &files(pki.path(), "node-2")).await, None);
    assert!(
        handshake(&server, &files(pki.path(), "node-3"))
            .await
            .is_some()
    );
    // As a client, node 1 refuses node 2 serving.
    let mut client = files(pki.path(), "node-1");
    client.revoked = vec![spelled];
    assert_eq!(handshake(&files(pki.path(), "node-2"), &client).await, None);
    assert!(
        handshake(&files(pki.path(), "node-3"), &client)
            .await
            .is_some()
    );

    let mut bad = files(pki.path(), "node-1");
    bad.revoked = vec!["not hex".into()];
    assert!(matches!(Identity::load(&bad), Err(TlsError::BadSerial(_))));
}

#[tokio::test]
async fn the_cas_revocation_list_is_refused_by_either_side() {
    let pki = pki();
    let first =
        certs::revoke(pki.path(), &[], &[pki.path().join("node-2.pem")]).expect("revoke node 2");
    assert_eq!(first.serials.len(), 1);
    let with_crl = |stem: &str| {
        let mut tls = files(pki.path(), stem);
        tls.crl = Some(first.crl.clone());
        tls
    };
    let server = with_crl("node-1");
    assert_eq!(handshake(&server, &files(pki.path(), "node-2")).await, None);
    assert!(
        handshake(&server, &files(pki.path(), "node-3"))
            .await
            .is_some()
    );
    assert!(
        handshake(&server, &files(pki.path(), "operator-ops"))
            .await
            .is_some()
    );
    let client = with_crl("node-1");
    assert_eq!(handshake(&files(pki.path(), "node-2"), &client).await, None);
    assert!(
        handshake(&files(pki.path(), "node-3"), &client)
            .await
            .is_some()
    );

    // The list only grows; revoking again keeps the earlier entries.
    let serial = certs::serial_of(&pki.path().join("node-3.pem")).expect("serial");
    let second = certs::revoke(pki.path(), &[serial], &[]).expect("revoke node 3");
    assert_eq!(second.serials.len(), 2);
    assert_eq!(handshake(&server, &files(pki.path(), "node-2")).await, None);
    let server = with_crl("node-1");
    assert_eq!(handshake(&server, &files(pki.path(), "node-3")).await, None);

    // A list from another CA would refuse everyone: it does not load.
    let other = tempfile::tempdir().expect("tempdir");
    certs::init_ca(other.path()).expect("other CA");
    let foreign = certs::revoke(other.path(), &["01".into()], &[]).expect("foreign list");
    let mut tls = files(pki.path(), "node-1");
    tls.crl = Some(foreign.crl);
    assert!(matches!(
        Identity::load(&tls),
        Err(TlsError::CrlIssuer { .. })
    ));
}
