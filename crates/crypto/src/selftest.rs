//! Power-up known-answer tests, the names of every test (including pairwise
//! and continuous tests), and deliberate fault injection so each failure
//! path can be exercised.
use std::fmt;

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
            v.push(TestName::parse(part).ok_or_else(|| format!("unknown self-test name {part:?}"))?);
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
        self.results.iter().find(|r| r.failure.is_some()).map(|r| r.test)
    }
}

/// Runs every power-up known-answer test (one per algorithm). A test named in
/// `faults` fails on purpose. Every test runs even after a failure, so the
/// report is complete.
pub fn run_power_up(faults: &Faults) -> SelfTestReport {
    todo!()
}
