//! Master Key Sets and key tokens (seed 002, "Key Management").
//!
//! An MKS is two 256-bit keys: the MEK (AES-256-GCM, seals key tokens and
//! records) and the MAK (HMAC-SHA-256, where a MAC alone is meant). Its ID is
//! a hash of both keys, which doubles as the commitment that recombined
//! shares are checked against.
//!
//! A key token is a key sealed under the MEK: its header (type, usage,
//! expiry, exportable flag, MKS generation and ID) and the identity of the
//! record it belongs to are bound as associated data, so a token moved to
//! another record or with an edited header does not open.
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use postvault_crypto::aead::AeadKey;
use postvault_crypto::{SecretBytes, SecretKey32, hash, rng::Rng};

use crate::error::ModuleError;
use crate::protocol::MksInfo;

/// Kinds of key a token can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    /// AES-256 key.
    Aes256,
    /// HMAC-SHA-256 key.
    HmacSha256,
    /// ECDSA P-256 private key (PKCS#8).
    EcdsaP256,
    /// HPKE X25519 private key.
    HpkeX25519,
}

/// What a token's key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyUsage {
    /// Registration signing key (VDSK_ipost).
    RegistrationSigning,
    /// Registration decryption key (VRSK_ipost).
    RegistrationDecryption,
    /// A PSD's indicium signing key (V_psd).
    IndiciumSigning,
    /// A PSD's key-encrypting key (EDEK_psd).
    KeyEncrypting,
    /// Anything else (tests, demonstrations).
    General,
    /// A certificate authority's key: signs PSD certificates (and its own).
    CertificateSigning,
}

/// A key sealed under an MKS. Public: holds only ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyToken {
    /// Token format version (1).
    pub version: u8,
    /// Kind of key.
    pub key_type: KeyType,
    /// What it is for.
    pub usage: KeyUsage,
    /// Expiry, Unix seconds.
    pub expires: Option<i64>,
    /// Whether the key may leave for another module.
    pub exportable: bool,
    /// Generation of the sealing MKS.
    pub mks_generation: u32,
    /// ID of the sealing MKS (16 bytes).
    #[serde(with = "crate::serde_hex::array16")]
    pub mks_id: [u8; 16],
    /// Identity of the record the token belongs to.
    pub identity: String,
    /// nonce || AES-256-GCM(key) || tag.
    #[serde(with = "crate::serde_hex::vec")]
    pub sealed: Vec<u8>,
}

/// One Master Key Set, as held in NVM.
#[derive(Clone, Serialize, Deserialize)]
pub struct Mks {
    /// ID: SHA-256("postvault mks id" || MEK || MAK), first 16 bytes.
    pub id: [u8; 16],
    /// Generation number (1 for the first MKS of a deployment).
    pub generation: u32,
    /// May be exported to other modules.
    pub exportable: bool,
    mek: Zeroizing<[u8; 32]>,
    mak: Zeroizing<[u8; 32]>,
    /// The MEK's AES-256-GCM key schedule, built on first use: every PSD
    /// transaction opens and seals a package and unwraps tokens under the
    /// MEK. It is never stored (not part of the NVM encoding), is shared
    /// only by clones of this MKS, and goes (wiped by aws-lc) with the
    /// last of them, so it lives exactly as long as the MEK itself.
    #[serde(skip)]
    mek_key: OnceLock<Arc<AeadKey>>,
}

impl std::fmt::Debug for Mks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mks(id={}, generation={}, <keys redacted>)",
            hex::encode(self.id),
            self.generation
        )
    }
}

/// Length of the secret material shared by Shamir: MEK || MAK || generation.
pub const MKS_SECRET_LEN: usize = 68;

impl Mks {
    /// Generates a new MKS.
    pub fn generate(rng: &mut Rng, generation: u32) -> Result<Self, ModuleError> {
        let mek = rng.array::<32>()?;
        let mak = rng.array::<32>()?;
        Ok(Self::from_parts(mek, mak, generation, true))
    }

    fn from_parts(mek: [u8; 32], mak: [u8; 32], generation: u32, exportable: bool) -> Self {
        let id = Self::compute_id(&mek, &mak);
        Self {
            id,
            generation,
            exportable,
            mek: Zeroizing::new(mek),
            mak: Zeroizing::new(mak),
            mek_key: OnceLock::new(),
        }
    }

    fn compute_id(mek: &[u8; 32], mak: &[u8; 32]) -> [u8; 16] {
        let h = hash::sha256(&[b"postvault mks id", mek, mak]);
        h[..16].try_into().expect("16 of 32 bytes")
    }

    /// The secret that is split into shares: MEK || MAK || generation (BE).
    pub fn share_secret(&self) -> SecretBytes {
        let mut v = Vec::with_capacity(MKS_SECRET_LEN);
        v.extend_from_slice(&self.mek[..]);
        v.extend_from_slice(&self.mak[..]);
        v.extend_from_slice(&self.generation.to_be_bytes());
        SecretBytes::from_vec(v)
    }

    /// Rebuilds an MKS from recombined share material and checks it against the expected ID.
    pub fn from_share_secret(
        secret: &SecretBytes,
        expected_id: &[u8; 16],
        exportable: bool,
    ) -> Result<Self, ModuleError> {
        let s = secret.expose_secret();
        if s.len() != MKS_SECRET_LEN {
            return Err(ModuleError::Rejected(format!(
                "recombined secret has {} bytes, expected {MKS_SECRET_LEN}",
                s.len()
            )));
        }
        let mut mek = [0u8; 32];
        let mut mak = [0u8; 32];
        mek.copy_from_slice(&s[..32]);
        mak.copy_from_slice(&s[32..64]);
        let generation = u32::from_be_bytes(s[64..68].try_into().expect("4 bytes"));
        let mks = Self::from_parts(mek, mak, generation, exportable);
        zeroize::Zeroize::zeroize(&mut mek);
        zeroize::Zeroize::zeroize(&mut mak);
        if !hash::ct_eq(&mks.id, expected_id) {
            return Err(ModuleError::Rejected(
                "the shares do not recombine to the announced MKS: at least one share is wrong or from another export".into(),
            ));
        }
        Ok(mks)
    }

    /// Public description.
    pub fn info(&self) -> MksInfo {
        MksInfo {
            id: hex::encode(self.id),
            generation: self.generation,
            exportable: self.exportable,
        }
    }

    fn mek(&self) -> SecretKey32 {
        SecretKey32::from_bytes(*self.mek)
    }

    /// The MEK's key schedule (see the `mek_key` field).
    fn mek_key(&self) -> Result<&AeadKey, ModuleError> {
        if let Some(key) = self.mek_key.get() {
            return Ok(key);
        }
        let key = Arc::new(AeadKey::new(&self.mek())?);
        Ok(self.mek_key.get_or_init(|| key))
    }

    /// The MAK, for MAC-only uses.
    pub fn mak(&self) -> SecretKey32 {
        SecretKey32::from_bytes(*self.mak)
    }

    /// Seals `key` into a token bound to `identity`.
    #[allow(clippy::too_many_arguments)]
    pub fn wrap(
        &self,
        rng: &mut Rng,
        key_type: KeyType,
        usage: KeyUsage,
        expires: Option<i64>,
        exportable: bool,
        identity: &str,
        key: &[u8],
    ) -> Result<KeyToken, ModuleError> {
        let mut token = KeyToken {
            version: 1,
            key_type,
            usage,
            expires,
            exportable,
            mks_generation: self.generation,
            mks_id: self.id,
            identity: identity.to_string(),
            sealed: Vec::new(),
        };
        token.sealed = self.mek_key()?.seal(rng, &token.associated_data(), key)?;
        Ok(token)
    }

    /// Opens a token sealed under this MKS; any change to header, identity or ciphertext fails.
    pub fn unwrap(&self, token: &KeyToken, now: i64) -> Result<SecretBytes, ModuleError> {
        if token.version != 1 {
            return Err(ModuleError::Rejected(format!(
                "unknown key token version {}",
                token.version
            )));
        }
        if token.mks_id != self.id || token.mks_generation != self.generation {
            return Err(ModuleError::KeyState(format!(
                "token is sealed under MKS {} (generation {}), not {} (generation {})",
                hex::encode(token.mks_id),
                token.mks_generation,
                hex::encode(self.id),
                self.generation
            )));
        }
        let key = self
            .mek_key()?
            .open(&token.associated_data(), &token.sealed)
            .map_err(|_| {
                ModuleError::Rejected(format!(
                    "key token for {:?} failed authentication (tampered or not ours)",
                    token.identity
                ))
            })?;
        if let Some(exp) = token.expires
            && now >= exp
        {
            return Err(ModuleError::Rejected(format!(
                "key token for {:?} expired at {exp}",
                token.identity
            )));
        }
        Ok(key)
    }
}

impl Mks {
    /// Seals a record (e.g. a PSD package) under the MEK. `kind` and
    /// `identity` name the record; they and this MKS's ID and generation are
    /// bound as associated data, so a record moved to another identity, or
    /// presented as sealed under another MKS, does not open.
    pub fn seal_record(
        &self,
        rng: &mut Rng,
        kind: &str,
        identity: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, ModuleError> {
        let aad = self.record_associated_data(kind, identity);
        Ok(self.mek_key()?.seal(rng, &aad, plaintext)?)
    }

    /// [`Mks::seal_record`] where the record lies: `buf` holds a nonce the
    /// caller has just drawn from the module's generator (12 fresh random
    /// bytes, never reused; one draw serves several values) and then the
    /// plaintext, and becomes the sealed record (see
    /// [`AeadKey::seal_nonce_prefixed`]).
    pub fn seal_record_in_place(
        &self,
        kind: &str,
        identity: &str,
        buf: &mut Vec<u8>,
    ) -> Result<(), ModuleError> {
        let aad = self.record_associated_data(kind, identity);
        Ok(self.mek_key()?.seal_nonce_prefixed(&aad, buf)?)
    }

    /// Opens a record sealed by [`Mks::seal_record`] with the same kind and identity.
    pub fn open_record(
        &self,
        kind: &str,
        identity: &str,
        sealed: &[u8],
    ) -> Result<SecretBytes, ModuleError> {
        let aad = self.record_associated_data(kind, identity);
        self.mek_key()?.open(&aad, sealed).map_err(|_| {
            ModuleError::Rejected(format!(
                "{kind} record for {identity:?} failed authentication (tampered or not ours)"
            ))
        })
    }

    fn record_associated_data(&self, kind: &str, identity: &str) -> Vec<u8> {
        let header = ("postvault record", kind, identity, self.id, self.generation);
        crate::to_vec_exact(&header)
    }
}

impl KeyToken {
    /// Header and identity as bound into the AEAD.
    fn associated_data(&self) -> Vec<u8> {
        let header = (
            "postvault key token",
            self.version,
            self.key_type,
            self.usage,
            self.expires,
            self.exportable,
            self.mks_generation,
            self.mks_id,
            &self.identity,
        );
        crate::to_vec_exact(&header)
    }

    /// JSON for files.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a token always serializes")
    }

    /// Parses JSON from a file.
    pub fn from_json(s: &str) -> Result<Self, ModuleError> {
        serde_json::from_str(s).map_err(|e| ModuleError::Malformed(format!("key token JSON: {e}")))
    }
}

/// 8-byte key check value: identifies a key without revealing it.
pub fn key_check_value(material: &[u8]) -> String {
    hex::encode(&hash::sha256(&[b"postvault kcv", material])[..8])
}
