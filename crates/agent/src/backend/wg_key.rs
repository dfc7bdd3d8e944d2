//! The node's WireGuard key pair and the pre-shared key.
//!
//! The private key lives in one file in the agent's state directory
//! (`wireguard.key`, base64 as `wg genkey` writes it, mode 0600), made
//! when missing and read on every start: peers know this node by its
//! public key, so a key that changed on every restart would cut traffic
//! until each peer saw the new one. Deleting the file and restarting the
//! agent rotates the key.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;
use tweed_netlink::WgKey;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::config::PskSource;

/// The file's name in the state directory.
pub const KEY_FILE: &str = "wireguard.key";

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("WireGuard key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("WireGuard key file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("Backend.PSKFile {path}: {reason}")]
    Psk { path: PathBuf, reason: String },
}

/// A node's key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub private: WgKey,
    pub public: WgKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair {{ public: {} }}", self.public)
    }
}

impl KeyPair {
    /// The pair of a private key (Curve25519 scalar multiplication of the
    /// base point; the kernel derives the same public key).
    pub fn from_private(private: WgKey) -> KeyPair {
        let public = PublicKey::from(&StaticSecret::from(private.0));
        KeyPair {
            private,
            public: WgKey(public.to_bytes()),
        }
    }

    /// A new random pair.
    pub fn generate() -> Result<KeyPair, std::io::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
        // Clamped as Curve25519 private keys are (wg genkey does the same).
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        Ok(KeyPair::from_private(WgKey(bytes)))
    }
}

/// Reads the key in `dir`, or makes and writes a new one when there is
/// none. A file that exists but holds no key is an error, never replaced:
/// it may be an operator's mistake worth seeing. Its mode is put back to
/// 0600 when someone widened it.
pub fn load_or_create(dir: &Path) -> Result<(KeyPair, bool), KeyError> {
    let path = dir.join(KEY_FILE);
    let io = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let private: WgKey = text
                .trim()
                .parse()
                .map_err(|e: tweed_netlink::InvalidKey| KeyError::Invalid {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the WireGuard key file was readable by others; setting 0600");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
            }
            Ok((KeyPair::from_private(private), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io)?;
            let pair = KeyPair::generate().map_err(io)?;
            // Written to a temporary file (created 0600, never wider) and
            // renamed, so a crash never leaves half a key behind.
            let tmp = dir.join(format!(".{KEY_FILE}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            writeln!(f, "{}", pair.private).map_err(io)?;
            f.sync_all().map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            Ok((pair, true))
        }
        Err(e) => Err(io(e)),
    }
}

/// The pre-shared key the configuration names, read now.
pub fn load_psk(source: &Option<PskSource>) -> Result<Option<WgKey>, KeyError> {
    match source {
        None => Ok(None),
        Some(PskSource::Inline(key)) => Ok(Some(*key)),
        Some(PskSource::File(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| KeyError::Psk {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            text.trim()
                .parse()
                .map(Some)
                .map_err(|e: tweed_netlink::InvalidKey| KeyError::Psk {
                    path: path.clone(),
                    reason: e.to_string(),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 section 6.1: Alice's private and public key.
    #[test]
    fn the_public_key_is_curve25519_of_the_private_one() {
        let hex = |s: &str| -> [u8; 32] {
            (0..32)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
                .collect::<Vec<_>>()
                .try_into()
                .unwrap()
        };
        let pair = KeyPair::from_private(WgKey(hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        )));
        assert_eq!(
            pair.public,
            WgKey(hex(
                "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
            ))
        );
    }

    #[test]
    fn the_key_file_is_made_once_with_mode_0600_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (first, created) = load_or_create(&state).unwrap();
        assert!(created);
        let path = state.join(KEY_FILE);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), first.private.to_string());
        assert_eq!(text.trim().len(), 44, "{text}");

        let (again, created) = load_or_create(&state).unwrap();
        assert!(!created);
        assert_eq!(again, first, "a restart keeps the key");

        // Widened by hand: narrowed back, the key unchanged.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (again, _) = load_or_create(&state).unwrap();
        assert_eq!(again, first);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // Deleted: a new key (rotation).
        std::fs::remove_file(&path).unwrap();
        let (rotated, created) = load_or_create(&state).unwrap();
        assert!(created);
        assert_ne!(rotated.private, first.private);
        assert_ne!(rotated.public, first.public);
    }

    #[test]
    fn a_key_file_without_a_key_is_an_error_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, "garbage\n").unwrap();
        let e = load_or_create(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("wireguard.key")
                && e.to_string().contains("not a WireGuard key"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage\n");
    }

    #[test]
    fn the_psk_comes_from_the_config_or_its_file() {
        let key: WgKey = "YLvHZ1gwN2kaQ7jkmGl6EYf5IvTPrYDtJ1yg0WJDLWs="
            .parse()
            .unwrap();
        assert_eq!(load_psk(&None).unwrap(), None);
        assert_eq!(load_psk(&Some(PskSource::Inline(key))).unwrap(), Some(key));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("psk");
        std::fs::write(&file, format!("{key}\n")).unwrap();
        assert_eq!(
            load_psk(&Some(PskSource::File(file.clone()))).unwrap(),
            Some(key)
        );
        std::fs::write(&file, "short").unwrap();
        let e = load_psk(&Some(PskSource::File(file))).unwrap_err();
        assert!(e.to_string().starts_with("Backend.PSKFile"), "{e}");
        let e = load_psk(&Some(PskSource::File(dir.path().join("missing")))).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
