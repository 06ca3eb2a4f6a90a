//! The REST API's administrator key.
//!
//! From `admin.key` / `WEIR_ADMIN_KEY` when configured; otherwise the first
//! start generates one, prints it once, and keeps only its SHA-256 in the
//! data dir (`admin_key.sha256`, mode 0600). Comparisons are constant-time.

use std::io::Write;
use std::path::Path;

use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};

const HASH_FILE: &str = "admin_key.sha256";
const GENERATED_LEN: usize = 40;

/// Checks presented admin keys.
#[derive(Debug, Clone)]
pub struct AdminKey {
    hash: [u8; 32],
}

impl AdminKey {
    /// Loads or creates the admin key. Returns the key and, when it was
    /// generated now, its plain text (to print once).
    pub fn load_or_create(
        configured: Option<&str>,
        data_dir: &Path,
    ) -> std::io::Result<(AdminKey, Option<String>)> {
        if let Some(key) = configured {
            return Ok((AdminKey { hash: digest(key) }, None));
        }
        let path = data_dir.join(HASH_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(|e| corrupt(&path, &e.to_string()))?;
                let hash: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| corrupt(&path, "not a SHA-256 hash"))?;
                Ok((AdminKey { hash }, None))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: String = rand::thread_rng()
                    .sample_iter(&Alphanumeric)
                    .take(GENERATED_LEN)
                    .map(char::from)
                    .collect();
                let hash = digest(&key);
                write_private(&path, hex::encode(hash).as_bytes())?;
                Ok((AdminKey { hash }, Some(key)))
            }
            Err(e) => Err(e),
        }
    }

    /// Constant-time check of a presented key.
    pub fn verify(&self, presented: &str) -> bool {
        let presented = digest(presented);
        presented
            .iter()
            .zip(self.hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn corrupt(path: &Path, reason: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "{}: {reason} (delete it to generate a new admin key)",
            path.display()
        ),
    )
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_printed_once_and_verified_after_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (first, printed) = AdminKey::load_or_create(None, dir.path()).expect("created");
        let printed = printed.expect("a new key is returned once");
        assert!(printed.len() >= 32);
        assert!(first.verify(&printed));
        let (again, printed_again) = AdminKey::load_or_create(None, dir.path()).expect("loaded");
        assert!(printed_again.is_none(), "printed only on the first start");
        assert!(again.verify(&printed));
        assert!(!again.verify("wrong"));
        let stored = std::fs::read_to_string(dir.path().join(HASH_FILE)).expect("hash file");
        assert!(!stored.contains(&printed), "only the hash is stored");
    }

    #[test]
    fn a_configured_key_wins_and_a_corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (key, printed) =
            AdminKey::load_or_create(Some("configured-key-0123456789abcdefghij"), dir.path())
                .expect("ok");
        assert!(printed.is_none());
        assert!(key.verify("configured-key-0123456789abcdefghij"));
        assert!(!key.verify("configured-key-0123456789abcdefghiJ"));
        std::fs::write(dir.path().join(HASH_FILE), "zz").expect("write");
        assert!(AdminKey::load_or_create(None, dir.path()).is_err());
    }
}
