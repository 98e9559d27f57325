//! Human-readable output: times as RFC 3339 UTC, the module status, the
//! account table, key token checks, and files written by commands.
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use postvault_module::keys::{KeyType, KeyUsage};
use postvault_module::protocol::{MksInfo, Status, TokenCheck, UserView};

/// Unix seconds as RFC 3339 UTC, e.g. `2026-09-21T12:00:00Z`.
pub fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn opt_time(t: Option<i64>, none: &str) -> String {
    t.map(rfc3339).unwrap_or_else(|| none.to_string())
}

fn mks_line(m: &Option<MksInfo>) -> String {
    match m {
        Some(m) => format!(
            "{} generation {}, {}",
            m.id,
            m.generation,
            if m.exportable {
                "exportable"
            } else {
                "retained"
            }
        ),
        None => "none".into(),
    }
}

/// The status, one `label  value` line each.
pub fn status_text(s: &Status) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<15}{value}");
    };
    line(
        "module",
        s.module_id
            .clone()
            .unwrap_or_else(|| "uninitialized".into()),
    );
    line(
        "state",
        format!("{} (persistent {})", s.current_state, s.persistent_state),
    );
    if let Some(e) = &s.error {
        line("error", e.clone());
    }
    line(
        "user",
        match &s.user_id {
            Some(u) => format!("{u} ({})", s.role),
            None => "nobody logged on".into(),
        },
    );
    line(
        "session",
        format!("{:016x}, {} open", s.session_id, s.sessions_open),
    );
    line("time", format!("{} ({})", rfc3339(s.time), s.time));
    line("active MKS", mks_line(&s.keys.active_mks));
    line("dormant MKS", mks_line(&s.keys.dormant_mks));
    let present = |b: bool| if b { "present" } else { "absent" }.to_string();
    line("audit key", present(s.keys.audit_key));
    line("transport key", present(s.keys.transport_key));
    line(
        "crypto card",
        if s.keys.crypto_card {
            "loaded"
        } else {
            "not loaded"
        }
        .into(),
    );
    line("audit next seq", s.audit_next_seq.to_string());
    let failed: Vec<&str> = s
        .self_tests
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| n.as_str())
        .collect();
    line(
        "self-tests",
        if failed.is_empty() {
            format!("all {} passed", s.self_tests.len())
        } else {
            format!(
                "{} of {} FAILED: {}",
                failed.len(),
                s.self_tests.len(),
                failed.join(", ")
            )
        },
    );
    out
}

/// Accounts as a table with a header row.
pub fn users_table(users: &[UserView]) -> String {
    let header = [
        "USER",
        "ROLE",
        "LOCKED",
        "FAILURES",
        "IDLE-LOGOFF",
        "PASSWORD-EXPIRES",
        "ACCOUNT-EXPIRES",
        "LAST-LOGON",
    ];
    let rows: Vec<[String; 8]> = users
        .iter()
        .map(|u| {
            [
                u.user_id.clone(),
                u.role.to_string(),
                if u.locked { "yes" } else { "no" }.into(),
                format!("{}/{}", u.failures, u.failure_limit),
                format!("{}s", u.logon_timeout_secs),
                rfc3339(u.password_expires),
                opt_time(u.account_expires, "never"),
                opt_time(u.last_logon, "never"),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let mut emit = |cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(&l);
        out.push('\n');
    };
    emit(&header);
    for r in &rows {
        emit(&r.each_ref().map(String::as_str));
    }
    out
}

/// The CLI name of a key type.
pub fn key_type_name(k: KeyType) -> &'static str {
    match k {
        KeyType::Aes256 => "aes256",
        KeyType::HmacSha256 => "hmac",
        KeyType::EcdsaP256 => "ecdsa-p256",
        KeyType::HpkeX25519 => "hpke-x25519",
    }
}

/// The CLI name of a key usage.
pub fn key_usage_name(u: KeyUsage) -> &'static str {
    match u {
        KeyUsage::General => "general",
        KeyUsage::RegistrationSigning => "registration-signing",
        KeyUsage::RegistrationDecryption => "registration-decryption",
        KeyUsage::IndiciumSigning => "indicium-signing",
        KeyUsage::KeyEncrypting => "key-encrypting",
        KeyUsage::CertificateSigning => "certificate-signing",
    }
}

/// A token check, one `label  value` line each (scripts read the `kcv` line).
pub fn token_check_text(c: &TokenCheck) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<12}{value}");
    };
    line("type", key_type_name(c.key_type).into());
    line("usage", key_usage_name(c.usage).into());
    line("identity", c.identity.clone());
    line("generation", c.mks_generation.to_string());
    line("exportable", if c.exportable { "yes" } else { "no" }.into());
    line("expires", opt_time(c.expires, "never"));
    line("kcv", c.kcv.clone());
    if let Some(p) = &c.public_key {
        line("public-key", hex::encode(p));
    }
    out
}

/// Creates `path` for writing, refusing to replace an existing file: it is
/// opened before the module is asked, so a share or token is never produced
/// with nowhere to go.
pub fn create_new(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| {
            if path.exists() {
                format!(
                    "{} already exists; remove it or choose another output file",
                    path.display()
                )
            } else {
                format!("cannot create {}", path.display())
            }
        })
}

/// Writes `text` to an already created file and syncs it.
pub fn write_all(mut file: std::fs::File, path: &Path, text: &str) -> Result<()> {
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes (creating or replacing) a file of public data.
pub fn write_public(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a text file, naming it on failure.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_790_000_000), "2026-09-21T14:13:20Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
