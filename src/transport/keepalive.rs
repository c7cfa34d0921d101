//! TCP keepalive, on every TCP socket quorumkms opens or accepts (privval
//! dials, the cluster transport, the metrics listener).
//!
//! Without it, a peer whose host dies without sending a reset leaves a
//! blocked read waiting for ever: in particular a dial queued, unaccepted,
//! in a validator's accept queue, where no read timeout can apply (see
//! [`Timeouts`](super::Timeouts)). With it the kernel probes an idle
//! connection and fails it when the peer's host stops answering; a live
//! host answers the probes even for a connection not yet accepted.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

/// Idle time before the first probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// Time between unanswered probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes before the connection fails: a dead host is noticed
/// about 35 s after the connection went quiet.
pub const KEEPALIVE_PROBES: u32 = 4;

/// Turns TCP keepalive on for `socket` with the settings above.
///
/// # Errors
///
/// The socket options cannot be set (not a TCP socket).
pub fn set_keepalive<S: AsFd>(socket: &S) -> io::Result<()> {
    let params = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    SockRef::from(socket).set_tcp_keepalive(&params)
}

/// Test helper: asserts `socket` has keepalive on with the settings above.
#[cfg(test)]
pub(crate) fn assert_on<S: AsFd>(socket: &S) {
    let socket = SockRef::from(socket);
    assert!(
        socket.keepalive().expect("SO_KEEPALIVE"),
        "keepalive is off"
    );
    assert_eq!(socket.tcp_keepalive_time().expect("idle"), KEEPALIVE_IDLE);
    assert_eq!(
        socket.tcp_keepalive_interval().expect("interval"),
        KEEPALIVE_INTERVAL
    );
    assert_eq!(
        socket.tcp_keepalive_retries().expect("probes"),
        KEEPALIVE_PROBES
    );
}
