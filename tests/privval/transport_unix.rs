//! `transport::connect` to a Unix socket: plaintext bytes both ways.

use std::time::Duration;

use quorumkms::transport::{self, Address, Error, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn exchanges_bytes_over_a_unix_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("privval.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let validator = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await.expect("read");
        conn.write_all(&buf.map(|b| b.to_ascii_uppercase()))
            .await
            .expect("write");
        buf
    });
    let addr: Address = format!("unix://{}", path.display())
        .parse()
        .expect("address");
    let identity = ed25519_consensus::SigningKey::from([1u8; 32]);
    let mut stream = transport::connect(&addr, &identity, &Timeouts::default())
        .await
        .expect("connect");
    stream.write_all(b"ping").await.expect("write");
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await.expect("read");
    assert_eq!(&reply, b"PING");
    assert_eq!(&validator.await.expect("validator"), b"ping");

    let mut rest = Vec::new();
    let eof = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("EOF after the validator hangs up");
    assert!(eof.is_ok() && rest.is_empty());
}

#[tokio::test]
async fn missing_socket_is_a_connect_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = Address::Unix(dir.path().join("absent.sock"));
    let identity = ed25519_consensus::SigningKey::from([1u8; 32]);
    let err = match transport::connect(&addr, &identity, &Timeouts::default()).await {
        Ok(_) => panic!("connected to a missing socket"),
        Err(err) => err,
    };
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.sock"));
}
