//! `postvault module mks|token|crypto-card`: Master Key Set ceremonies (share
//! export and import, rollover), key tokens and the crypto-card keys. Every
//! file these commands write holds public data or ciphertext only.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use postvault_crypto::ecdsa::{public_key_from_pem, public_key_to_pem};
use postvault_module::keys::KeyToken;
use postvault_module::protocol::{CryptoCardKeys, EncryptedShare, MksSlot};
use postvault_module::{Request, Response};

use crate::cli::{CryptoCardArgs, MksCommand, TokenCommand};
use crate::conn::{unexpected, with_module};
use crate::module::done;
use crate::output::{self, read_text, token_check_text};
use crate::{out, outln};

/// A new output file: created (never replacing one) before the module is
/// asked for its contents, and removed again if nothing was written to it.
struct NewFile {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl NewFile {
    fn create(path: &Path) -> Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(output::create_new(path)?),
        })
    }

    fn write(mut self, text: &str) -> Result<()> {
        let file = self.file.take().expect("written once");
        let res = output::write_all(file, &self.path, text);
        if res.is_err() {
            let _ = std::fs::remove_file(&self.path);
        }
        res
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn read_token(path: &Path) -> Result<KeyToken> {
    KeyToken::from_json(&read_text(path)?)
        .with_context(|| format!("{} is not a key token file", path.display()))
}

fn read_transport_key(path: &Path) -> Result<Vec<u8>> {
    let text = read_text(path)?;
    let key = hex::decode(text.trim()).map_err(|e| {
        anyhow!(
            "{} is not a transport key file (hex expected: {e}); write it with `postvault module mks transport-key`",
            path.display()
        )
    })?;
    if key.len() != 32 {
        bail!(
            "{} holds {} bytes; a transport key has 32 (64 hex digits)",
            path.display(),
            key.len()
        );
    }
    Ok(key)
}

/// Runs `postvault module mks ...`.
pub fn mks(cmd: MksCommand, verbose: bool) -> Result<ExitCode> {
    use MksCommand as K;
    match cmd {
        K::Generate { conn, op } => {
            let info = with_module(&conn, Some(&op), verbose, |c| {
                match c.call(&Request::GenerateMks)? {
                    Response::Mks(i) => Ok(i),
                    other => Err(unexpected("GenerateMks", &other)),
                }
            })?;
            outln!(
                "generated MKS {} generation {} (dormant: make it active with `postvault module mks activate`)",
                info.id,
                info.generation
            );
        }
        K::TransportKey { conn, op, out } => {
            let key = with_module(&conn, Some(&op), verbose, |c| {
                match c.call(&Request::ExportTransportKey)? {
                    Response::TransportKey(k) => Ok(k),
                    other => Err(unexpected("ExportTransportKey", &other)),
                }
            })?;
            let hex_key = hex::encode(key);
            output::write_public(&out, &format!("{hex_key}\n"))?;
            outln!("transport key {hex_key} written to {}", out.display());
        }
        K::CreateShares {
            conn,
            op,
            count,
            threshold,
            dormant,
        } => {
            let slot = if dormant {
                MksSlot::Dormant
            } else {
                MksSlot::Active
            };
            let (n, t) = with_module(&conn, Some(&op), verbose, |c| {
                match c.call(&Request::CreateMksShares {
                    count,
                    threshold,
                    slot,
                })? {
                    Response::SharesCreated { count, threshold } => Ok((count, threshold)),
                    other => Err(unexpected("CreateMksShares", &other)),
                }
            })?;
            outln!(
                "created {n} shares ({t} needed to recombine); each key custodian now runs `postvault module mks export-share`"
            );
        }
        K::ExportShare {
            conn,
            op,
            transport_key,
            out,
            retained,
        } => {
            let transport_public_key = read_transport_key(&transport_key)?;
            let file = NewFile::create(&out)?;
            let (share, remaining) = with_module(&conn, Some(&op), verbose, |c| {
                match c.call(&Request::ExportShare {
                    transport_public_key,
                    exportable: !retained,
                })? {
                    Response::Share { share, remaining } => Ok((share, remaining)),
                    other => Err(unexpected("ExportShare", &other)),
                }
            })?;
            file.write(&(serde_json::to_string_pretty(&share)? + "\n"))?;
            outln!(
                "share {} exported, {remaining} remaining (written to {})",
                share.index,
                out.display()
            );
        }
        K::AbortExport { conn, op } => {
            return done(
                &conn,
                &op,
                verbose,
                &Request::AbortExport,
                "share export abandoned; module is back in Operational state",
            );
        }
        K::StartImport { conn, op } => {
            return done(
                &conn,
                &op,
                verbose,
                &Request::StartImporting,
                "module is importing shares: key custodians run `postvault module mks import-share`",
            );
        }
        K::ImportShare { conn, op, share } => {
            let text = read_text(&share)?;
            let s: EncryptedShare = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a share file written by `postvault module mks export-share`",
                    share.display()
                )
            })?;
            let index = s.index;
            let (held, threshold) = with_module(&conn, Some(&op), verbose, |c| {
                match c.call(&Request::ImportShare { share: s })? {
                    Response::ShareImported { held, threshold } => Ok((held, threshold)),
                    other => Err(unexpected("ImportShare", &other)),
                }
            })?;
            out!("share {index} imported: {held} of {threshold} needed");
            if held >= threshold {
                outln!("; the Security Officer can run `postvault module mks combine`");
            } else {
                outln!();
            }
        }
        K::Combine { conn, op } => {
            let info = with_module(&conn, Some(&op), verbose, |c| {
                match c.call(&Request::CombineShares)? {
                    Response::Mks(i) => Ok(i),
                    other => Err(unexpected("CombineShares", &other)),
                }
            })?;
            outln!(
                "combined MKS {} generation {} ({})",
                info.id,
                info.generation,
                if info.exportable {
                    "exportable"
                } else {
                    "retained"
                }
            );
        }
        K::Activate { conn, op } => {
            let info = with_module(&conn, Some(&op), verbose, |c| {
                match c.call(&Request::ActivateMks)? {
                    Response::Mks(i) => Ok(i),
                    other => Err(unexpected("ActivateMks", &other)),
                }
            })?;
            outln!(
                "MKS {} generation {} is active; the previous one is dormant (translate tokens with `postvault module mks translate`)",
                info.id,
                info.generation
            );
        }
        K::DeleteDormant { conn, op } => {
            return done(
                &conn,
                &op,
                verbose,
                &Request::DeleteDormantMks,
                "dormant MKS deleted",
            );
        }
        K::Translate {
            conn,
            op,
            token,
            out,
        } => {
            let token = read_token(&token)?;
            let file = NewFile::create(&out)?;
            let (t, check) = with_module(&conn, Some(&op), verbose, |c| {
                match c.call(&Request::TranslateToken { token })? {
                    Response::Token { token, check } => Ok((token, check)),
                    other => Err(unexpected("TranslateToken", &other)),
                }
            })?;
            file.write(&(t.to_json() + "\n"))?;
            outln!("translated token written to {}", out.display());
            out!("{}", token_check_text(&check));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `postvault module token ...`.
pub fn token(cmd: TokenCommand, verbose: bool) -> Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            conn,
            op,
            key_type,
            usage,
            identity,
            retained,
            expires,
            out,
        } => {
            let file = NewFile::create(&out)?;
            let req = Request::CreateKeyToken {
                key_type: key_type.into(),
                usage: usage.into(),
                identity,
                exportable: !retained,
                expires,
            };
            let (t, check) = with_module(&conn, Some(&op), verbose, |c| match c.call(&req)? {
                Response::Token { token, check } => Ok((token, check)),
                other => Err(unexpected("CreateKeyToken", &other)),
            })?;
            file.write(&(t.to_json() + "\n"))?;
            outln!("token written to {}", out.display());
            out!("{}", token_check_text(&check));
        }
        TokenCommand::Check { conn, op, token } => {
            let token = read_token(&token)?;
            let check = with_module(&conn, Some(&op), verbose, |c| {
                match c.call(&Request::CheckKeyToken { token })? {
                    Response::TokenCheck(c) => Ok(c),
                    other => Err(unexpected("CheckKeyToken", &other)),
                }
            })?;
            out!("{}", token_check_text(&check));
        }
    }
    Ok(ExitCode::SUCCESS)
}

const SIGNING_TOKEN: &str = "registration-signing.token.json";
const DECRYPTION_TOKEN: &str = "registration-decryption.token.json";
const SIGNING_PEM: &str = "registration-signing.pub.pem";
const ENCRYPTION_HEX: &str = "registration-encryption.pub";

/// Reads a CA certificate as DER, decoding PEM when the file is PEM.
fn read_ca_certificate(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Ok(bytes);
    }
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes)
        .map_err(|e| anyhow!("{} is not a PEM certificate: {e}", path.display()))?;
    if pem.label != "CERTIFICATE" {
        bail!(
            "{} holds a PEM {:?} block; a CERTIFICATE is expected",
            path.display(),
            pem.label
        );
    }
    Ok(pem.contents)
}

/// Runs `postvault module crypto-card`.
pub fn crypto_card(a: CryptoCardArgs, verbose: bool) -> Result<ExitCode> {
    let ca_certificate = a.ca_cert.as_deref().map(read_ca_certificate).transpose()?;
    let provider_public_key = a
        .provider_key
        .as_deref()
        .map(|p| {
            public_key_from_pem(&read_text(p)?)
                .map(|k| k.to_vec())
                .with_context(|| format!("{} is not a P-256 public key in PEM", p.display()))
        })
        .transpose()?;
    let (keys, outputs) = match (&a.load_dir, &a.out_dir) {
        (Some(dir), _) => (
            CryptoCardKeys::Load {
                signing: read_token(&dir.join(SIGNING_TOKEN))?,
                decryption: read_token(&dir.join(DECRYPTION_TOKEN))?,
            },
            None,
        ),
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let files = [SIGNING_TOKEN, DECRYPTION_TOKEN, SIGNING_PEM, ENCRYPTION_HEX]
                .map(|name| NewFile::create(&dir.join(name)));
            let [f1, f2, f3, f4] = files;
            (CryptoCardKeys::Generate, Some([f1?, f2?, f3?, f4?]))
        }
        (None, None) => unreachable!("clap requires --generate --out-dir or --load-dir"),
    };
    let out = with_module(&a.conn, Some(&a.op), verbose, |c| {
        match c.call(&Request::InitializeCryptoCard {
            keys,
            ca_certificate,
            provider_public_key,
        })? {
            Response::CryptoCard(o) => Ok(o),
            other => Err(unexpected("InitializeCryptoCard", &other)),
        }
    })?;
    let signing: [u8; 65] = out
        .signing_public_key
        .clone()
        .try_into()
        .map_err(|k: Vec<u8>| {
            anyhow!(
                "the module returned a {}-byte registration signing key, expected 65",
                k.len()
            )
        })?;
    if let (Some([st, dt, sp, eh]), Some(dir)) = (outputs, &a.out_dir) {
        st.write(&(out.signing_token.to_json() + "\n"))?;
        dt.write(&(out.decryption_token.to_json() + "\n"))?;
        sp.write(&public_key_to_pem(&signing))?;
        eh.write(&(hex::encode(&out.decryption_public_key) + "\n"))?;
        outln!(
            "crypto card generated; tokens and public keys written to {}",
            dir.display()
        );
    } else {
        outln!("crypto card loaded");
    }
    outln!(
        "registration signing key    {}",
        hex::encode(&out.signing_public_key)
    );
    outln!(
        "registration encryption key {}",
        hex::encode(&out.decryption_public_key)
    );
    Ok(ExitCode::SUCCESS)
}
