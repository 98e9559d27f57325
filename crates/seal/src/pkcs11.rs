//! The PKCS#11 seal provider: an AES-256 key generated on a token (SoftHSM2
//! in CI, a hardware HSM in production) that never leaves it. Sealing is
//! `C_Encrypt` with `CKM_AES_GCM`, a 12-byte random IV from our own
//! generator and a 128-bit tag.
//!
//! Each PKCS#11 library is loaded and `C_Initialize`d once per process and
//! kept for the life of the process, so several providers (and other code
//! that already initialized the library, which we detect through
//! `CKR_CRYPTOKI_ALREADY_INITIALIZED`) can share it. Each provider holds its
//! own read-write session, logged in as the user. PKCS#11 login state is per
//! application and token: while another session of this process is logged
//! in to the same token, the token answers `CKR_USER_ALREADY_LOGGED_IN`
//! without checking the PIN again, and that is accepted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use postvault_crypto::rng::Rng;
use postvault_crypto::{Faults, SecretBytes};

use crate::format::{self, HEADER_LEN, IV_LEN, TAG_LEN};
use crate::{Pin, ProviderKind, SealError, SealProvider, UnsealReason};

/// AES-256 key length in bytes.
const AES_256_KEY_LEN: u64 = 32;

/// Loaded and initialized PKCS#11 libraries, by path.
static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();

/// Serializes find-or-create of seal keys within this process, so two
/// providers opened at once cannot both generate a key.
static KEY_SETUP: Mutex<()> = Mutex::new(());

/// Seals with an AES-256 key held on a PKCS#11 token.
pub(crate) struct Pkcs11Provider {
    token: String,
    key_label: String,
    inner: Mutex<Inner>,
}

/// Everything used for one operation; one operation at a time per session.
struct Inner {
    session: Session,
    key: ObjectHandle,
    rng: Rng,
}

/// The process-wide context for `module`, loading and initializing it on first use.
fn context(module: &Path) -> Result<Pkcs11, SealError> {
    let mut contexts = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(ctx) = contexts.get(module) {
        return Ok(ctx.clone());
    }
    let module_error = |reason: String| SealError::Pkcs11Module {
        module: module.to_owned(),
        reason,
    };
    if !module.exists() {
        return Err(module_error("no such file".to_owned()));
    }
    let ctx = Pkcs11::new(module).map_err(|e| module_error(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(module_error(format!("C_Initialize failed: {e}"))),
    }
    contexts.insert(module.to_owned(), ctx.clone());
    Ok(ctx)
}

/// True for the return values that mean "these bytes do not authenticate".
///
/// `CKR_GENERAL_ERROR` from `C_Decrypt` (after `C_DecryptInit` accepted the
/// key and parameters) counts too: SoftHSM up to 2.6 (Debian's package)
/// reports a GCM tag mismatch that way; later versions return
/// `CKR_ENCRYPTED_DATA_INVALID`.
fn is_authentication_failure(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::DataInvalid
                | RvError::DataLenRange
                | RvError::SignatureInvalid
                | RvError::GeneralError,
            Function::Decrypt
        ) | CkError::Pkcs11(
            RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
            Function::DecryptInit
        )
    )
}

/// Maps a library error in `operation` on `token` to [`SealError::Pkcs11`].
fn failure(token: &str, operation: &'static str) -> impl Fn(CkError) -> SealError {
    let token = token.to_owned();
    move |e| SealError::Pkcs11 {
        operation,
        token: token.clone(),
        detail: e.to_string(),
    }
}

impl Pkcs11Provider {
    /// Opens a session on the token labelled `token` in `module`, logs in
    /// with `pin` and finds the key labelled `key_label`, generating it when
    /// missing and `create_key`.
    pub(crate) fn open(
        module: &Path,
        token: &str,
        pin: &Pin,
        key_label: &str,
        create_key: bool,
    ) -> Result<Self, SealError> {
        let ctx = context(module)?;
        let fail = |operation| failure(token, operation);
        let slot = find_slot(&ctx, module, token)?;
        let session = ctx.open_rw_session(slot).map_err(fail("C_OpenSession"))?;
        let auth = AuthPin::new(pin.expose_secret().into());
        match session.login(UserType::User, Some(&auth)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(
                RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
                _,
            )) => {
                return Err(SealError::PinIncorrect {
                    token: token.to_owned(),
                });
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(SealError::PinLocked {
                    token: token.to_owned(),
                });
            }
            Err(CkError::Pkcs11(RvError::UserPinNotInitialized, _)) => {
                return Err(SealError::PinNotInitialized {
                    token: token.to_owned(),
                });
            }
            Err(e) => return Err(fail("C_Login")(e)),
        }
        drop(auth);
        let key = {
            let _setup = KEY_SETUP.lock().unwrap_or_else(PoisonError::into_inner);
            find_or_create_key(&session, token, key_label, create_key)?
        };
        Ok(Self {
            token: token.to_owned(),
            key_label: key_label.to_owned(),
            inner: Mutex::new(Inner {
                session,
                key,
                rng: Rng::new(Faults::none()),
            }),
        })
    }

    fn pkcs11_error(&self, operation: &'static str, e: CkError) -> SealError {
        failure(&self.token, operation)(e)
    }
}

/// The slot holding the initialized token labelled `token`.
fn find_slot(ctx: &Pkcs11, module: &Path, token: &str) -> Result<Slot, SealError> {
    let fail = |operation| failure(token, operation);
    let mut matches = Vec::new();
    let mut available = Vec::new();
    for slot in ctx.get_slots_with_token().map_err(fail("C_GetSlotList"))? {
        let info = ctx.get_token_info(slot).map_err(fail("C_GetTokenInfo"))?;
        if !info.token_initialized() {
            continue;
        }
        if info.label() == token {
            matches.push(slot);
        } else {
            available.push(info.label().to_owned());
        }
    }
    match matches.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(SealError::TokenNotFound {
            token: token.to_owned(),
            module: module.to_owned(),
            available,
        }),
        many => Err(SealError::TokenAmbiguous {
            token: token.to_owned(),
            module: module.to_owned(),
            count: many.len(),
        }),
    }
}

/// Finds the seal key by label, checks it, or generates it on the token.
fn find_or_create_key(
    session: &Session,
    token: &str,
    key_label: &str,
    create_key: bool,
) -> Result<ObjectHandle, SealError> {
    let fail = |operation| failure(token, operation);
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Label(key_label.as_bytes().to_vec()),
    ];
    let found = session
        .find_objects(&template)
        .map_err(fail("C_FindObjects"))?;
    match found.as_slice() {
        [key] => {
            check_key(session, *key, token, key_label)?;
            Ok(*key)
        }
        [] if create_key => {
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(AES_256_KEY_LEN.into()),
                Attribute::Label(key_label.as_bytes().to_vec()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
            ];
            session
                .generate_key(&Mechanism::AesKeyGen, &template)
                .map_err(fail("C_GenerateKey (AES-256 seal key)"))
        }
        [] => Err(SealError::KeyNotFound {
            token: token.to_owned(),
            key: key_label.to_owned(),
        }),
        many => Err(SealError::KeyAmbiguous {
            token: token.to_owned(),
            key: key_label.to_owned(),
            count: many.len(),
        }),
    }
}

/// Refuses a key that is not an AES-256 key usable for encrypt/decrypt, or
/// that could leave the token.
fn check_key(
    session: &Session,
    key: ObjectHandle,
    token: &str,
    key_label: &str,
) -> Result<(), SealError> {
    let unsuitable = |reason: &str| SealError::KeyUnsuitable {
        token: token.to_owned(),
        key: key_label.to_owned(),
        reason: reason.to_owned(),
    };
    let attributes = session
        .get_attributes(
            key,
            &[
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Encrypt,
                AttributeType::Decrypt,
                AttributeType::Sensitive,
                AttributeType::Extractable,
            ],
        )
        .map_err(failure(token, "C_GetAttributeValue"))?;
    let (mut aes, mut len, mut encrypt, mut decrypt, mut sensitive, mut extractable) =
        (false, 0u64, false, false, false, true);
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(t) => aes = t == KeyType::AES,
            Attribute::ValueLen(l) => len = l.into(),
            Attribute::Encrypt(b) => encrypt = b,
            Attribute::Decrypt(b) => decrypt = b,
            Attribute::Sensitive(b) => sensitive = b,
            Attribute::Extractable(b) => extractable = b,
            _ => {}
        }
    }
    if !aes || len != AES_256_KEY_LEN {
        return Err(unsuitable(
            "it is not an AES-256 key; choose another key= label so a new key is generated",
        ));
    }
    if !encrypt || !decrypt {
        return Err(unsuitable(
            "it does not allow both encryption and decryption (CKA_ENCRYPT/CKA_DECRYPT)",
        ));
    }
    if !sensitive || extractable {
        return Err(unsuitable(
            "it could leave the token (CKA_SENSITIVE false or CKA_EXTRACTABLE true); if nothing was sealed under it, delete it and initialize again so a non-extractable key is generated",
        ));
    }
    Ok(())
}

impl SealProvider for Pkcs11Provider {
    fn describe(&self) -> String {
        format!("pkcs11 token '{}' key '{}'", self.token, self.key_label)
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let header = format::header(ProviderKind::Pkcs11);
        let full_aad = format::full_aad(&header, aad);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut iv = [0u8; IV_LEN];
        inner
            .rng
            .fill(&mut iv)
            .map_err(|source| SealError::Crypto { source })?;
        let ciphertext = {
            let params = GcmParams::new(&mut iv, &full_aad, (TAG_LEN as u64 * 8).into())
                .map_err(|e| self.pkcs11_error("C_EncryptInit (AES-GCM parameters)", e))?;
            inner
                .session
                .encrypt(&Mechanism::AesGcm(params), inner.key, plaintext)
                .map_err(|e| self.pkcs11_error("C_Encrypt (AES-GCM)", e))?
        };
        if ciphertext.len() != plaintext.len() + TAG_LEN {
            return Err(SealError::Pkcs11 {
                operation: "C_Encrypt (AES-GCM)",
                token: self.token.clone(),
                detail: format!(
                    "returned {} bytes for {} bytes of plaintext, expected ciphertext plus a {TAG_LEN}-byte tag",
                    ciphertext.len(),
                    plaintext.len()
                ),
            });
        }
        // `iv` is read back after the call in case the token wrote its own IV.
        let mut out = Vec::with_capacity(HEADER_LEN + IV_LEN + ciphertext.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, SealError> {
        let (header, body) = format::split(sealed, ProviderKind::Pkcs11, &self.describe())?;
        let full_aad = format::full_aad(header, aad);
        let (iv, ciphertext) = body.split_at(IV_LEN);
        let mut iv: [u8; IV_LEN] = iv.try_into().map_err(|_| SealError::Unseal {
            provider: self.describe(),
            reason: UnsealReason::TooShort,
        })?;
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let params = GcmParams::new(&mut iv, &full_aad, (TAG_LEN as u64 * 8).into())
            .map_err(|e| self.pkcs11_error("C_DecryptInit (AES-GCM parameters)", e))?;
        match inner
            .session
            .decrypt(&Mechanism::AesGcm(params), inner.key, ciphertext)
        {
            Ok(plaintext) => Ok(SecretBytes::from_vec(plaintext)),
            Err(e) if is_authentication_failure(&e) => Err(SealError::Unseal {
                provider: self.describe(),
                reason: UnsealReason::Authentication,
            }),
            Err(e) => Err(self.pkcs11_error("C_Decrypt (AES-GCM)", e)),
        }
    }
}
