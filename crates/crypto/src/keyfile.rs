//! Passphrase-protected secret files: a small JSON text holding one secret
//! encrypted with AES-256-GCM under a key derived from a passphrase with
//! Argon2id.
//!
//! ```text
//! {"version":1,"purpose":"...","kdf":"argon2id","m_kib":19456,"t":2,"p":1,
//!  "salt":"<hex 16>","nonce":"<hex 12>","ciphertext":"<hex ct || tag>"}
//! ```
//!
//! The associated data binds the format version, the purpose and the cost
//! parameters (the salt is bound through the key), so a file cannot be
//! passed off for another purpose nor its parameters changed: any change to
//! the file, a wrong passphrase or a wrong purpose fails [`open`] with
//! [`CryptoError::KeyFile`] and a message saying which it may be.
//!
//! Implementation notes:
//! - The purpose is compared before anything is derived, so "wrong purpose"
//!   is told apart from "wrong passphrase"; it is still bound as associated
//!   data, so editing the purpose field does not help.
//! - Costs read from a file are bounded (see `password::derive_key`), so a
//!   hostile file cannot make [`open`] allocate without limit.
use serde::{Deserialize, Serialize};

use crate::ecdsa::EcdsaP256KeyPair;
use crate::password::{self, Argon2Params};
use crate::{CryptoError, SecretBytes, aead, rng::Rng};

/// The format version [`seal`] writes and [`open`] reads.
pub const VERSION: u32 = 1;
/// The only key derivation function.
const KDF: &str = "argon2id";
/// Salt length in bytes.
const SALT_LEN: usize = 16;
/// Domain separation of the associated data.
const AAD_LABEL: &str = "postvault keyfile v1";

/// The purpose of a key file holding an ECDSA P-256 private key (PKCS#8),
/// e.g. the provider key ([`EcdsaP256KeyPair::to_keyfile`]).
pub const ECDSA_P256_PURPOSE: &str = "postvault ECDSA P-256 private key (PKCS#8)";

/// The JSON document.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    purpose: String,
    kdf: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
    nonce: String,
    ciphertext: String,
}

fn aad(purpose: &str, params: Argon2Params) -> Vec<u8> {
    format!(
        "{AAD_LABEL}\0{purpose}\0{KDF}\0{}\0{}\0{}",
        params.m_kib, params.t, params.p
    )
    .into_bytes()
}

fn err(message: impl Into<String>) -> CryptoError {
    CryptoError::KeyFile(message.into())
}

/// Encrypts `secret` under `passphrase` for `purpose` (a short text naming
/// what the secret is, checked by [`open`]); returns the JSON text, ending
/// with a newline. The salt and nonce come from `rng`.
pub fn seal(
    rng: &mut Rng,
    passphrase: &[u8],
    purpose: &str,
    secret: &[u8],
    params: Argon2Params,
) -> Result<String, CryptoError> {
    if passphrase.is_empty() {
        return Err(err("the passphrase is empty"));
    }
    let salt: [u8; SALT_LEN] = rng.array()?;
    let key = password::derive_key(passphrase, &salt, params)?;
    let sealed = aead::seal(rng, &key, &aad(purpose, params), secret)?;
    let (nonce, ciphertext) = sealed.split_at(aead::NONCE_LEN);
    let file = KeyFile {
        version: VERSION,
        purpose: purpose.to_owned(),
        kdf: KDF.to_owned(),
        m_kib: params.m_kib,
        t: params.t,
        p: params.p,
        salt: hex::encode(salt),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ciphertext),
    };
    let mut text = serde_json::to_string(&file).map_err(|_| err("cannot encode the key file"))?;
    text.push('\n');
    Ok(text)
}

/// Decrypts a key file made by [`seal`] for `purpose`.
///
/// Fails with [`CryptoError::KeyFile`] when the text is not a key file,
/// names another purpose, or does not decrypt (wrong passphrase, or the file
/// was altered).
pub fn open(passphrase: &[u8], purpose: &str, text: &str) -> Result<SecretBytes, CryptoError> {
    let file: KeyFile =
        serde_json::from_str(text).map_err(|e| err(format!("not a postvault key file ({e})")))?;
    if file.version != VERSION {
        return Err(err(format!(
            "unsupported key file version {} (this build reads version {VERSION})",
            file.version
        )));
    }
    if file.kdf != KDF {
        return Err(err(format!(
            "unsupported key derivation {:?} (expected {KDF})",
            file.kdf
        )));
    }
    if file.purpose != purpose {
        return Err(err(format!(
            "the file holds a {:?}, not a {purpose:?}: wrong file",
            file.purpose
        )));
    }
    let salt = hex::decode(&file.salt).map_err(|_| err("the salt is not hex: file altered"))?;
    if salt.len() != SALT_LEN {
        return Err(err("the salt has the wrong length: file altered"));
    }
    let nonce: [u8; aead::NONCE_LEN] = hex::decode(&file.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| err("the nonce is not 12 bytes of hex: file altered"))?;
    let ciphertext = hex::decode(&file.ciphertext)
        .map_err(|_| err("the ciphertext is not hex: file altered"))?;
    let params = Argon2Params {
        m_kib: file.m_kib,
        t: file.t,
        p: file.p,
    };
    let key = password::derive_key(passphrase, &salt, params)
        .map_err(|_| err("the Argon2id parameters are invalid or out of range: file altered"))?;
    aead::open_with_nonce(&key, nonce, &aad(purpose, params), &ciphertext).map_err(|e| match e {
        CryptoError::Decrypt => err("wrong passphrase, or the file was altered"),
        other => other,
    })
}

impl EcdsaP256KeyPair {
    /// This private key (PKCS#8) in a key file under `passphrase`, purpose
    /// [`ECDSA_P256_PURPOSE`].
    pub fn to_keyfile(
        &self,
        rng: &mut Rng,
        passphrase: &[u8],
        params: Argon2Params,
    ) -> Result<String, CryptoError> {
        seal(
            rng,
            passphrase,
            ECDSA_P256_PURPOSE,
            self.to_pkcs8().expose_secret(),
            params,
        )
    }

    /// Loads a private key from a key file written by [`Self::to_keyfile`].
    pub fn from_keyfile(passphrase: &[u8], text: &str) -> Result<Self, CryptoError> {
        let der = open(passphrase, ECDSA_P256_PURPOSE, text)?;
        Self::from_pkcs8(&der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Faults;

    const P: Argon2Params = Argon2Params::TEST;

    fn rng() -> Rng {
        Rng::new(Faults::none())
    }

    fn message(e: CryptoError) -> String {
        match e {
            CryptoError::KeyFile(m) => m,
            other => panic!("expected a key file error, got {other:?}"),
        }
    }

    #[test]
    fn round_trip() {
        let text = seal(
            &mut rng(),
            b"correct horse",
            "test secret",
            b"the secret",
            P,
        )
        .unwrap();
        assert!(text.ends_with('\n'));
        assert!(!text.contains("the secret"));
        let opened = open(b"correct horse", "test secret", &text).unwrap();
        assert_eq!(opened.expose_secret(), b"the secret");
    }

    #[test]
    fn two_seals_differ() {
        let a = seal(&mut rng(), b"pw", "x", b"s", P).unwrap();
        let b = seal(&mut rng(), b"pw", "x", b"s", P).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_passphrase() {
        let text = seal(&mut rng(), b"right", "test", b"secret", P).unwrap();
        let m = message(open(b"wrong", "test", &text).unwrap_err());
        assert!(m.contains("wrong passphrase"), "{m}");
    }

    #[test]
    fn wrong_purpose() {
        let text = seal(&mut rng(), b"pw", "meter key A", b"secret", P).unwrap();
        let m = message(open(b"pw", "meter key B", &text).unwrap_err());
        assert!(m.contains("wrong file"), "{m}");
        // Editing the purpose field does not help: it is associated data.
        let edited = text.replace("meter key A", "meter key B");
        let m = message(open(b"pw", "meter key B", &edited).unwrap_err());
        assert!(m.contains("altered"), "{m}");
    }

    #[test]
    fn flipped_byte_anywhere_in_the_secret_parts_is_refused() {
        let text = seal(&mut rng(), b"pw", "test", b"secret", P).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for field in ["salt", "nonce", "ciphertext"] {
            let hexed = v[field].as_str().unwrap();
            for i in [0, hexed.len() / 2, hexed.len() - 1] {
                let mut chars: Vec<char> = hexed.chars().collect();
                chars[i] = if chars[i] == '0' { '1' } else { '0' };
                let changed: String = chars.into_iter().collect();
                let mut w = v.clone();
                w[field] = serde_json::Value::String(changed);
                let m = message(open(b"pw", "test", &w.to_string()).unwrap_err());
                assert!(m.contains("altered"), "{field}[{i}]: {m}");
            }
        }
        // Changed cost parameters change the associated data (and the key).
        let mut w = v.clone();
        w["t"] = serde_json::json!(2);
        let m = message(open(b"pw", "test", &w.to_string()).unwrap_err());
        assert!(m.contains("altered"), "{m}");
    }

    #[test]
    fn truncated_and_garbage() {
        let text = seal(&mut rng(), b"pw", "test", b"secret", P).unwrap();
        let m = message(open(b"pw", "test", &text[..text.len() / 2]).unwrap_err());
        assert!(m.contains("not a postvault key file"), "{m}");
        let m = message(open(b"pw", "test", "hello").unwrap_err());
        assert!(m.contains("not a postvault key file"), "{m}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut w = v.clone();
        w["version"] = serde_json::json!(2);
        let m = message(open(b"pw", "test", &w.to_string()).unwrap_err());
        assert!(m.contains("version 2"), "{m}");
    }

    #[test]
    fn hostile_costs_are_refused_before_deriving() {
        let text = seal(&mut rng(), b"pw", "test", b"secret", P).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["m_kib"] = serde_json::json!(u32::MAX);
        let m = message(open(b"pw", "test", &v.to_string()).unwrap_err());
        assert!(m.contains("out of range"), "{m}");
    }

    #[test]
    fn empty_passphrase_is_refused() {
        assert!(seal(&mut rng(), b"", "test", b"secret", P).is_err());
    }

    #[test]
    fn ecdsa_key_round_trip() {
        let key = EcdsaP256KeyPair::generate(&Faults::none()).unwrap();
        let text = key.to_keyfile(&mut rng(), b"pass phrase", P).unwrap();
        let back = EcdsaP256KeyPair::from_keyfile(b"pass phrase", &text).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        let sig = back.sign(b"msg").unwrap();
        assert!(crate::ecdsa::verify(&key.public_key(), b"msg", &sig));
        assert!(EcdsaP256KeyPair::from_keyfile(b"other", &text).is_err());
        // A key file for another purpose is not taken for a private key.
        let other = seal(&mut rng(), b"pass phrase", "meter key", b"x", P).unwrap();
        let m = message(EcdsaP256KeyPair::from_keyfile(b"pass phrase", &other).unwrap_err());
        assert!(m.contains("wrong file"), "{m}");
    }
}
