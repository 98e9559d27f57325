//! [`SealConfig`], which seal provider to use and where its key lives, parsed
//! from a one-line specification, and [`Pin`], the PKCS#11 user PIN.
//!
//! Specification syntax:
//!
//! - `file:PATH` — a 32-byte key file (development and tests).
//! - `pkcs11:token=LABEL,pin-file=PATH[,key=LABEL][,module=PATH]` — a key on
//!   a PKCS#11 token. `pin-env=VAR` may replace `pin-file=PATH`. `key`
//!   defaults to [`DEFAULT_KEY_LABEL`]; `module` defaults to the first
//!   existing path in [`DEFAULT_PKCS11_MODULES`]. Values cannot contain `,`.
//!
//! A PIN is never accepted inline (`pin=...`): command lines and
//! configuration echoes are visible to other users.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use zeroize::{Zeroize, Zeroizing};

use crate::SealError;

/// Label of the seal key on a PKCS#11 token when the specification names none.
pub const DEFAULT_KEY_LABEL: &str = "postvault-nvm-seal";

/// PKCS#11 libraries tried, in order, when the specification names no
/// `module=`: SoftHSM2 as packaged by Debian and Ubuntu.
pub const DEFAULT_PKCS11_MODULES: [&str; 2] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];

/// Longest token label PKCS#11 can store, in bytes.
const MAX_TOKEN_LABEL: usize = 32;

/// A PKCS#11 user PIN: zeroized on drop, never printed by `Debug`.
#[derive(Clone)]
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Wraps a PIN. The caller should zeroize its own copies.
    pub fn new(pin: String) -> Self {
        Self(Zeroizing::new(pin))
    }

    /// The PIN itself. Every call site is a place the PIN is read.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Reads a PIN from a file, dropping trailing line breaks.
    pub fn from_file(path: &Path) -> Result<Self, SealError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| SealError::Pin {
            reason: format!(
                "cannot read pin-file {}: {e}; check the path and that this user may read it",
                path.display()
            ),
        })?);
        let text = std::str::from_utf8(&bytes).map_err(|_| SealError::Pin {
            reason: format!(
                "pin-file {} is not UTF-8 text: write the PIN as text",
                path.display()
            ),
        })?;
        Self::checked(text, &format!("pin-file {}", path.display()))
    }

    /// Reads a PIN from an environment variable, dropping trailing line breaks.
    pub fn from_env(var: &str) -> Result<Self, SealError> {
        let value = Zeroizing::new(std::env::var(var).map_err(|e| {
            let why = match e {
                std::env::VarError::NotPresent => "is not set: export it with the token's user PIN",
                std::env::VarError::NotUnicode(raw) => {
                    raw.into_encoded_bytes().zeroize();
                    "is not valid Unicode: set it to the PIN as text"
                }
            };
            SealError::Pin {
                reason: format!("environment variable {var} {why}"),
            }
        })?);
        Self::checked(&value, &format!("environment variable {var}"))
    }

    fn checked(text: &str, source: &str) -> Result<Self, SealError> {
        let pin = text.trim_end_matches(['\n', '\r']);
        if pin.is_empty() {
            return Err(SealError::Pin {
                reason: format!("{source} is empty: put the token's user PIN in it"),
            });
        }
        Ok(Self::new(pin.to_owned()))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// Which seal provider to open and where its key lives.
#[derive(Debug, Clone)]
pub enum SealConfig {
    /// A 32-byte AES-256 key in a file with mode 0600.
    File {
        /// The key file.
        key_path: PathBuf,
    },
    /// An AES-256 key that never leaves a PKCS#11 token.
    Pkcs11 {
        /// The PKCS#11 library.
        module: PathBuf,
        /// Label of the token holding the key.
        token_label: String,
        /// The token's user PIN.
        pin: Pin,
        /// Label (`CKA_LABEL`) of the secret key.
        key_label: String,
    },
}

impl SealConfig {
    /// Parses `file:PATH` or
    /// `pkcs11:token=LABEL,pin-file=PATH[,key=LABEL][,module=PATH]`
    /// (`pin-env=VAR` instead of `pin-file`). Reads the PIN now, so a
    /// missing or empty PIN file is reported here.
    pub fn parse(spec: &str) -> Result<Self, SealError> {
        let invalid = |reason: String| SealError::InvalidSpec { reason };
        let Some((scheme, rest)) = spec.split_once(':') else {
            return Err(invalid(
                "it does not start with a provider name and ':'".to_owned(),
            ));
        };
        match scheme {
            "file" => {
                if rest.is_empty() {
                    return Err(invalid(
                        "file: needs the key file path, as in file:/var/lib/postvault/seal.key"
                            .to_owned(),
                    ));
                }
                Ok(SealConfig::File {
                    key_path: PathBuf::from(rest),
                })
            }
            "pkcs11" => parse_pkcs11(rest),
            other => Err(invalid(format!("unknown provider '{}'", printable(other)))),
        }
    }
}

impl FromStr for SealConfig {
    type Err = SealError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        Self::parse(spec)
    }
}

fn parse_pkcs11(rest: &str) -> Result<SealConfig, SealError> {
    let invalid = |reason: String| SealError::InvalidSpec { reason };
    let mut module = None;
    let mut token = None;
    let mut pin_file = None;
    let mut pin_env = None;
    let mut key = None;
    if rest.is_empty() {
        return Err(invalid(
            "pkcs11: needs at least token= and pin-file= (or pin-env=)".to_owned(),
        ));
    }
    for (index, item) in rest.split(',').enumerate() {
        // Never echo an item's value: a mistyped item may be a PIN.
        let Some((name, value)) = item.split_once('=') else {
            return Err(invalid(format!(
                "pkcs11 item {} is not NAME=VALUE",
                index + 1
            )));
        };
        let slot = match name {
            "module" => &mut module,
            "token" => &mut token,
            "pin-file" => &mut pin_file,
            "pin-env" => &mut pin_env,
            "key" => &mut key,
            "pin" | "pin-value" | "so-pin" => {
                return Err(invalid(format!(
                    "{name}= is not accepted because command lines are visible to other users: put the PIN in a file readable only by this user and pass pin-file=PATH, or pass pin-env=VAR"
                )));
            }
            other => {
                return Err(invalid(format!(
                    "unknown pkcs11 item '{}' (known: module, token, pin-file, pin-env, key)",
                    printable(other)
                )));
            }
        };
        if value.is_empty() {
            return Err(invalid(format!("{name}= is empty")));
        }
        if slot.replace(value).is_some() {
            return Err(invalid(format!("{name}= is given twice")));
        }
    }
    let token = token.ok_or_else(|| {
        invalid("missing token=LABEL (the label given to softhsm2-util --init-token)".to_owned())
    })?;
    if token.len() > MAX_TOKEN_LABEL {
        return Err(invalid(format!(
            "token label '{token}' is {} bytes; PKCS#11 token labels are at most {MAX_TOKEN_LABEL}",
            token.len()
        )));
    }
    let key_label = key.unwrap_or(DEFAULT_KEY_LABEL).to_owned();
    let module = match module {
        Some(m) => PathBuf::from(m),
        None => default_module().ok_or_else(|| {
            invalid(format!(
                "no module=PATH given and no PKCS#11 library at {}: install softhsm2 or pass module=PATH",
                DEFAULT_PKCS11_MODULES.join(" or ")
            ))
        })?,
    };
    let pin = match (pin_file, pin_env) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give either pin-file= or pin-env=, not both".to_owned(),
            ));
        }
        (None, None) => {
            return Err(invalid(
                "missing pin-file=PATH or pin-env=VAR (where the token's user PIN is)".to_owned(),
            ));
        }
        (Some(path), None) => Pin::from_file(Path::new(path))?,
        (None, Some(var)) => Pin::from_env(var)?,
    };
    Ok(SealConfig::Pkcs11 {
        module,
        token_label: token.to_owned(),
        pin,
        key_label,
    })
}

/// The first of [`DEFAULT_PKCS11_MODULES`] that exists.
fn default_module() -> Option<PathBuf> {
    DEFAULT_PKCS11_MODULES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A short, control-character-free rendering of a name for error messages.
fn printable(s: &str) -> String {
    s.chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
