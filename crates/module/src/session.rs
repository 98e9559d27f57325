//! The secure session between a host and the module (seed 002, "Session
//! Management"), both ends.
//!
//! Open Session is an ephemeral-ephemeral X25519 exchange. Two session master
//! keys (one for MACs, one for encryption) come from HKDF-SHA-256 over the
//! shared secret, salted with both public keys. They are never used directly:
//! every message gets its own keys, derived from the master keys, the
//! direction, the session ID and a message counter. Every frame except Open
//! Session carries a MAC over its header and body. A frame in the clear
//! carries an HMAC-SHA-256 under the per-message MAC key. An encrypted frame
//! is AES-256-GCM under the per-message encryption key, with the header as
//! associated data: its GCM tag is its MAC, and no HMAC is added (it would
//! authenticate the same bytes twice; on large frames the HMAC cost more
//! than the encryption).
//!
//! The module accepts request `n` only when it carries counter `n`; a
//! replayed, reordered, truncated or altered frame fails and changes nothing.
//! The response carries the request's counter and is checked by the host.
//! Session master keys live in [`SecretKey32`]s and are zeroized when the
//! session is dropped.
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use postvault_crypto::{SecretBytes, SecretKey32, aead, hash, x25519::X25519Ephemeral};

/// A frame from host to module.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RequestFrame {
    /// Open Session: the host's ephemeral X25519 public key.
    Open {
        /// Host public key.
        client_public: [u8; 32],
    },
    /// Any other command, inside the session.
    Sealed(SealedFrame),
}

/// A frame from module to host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ResponseFrame {
    /// The session is open.
    Opened {
        /// Session ID.
        session_id: u64,
        /// Module public key.
        module_public: [u8; 32],
        /// HMAC under the MAC master key proving the module derived the same keys.
        confirm: [u8; 32],
    },
    /// A response inside the session.
    Sealed(SealedFrame),
    /// The frame was not accepted (bad MAC, unknown session, wrong counter, ...).
    /// Unauthenticated by necessity; carries no data.
    Refused(String),
}

/// A MAC'd (and optionally encrypted) message inside a session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealedFrame {
    /// Session ID.
    pub session_id: u64,
    /// Message counter.
    pub counter: u64,
    /// Whether `body` is encrypted.
    pub encrypted: bool,
    /// Payload (bytes on the wire, not a sequence of numbers: batches are
    /// large): the plaintext, or the AES-256-GCM ciphertext followed by its
    /// 16-byte tag.
    #[serde(with = "crate::serde_hex::vec")]
    pub body: Vec<u8>,
    /// For a frame in the clear, HMAC-SHA-256 over header and body under the
    /// per-message MAC key. None for an encrypted frame, whose GCM tag
    /// authenticates header and body; a frame with the wrong one of the two
    /// is refused.
    pub mac: Option<[u8; 32]>,
}

/// Direction of a message; each direction has its own per-message keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Host to module.
    Request,
    /// Module to host.
    Response,
}

impl Direction {
    fn label(self) -> &'static [u8] {
        match self {
            Direction::Request => b"request",
            Direction::Response => b"response",
        }
    }
}

/// Why a frame was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The bytes are not a frame.
    #[error("frame does not decode")]
    Malformed,
    /// No such session.
    #[error("unknown or closed session")]
    UnknownSession,
    /// Counter out of order (replay, reorder or loss).
    #[error(
        "message counter {found} out of order (expected {expected}): replayed or reordered message"
    )]
    Counter {
        /// Expected counter.
        expected: u64,
        /// Counter found.
        found: u64,
    },
    /// The MAC did not verify.
    #[error("message authentication failed: altered or truncated message")]
    BadMac,
    /// Encrypting a frame failed (the crypto library refused the key).
    #[error("message encryption failed")]
    Encrypt,
    /// Key agreement failed.
    #[error("key agreement failed")]
    KeyAgreement,
    /// The module's key confirmation did not verify.
    #[error("module key confirmation failed")]
    Confirm,
    /// Too many open sessions.
    #[error("too many open sessions; close one first")]
    Busy,
}

/// The master keys of one session. Zeroized on drop.
pub struct SessionKeys {
    session_id: u64,
    mac_master: SecretKey32,
    enc_master: SecretKey32,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SessionKeys(session {}, <keys redacted>)",
            self.session_id
        )
    }
}

impl SessionKeys {
    /// Derives the session master keys from the X25519 shared secret.
    pub fn derive(
        shared: &SecretKey32,
        client_public: &[u8; 32],
        module_public: &[u8; 32],
        session_id: u64,
    ) -> Self {
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(client_public);
        salt[32..].copy_from_slice(module_public);
        let sid = session_id.to_be_bytes();
        let mac_master = hash::hkdf_sha256(
            &salt,
            shared.expose_secret(),
            &[b"postvault session mac", &sid],
        );
        let enc_master = hash::hkdf_sha256(
            &salt,
            shared.expose_secret(),
            &[b"postvault session enc", &sid],
        );
        Self {
            session_id,
            mac_master,
            enc_master,
        }
    }

    /// Session ID.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Key confirmation value sent with Open Session's answer.
    pub fn confirm(&self) -> [u8; 32] {
        hash::hmac_sha256(
            &self.mac_master,
            &[b"postvault session confirm", &self.session_id.to_be_bytes()],
        )
    }

    /// The per-message key of message `counter` in direction `dir`: an
    /// AES-256-GCM key for an encrypted frame, an HMAC key otherwise. Each
    /// is used for exactly one message.
    fn message_key(&self, dir: Direction, counter: u64, encrypted: bool) -> SecretKey32 {
        let sid = self.session_id.to_be_bytes();
        let ctr = counter.to_be_bytes();
        if encrypted {
            hash::hkdf_sha256(
                &[],
                self.enc_master.expose_secret(),
                &[b"enc", dir.label(), &sid, &ctr],
            )
        } else {
            hash::hkdf_sha256(
                &[],
                self.mac_master.expose_secret(),
                &[b"mac", dir.label(), &sid, &ctr],
            )
        }
    }

    fn header(dir: Direction, session_id: u64, counter: u64, encrypted: bool) -> Vec<u8> {
        let mut h = Vec::with_capacity(32);
        h.extend_from_slice(b"PVFRAME1");
        h.extend_from_slice(dir.label());
        h.extend_from_slice(&session_id.to_be_bytes());
        h.extend_from_slice(&counter.to_be_bytes());
        h.push(encrypted as u8);
        h
    }

    /// Protects `plaintext` as message `counter` in direction `dir`.
    pub fn seal(
        &self,
        dir: Direction,
        counter: u64,
        encrypted: bool,
        plaintext: &[u8],
    ) -> Result<SealedFrame, SessionError> {
        self.seal_owned(dir, counter, encrypted, Zeroizing::new(plaintext.to_vec()))
    }

    /// [`Self::seal`] taking the plaintext by value: an unencrypted body
    /// (sent in the clear anyway) is handed over instead of copied; an
    /// encrypted one is encrypted where it lies.
    pub fn seal_owned(
        &self,
        dir: Direction,
        counter: u64,
        encrypted: bool,
        mut plaintext: Zeroizing<Vec<u8>>,
    ) -> Result<SealedFrame, SessionError> {
        let key = self.message_key(dir, counter, encrypted);
        let header = Self::header(dir, self.session_id, counter, encrypted);
        let mac = if encrypted {
            // The per-message key is used for exactly one message, so a fixed nonce is safe.
            aead::seal_in_place_with_nonce(&key, [0u8; 12], &header, &mut plaintext)
                .map_err(|_| SessionError::Encrypt)?;
            None
        } else {
            Some(hash::hmac_sha256(&key, &[&header, &plaintext]))
        };
        // Ciphertext, or a body sent in the clear: nothing left to wipe.
        let body = std::mem::take(&mut *plaintext);
        Ok(SealedFrame {
            session_id: self.session_id,
            counter,
            encrypted,
            body,
            mac,
        })
    }

    /// Checks and opens a frame that must be message `expected_counter` in
    /// direction `dir`: the body is decrypted where it lies, or handed over
    /// if it came in the clear.
    pub fn open_owned(
        &self,
        dir: Direction,
        expected_counter: u64,
        frame: SealedFrame,
    ) -> Result<SecretBytes, SessionError> {
        if frame.session_id != self.session_id {
            return Err(SessionError::UnknownSession);
        }
        if frame.counter != expected_counter {
            return Err(SessionError::Counter {
                expected: expected_counter,
                found: frame.counter,
            });
        }
        let key = self.message_key(dir, frame.counter, frame.encrypted);
        let header = Self::header(dir, frame.session_id, frame.counter, frame.encrypted);
        // The MAC: the GCM tag of an encrypted frame, the HMAC of one in the clear.
        match (frame.encrypted, &frame.mac) {
            (true, None) => aead::open_owned_with_nonce(&key, [0u8; 12], &header, frame.body)
                .map_err(|_| SessionError::BadMac),
            (false, Some(mac)) if hash::hmac_sha256_verify(&key, &[&header, &frame.body], mac) => {
                Ok(SecretBytes::from_vec(frame.body))
            }
            _ => Err(SessionError::BadMac),
        }
    }
}

/// The host's end of a session.
#[derive(Debug)]
pub struct ClientSession {
    keys: SessionKeys,
    next_counter: u64,
}

/// The host's half of an Open Session exchange in progress.
pub struct PendingOpen {
    ephemeral: X25519Ephemeral,
    client_public: [u8; 32],
}

impl PendingOpen {
    /// Starts Open Session: returns the state to keep and the frame to send.
    pub fn start() -> Result<(Self, RequestFrame), SessionError> {
        let ephemeral = X25519Ephemeral::generate().map_err(|_| SessionError::KeyAgreement)?;
        let client_public = ephemeral.public_key();
        Ok((
            Self {
                ephemeral,
                client_public,
            },
            RequestFrame::Open { client_public },
        ))
    }

    /// Finishes Open Session with the module's answer, checking its key confirmation.
    pub fn finish(self, answer: &ResponseFrame) -> Result<ClientSession, SessionError> {
        let ResponseFrame::Opened {
            session_id,
            module_public,
            confirm,
        } = answer
        else {
            return Err(SessionError::KeyAgreement);
        };
        let shared = self
            .ephemeral
            .agree(module_public)
            .map_err(|_| SessionError::KeyAgreement)?;
        let keys = SessionKeys::derive(&shared, &self.client_public, module_public, *session_id);
        if !hash::ct_eq(&keys.confirm(), confirm) {
            return Err(SessionError::Confirm);
        }
        Ok(ClientSession {
            keys,
            next_counter: 0,
        })
    }
}

impl ClientSession {
    /// Session ID.
    pub fn session_id(&self) -> u64 {
        self.keys.session_id
    }

    /// Protects the next request; returns the frame and its counter.
    pub fn wrap(
        &mut self,
        plaintext: &[u8],
        encrypted: bool,
    ) -> Result<(RequestFrame, u64), SessionError> {
        let counter = self.next_counter;
        let frame = self
            .keys
            .seal(Direction::Request, counter, encrypted, plaintext)?;
        self.next_counter += 1;
        Ok((RequestFrame::Sealed(frame), counter))
    }

    /// Checks and opens the response to request `counter`.
    pub fn unwrap(&self, response: SealedFrame, counter: u64) -> Result<SecretBytes, SessionError> {
        self.keys.open_owned(Direction::Response, counter, response)
    }
}

/// Encodes a frame.
pub fn encode<T: Serialize>(frame: &T) -> Vec<u8> {
    crate::to_vec_exact(frame)
}

/// Decodes a frame; never panics. Trailing bytes after the frame are
/// refused: a frame is accepted only exactly as it was sent.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, SessionError> {
    match postcard::take_from_bytes(bytes) {
        Ok((frame, [])) => Ok(frame),
        _ => Err(SessionError::Malformed),
    }
}
