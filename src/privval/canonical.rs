//! Reads CometBFT canonical sign bytes without knowing their version.
//!
//! Sign bytes are a length-delimited `CanonicalVote` or `CanonicalProposal`.
//! Field 1 is the message type (prevote 1, precommit 2, proposal 32) and the
//! timestamp is field 5 of a vote and field 6 of a proposal in every
//! version. That is all the double-sign rules need: the stored timestamp,
//! and whether two payloads differ only in it.

use prost::Message;
use tendermint_proto::google::protobuf::Timestamp;

const TYPE_PREVOTE: u64 = 1;
const TYPE_PRECOMMIT: u64 = 2;
const TYPE_PROPOSAL: u64 = 32;

/// One top-level protobuf field: its number and its raw encoding (tag
/// included), so two messages can be compared field by field.
#[derive(Debug, PartialEq, Eq)]
struct Field<'a> {
    number: u64,
    raw: &'a [u8],
    value: FieldValue<'a>,
}

#[derive(Debug, PartialEq, Eq)]
enum FieldValue<'a> {
    Varint(u64),
    Fixed,
    Bytes(&'a [u8]),
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Strips the uvarint length prefix, checking it covers the rest exactly.
fn body(sign_bytes: &[u8]) -> Option<&[u8]> {
    let mut pos = 0;
    let len = usize::try_from(read_varint(sign_bytes, &mut pos)?).ok()?;
    let rest = &sign_bytes[pos..];
    (rest.len() == len).then_some(rest)
}

fn fields(msg: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        let start = pos;
        let key = read_varint(msg, &mut pos)?;
        let number = key >> 3;
        let value = match key & 7 {
            0 => FieldValue::Varint(read_varint(msg, &mut pos)?),
            1 => {
                pos = pos.checked_add(8)?;
                FieldValue::Fixed
            }
            2 => {
                let len = usize::try_from(read_varint(msg, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                let bytes = msg.get(pos..end)?;
                pos = end;
                FieldValue::Bytes(bytes)
            }
            5 => {
                pos = pos.checked_add(4)?;
                FieldValue::Fixed
            }
            _ => return None,
        };
        if pos > msg.len() {
            return None;
        }
        out.push(Field {
            number,
            raw: &msg[start..pos],
            value,
        });
    }
    Some(out)
}

/// The timestamp field number for this message, from its type field.
fn timestamp_field(fields: &[Field<'_>]) -> Option<u64> {
    let msg_type = fields.iter().find_map(|f| match (f.number, &f.value) {
        (1, FieldValue::Varint(t)) => Some(*t),
        _ => None,
    })?;
    match msg_type {
        TYPE_PREVOTE | TYPE_PRECOMMIT => Some(5),
        TYPE_PROPOSAL => Some(6),
        _ => None,
    }
}

/// The timestamp inside canonical vote or proposal sign bytes.
pub fn timestamp(sign_bytes: &[u8]) -> Option<Timestamp> {
    let fields = fields(body(sign_bytes)?)?;
    let number = timestamp_field(&fields)?;
    match fields.iter().find(|f| f.number == number)?.value {
        FieldValue::Bytes(raw) => Timestamp::decode(raw).ok(),
        _ => None,
    }
}

/// True when `a` and `b` are well-formed canonical votes or proposals that
/// are equal in every field but the timestamp.
pub fn same_except_timestamp(a: &[u8], b: &[u8]) -> bool {
    let (Some(fa), Some(fb)) = (body(a).and_then(fields), body(b).and_then(fields)) else {
        return false;
    };
    let (Some(ta), Some(tb)) = (timestamp_field(&fa), timestamp_field(&fb)) else {
        return false;
    };
    if ta != tb {
        return false;
    }
    without(&fa, ta) == without(&fb, ta)
}

/// The raw fields of a message, minus field `number`.
fn without<'a>(fields: &[Field<'a>], number: u64) -> Vec<&'a [u8]> {
    fields
        .iter()
        .filter(|f| f.number != number)
        .map(|f| f.raw)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A canonical prevote: type, height, round, timestamp, chain id.
    fn vote(seconds: i64, chain: &str) -> Vec<u8> {
        let mut msg = vec![0x08, 0x01]; // type = prevote
        msg.extend([0x11, 5, 0, 0, 0, 0, 0, 0, 0]); // height = 5 (sfixed64)
        msg.extend([0x19, 0, 0, 0, 0, 0, 0, 0, 0]); // round = 0
        let ts = Timestamp { seconds, nanos: 7 }.encode_to_vec();
        msg.push(0x2a);
        msg.push(ts.len() as u8);
        msg.extend(ts);
        msg.push(0x32);
        msg.push(chain.len() as u8);
        msg.extend(chain.as_bytes());
        let mut out = vec![msg.len() as u8];
        out.extend(msg);
        out
    }

    #[test]
    fn reads_the_timestamp() {
        let ts = timestamp(&vote(1_700_000_000, "test")).expect("timestamp");
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 7));
    }

    #[test]
    fn timestamp_only_difference_is_recognised() {
        assert!(same_except_timestamp(&vote(1, "c"), &vote(2, "c")));
        assert!(!same_except_timestamp(&vote(1, "c"), &vote(2, "d")));
    }

    #[test]
    fn garbage_is_never_equal() {
        assert!(!same_except_timestamp(&[1, 2, 3], &[1, 2, 3]));
        assert!(!same_except_timestamp(&[], &[]));
        assert_eq!(timestamp(&[0xff, 0xff]), None);
    }
}
