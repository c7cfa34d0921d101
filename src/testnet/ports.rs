//! Loopback ports for a local cluster, picked so that nothing else on the
//! host takes them between picking and binding.
//!
//! The kernel hands out ports on its own from its ephemeral range: to a
//! socket bound to port 0 and as the source port of every outgoing
//! connection. A port picked by binding port 0 and letting go is in that
//! range, so the next `bind(0)` or `connect` on the host may take it before
//! the node that was meant to listen there starts, and the node fails with
//! "address in use". Ports below the ephemeral range are only ever taken
//! by someone asking for them by number.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::ops::Range;
use std::sync::Mutex;

use rand::Rng;

/// Where the search starts when the kernel's ephemeral range cannot be read
/// (also the floor: lower ports are the well-known services' territory).
const LOWEST: u16 = 10_000;
/// The start of the ephemeral range when the kernel does not say (IANA's
/// range starts at 49152, Linux's default at 32768).
const EPHEMERAL_START_DEFAULT: u16 = 32_768;

/// Ports already handed out by this process, so that concurrent callers
/// (tests running in parallel threads) never get the same one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// `count` distinct ports free on 127.0.0.1 right now, from below the
/// kernel's ephemeral range.
///
/// # Errors
///
/// When fewer than `count` such ports can be bound.
pub fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let range = candidate_range(ephemeral_start());
    let span = u32::from(range.end - range.start);
    let offset = rand::thread_rng().gen_range(0..span);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut ports = Vec::with_capacity(count);
    for step in 0..span {
        if ports.len() == count {
            break;
        }
        // Spans are below 2^16, so the sum stays in u32 and the port in u16.
        let port = range.start + ((offset + step) % span) as u16;
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            ports.push(port);
        }
    }
    if ports.len() < count {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "only {} of {count} ports free on 127.0.0.1 in {}..{}",
                ports.len(),
                range.start,
                range.end
            ),
        ));
    }
    Ok(ports)
}

/// The ports to pick from: from [`LOWEST`] up to the ephemeral range. When
/// that range starts too low to leave room below it, nothing is safe from
/// the kernel, and the pick falls back to the upper half of the port space.
fn candidate_range(ephemeral_start: u16) -> Range<u16> {
    if ephemeral_start >= LOWEST + 1_000 {
        LOWEST..ephemeral_start
    } else {
        EPHEMERAL_START_DEFAULT..u16::MAX
    }
}

/// The first port of the kernel's ephemeral range (Linux), or the usual
/// default elsewhere.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(EPHEMERAL_START_DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let start = ephemeral_start();
        let first = free_ports(8).expect("ports");
        let second = free_ports(8).expect("ports");
        let all: BTreeSet<u16> = first.iter().chain(&second).copied().collect();
        assert_eq!(all.len(), 16, "{first:?} {second:?}");
        for port in all {
            assert!(candidate_range(start).contains(&port), "{port}");
            TcpListener::bind(("127.0.0.1", port)).expect("still free");
        }
    }

    #[test]
    fn a_low_ephemeral_range_moves_the_search_above_it() {
        assert_eq!(candidate_range(32_768), 10_000..32_768);
        assert_eq!(candidate_range(1_024), 32_768..u16::MAX);
    }
}
