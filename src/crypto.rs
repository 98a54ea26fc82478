//! The AES-256-GCM envelope that seals every stored secret, and the master keyring behind it.
//!
//! Envelope layout: `[version: 1][key id: 4][nonce: 12][ciphertext + tag: n + 16]`. The key id
//! names the master key that sealed it, so a keyring holding several keys (during a rotation)
//! opens any envelope, and a re-seal pass can find the rows still under an old key.

use crate::ids;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::digest;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;

/// The first byte of every envelope.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes naming the master key inside an envelope.
pub const KEY_ID_LEN: usize = 4;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// The id of a master key: the first bytes of a domain-separated SHA-256 of the key.
pub type KeyId = [u8; KEY_ID_LEN];

/// Why a secret could not be sealed or opened. Deliberately says nothing about the secret.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the secret could not be opened (wrong key, damaged, or bound to another row)")]
    Opaque,
    #[error("no master key with id {0} is loaded")]
    UnknownKey(String),
    #[error("master key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
}

/// One 256-bit master key.
pub struct MasterKey {
    id: KeyId,
    raw: [u8; 32],
    key: LessSafeKey,
}

impl MasterKey {
    /// Wraps 32 raw key bytes.
    pub fn from_bytes(raw: [u8; 32]) -> MasterKey {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw).expect("32-byte key"));
        MasterKey {
            id: key_id_of(&raw),
            raw,
            key,
        }
    }

    /// Generates a fresh random key.
    pub fn generate() -> MasterKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&ids::random_bytes(32));
        MasterKey::from_bytes(raw)
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key as 64 hex characters, for the key file.
    fn to_hex(&self) -> String {
        ids::hex(&self.raw)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, <redacted>)", ids::hex(&self.id))
    }
}

fn key_id_of(raw: &[u8; 32]) -> KeyId {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"ingot master key id\0");
    ctx.update(raw);
    let d = ctx.finish();
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&d.as_ref()[..KEY_ID_LEN]);
    id
}

/// The master keys this process can use; the first is the one the key file names current.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(keys: Vec<MasterKey>) -> Keyring {
        assert!(!keys.is_empty(), "a keyring holds at least one key");
        Keyring { keys }
    }

    /// Parses the text of a key file or `INGOT_MASTER_KEY`: one 64-hex-character key per line
    /// or comma-separated, `#` comments allowed, newest first.
    pub fn parse(text: &str, origin: &str) -> Result<Keyring, CryptoError> {
        let bad = |reason: String| CryptoError::KeyFile {
            path: origin.to_string(),
            reason,
        };
        let mut keys = Vec::new();
        for line in text.lines().map(|l| l.split('#').next().unwrap_or("")) {
            for item in line.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let bytes = ids::unhex(item)
                    .filter(|b| b.len() == 32)
                    .ok_or_else(|| bad("each key must be 64 hex characters".into()))?;
                let mut raw = [0u8; 32];
                raw.copy_from_slice(&bytes);
                keys.push(MasterKey::from_bytes(raw));
            }
        }
        if keys.is_empty() {
            return Err(bad("no key found".into()));
        }
        Ok(Keyring { keys })
    }

    /// Reads a key file.
    pub fn read_file(path: &Path) -> Result<Keyring, CryptoError> {
        let text = fs::read_to_string(path).map_err(|e| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Keyring::parse(&text, &path.display().to_string())
    }

    /// Writes the keyring to `path` with mode 0600, atomically (temp file, fsync, rename).
    pub fn write_file(&self, path: &Path) -> Result<(), CryptoError> {
        let fail = |e: std::io::Error| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut text = String::from("# ingot master keys, newest first. Keep this file secret.\n");
        for k in &self.keys {
            text.push_str(&k.to_hex());
            text.push('\n');
        }
        let tmp = path.with_extension("tmp");
        {
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(fail)?;
            // A rewrite keeps the file's owner and mode: a rotation run as root must not leave
            // the service's user unable to read its own key.
            #[cfg(unix)]
            if let Ok(old) = fs::metadata(path) {
                use std::os::unix::fs::{MetadataExt, PermissionsExt};
                f.set_permissions(fs::Permissions::from_mode(old.mode() & 0o7777))
                    .map_err(fail)?;
                std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid())).map_err(fail)?;
            }
            f.write_all(text.as_bytes()).map_err(fail)?;
            f.sync_all().map_err(fail)?;
        }
        fs::rename(&tmp, path).map_err(fail)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// The id of the first (newest) key.
    pub fn first_id(&self) -> KeyId {
        self.keys[0].id
    }

    pub fn contains(&self, id: &KeyId) -> bool {
        self.keys.iter().any(|k| &k.id == id)
    }

    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// A keyring with `key` in front of these keys.
    pub fn with_new_first(&self, key: MasterKey) -> Keyring {
        let mut keys = vec![key];
        keys.extend(self.keys.iter().map(|k| MasterKey::from_bytes(k.raw)));
        Keyring { keys }
    }

    /// A keyring of only the key `id`.
    pub fn only(&self, id: &KeyId) -> Option<Keyring> {
        let k = self.keys.iter().find(|k| &k.id == id)?;
        Some(Keyring {
            keys: vec![MasterKey::from_bytes(k.raw)],
        })
    }

    /// Seals `plaintext` under key `id`, binding `aad`.
    pub fn seal(&self, id: &KeyId, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self.find(id)?;
        let nonce_bytes = ids::random_bytes(NONCE_LEN);
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce_bytes);
        let mut body = plaintext.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(&nonce_bytes).map_err(|_| CryptoError::Opaque)?;
        key.key
            .seal_in_place_append_tag(nonce, Aad::from(aad), &mut body)
            .map_err(|_| CryptoError::Opaque)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens an envelope made by [`Keyring::seal`] with the same `aad`.
    pub fn open(&self, envelope: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let id = envelope_key_id(envelope).ok_or(CryptoError::Opaque)?;
        let key = self.find(&id)?;
        let nonce =
            Nonce::try_assume_unique_for_key(&envelope[1 + KEY_ID_LEN..HEADER_LEN]).map_err(|_| CryptoError::Opaque)?;
        let mut body = envelope[HEADER_LEN..].to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(aad), &mut body)
            .map_err(|_| CryptoError::Opaque)?;
        Ok(plain.to_vec())
    }

    fn find(&self, id: &KeyId) -> Result<&MasterKey, CryptoError> {
        self.keys
            .iter()
            .find(|k| &k.id == id)
            .ok_or_else(|| CryptoError::UnknownKey(ids::hex(id)))
    }
}

/// The key id inside a well-formed envelope; `None` when it is too short or of another version.
pub fn envelope_key_id(envelope: &[u8]) -> Option<KeyId> {
    if envelope.len() < HEADER_LEN + TAG_LEN || envelope[0] != ENVELOPE_VERSION {
        return None;
    }
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&envelope[1..1 + KEY_ID_LEN]);
    Some(id)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time_eq::constant_time_eq(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::new(vec![MasterKey::generate()])
    }

    #[test]
    fn seal_then_open_round_trips() {
        let r = ring();
        let env = r.seal(&r.first_id(), b"hunter2", b"credential:a:b").unwrap();
        assert_eq!(env[0], ENVELOPE_VERSION);
        assert_eq!(envelope_key_id(&env), Some(r.first_id()));
        assert_eq!(r.open(&env, b"credential:a:b").unwrap(), b"hunter2");
        assert!(!env.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let r = ring();
        let a = r.seal(&r.first_id(), b"same", b"x").unwrap();
        let b = r.seal(&r.first_id(), b"same", b"x").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn a_flipped_byte_anywhere_fails_to_open() {
        let r = ring();
        let env = r.seal(&r.first_id(), b"secret data", b"aad").unwrap();
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 0x01;
            assert!(r.open(&bad, b"aad").is_err(), "flip at {i} opened");
        }
    }

    #[test]
    fn wrong_associated_data_fails_to_open() {
        let r = ring();
        let env = r.seal(&r.first_id(), b"secret", b"credential:1:userA").unwrap();
        assert!(matches!(r.open(&env, b"credential:1:userB"), Err(CryptoError::Opaque)));
    }

    #[test]
    fn short_or_empty_input_is_refused_without_panicking() {
        let r = ring();
        let env = r.seal(&r.first_id(), b"", b"aad").unwrap();
        for n in 0..env.len() {
            assert!(r.open(&env[..n], b"aad").is_err(), "prefix of {n} bytes opened");
        }
        assert_eq!(r.open(&env, b"aad").unwrap(), b"");
    }

    #[test]
    fn another_key_cannot_open_and_says_which_key_is_missing() {
        let a = ring();
        let b = ring();
        let env = a.seal(&a.first_id(), b"s", b"aad").unwrap();
        assert!(matches!(b.open(&env, b"aad"), Err(CryptoError::UnknownKey(_))));
        let both = b.with_new_first(MasterKey::from_bytes(a.keys[0].raw));
        assert_eq!(both.open(&env, b"aad").unwrap(), b"s");
    }

    #[test]
    fn key_file_parses_lists_and_rejects_junk() {
        let k = MasterKey::generate().to_hex();
        let k2 = MasterKey::generate().to_hex();
        let r = Keyring::parse(&format!("# c\n{k}\n\n{k2} # old\n"), "f").unwrap();
        assert_eq!(r.ids().len(), 2);
        assert_eq!(Keyring::parse(&format!("{k},{k2}"), "env").unwrap().ids().len(), 2);
        assert!(Keyring::parse("abcd", "f").is_err());
        assert!(Keyring::parse("# nothing\n", "f").is_err());
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = MasterKey::generate();
        let hex = k.to_hex();
        assert!(!format!("{k:?}").contains(&hex));
        assert!(!format!("{:?}", Keyring::new(vec![k])).contains(&hex));
    }
}
