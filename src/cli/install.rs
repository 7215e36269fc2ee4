//! `install-secret`: copies a secret file (the wallet key, the API token,
//! a TLS key) to where the sidecar reads it, readable by its owner only.
//!
//! Why it exists: Kubernetes mounts a Secret group-readable as soon as the
//! pod has an `fsGroup` (kubelet turns `defaultMode: 0400` into 0440), and
//! the sidecar refuses a key file readable by anyone but its owner. An init
//! container running this subcommand (same image, same uid as the sidecar)
//! copies it to a memory-backed volume with mode 0400. The image has no
//! shell and no coreutils, so this cannot be `install -m 0400`.
//!
//! The copy is atomic (a temporary file in the destination's folder,
//! synced, then renamed over the destination), so the sidecar never reads a
//! half-written key, and a rerun (the pod's init containers run again after
//! a sandbox restart) replaces the file in place. The content is checked
//! before anything is written (`--kind private-key` / `auth-token`) and is
//! never printed.

use std::{
    io::Write,
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

use super::CliError;
use crate::keys::{BearerToken, WalletKey};

/// Largest secret accepted: a key is 66 bytes, a TLS chain a few KiB.
const MAX_SECRET_BYTES: u64 = 1 << 20;

/// What the secret must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SecretKind {
    /// A 0x-hex secp256k1 private key (wallet.private_key_file).
    #[default]
    PrivateKey,
    /// A bearer token (server.auth_token_file): 32+ visible ASCII characters.
    AuthToken,
    /// Any non-empty file (a TLS key or certificate).
    File,
}

/// Copies `src` to `dst` with mode 0400, owned by the calling user, after
/// checking that the content is a `kind`. Returns what to tell the operator.
pub fn install_secret(src: &Path, dst: &Path, kind: SecretKind) -> Result<String, CliError> {
    let usage = |what: String| CliError::Usage(what);
    let meta = std::fs::metadata(src).map_err(|e| usage(format!("{}: {e}", src.display())))?;
    if !meta.is_file() {
        return Err(usage(format!("{}: not a regular file", src.display())));
    }
    if meta.len() > MAX_SECRET_BYTES {
        return Err(usage(format!(
            "{}: larger than {MAX_SECRET_BYTES} bytes: not a secret file",
            src.display()
        )));
    }
    let bytes = std::fs::read(src).map_err(|e| usage(format!("{}: {e}", src.display())))?;
    check(&bytes, kind).map_err(|why| usage(format!("{}: {why}", src.display())))?;

    let dir = match dst.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = dst
        .file_name()
        .ok_or_else(|| usage(format!("{}: not a file path", dst.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&tmp)?;
        // The umask cannot widen 0400, but be explicit about the result.
        f.set_permissions(std::fs::Permissions::from_mode(0o400))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dst)?;
        std::fs::File::open(dir)?.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(usage(format!("cannot install {}: {e}", dst.display())));
    }
    let installed = std::fs::metadata(dst).map_err(|e| usage(format!("{}: {e}", dst.display())))?;
    Ok(format!(
        "installed {} ({} bytes, mode {:o}, owner uid {})",
        dst.display(),
        installed.len(),
        installed.permissions().mode() & 0o7777,
        installed.uid()
    ))
}

/// Whether `bytes` hold a `kind`; the reason never quotes the content.
fn check(bytes: &[u8], kind: SecretKind) -> Result<(), String> {
    let text = || std::str::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string());
    match kind {
        SecretKind::PrivateKey => WalletKey::parse(text()?)
            .map(|_| ())
            .ok_or_else(|| "does not hold a valid 0x-hex secp256k1 private key".into()),
        SecretKind::AuthToken => BearerToken::new(text()?.trim()).map(|_| ()),
        SecretKind::File if bytes.is_empty() => Err("is empty".into()),
        SecretKind::File => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_group_readable_secret_becomes_owner_read_only_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("secret");
        std::fs::write(&src, format!("{KEY}\n")).unwrap();
        // As kubelet mounts a Secret under an fsGroup.
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o440)).unwrap();
        assert!(WalletKey::load(Some(&src), None).is_err());

        let dst = dir.path().join("key");
        let said = install_secret(&src, &dst, SecretKind::PrivateKey).unwrap();
        assert_eq!(mode(&dst), 0o400, "{said}");
        assert!(!said.contains(&KEY[2..]), "{said}");
        assert_eq!(
            WalletKey::load(Some(&dst), None).unwrap().address(),
            WalletKey::parse(KEY).unwrap().address()
        );
        // Again over the read-only file it installed (an init container's
        // rerun): replaced, still 0400, no temporary file left.
        install_secret(&src, &dst, SecretKind::PrivateKey).unwrap();
        assert_eq!(mode(&dst), 0o400);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn content_is_checked_before_writing_and_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("secret");
        let dst = dir.path().join("out");
        let secret = "0xnot-a-key-secret-text";
        std::fs::write(&src, secret).unwrap();
        let e = install_secret(&src, &dst, SecretKind::PrivateKey)
            .unwrap_err()
            .to_string();
        assert!(e.contains("valid 0x-hex"), "{e}");
        assert!(!e.contains(secret), "{e}");
        assert!(!dst.exists());

        let e = install_secret(&src, &dst, SecretKind::AuthToken)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 32"), "{e}");
        assert!(!dst.exists());

        // A file of any content (a TLS key) is copied as is; an empty one
        // is refused.
        install_secret(&src, &dst, SecretKind::File).unwrap();
        assert_eq!(std::fs::read_to_string(&dst).unwrap(), secret);
        std::fs::write(&src, "").unwrap();
        assert!(install_secret(&src, &dst, SecretKind::File).is_err());
        assert!(install_secret(dir.path(), &dst, SecretKind::File).is_err());
    }
}
