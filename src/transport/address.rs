//! Validator addresses as written in the config: `tcp://NODE_ID@host:port`
//! or `unix:///abs/path`. Parsing only; no I/O.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::Error;

/// A validator address from config.
///
/// `tcp://NODE_ID@host:port` (NODE_ID = 40 hex chars, optional; an IPv6
/// host goes in brackets) or `unix:///abs/path`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP address, secured with SecretConnection.
    Tcp {
        /// The expected node id of the validator (sha256(pubkey)[..20]).
        /// `None` accepts any peer (a warning is logged at connect time).
        peer_id: Option<[u8; 20]>,
        /// Host name or IP address, without IPv6 brackets.
        host: String,
        /// TCP port, never 0.
        port: u16,
    },
    /// A Unix domain socket (plaintext; local only), an absolute path.
    Unix(PathBuf),
}

impl Address {
    /// The expected peer id, when the address names one.
    pub fn peer_id(&self) -> Option<&[u8; 20]> {
        match self {
            Address::Tcp { peer_id, .. } => peer_id.as_ref(),
            Address::Unix(_) => None,
        }
    }
}

fn invalid(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidAddress {
        address: input.to_owned(),
        reason: reason.into(),
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(invalid(input, "missing socket path"));
            }
            if !path.starts_with('/') {
                return Err(invalid(
                    input,
                    "the socket path must be absolute (unix:///path/to/socket)",
                ));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let Some(rest) = s.strip_prefix("tcp://") else {
            return Err(invalid(
                input,
                "expected tcp://NODE_ID@host:port or unix:///path",
            ));
        };
        let (peer_id, host_port) = match rest.split_once('@') {
            Some((id, hp)) => (Some(parse_node_id(input, id)?), hp),
            None => (None, rest),
        };
        let (host, port) = split_host_port(input, host_port)?;
        Ok(Address::Tcp {
            peer_id,
            host,
            port,
        })
    }
}

fn parse_node_id(input: &str, id: &str) -> Result<[u8; 20], Error> {
    if id.len() != 40 {
        return Err(invalid(
            input,
            format!("node id must be 40 hex characters, got {}", id.len()),
        ));
    }
    let mut out = [0u8; 20];
    hex::decode_to_slice(id, &mut out).map_err(|_| invalid(input, "node id is not hexadecimal"))?;
    Ok(out)
}

fn split_host_port(input: &str, host_port: &str) -> Result<(String, u16), Error> {
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(invalid(input, "unclosed '[' in IPv6 host"));
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(invalid(input, "missing port"));
        };
        (host, port)
    } else {
        let Some((host, port)) = host_port.rsplit_once(':') else {
            return Err(invalid(input, "missing port"));
        };
        if host.contains(':') {
            return Err(invalid(input, "an IPv6 host must be in brackets"));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(invalid(input, "missing host"));
    }
    if host.contains(['/', '@', ' ']) {
        return Err(invalid(input, "invalid character in host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(input, format!("invalid port {port:?}")))?;
    if port == 0 {
        return Err(invalid(input, "port must not be 0"));
    }
    Ok((host.to_owned(), port))
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp {
                peer_id,
                host,
                port,
            } => {
                f.write_str("tcp://")?;
                if let Some(id) = peer_id {
                    write!(f, "{}@", hex::encode(id))?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]:{port}")
                } else {
                    write!(f, "{host}:{port}")
                }
            }
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
