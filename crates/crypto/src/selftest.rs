//! Power-up known-answer tests, the names of every test (including pairwise
//! and continuous tests), and deliberate fault injection so each failure
//! path can be exercised.
use std::fmt;

use crate::{CryptoError, SecretBytes, SecretKey32};

/// Every self-test the module runs, by stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestName {
    /// SHA-256 KAT ("sha256").
    Sha256,
    /// HMAC-SHA-256 KAT ("hmac-sha256").
    HmacSha256,
    /// AES-256-GCM KAT ("aes-256-gcm").
    Aes256Gcm,
    /// HKDF-SHA-256 KAT ("hkdf-sha256").
    HkdfSha256,
    /// ECDSA P-256 KAT ("ecdsa-p256").
    EcdsaP256,
    /// X25519 KAT ("x25519").
    X25519,
    /// HPKE KAT ("hpke").
    Hpke,
    /// Argon2id KAT ("argon2id").
    Argon2id,
    /// Shamir split/combine KAT ("shamir").
    Shamir,
    /// Random generator start-up test ("rng").
    Rng,
    /// ECDSA pairwise consistency at key generation ("ecdsa-p256-pairwise").
    EcdsaPairwise,
    /// HPKE pairwise consistency at key generation ("hpke-pairwise").
    HpkePairwise,
    /// Continuous random generator test ("rng-continuous").
    RngContinuous,
}

impl TestName {
    /// All tests, power-up KATs first.
    pub const ALL: [TestName; 13] = [
        TestName::Sha256,
        TestName::HmacSha256,
        TestName::Aes256Gcm,
        TestName::HkdfSha256,
        TestName::EcdsaP256,
        TestName::X25519,
        TestName::Hpke,
        TestName::Argon2id,
        TestName::Shamir,
        TestName::Rng,
        TestName::EcdsaPairwise,
        TestName::HpkePairwise,
        TestName::RngContinuous,
    ];
    /// The tests run at power-up (one per algorithm).
    pub const POWER_UP: [TestName; 10] = [
        TestName::Sha256,
        TestName::HmacSha256,
        TestName::Aes256Gcm,
        TestName::HkdfSha256,
        TestName::EcdsaP256,
        TestName::X25519,
        TestName::Hpke,
        TestName::Argon2id,
        TestName::Shamir,
        TestName::Rng,
    ];
    /// The stable name used on the command line and in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            TestName::Sha256 => "sha256",
            TestName::HmacSha256 => "hmac-sha256",
            TestName::Aes256Gcm => "aes-256-gcm",
            TestName::HkdfSha256 => "hkdf-sha256",
            TestName::EcdsaP256 => "ecdsa-p256",
            TestName::X25519 => "x25519",
            TestName::Hpke => "hpke",
            TestName::Argon2id => "argon2id",
            TestName::Shamir => "shamir",
            TestName::Rng => "rng",
            TestName::EcdsaPairwise => "ecdsa-p256-pairwise",
            TestName::HpkePairwise => "hpke-pairwise",
            TestName::RngContinuous => "rng-continuous",
        }
    }
    /// Parses a stable name.
    pub fn parse(name: &str) -> Option<TestName> {
        TestName::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for TestName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tests that must fail on purpose (for exercising failure paths). Empty in production.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults(Vec<TestName>);

impl Faults {
    /// No injected faults.
    pub fn none() -> Self {
        Self(Vec::new())
    }
    /// Faults for the given tests.
    pub fn of(tests: &[TestName]) -> Self {
        Self(tests.to_vec())
    }
    /// Parses a comma-separated list of test names; an unknown name is an error naming it.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut v = Vec::new();
        for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            v.push(
                TestName::parse(part).ok_or_else(|| format!("unknown self-test name {part:?}"))?,
            );
        }
        Ok(Self(v))
    }
    /// True when `test` must fail on purpose.
    pub fn injects(&self, test: TestName) -> bool {
        self.0.contains(&test)
    }
}

/// The outcome of one self-test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// Which test.
    pub test: TestName,
    /// `None` when it passed, else why it failed.
    pub failure: Option<String>,
}

/// The outcome of the power-up tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfTestReport {
    /// One result per power-up test, in [`TestName::POWER_UP`] order.
    pub results: Vec<TestResult>,
}

impl SelfTestReport {
    /// True when every test passed.
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.failure.is_none())
    }
    /// The first failed test, if any.
    pub fn first_failure(&self) -> Option<TestName> {
        self.results
            .iter()
            .find(|r| r.failure.is_some())
            .map(|r| r.test)
    }
}

/// Runs every power-up known-answer test (one per algorithm). A test named in
/// `faults` fails on purpose. Every test runs even after a failure, so the
/// report is complete.
pub fn run_power_up(faults: &Faults) -> SelfTestReport {
    let results = TestName::POWER_UP
        .into_iter()
        .map(|test| {
            // A panic inside a library must not stop the remaining tests.
            let outcome = std::panic::catch_unwind(|| known_answer_test(test))
                .unwrap_or_else(|_| Err("panicked".to_string()));
            let failure = if faults.injects(test) {
                Some("injected fault".to_string())
            } else {
                outcome.err()
            };
            TestResult { test, failure }
        })
        .collect();
    SelfTestReport { results }
}

/// Runs one power-up test; `Err` says what did not match.
fn known_answer_test(test: TestName) -> Result<(), String> {
    match test {
        TestName::Sha256 => kat_sha256(),
        TestName::HmacSha256 => kat_hmac_sha256(),
        TestName::Aes256Gcm => kat_aes_256_gcm(),
        TestName::HkdfSha256 => kat_hkdf_sha256(),
        TestName::EcdsaP256 => kat_ecdsa_p256(),
        TestName::X25519 => kat_x25519(),
        TestName::Hpke => crate::hpke::known_answer_test(),
        TestName::Argon2id => crate::password::known_answer_test(),
        TestName::Shamir => crate::shamir::known_answer_test(),
        TestName::Rng => kat_rng(),
        // Not power-up tests: they run at key generation / on every draw.
        TestName::EcdsaPairwise | TestName::HpkePairwise | TestName::RngContinuous => {
            Err(format!("{test} is not a power-up test"))
        }
    }
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| format!("bad test vector hex: {e}"))
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_string()) }
}

/// FIPS 180-2 Appendix B.1 and B.2 (one-block "abc", two-block 448-bit message).
fn kat_sha256() -> Result<(), String> {
    use crate::hash::sha256;
    let abc = unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")?;
    check(
        sha256(&[b"abc"])[..] == abc[..],
        "SHA-256(\"abc\") mismatch",
    )?;
    check(
        sha256(&[b"a", b"", b"bc"])[..] == abc[..],
        "SHA-256 of split input mismatch",
    )?;
    let long = unhex("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")?;
    let msg: &[u8] = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check(
        sha256(&[msg])[..] == long[..],
        "SHA-256 two-block message mismatch",
    )
}

/// RFC 4231 test cases 1 and 2. HMAC zero-pads keys shorter than the block,
/// so the RFC's 20- and 4-byte keys zero-padded to 32 bytes give the RFC's tags.
fn kat_hmac_sha256() -> Result<(), String> {
    use crate::hash::{hmac_sha256, hmac_sha256_verify};
    let mut k1 = [0u8; 32];
    k1[..20].fill(0x0b);
    let k1 = SecretKey32::from_bytes(k1);
    let t1 = unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")?;
    check(
        hmac_sha256(&k1, &[b"Hi There"])[..] == t1[..],
        "RFC 4231 case 1 mismatch",
    )?;

    let mut k2 = [0u8; 32];
    k2[..4].copy_from_slice(b"Jefe");
    let k2 = SecretKey32::from_bytes(k2);
    let t2 = unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")?;
    let data: [&[u8]; 2] = [b"what do ya want ", b"for nothing?"];
    check(
        hmac_sha256(&k2, &data)[..] == t2[..],
        "RFC 4231 case 2 mismatch",
    )?;
    check(
        hmac_sha256_verify(&k2, &data, &t2),
        "verify rejected the RFC 4231 tag",
    )?;
    let mut bad = t2.clone();
    bad[31] ^= 1;
    check(
        !hmac_sha256_verify(&k2, &data, &bad),
        "verify accepted a wrong tag",
    )
}

/// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16
/// (AES-256, 96-bit IV, 60-byte plaintext, 20-byte AAD).
fn kat_aes_256_gcm() -> Result<(), String> {
    use crate::aead::{open_with_nonce, seal_with_nonce};
    let key = SecretKey32::from_slice(&unhex(
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
    )?)
    .map_err(|e| e.to_string())?;
    let nonce: [u8; 12] = unhex("cafebabefacedbaddecaf888")?
        .try_into()
        .map_err(|_| "bad IV length")?;
    let pt = unhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
         1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    )?;
    let aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")?;
    let ct_tag = unhex(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
         8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
         76fc6ece0f4e1768cddf8853bb2d551b",
    )?;
    let sealed = seal_with_nonce(&key, nonce, &aad, &pt).map_err(|e| e.to_string())?;
    check(sealed == ct_tag, "ciphertext || tag mismatch")?;
    let opened = open_with_nonce(&key, nonce, &aad, &ct_tag).map_err(|e| e.to_string())?;
    check(
        opened.expose_secret() == pt.as_slice(),
        "decryption mismatch",
    )?;
    let mut tampered = ct_tag.clone();
    tampered[0] ^= 0x80;
    check(
        open_with_nonce(&key, nonce, &aad, &tampered).is_err(),
        "tampered ciphertext accepted",
    )
}

/// RFC 5869 Appendix A.1 (test case 1).
fn kat_hkdf_sha256() -> Result<(), String> {
    use crate::hash::{hkdf_sha256, hkdf_sha256_bytes};
    let ikm = [0x0bu8; 22];
    let salt = unhex("000102030405060708090a0b0c")?;
    let info = unhex("f0f1f2f3f4f5f6f7f8f9")?;
    let okm = unhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    )?;
    // The info is passed in two parts to check that they are concatenated.
    let parts: [&[u8]; 2] = [&info[..3], &info[3..]];
    let got = hkdf_sha256_bytes(&salt, &ikm, &parts, 42);
    check(got.expose_secret() == okm.as_slice(), "OKM mismatch")?;
    // T(1) || T(2) does not depend on L, so the 32-byte form is a prefix.
    let key = hkdf_sha256(&salt, &ikm, &parts);
    check(key.expose_secret()[..] == okm[..32], "32-byte OKM mismatch")
}

/// RFC 6979 Appendix A.2.5: P-256 key and the SHA-256 signature of "sample"
/// must verify; the same key loaded as PKCS#8 must yield the RFC's public key
/// and produce signatures that verify.
fn kat_ecdsa_p256() -> Result<(), String> {
    use crate::ecdsa::{EcdsaP256KeyPair, verify};
    let x = unhex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721")?;
    let public = unhex(
        "0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6\
         7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299",
    )?;
    let sig = unhex(
        "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716\
         f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8",
    )?;
    check(
        verify(&public, b"sample", &sig),
        "RFC 6979 signature rejected",
    )?;
    check(
        !verify(&public, b"samplf", &sig),
        "signature accepted for a different message",
    )?;

    // PKCS#8 v1 PrivateKeyInfo { version 0, id-ecPublicKey/prime256v1,
    // ECPrivateKey { version 1, privateKey x, [1] publicKey } }.
    let mut der =
        unhex("308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420")?;
    der.extend_from_slice(&x);
    der.extend_from_slice(&unhex("a144034200")?);
    der.extend_from_slice(&public);
    let key =
        EcdsaP256KeyPair::from_pkcs8(&SecretBytes::from_vec(der)).map_err(|e| e.to_string())?;
    check(
        key.public_key()[..] == public[..],
        "public key of the fixed private key mismatch",
    )?;
    let own = key.sign(b"sample").map_err(|e| e.to_string())?;
    check(verify(&public, b"sample", &own), "own signature rejected")?;
    check(
        !verify(&public, b"other", &own),
        "own signature accepted for a different message",
    )
}

/// RFC 7748 §6.1 (Alice and Bob).
fn kat_x25519() -> Result<(), String> {
    use crate::x25519::{static_agree, static_public_key};
    let arr = |s: &str| -> Result<[u8; 32], String> {
        unhex(s)?.try_into().map_err(|_| "bad length".to_string())
    };
    let a_priv = arr("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")?;
    let a_pub = arr("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")?;
    let b_priv = arr("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")?;
    let b_pub = arr("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")?;
    let k = arr("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")?;
    let e = |e: CryptoError| e.to_string();
    check(
        static_public_key(&a_priv).map_err(e)? == a_pub,
        "Alice's public key mismatch",
    )?;
    check(
        static_public_key(&b_priv).map_err(e)? == b_pub,
        "Bob's public key mismatch",
    )?;
    check(
        *static_agree(&a_priv, &b_pub).map_err(e)?.expose_secret() == k,
        "Alice's shared secret mismatch",
    )?;
    check(
        *static_agree(&b_priv, &a_pub).map_err(e)?.expose_secret() == k,
        "Bob's shared secret mismatch",
    )?;
    // A low-order peer point (here 0) gives the all-zero secret, which must be refused.
    check(
        static_agree(&a_priv, &[0u8; 32]).is_err(),
        "all-zero shared secret accepted",
    )
}

/// Start-up generator test: two blocks from a fresh generator differ and are not all zero.
fn kat_rng() -> Result<(), String> {
    let mut rng = crate::rng::Rng::new(Faults::none());
    let a: [u8; 32] = rng.array().map_err(|e| e.to_string())?;
    let b: [u8; 32] = rng.array().map_err(|e| e.to_string())?;
    check(a != [0u8; 32] && b != [0u8; 32], "all-zero block")?;
    check(!crate::hash::ct_eq(&a, &b), "two blocks are equal")
}
