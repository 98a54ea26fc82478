//! User tokens: short-lived EdDSA JWTs for the embedded modal, and the signing-key cache.

use crate::ids;
use crate::store::{signing, Env, Secrets, StoreError};
use base64::Engine;
use jwt_simple::prelude::*;
use rusqlite::Connection;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// The `aud` of every user token.
pub const AUDIENCE: &str = "ingot-modal";
/// The longest a user token lives, in seconds (`exp - iat`).
pub const MAX_TTL: u64 = 1800;
/// The shortest `?ttl` a caller may ask for, in seconds.
pub const MIN_TTL: u64 = 60;

/// The claims beyond the registered ones.
#[derive(Debug, Serialize, Deserialize)]
struct ModalClaims {
    username: String,
    env: String,
    /// The install link a token was minted from, if it was (see `store::installs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lnk: Option<String>,
}

/// Why a token was refused; logged, never sent to the client.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token refused: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A token that passed verification.
#[derive(Debug, Clone)]
pub struct Verified {
    pub user_id: String,
    pub username: String,
    pub env: Env,
    pub expires_at_ms: i64,
    pub link: Option<String>,
}

/// Generates a signing key: (kid, public key bytes, private key bytes).
pub fn generate_key() -> (String, Vec<u8>, Vec<u8>) {
    let pair = Ed25519KeyPair::generate();
    (ids::object_id(), pair.public_key().to_bytes(), pair.to_bytes())
}

/// A signing key ready to mint with: ed25519-dalek's Ed25519 (its precomputed basepoint
/// table), 20 µs a signature here against ring's 26 µs and jwt-simple's pure-Rust 70 µs.
/// Verification stays with jwt-simple.
pub struct Signer {
    kid: String,
    /// The encoded JWT header, the same for every token of this key.
    header: String,
    key: ed25519_dalek::SigningKey,
}

impl Signer {
    /// Loads a key stored as jwt-simple writes it: 32 bytes of seed, then the public key.
    pub fn from_bytes(kid: &str, private: &[u8]) -> Result<Signer, TokenError> {
        let damaged = || TokenError::Invalid("stored signing key is damaged".into());
        let (seed, public) = private.split_at_checked(32).ok_or_else(damaged)?;
        let seed: &[u8; 32] = seed.try_into().map_err(|_| damaged())?;
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        // The stored public half must be the seed's, as ring checked when it loaded a pair.
        if key.verifying_key().as_bytes()[..] != *public {
            return Err(damaged());
        }
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid }).to_string();
        Ok(Signer {
            kid: kid.to_string(),
            header: B64URL.encode(header),
            key,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The Ed25519 signature of `input`.
    pub fn sign(&self, input: &[u8]) -> [u8; 64] {
        ed25519_dalek::Signer::sign(&self.key, input).to_bytes()
    }
}

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Whom a token is for.
pub struct Holder<'a> {
    pub user_id: &'a str,
    pub username: &'a str,
    pub env: Env,
    /// The install link it is minted from, if any.
    pub link: Option<&'a str>,
}

/// Mints a token for a user; returns it with its expiry in epoch milliseconds.
pub fn mint(
    signer: &Signer,
    issuer: &str,
    holder: &Holder,
    ttl_secs: u64,
    now_ms: i64,
) -> Result<(String, i64), TokenError> {
    let Holder {
        user_id,
        username,
        env,
        link,
    } = *holder;
    let ttl = ttl_secs.clamp(1, MAX_TTL) as i64;
    let now = now_ms / 1000;
    let mut claims = serde_json::json!({
        "iat": now,
        "exp": now + ttl,
        "nbf": now,
        "iss": issuer,
        "sub": user_id,
        "aud": AUDIENCE,
        "jti": ids::uuid_v4(),
        "username": username,
        "env": env.as_str(),
    });
    if let Some(link) = link {
        claims["lnk"] = link.into();
    }
    let mut token = format!("{}.{}", signer.header, B64URL.encode(claims.to_string()));
    let signature = signer.sign(token.as_bytes());
    token.push('.');
    token.push_str(&B64URL.encode(signature));
    Ok((token, (now + ttl) * 1000))
}

/// The `env` claim of a token, read without verifying anything: only for choosing which
/// policy an error page is served under, never for access.
pub fn unverified_env(token: &str) -> Option<Env> {
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(&B64URL.decode(payload).ok()?).ok()?;
    Env::parse(claims.get("env")?.as_str()?)
}

/// The `kid` of a token whose header says EdDSA; `None` for anything else (`none`, HS256...).
pub fn key_id_of(token: &str) -> Option<String> {
    let meta = Token::decode_metadata(token).ok()?;
    (meta.algorithm() == "EdDSA").then(|| meta.key_id().map(str::to_string))?
}

/// Verifies signature, issuer, audience, time (with `leeway_secs` of tolerance) and lifetime.
/// `now_secs` replaces the clock in tests.
pub fn verify(
    public: &Ed25519PublicKey,
    token: &str,
    issuer: &str,
    leeway_secs: u64,
    now_secs: Option<u64>,
) -> Result<Verified, TokenError> {
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([issuer.to_string()])),
        allowed_audiences: Some(HashSet::from([AUDIENCE.to_string()])),
        time_tolerance: Some(Duration::from_secs(leeway_secs)),
        max_token_length: Some(8 * 1024),
        artificial_time: now_secs.map(UnixTimeStamp::from_secs),
        ..Default::default()
    };
    let claims = public
        .verify_token::<ModalClaims>(token, Some(options))
        .map_err(|e| TokenError::Invalid(e.to_string()))?;
    let (Some(iat), Some(exp), Some(sub)) = (claims.issued_at, claims.expires_at, claims.subject) else {
        return Err(TokenError::Invalid("iat, exp and sub are required".into()));
    };
    if exp.as_secs().saturating_sub(iat.as_secs()) > MAX_TTL {
        return Err(TokenError::Invalid("lifetime over 1800 seconds".into()));
    }
    let env = Env::parse(&claims.custom.env).ok_or_else(|| TokenError::Invalid("unknown env".into()))?;
    Ok(Verified {
        user_id: sub,
        username: claims.custom.username,
        env,
        expires_at_ms: exp.as_secs() as i64 * 1000,
        link: claims.custom.lnk,
    })
}

/// One JWK for a public key.
pub fn jwk(kid: &str, public: &[u8]) -> serde_json::Value {
    use base64::Engine;
    serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": kid,
        "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
    })
}

/// Signing keys as this process uses them: private keys unsealed once and kept.
#[derive(Default)]
pub struct SigningKeys {
    signers: RwLock<HashMap<String, Arc<Signer>>>,
}

impl SigningKeys {
    /// The key new tokens are signed with, as the database names it now (another process may
    /// have rotated it).
    pub fn current(&self, conn: &Connection, secrets: &Secrets) -> Result<Arc<Signer>, TokenError> {
        let kid = signing::current_kid(conn)?.ok_or_else(|| TokenError::Invalid("no signing key".into()))?;
        if let Some(p) = self.signers.read().unwrap_or_else(|p| p.into_inner()).get(&kid) {
            return Ok(p.clone());
        }
        let private = signing::private_key(conn, secrets, &kid)?
            .ok_or_else(|| TokenError::Invalid("signing key vanished".into()))?;
        let signer = Arc::new(Signer::from_bytes(&kid, &private)?);
        self.signers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kid, signer.clone());
        Ok(signer)
    }

    /// Verifies a token against the published key its `kid` names, at `now_ms`.
    pub fn verify(
        &self,
        conn: &Connection,
        token: &str,
        issuer: &str,
        leeway_secs: u64,
        now_ms: i64,
    ) -> Result<Verified, TokenError> {
        let kid = key_id_of(token).ok_or_else(|| TokenError::Invalid("not an EdDSA token with a kid".into()))?;
        let public = signing::published(conn, retired_since(now_ms, leeway_secs))?
            .into_iter()
            .find(|(k, _)| *k == kid)
            .ok_or_else(|| TokenError::Invalid(format!("unknown or expired kid {kid}")))?
            .1;
        let public = Ed25519PublicKey::from_bytes(&public)
            .map_err(|e| TokenError::Invalid(format!("stored public key is damaged: {e}")))?;
        verify(&public, token, issuer, leeway_secs, Some((now_ms / 1000) as u64))
    }
}

/// A retired key stays published while a token it signed can still be live: for the longest
/// lifetime plus the leeway after it was retired. Keys retired before the returned instant
/// (epoch milliseconds) verify nothing.
pub fn retired_since(now_ms: i64, leeway_secs: u64) -> i64 {
    now_ms - ((MAX_TTL + leeway_secs) * 1000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const ISS: &str = "http://ingot.test";

    fn holder(username: &str, env: Env) -> Holder<'_> {
        Holder {
            user_id: "u1",
            username,
            env,
            link: None,
        }
    }

    fn pair() -> Ed25519KeyPair {
        Ed25519KeyPair::generate().with_key_id("k1")
    }

    fn signer(p: &Ed25519KeyPair) -> Signer {
        Signer::from_bytes("k1", &p.to_bytes()).unwrap()
    }

    #[test]
    fn a_fresh_token_verifies_with_its_claims() {
        let p = pair();
        let (t, exp) = mint(&signer(&p), ISS, &holder("alice", Env::Production), 600, ids::now_ms()).unwrap();
        assert_eq!(key_id_of(&t).as_deref(), Some("k1"));
        let v = verify(&p.public_key(), &t, ISS, 0, None).unwrap();
        assert_eq!(
            (v.user_id.as_str(), v.username.as_str(), v.env),
            ("u1", "alice", Env::Production)
        );
        assert_eq!(v.expires_at_ms, exp);
    }

    #[test]
    fn a_stored_key_whose_public_half_is_not_its_seeds_is_refused() {
        let mut bytes = pair().to_bytes();
        assert!(Signer::from_bytes("k1", &bytes).is_ok());
        bytes[40] ^= 1;
        assert!(Signer::from_bytes("k1", &bytes).is_err());
        assert!(Signer::from_bytes("k1", &bytes[..63]).is_err());
    }

    #[test]
    fn an_expired_token_is_refused_with_zero_tolerance() {
        let p = pair();
        let (t, exp) = mint(&signer(&p), ISS, &holder("a", Env::Development), 60, ids::now_ms()).unwrap();
        let after = (exp / 1000) as u64 + 1;
        assert!(verify(&p.public_key(), &t, ISS, 0, Some(after)).is_err());
        // With tolerance the same instant passes: tolerance is really applied, and really zero above.
        assert!(verify(&p.public_key(), &t, ISS, 5, Some(after)).is_ok());
    }

    #[test]
    fn another_key_wrong_audience_or_issuer_is_refused() {
        let p = pair();
        let (t, _) = mint(&signer(&p), ISS, &holder("a", Env::Development), 60, ids::now_ms()).unwrap();
        assert!(verify(&pair().public_key(), &t, ISS, 0, None).is_err());
        assert!(verify(&p.public_key(), &t, "http://elsewhere", 0, None).is_err());
        let other_aud = Claims::with_custom_claims(
            ModalClaims {
                username: "a".into(),
                env: "development".into(),
                lnk: None,
            },
            Duration::from_secs(60),
        )
        .with_issuer(ISS)
        .with_subject("u1")
        .with_audience("someone-else");
        let t2 = p.sign(other_aud).unwrap();
        assert!(verify(&p.public_key(), &t2, ISS, 0, None).is_err());
    }

    #[test]
    fn alg_none_and_changed_alg_are_refused() {
        let p = pair();
        let (t, _) = mint(&signer(&p), ISS, &holder("a", Env::Development), 60, ids::now_ms()).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        for alg in ["none", "HS256"] {
            let header = b64.encode(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#));
            let forged = format!("{header}.{}.{}", parts[1], if alg == "none" { "" } else { parts[2] });
            assert!(key_id_of(&forged).is_none(), "{alg}");
            assert!(verify(&p.public_key(), &forged, ISS, 0, None).is_err(), "{alg}");
        }
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let p = pair();
        let (t, _) = mint(&signer(&p), ISS, &holder("a", Env::Development), 60, ids::now_ms()).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(b64.decode(parts[1]).unwrap())
            .unwrap()
            .replace("u1", "u2");
        let forged = format!("{}.{}.{}", parts[0], b64.encode(payload), parts[2]);
        assert!(verify(&p.public_key(), &forged, ISS, 0, None).is_err());
    }

    #[test]
    fn a_token_living_longer_than_1800_seconds_is_refused() {
        let p = pair();
        let long = Claims::with_custom_claims(
            ModalClaims {
                username: "a".into(),
                env: "development".into(),
                lnk: None,
            },
            Duration::from_secs(MAX_TTL + 1),
        )
        .with_issuer(ISS)
        .with_subject("u1")
        .with_audience(AUDIENCE);
        let t = p.sign(long).unwrap();
        assert!(verify(&p.public_key(), &t, ISS, 0, None).is_err());
    }
}
