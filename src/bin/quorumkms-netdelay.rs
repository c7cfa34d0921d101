//! Delays packets for network simulations (scripts/regions): iptables
//! hands packets to NFQUEUE queues, and this program lets each one through
//! after a delay given by its queue number, in units of 100 µs (queue 5:
//! 0.5 ms, queue 150: 15 ms). It stands in for `tc netem`, which not every
//! kernel has; NFQUEUE needs only iptables. Packets of one queue keep their
//! order.
//!
//! Run as root in the network namespace whose iptables rules send packets
//! to the queues: `quorumkms-netdelay 5 150 300`. It runs until killed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

const AF_NETLINK: i32 = 16;
const SOCK_RAW: i32 = 3;
const NETLINK_NETFILTER: i32 = 12;
const AF_INET: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// nfnetlink_queue messages (linux/netfilter/nfnetlink_queue.h).
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NF_ACCEPT: u32 = 1;

/// Delay per unit of queue number.
const UNIT: Duration = Duration::from_micros(100);

/// Packets held back: (due, arrival order, queue, packet id).
type Held = BinaryHeap<Reverse<(Instant, u64, u16, u32)>>;

/// A netlink message to the queue subsystem with `attrs` (type, payload).
fn message(kind: u16, flags: u16, queue: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&[0; 4]); // length, set below
    m.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    m.extend_from_slice(&[0; 8]); // sequence number, port id
    m.extend_from_slice(&[0, 0]); // nfgenmsg: AF_UNSPEC, version 0
    m.extend_from_slice(&queue.to_be_bytes());
    for (kind, payload) in attrs {
        m.extend_from_slice(&(4 + payload.len() as u16).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(m.len().next_multiple_of(4), 0);
    }
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
    m
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The netlink messages in `buf`: (type, whole message).
fn messages(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = (u32_at(buf, 0) as usize).clamp(16, buf.len());
        out.push((u16_at(buf, 4), &buf[..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

/// The error code of an NLMSG_ERROR message (0: an acknowledgement).
fn error_code(msg: &[u8]) -> i32 {
    if msg.len() >= 20 {
        u32_at(msg, 16) as i32
    } else {
        -1
    }
}

/// Queue and packet id of a queued packet message.
fn queued_packet(msg: &[u8]) -> Option<(u16, u32)> {
    if msg.len() < 20 {
        return None;
    }
    let queue = u16::from_be_bytes([msg[18], msg[19]]);
    let mut at = 20;
    while at + 4 <= msg.len() {
        let len = u16_at(msg, at) as usize;
        if len < 4 || at + len > msg.len() {
            break;
        }
        if u16_at(msg, at + 2) & 0x3fff == NFQA_PACKET_HDR && len >= 8 {
            let id = &msg[at + 4..at + 8];
            return Some((queue, u32::from_be_bytes([id[0], id[1], id[2], id[3]])));
        }
        at += len.next_multiple_of(4);
    }
    None
}

/// Binds `queue` (packet metadata only, up to 8192 packets held).
fn bind(socket: &mut Socket, queue: u16) -> Result<(), String> {
    let mut cmd = vec![NFQNL_CFG_CMD_BIND, 0];
    cmd.extend_from_slice(&AF_INET.to_be_bytes());
    let mut params = 0u32.to_be_bytes().to_vec();
    params.push(NFQNL_COPY_META);
    let maxlen = 8192u32.to_be_bytes();
    let attrs: [(u16, &[u8]); 3] = [
        (NFQA_CFG_CMD, &cmd),
        (NFQA_CFG_PARAMS, &params),
        (NFQA_CFG_QUEUE_MAXLEN, &maxlen),
    ];
    socket
        .write_all(&message(NFQNL_MSG_CONFIG, NLM_F_ACK, queue, &attrs))
        .map_err(|e| format!("queue {queue}: {e}"))?;
    let mut buf = vec![0u8; 8192];
    let n = socket
        .read(&mut buf)
        .map_err(|e| format!("queue {queue}: {e}"))?;
    match messages(&buf[..n]).first() {
        Some((NLMSG_ERROR, msg)) if error_code(msg) == 0 => Ok(()),
        Some((NLMSG_ERROR, msg)) => Err(format!(
            "queue {queue}: bind refused: {}",
            std::io::Error::from_raw_os_error(-error_code(msg))
        )),
        _ => Err(format!("queue {queue}: no answer to bind")),
    }
}

/// Lets held packets through when due.
fn release(held: &(Mutex<Held>, Condvar), mut socket: Socket) {
    let (lock, wake) = held;
    let mut held = lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let now = Instant::now();
        held = match held.peek() {
            None => wake.wait(held).unwrap_or_else(|p| p.into_inner()),
            Some(Reverse((due, ..))) if *due > now => {
                let wait = *due - now;
                wake.wait_timeout(held, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            Some(_) => {
                let Some(Reverse((_, _, queue, id))) = held.pop() else {
                    continue;
                };
                let mut verdict = NF_ACCEPT.to_be_bytes().to_vec();
                verdict.extend_from_slice(&id.to_be_bytes());
                let msg = message(NFQNL_MSG_VERDICT, 0, queue, &[(NFQA_VERDICT_HDR, &verdict)]);
                if let Err(e) = socket.write_all(&msg) {
                    eprintln!("quorumkms-netdelay: verdict for queue {queue}: {e}");
                }
                held
            }
        };
    }
}

fn main() -> Result<(), String> {
    let queues: Vec<u16> = std::env::args()
        .skip(1)
        .map(|q| q.parse().map_err(|_| format!("not a queue number: {q}")))
        .collect::<Result<_, _>>()?;
    if queues.is_empty() {
        return Err("usage: quorumkms-netdelay QUEUE... (delay: queue number x 100 µs)".into());
    }
    let mut socket = Socket::new(
        Domain::from(AF_NETLINK),
        Type::from(SOCK_RAW),
        Some(Protocol::from(NETLINK_NETFILTER)),
    )
    .map_err(|e| format!("netlink socket: {e}"))?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    for &queue in &queues {
        bind(&mut socket, queue)?;
    }
    let held = Arc::new((Mutex::new(Held::new()), Condvar::new()));
    let sender = socket.try_clone().map_err(|e| e.to_string())?;
    let releaser = Arc::clone(&held);
    std::thread::spawn(move || release(&releaser, sender));
    let mut buf = vec![0u8; 1 << 16];
    let mut arrivals = 0u64;
    loop {
        let n = match socket.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // ENOBUFS: the kernel dropped messages; TCP resends the packets.
            Err(e) => {
                eprintln!("quorumkms-netdelay: {e}");
                continue;
            }
        };
        let now = Instant::now();
        let mut queued = Vec::new();
        for (kind, msg) in messages(&buf[..n]) {
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
                queued.extend(queued_packet(msg));
            } else if kind == NLMSG_ERROR && error_code(msg) != 0 {
                eprintln!("quorumkms-netdelay: netlink error {}", error_code(msg));
            }
        }
        if queued.is_empty() {
            continue;
        }
        let mut pending = held.0.lock().unwrap_or_else(|p| p.into_inner());
        for (queue, id) in queued {
            arrivals += 1;
            pending.push(Reverse((
                now + UNIT * u32::from(queue),
                arrivals,
                queue,
                id,
            )));
        }
        drop(pending);
        held.1.notify_one();
    }
}
