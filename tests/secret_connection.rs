//! `transport::connect` over TCP + SecretConnection against a fake
//! validator: byte exchange both ways, peer id checks, EOF and errors on
//! the async side, and no bridge thread outliving its connection.
//!
//! A test binary of its own: these tests count the process's bridge
//! threads by name, and the privval tests' mock validators open
//! SecretConnections in their process, so sharing it made the counts race.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use quorumkms::transport::{self, Address, Error, Timeouts};
use tendermint_p2p::secret_connection::{SecretConnection, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Tests here count bridge threads, so they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A validator listening on 127.0.0.1: accepts one connection, handshakes
/// with its own key and hands the connection to `script` on a thread.
fn spawn_validator<R, F>(seed: u8, script: F) -> (SocketAddr, [u8; 20], JoinHandle<R>)
where
    R: Send + 'static,
    F: FnOnce(SecretConnection<TcpStream>) -> R + Send + 'static,
{
    let key = ed25519_consensus::SigningKey::from([seed; 32]);
    let id = transport::node_id(key.verification_key().as_bytes());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let sc = SecretConnection::new(stream, key, Version::V0_34).expect("validator handshake");
        script(sc)
    });
    (addr, id, handle)
}

fn identity() -> ed25519_consensus::SigningKey {
    ed25519_consensus::SigningKey::from([42u8; 32])
}

fn tcp(addr: SocketAddr, peer_id: Option<[u8; 20]>) -> Address {
    Address::Tcp {
        peer_id,
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

/// Names of this process's bridge threads (Linux).
fn bridge_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with("qkms-sc-"))
        .count()
}

async fn wait_for_no_bridge_threads() {
    let deadline = Instant::now() + Duration::from_secs(5);
    while bridge_threads() > 0 {
        assert!(Instant::now() < deadline, "bridge threads still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn exchanges_bytes_both_ways() {
    let _serial = SERIAL.lock().await;
    let (addr, id, validator) = spawn_validator(1, |mut sc| {
        let remote = sc.remote_pubkey();
        let mut ping = [0u8; 4];
        sc.read_exact(&mut ping).expect("read ping");
        assert_eq!(&ping, b"ping");
        sc.write_all(b"pong").expect("write pong");
        // More than one 1024-byte SecretConnection frame each way.
        let mut big = vec![0u8; 5000];
        sc.read_exact(&mut big).expect("read big");
        big.reverse();
        sc.write_all(&big).expect("write big");
        remote
    });

    let mut stream = transport::connect(&tcp(addr, Some(id)), &identity(), &Timeouts::default())
        .await
        .expect("connect");
    stream.write_all(b"ping").await.expect("write");
    let mut pong = [0u8; 4];
    stream.read_exact(&mut pong).await.expect("read");
    assert_eq!(&pong, b"pong");

    let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    stream.write_all(&big).await.expect("write big");
    let mut back = vec![0u8; 5000];
    stream.read_exact(&mut back).await.expect("read big");
    back.reverse();
    assert_eq!(back, big);

    let remote = validator.join().expect("validator thread");
    assert_eq!(
        remote.ed25519().expect("ed25519").as_bytes(),
        identity().verification_key().as_bytes(),
        "the validator sees the signer's identity key"
    );
    drop(stream);
    wait_for_no_bridge_threads().await;
}

#[tokio::test]
async fn wrong_peer_id_is_refused() {
    let _serial = SERIAL.lock().await;
    let (addr, id, validator) = spawn_validator(2, |mut sc| {
        // The signer hangs up after the handshake.
        let mut buf = [0u8; 1];
        sc.read(&mut buf).map(|n| n == 0).unwrap_or(true)
    });
    let mut wrong = id;
    wrong[0] ^= 0xff;
    let err = match transport::connect(&tcp(addr, Some(wrong)), &identity(), &Timeouts::default())
        .await
    {
        Ok(_) => panic!("connected to the wrong peer"),
        Err(err) => err,
    };
    match &err {
        Error::PeerMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &hex::encode(wrong));
            assert_eq!(actual, &hex::encode(id));
        }
        other => panic!("expected PeerMismatch, got {other:?}"),
    }
    assert!(err.to_string().starts_with("peer id mismatch for tcp://"));
    assert!(
        validator.join().expect("validator thread"),
        "connection closed"
    );
    wait_for_no_bridge_threads().await;
}

#[tokio::test]
async fn unverified_peer_is_accepted() {
    let _serial = SERIAL.lock().await;
    let (addr, _, validator) = spawn_validator(3, |mut sc| {
        sc.write_all(b"hi").expect("write");
    });
    let mut stream = transport::connect(&tcp(addr, None), &identity(), &Timeouts::default())
        .await
        .expect("connect");
    let mut hi = [0u8; 2];
    stream.read_exact(&mut hi).await.expect("read");
    assert_eq!(&hi, b"hi");
    validator.join().expect("validator thread");
    drop(stream);
    wait_for_no_bridge_threads().await;
}

#[tokio::test]
async fn validator_hangup_is_eof_on_the_async_side() {
    let _serial = SERIAL.lock().await;
    let (addr, id, validator) = spawn_validator(4, |mut sc| {
        sc.write_all(b"bye").expect("write");
        // Dropping `sc` closes the socket.
    });
    let mut stream = transport::connect(&tcp(addr, Some(id)), &identity(), &Timeouts::default())
        .await
        .expect("connect");
    validator.join().expect("validator thread");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .expect("EOF arrives, no hang");
    assert_eq!(buf, b"bye");
    assert!(read.is_ok(), "a clean close reads as EOF: {read:?}");
    // Writing to a dead connection fails soon.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if stream.write_all(b"x").await.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "writes never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stream);
    wait_for_no_bridge_threads().await;
}

#[tokio::test]
async fn corrupt_stream_is_an_error_on_the_async_side() {
    let _serial = SERIAL.lock().await;
    // A "validator" that completes the handshake, then sends garbage bytes
    // on the raw socket (which fail authentication).
    let key = ed25519_consensus::SigningKey::from([5u8; 32]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let validator = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut raw = stream.try_clone().expect("clone");
        let _sc = SecretConnection::new(stream, key, Version::V0_34).expect("handshake");
        raw.write_all(&[0xAA; 1044]).expect("garbage");
        std::thread::sleep(Duration::from_millis(500));
    });
    let mut stream = transport::connect(&tcp(addr, None), &identity(), &Timeouts::default())
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("no hang");
    assert!(read.is_err(), "expected an error, got {read:?}");
    validator.join().expect("validator thread");
    drop(stream);
    wait_for_no_bridge_threads().await;
}

#[tokio::test]
async fn dropping_the_stream_closes_the_socket_and_ends_threads() {
    let _serial = SERIAL.lock().await;
    let (addr, id, validator) = spawn_validator(6, |mut sc| {
        let mut last = [0u8; 5];
        sc.read_exact(&mut last).expect("read last words");
        let started = Instant::now();
        let mut buf = [0u8; 1];
        let closed = match sc.read(&mut buf) {
            Ok(0) | Err(_) => true,
            Ok(_) => false,
        };
        (last, closed, started.elapsed())
    });
    let mut stream = transport::connect(&tcp(addr, Some(id)), &identity(), &Timeouts::default())
        .await
        .expect("connect");
    // A thread names itself once it runs, so wait for both names.
    let deadline = Instant::now() + Duration::from_secs(5);
    while bridge_threads() < 2 {
        assert!(Instant::now() < deadline, "bridge threads never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(bridge_threads(), 2);
    // Written just before the drop: must still reach the validator.
    stream.write_all(b"adieu").await.expect("write");
    drop(stream);
    let (last, closed, waited) = validator.join().expect("validator thread");
    assert_eq!(&last, b"adieu");
    assert!(closed);
    assert!(waited < Duration::from_secs(2), "socket closed promptly");
    wait_for_no_bridge_threads().await;
}

#[tokio::test]
async fn handshake_failure_is_reported() {
    let _serial = SERIAL.lock().await;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let err = match transport::connect(&tcp(addr, None), &identity(), &Timeouts::default()).await {
        Ok(_) => panic!("handshake with a non-SecretConnection server succeeded"),
        Err(err) => err,
    };
    assert!(matches!(err, Error::Handshake { .. }), "{err:?}");
    server.join().expect("server thread");
}

#[tokio::test]
async fn refused_connection_is_reported() {
    let _serial = SERIAL.lock().await;
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let err = match transport::connect(&tcp(addr, None), &identity(), &Timeouts::default()).await {
        Ok(_) => panic!("connected to a closed port"),
        Err(err) => err,
    };
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot connect to tcp://127.0.0.1:")
    );
}

#[tokio::test]
async fn zero_timeouts_are_refused() {
    let timeouts = Timeouts {
        read: Duration::ZERO,
        ..Timeouts::default()
    };
    let addr: Address = "tcp://127.0.0.1:1".parse().expect("address");
    let err = match transport::connect(&addr, &identity(), &timeouts).await {
        Ok(_) => panic!("accepted a zero timeout"),
        Err(err) => err,
    };
    assert!(matches!(err, Error::InvalidTimeout("read")), "{err:?}");
}

#[tokio::test]
async fn silent_validator_times_out() {
    let _serial = SERIAL.lock().await;
    let (addr, id, validator) = spawn_validator(7, |_sc| {
        std::thread::sleep(Duration::from_millis(1500));
    });
    let timeouts = Timeouts {
        read: Duration::from_millis(300),
        ..Timeouts::default()
    };
    let mut stream = transport::connect(&tcp(addr, Some(id)), &identity(), &timeouts)
        .await
        .expect("connect");
    let started = Instant::now();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("no hang");
    assert!(read.is_err(), "expected a timeout error, got {read:?}");
    assert!(started.elapsed() < Duration::from_millis(1400));
    drop(stream);
    validator.join().expect("validator thread");
    wait_for_no_bridge_threads().await;
}

#[tokio::test]
async fn shutdown_delivers_pending_bytes_then_closes() {
    let _serial = SERIAL.lock().await;
    let (addr, id, validator) = spawn_validator(8, |mut sc| {
        let mut req = [0u8; 3];
        sc.read_exact(&mut req).expect("read request");
        // The signer's half-close: the next read finds the end.
        let mut buf = [0u8; 1];
        let eof = !matches!(sc.read(&mut buf), Ok(n) if n > 0);
        (req, eof)
    });
    let mut stream = transport::connect(&tcp(addr, Some(id)), &identity(), &Timeouts::default())
        .await
        .expect("connect");
    stream.write_all(b"req").await.expect("write");
    stream.shutdown().await.expect("shutdown");
    let (req, eof) = validator.join().expect("validator thread");
    assert_eq!(&req, b"req");
    assert!(eof, "the validator saw the half-close");
    drop(stream);
    wait_for_no_bridge_threads().await;
}

/// Accepts one TCP connection and never speaks, as a hung validator (or a
/// dial still in its accept queue) looks from the signer's side. Returns
/// how many bytes the signer sent before it closed the socket; a read error
/// (the bound expiring) means the signer never closed it.
fn spawn_silent_listener() -> (SocketAddr, JoinHandle<std::io::Result<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut sent = 0;
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf)? {
                0 => return Ok(sent),
                n => sent += n,
            }
        }
    });
    (addr, handle)
}

#[tokio::test]
async fn a_silent_listener_fails_the_handshake_at_its_deadline() {
    let _serial = SERIAL.lock().await;
    let (addr, listener) = spawn_silent_listener();
    let timeouts = Timeouts {
        handshake: Duration::from_millis(300),
        ..Timeouts::default()
    };
    let (addr, identity) = (tcp(addr, None), identity());
    let dial = transport::connect(&addr, &identity, &timeouts);
    let err = match tokio::time::timeout(Duration::from_secs(30), dial)
        .await
        .expect("the handshake deadline ends the dial")
    {
        Ok(_) => panic!("handshake with a silent listener succeeded"),
        Err(err) => err,
    };
    assert!(
        matches!(err, Error::HandshakeTimeout { after, .. } if after == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("did not finish within 300ms"),
        "{err}"
    );
    // The socket was closed (so the handshake's thread ended): the listener
    // read the signer's ephemeral key, then EOF.
    let sent = listener.join().expect("listener thread").expect("EOF");
    assert!(sent > 0, "the signer sent nothing");
}

#[tokio::test]
async fn dropping_a_pending_handshake_closes_its_socket() {
    let _serial = SERIAL.lock().await;
    let (addr, listener) = spawn_silent_listener();
    // The default deadline is a day; the caller gives up first (as the
    // supervisor does on shutdown).
    let (addr, identity, timeouts) = (tcp(addr, None), identity(), Timeouts::default());
    let dial = transport::connect(&addr, &identity, &timeouts);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), dial)
            .await
            .is_err(),
        "a silent listener answered"
    );
    let sent = listener.join().expect("listener thread").expect("EOF");
    assert!(sent > 0, "the signer sent nothing");
}

#[tokio::test]
async fn a_zero_handshake_deadline_is_refused() {
    let timeouts = Timeouts {
        handshake: Duration::ZERO,
        ..Timeouts::default()
    };
    let addr: Address = "tcp://127.0.0.1:1".parse().expect("address");
    let err = match transport::connect(&addr, &identity(), &timeouts).await {
        Ok(_) => panic!("accepted a zero deadline"),
        Err(err) => err,
    };
    assert!(matches!(err, Error::InvalidTimeout("handshake")), "{err:?}");
}
