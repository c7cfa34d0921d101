//! The common name in a certificate's subject, read from its DER, so a
//! raise's record can name the operator certificate that asked for it
//! (`quorumkms cluster certs operator --name alice` writes the CN
//! `quorumkms operator alice`).
//!
//! [`not_after`] reads a certificate's expiry the same way, for the
//! expiry metric and `quorumkms doctor`.
//!
//! A hand-written walk over the few DER shapes a subject uses: the
//! handshake has verified the certificate already, and nothing here
//! decides access, so a subject this does not understand is only "no CN".

/// The OID 2.5.4.3 (commonName), as DER content bytes.
const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// UTF8String, PrintableString, TeletexString, IA5String.
const STRINGS: [u8; 4] = [0x0c, 0x13, 0x14, 0x16];
/// Longest name kept: enough for any name `cluster certs` writes.
const MAX_LEN: usize = 128;

/// One DER element: its tag and contents; the rest of the input.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |len, b| (len << 8) | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// The first common name in `subject`, the contents of a certificate's
/// subject `Name` (a sequence of RDN sets, without its outer tag), with
/// control characters dropped.
pub fn common_name(subject: &[u8]) -> Option<String> {
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (tag, set, rest) = element(rdns)?;
        rdns = rest;
        if tag != SET {
            return None;
        }
        let mut attributes = set;
        while !attributes.is_empty() {
            let (tag, attribute, rest) = element(attributes)?;
            attributes = rest;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = element(attribute)?;
            if tag != OID || oid != COMMON_NAME {
                continue;
            }
            let (tag, text, _) = element(value)?;
            if !STRINGS.contains(&tag) {
                return None;
            }
            let name: String = String::from_utf8_lossy(text)
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_LEN)
                .collect();
            return Some(name);
        }
    }
    None
}

/// When the certificate `der` (the whole DER certificate) expires, in
/// seconds since the Unix epoch; `None` if its validity cannot be read.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (tag, certificate, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut fields = tbs;
    // The explicit [0] version, when present.
    if fields.first() == Some(&0xa0) {
        fields = element(fields)?.2;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        fields = element(fields)?.2;
    }
    let (tag, validity, _) = element(fields)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, rest) = element(validity)?;
    let (tag, time, _) = element(rest)?;
    der_time(tag, time)
}

/// A DER UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`) in seconds since the Unix epoch.
fn der_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if text.len() == 12 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        0x18 if text.len() == 14 => (text.get(..4)?.parse().ok()?, &text[4..]),
        _ => return None,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day) = (num(0)?, num(2)?);
    let (hour, minute, second) = (num(4)?, num(6)?, num(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian calendar).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::certs;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn reads_the_common_name_cluster_certs_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        certs::init_ca(dir.path()).expect("CA");
        certs::operator(dir.path(), "alice").expect("operator");
        let pem = std::fs::read(dir.path().join("operator-alice.pem")).expect("pem");
        let der = CertificateDer::from_pem_slice(&pem).expect("certificate");
        let cert = webpki::EndEntityCert::try_from(&der).expect("parse");
        assert_eq!(
            common_name(cert.subject()).as_deref(),
            Some("quorumkms operator alice")
        );
    }

    #[test]
    fn reads_the_expiry_cluster_certs_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        certs::init_ca(dir.path()).expect("CA");
        certs::node(dir.path(), 1, &["localhost".to_string()]).expect("node");
        let pem = std::fs::read(dir.path().join("node-1.pem")).expect("pem");
        let der = CertificateDer::from_pem_slice(&pem).expect("certificate");
        let expiry = not_after(der.as_ref()).expect("expiry");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        assert!(expiry > now, "{expiry} <= {now}");
        assert_eq!(der_time(0x17, b"000229000000Z"), Some(951_782_400));
        assert_eq!(der_time(0x18, b"20261231000000Z"), Some(1_798_675_200));
        for bad in [&b""[..], b"Z", b"99999999999999Z", b"2026123100000Z"] {
            assert_eq!(der_time(0x18, bad), None, "{bad:?}");
        }
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x02, 0x30, 0x00],
            &der.as_ref()[..40],
        ] {
            assert_eq!(not_after(bad), None);
        }
    }

    #[test]
    fn malformed_subjects_have_no_name_and_never_panic() {
        // SET { SEQUENCE { OID 2.5.4.6 (country), PrintableString "NL" } }
        let country = [
            0x31, 0x09, 0x30, 0x07, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'N', b'L',
        ];
        assert_eq!(common_name(&country), None);
        for bad in [
            &[][..],
            &[0x31],
            &[0x31, 0x85, 1, 2, 3, 4, 5],
            &[0x31, 0x10, 0x30],
            &[0x30, 0x00],
            &[0x31, 0x05, 0x30, 0x03, 0x06, 0x01, 0x55],
        ] {
            assert_eq!(common_name(bad), None, "{bad:?}");
        }
        // A common name with a control character in it.
        let name = [
            0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x03, b'a', b'\n', b'b',
        ];
        assert_eq!(common_name(&name).as_deref(), Some("ab"));
    }
}
