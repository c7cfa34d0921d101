//! secp256k1 consensus keys as CometBFT v1.0 uses them.
//!
//! A signature is ECDSA over SHA-256 of the sign bytes with an RFC 6979
//! deterministic nonce, encoded as 64 bytes r‖s with s in the lower half
//! of the group order (CometBFT refuses the high-S twin). The public key is
//! the 33-byte compressed point; the validator address is
//! RIPEMD-160(SHA-256(public key)).

use k256::ecdsa::signature::Signer as _;
use k256::ecdsa::{Signature, SigningKey};
use zeroize::Zeroizing;

use super::Error;

/// A secp256k1 key from its 32-byte secret scalar.
///
/// # Errors
///
/// When the scalar is zero or not below the group order.
pub fn signing_key(secret: &[u8; 32]) -> Result<SigningKey, Error> {
    SigningKey::from_slice(secret).map_err(|_| {
        Error::Key("secp256k1 secret is not a valid scalar (zero or not below the order)".into())
    })
}

/// A fresh random key from the operating system's RNG.
pub fn generate() -> SigningKey {
    SigningKey::random(&mut rand_core::OsRng)
}

/// The key's 32-byte secret scalar. Zeroized on drop.
pub fn secret(key: &SigningKey) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(key.to_bytes().into())
}

/// The 33-byte compressed public key.
pub fn public_key(key: &SigningKey) -> [u8; 33] {
    let point = key.verifying_key().to_encoded_point(true);
    let mut out = [0u8; 33];
    out.copy_from_slice(point.as_bytes());
    out
}

/// Signs `msg` as CometBFT does: SHA-256, RFC 6979, low-S r‖s.
pub fn sign(key: &SigningKey, msg: &[u8]) -> [u8; 64] {
    let signature: Signature = key.sign(msg);
    let signature = signature.normalize_s().unwrap_or(signature);
    signature.to_bytes().into()
}

/// Brings a 64-byte r‖s signature from elsewhere (an HSM) to CometBFT's
/// form: s in the lower half of the order.
///
/// # Errors
///
/// When the bytes are not a signature (r or s zero or out of range).
pub fn normalize(signature: &[u8]) -> Result<[u8; 64], Error> {
    let signature = Signature::from_slice(signature).map_err(|_| {
        Error::Signing(format!(
            "secp256k1 signature of {} bytes is not r||s",
            signature.len()
        ))
    })?;
    let signature = signature.normalize_s().unwrap_or(signature);
    Ok(signature.to_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PublicKey;

    /// The key, public key and address of CometBFT's secp256k1 test table
    /// (the address is the payload of its base58check address
    /// 1CKZ9Nx4zgds8tU7nJHotKSDr4a9bYJCa3).
    const PRIV: &str = "a96e62ed3955e65be32703f12d87b6b5cf26039ecfa948dc5107a495418e5330";
    const PUB: &str = "02950e1cdfcb133d6024109fd489f734eeb4502418e538c28481f22bce276f248c";
    const ADDRESS: &str = "7c2bb42a8be69791ec763e51f5a49bcd41e82237";

    /// The message CometBFT's low-S test signs. Its raw RFC 6979 signature
    /// has a high S, so this vector also checks the normalisation. Derived
    /// with an independent implementation (deterministic ECDSA, SHA-256,
    /// then s := n - s when s > n/2), which is what CometBFT's
    /// SignCompact produces.
    const MSG: &[u8] = b"We have lingered long enough on the shores of the cosmic ocean.";
    const SIG: &str = "6fe0b107b8ba1b4e06c955058af41a4773b335a61febf812f53d041e22fd9658\
                       27d93a9a676f324428759924474697ce04e30205413d072d78fbc70d28f20513";
    /// The empty message (its raw signature is already low-S).
    const SIG_EMPTY: &str = "99e40411915aca94816f32d1dcd60e60d17fecb6feb898212dea76f44750cbad\
                             0945d991940c3b1ea65613f1480e62db0218f02cae256d83aa087baa0ad7bcfa";

    fn vector_key() -> SigningKey {
        let secret: [u8; 32] = hex::decode(PRIV).unwrap().try_into().unwrap();
        signing_key(&secret).unwrap()
    }

    #[test]
    fn public_key_and_address_match_cometbft() {
        let key = vector_key();
        assert_eq!(hex::encode(public_key(&key)), PUB);
        let public = PublicKey::Secp256k1(public_key(&key));
        assert_eq!(hex::encode(public.address()), ADDRESS);
    }

    #[test]
    fn signatures_match_byte_for_byte() {
        let key = vector_key();
        assert_eq!(hex::encode(sign(&key, MSG)), SIG);
        assert_eq!(hex::encode(sign(&key, b"")), SIG_EMPTY);
        let public = PublicKey::Secp256k1(public_key(&key));
        assert!(public.verify(MSG, &sign(&key, MSG)));
    }

    #[test]
    fn high_s_is_refused_and_normalized() {
        let key = vector_key();
        let public = PublicKey::Secp256k1(public_key(&key));
        let low = sign(&key, MSG);
        // s' = n - s: the same signature, malleated.
        let sig = Signature::from_slice(&low).unwrap();
        let (r, s) = sig.split_scalars();
        let high = Signature::from_scalars(r, -*s).unwrap();
        let high: [u8; 64] = high.to_bytes().into();
        assert_ne!(high, low);
        assert!(!public.verify(MSG, &high), "high S must not verify");
        assert_eq!(normalize(&high).unwrap(), low);
        let mut flipped = low;
        flipped[3] ^= 1;
        assert!(!public.verify(MSG, &flipped));
        assert!(normalize(&[0u8; 64]).is_err());
    }

    #[test]
    fn invalid_scalars_are_refused() {
        assert!(signing_key(&[0u8; 32]).is_err());
        assert!(signing_key(&[0xff; 32]).is_err());
        let key = generate();
        assert_eq!(*secret(&signing_key(&secret(&key)).unwrap()), *secret(&key));
    }

    #[test]
    fn public_key_bytes_are_checked() {
        let bytes = hex::decode(PUB).unwrap();
        assert!(PublicKey::from_type_and_bytes(crate::keys::KeyType::Secp256k1, &bytes).is_ok());
        assert!(
            PublicKey::from_type_and_bytes(crate::keys::KeyType::Secp256k1, &bytes[1..]).is_err()
        );
        let mut bad = bytes.clone();
        bad[0] = 0x05;
        assert!(PublicKey::from_type_and_bytes(crate::keys::KeyType::Secp256k1, &bad).is_err());
    }
}
