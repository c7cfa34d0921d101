use super::*;
use crate::keys::softsign::SoftSigner;

#[test]
fn key_types_parse_and_print() {
    for t in [KeyType::Ed25519, KeyType::Secp256k1] {
        assert_eq!(t.name().parse::<KeyType>().unwrap(), t);
    }
    assert!("rsa".parse::<KeyType>().is_err());
    assert_eq!(KeyType::default(), KeyType::Ed25519);
}

#[test]
fn ed25519_address_is_the_node_id() {
    let key = SoftSigner::from_seed([1; 32]);
    let PublicKey::Ed25519(raw) = key.public_key() else {
        panic!("ed25519 expected");
    };
    assert_eq!(key.public_key().address(), crate::transport::node_id(&raw));
    assert_eq!(key.key_type(), KeyType::Ed25519);
}

#[test]
fn public_keys_check_their_length() {
    assert!(PublicKey::from_type_and_bytes(KeyType::Ed25519, &[0; 31]).is_err());
    assert!(PublicKey::from_type_and_bytes(KeyType::Ed25519, &[0; 32]).is_ok());
    assert!(PublicKey::from_type_and_bytes(KeyType::Secp256k1, &[2; 32]).is_err());
}

#[test]
fn signatures_verify_only_under_their_own_key_type() {
    let ed = SoftSigner::from_seed([1; 32]);
    let secp = SoftSigner::generate_type(KeyType::Secp256k1);
    let sig_ed = ed.sign(b"m").unwrap();
    let sig_secp = secp.sign(b"m").unwrap();
    assert!(ed.public_key().verify(b"m", &sig_ed));
    assert!(secp.public_key().verify(b"m", &sig_secp));
    assert!(!secp.public_key().verify(b"m", &sig_ed));
    assert!(!ed.public_key().verify(b"m", &sig_secp));
    assert!(!secp.public_key().verify(b"other", &sig_secp));
    // Deterministic: the same bytes give the same signature.
    assert_eq!(secp.sign(b"m").unwrap(), sig_secp);
}
