//! Operator passwords: read from the first line of a file (scripts) or
//! prompted without echo on a terminal. Passwords live only in
//! [`Password`] (zeroized on drop, redacted in `Debug`) and are never printed.
use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};
use postvault_module::Password;
use postvault_module::access::MIN_PASSWORD_LEN;
use zeroize::Zeroizing;

/// Reads a password from the first line of `path` (trailing `\n` / `\r\n` stripped).
pub fn from_file(path: &Path) -> Result<Password> {
    let text = Zeroizing::new(std::fs::read(path).with_context(|| {
        format!(
            "cannot read password file {}; check the path and that this user may read it",
            path.display()
        )
    })?);
    let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let Ok(line) = std::str::from_utf8(first) else {
        bail!(
            "password file {} is not UTF-8 text; write the password as text on its first line",
            path.display()
        );
    };
    if line.is_empty() {
        bail!(
            "password file {} has an empty first line; put the password on it",
            path.display()
        );
    }
    Ok(Password::new(line))
}

/// Fails unless a prompt can be shown, explaining the file alternative.
fn require_terminal(what: &str, file_option: &str) -> Result<()> {
    if std::io::stdin().is_terminal() {
        Ok(())
    } else {
        bail!(
            "{what} is needed but stdin is not a terminal, so it cannot be prompted for; \
             give it in a file with {file_option} (first line, no other text)"
        )
    }
}

/// The logon password of `user`: from `file`, or prompted once.
pub fn logon_password(user: &str, file: Option<&Path>) -> Result<Password> {
    if let Some(f) = file {
        return from_file(f);
    }
    require_terminal(&format!("the password of {user}"), "--password-file FILE")?;
    let pw = rpassword::prompt_password(format!("Password for {user}: "))
        .context("cannot read the password from the terminal")?;
    Ok(Password::new(pw))
}

/// A new password for `user`: from `file`, or prompted twice (must match).
pub fn new_password(user: &str, file: Option<&Path>, file_option: &str) -> Result<Password> {
    if let Some(f) = file {
        return from_file(f);
    }
    require_terminal(&format!("a new password for {user}"), file_option)?;
    loop {
        let first = Password::new(
            rpassword::prompt_password(format!(
                "New password for {user} (at least {MIN_PASSWORD_LEN} characters): "
            ))
            .context("cannot read the password from the terminal")?,
        );
        let again = Password::new(
            rpassword::prompt_password(format!("Repeat the password for {user}: "))
                .context("cannot read the password from the terminal")?,
        );
        if first == again {
            return Ok(first);
        }
        eprintln!("The passwords do not match; try again.");
    }
}
