//! `X-Alloy-Signature`: the RSA key that signs every request ingot sends to a customer's
//! servers (webhook deliveries, `http` blocks, OAuth token requests), and the signature itself.
//!
//! The signature is RSASSA-PKCS1-v1_5 with SHA-256 (what Node's `crypto.verify("sha256", ...)`
//! checks with an RSA key) over `METHOD + URL + body`, in lowercase hex: the method in capitals,
//! the full URL exactly as sent, the body exactly as sent (nothing for a request without one).
//! The public key is served at `GET /security/alloy_public_key.pem`.
//!
//! The key (3072 bits) is made on first need, not on every start: making one takes a good part
//! of a second, and a test suite starts hundreds of servers that never send a request. The first
//! outgoing request (or the first fetch of the public key) makes it under a lock, stores it
//! sealed, and keeps it; `ingot serve` also asks for it in the background at start, so a real
//! server has it ready before its first request. Every use asks the database which key is
//! current (one indexed read), so a key replaced by `ingot keys rotate-request-signing` in
//! another process is used from the next request on.
//!
//! ring signs; the `rsa` crate only generates, as ring cannot make RSA keys.

use crate::crypto::CryptoError;
use crate::ids;
use crate::store::{request_keys, Store, StoreError};
use base64::Engine;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rusqlite::Connection;
use std::sync::{Arc, Mutex, RwLock};

/// The header every signed request carries.
pub const HEADER: &str = "X-Alloy-Signature";
/// The size of a new key.
pub const BITS: usize = 3072;

/// One signing key, unsealed.
pub struct Key {
    id: String,
    /// SubjectPublicKeyInfo DER.
    public: Vec<u8>,
    pair: RsaKeyPair,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestSigningKey({}, <redacted>)", self.id)
    }
}

impl Key {
    /// Loads a stored key: SubjectPublicKeyInfo DER and PKCS#8 DER.
    pub fn from_der(id: &str, public: Vec<u8>, pkcs8: &[u8]) -> Result<Key, CryptoError> {
        let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| CryptoError::Opaque)?;
        Ok(Key {
            id: id.to_string(),
            public,
            pair,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lowercase hex signature of `METHOD + url + body`.
    pub fn sign(&self, method: &str, url: &str, body: &[u8]) -> String {
        let mut message = Vec::with_capacity(method.len() + url.len() + body.len());
        message.extend_from_slice(method.as_bytes());
        message.extend_from_slice(url.as_bytes());
        message.extend_from_slice(body);
        let mut signature = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                &message,
                &mut signature,
            )
            .expect("a buffer of the modulus' length takes an RSA signature");
        ids::hex(&signature)
    }

    /// The public key as PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.public);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }
}

/// A new key: (id, SubjectPublicKeyInfo DER, PKCS#8 DER). Slow: see the module's notes.
pub fn generate() -> (String, Vec<u8>, rsa::pkcs8::SecretDocument) {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, BITS).expect("the OS gives random bytes");
    let pkcs8 = private.to_pkcs8_der().expect("an RSA key encodes as PKCS#8");
    let public = private
        .to_public_key()
        .to_public_key_der()
        .expect("an RSA public key encodes as SubjectPublicKeyInfo");
    (ids::object_id(), public.into_vec(), pkcs8)
}

/// The signing key as this process uses it: unsealed once and kept while it is current.
#[derive(Default)]
pub struct RequestSigner {
    current: RwLock<Option<Arc<Key>>>,
    /// Held while a first key is made, so that one thread makes it and the others wait.
    making: Mutex<()>,
}

impl RequestSigner {
    /// The key requests are signed with now, made (and stored) if there is none yet.
    pub fn key(&self, conn: &Connection, store: &Store) -> Result<Arc<Key>, StoreError> {
        if let Some(key) = self.current_key(conn, store)? {
            return Ok(key);
        }
        let _making = self.making.lock().unwrap_or_else(|p| p.into_inner());
        // Another thread may have made it while this one waited.
        if let Some(key) = self.current_key(conn, store)? {
            return Ok(key);
        }
        let (id, public, private) = generate();
        let secrets = store.secrets.clone();
        let stored =
            store.write(move |c| request_keys::insert_if_none(c, &secrets, &id, &public, private.as_bytes()))?;
        log::info!("made the request-signing key {stored} (X-Alloy-Signature)");
        self.current_key(conn, store)?
            .ok_or_else(|| StoreError::Unavailable("the request-signing key was not stored".into()))
    }

    /// The `X-Alloy-Signature` value for a request.
    pub fn sign(
        &self,
        conn: &Connection,
        store: &Store,
        method: &str,
        url: &str,
        body: &[u8],
    ) -> Result<String, StoreError> {
        Ok(self.key(conn, store)?.sign(method, url, body))
    }

    /// The stored current key, from memory while it stays current.
    fn current_key(&self, conn: &Connection, store: &Store) -> Result<Option<Arc<Key>>, StoreError> {
        let Some(id) = request_keys::current_id(conn)? else {
            return Ok(None);
        };
        if let Some(key) = self.current.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if key.id == id {
                return Ok(Some(key.clone()));
            }
        }
        let Some((public, private)) = request_keys::get(conn, &store.secrets, &id)? else {
            // Replaced between the two reads: the next request finds the new one.
            return Err(StoreError::Unavailable(
                "the request-signing key changed while it was read".into(),
            ));
        };
        let key = Arc::new(Key::from_der(&id, public, &private)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(key.clone());
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    /// One key for every test here: making one is slow.
    fn key() -> &'static Key {
        static KEY: std::sync::OnceLock<Key> = std::sync::OnceLock::new();
        KEY.get_or_init(|| {
            let (id, public, private) = generate();
            Key::from_der(&id, public, private.as_bytes()).unwrap()
        })
    }

    /// The SubjectPublicKeyInfo's RSAPublicKey (what ring verifies with), taken back out of
    /// the PEM through the `rsa` crate.
    fn ring_public(pem: &str) -> Vec<u8> {
        use rsa::pkcs1::EncodeRsaPublicKey;
        use rsa::pkcs8::DecodePublicKey;
        let public = rsa::RsaPublicKey::from_public_key_pem(pem).unwrap();
        public.to_pkcs1_der().unwrap().into_vec()
    }

    #[test]
    fn a_signature_verifies_over_method_url_and_body_only() {
        let k = key();
        let sig = k.sign("POST", "http://h/x?a=1", "{\"é\":1}".as_bytes());
        assert_eq!(sig.len(), BITS / 8 * 2);
        assert!(sig.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, ring_public(&k.public_pem()));
        let raw = ids::unhex(&sig).unwrap();
        assert!(public.verify("POSThttp://h/x?a=1{\"é\":1}".as_bytes(), &raw).is_ok());
        for other in [
            "GEThttp://h/x?a=1{\"é\":1}",
            "POSThttp://h/x?a=2{\"é\":1}",
            "POSThttp://h/x?a=1{\"é\":2}",
        ] {
            assert!(public.verify(other.as_bytes(), &raw).is_err(), "{other}");
        }
        let empty = ids::unhex(&k.sign("GET", "http://h/", b"")).unwrap();
        assert!(
            public.verify(b"GEThttp://h/", &empty).is_ok(),
            "no body: method and URL alone"
        );
    }

    #[test]
    fn the_key_is_3072_bits_and_the_pem_is_subject_public_key_info() {
        let k = key();
        let pem = k.public_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n") && pem.ends_with("-----END PUBLIC KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        use rsa::pkcs8::DecodePublicKey;
        use rsa::traits::PublicKeyParts;
        assert_eq!(rsa::RsaPublicKey::from_public_key_pem(&pem).unwrap().n().bits(), BITS);
        assert!(!format!("{k:?}").contains(&pem[27..60]));
    }
}
