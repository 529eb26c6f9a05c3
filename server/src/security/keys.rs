//! The cluster key file: the secret every member holds, from which the datagram MAC keys are
//! derived.
//!
//! Format: one key per line, hex, at least [`CLUSTER_KEY_BYTES_MIN`] bytes; blank lines and
//! lines starting with `#` are ignored. The first key signs; every key listed (at most
//! [`CLUSTER_KEYS_MAX`]) is accepted, so a key is rolled over without downtime: list the new
//! key second on every node, then first, then drop the old one (each step a reload).

use crate::error::{Error, Result};
use crate::limits::{CLUSTER_KEYS_MAX, CLUSTER_KEY_BYTES_MIN, CLUSTER_KEY_FILE_BYTES_MAX};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// Identifies a key on the wire without revealing it.
pub type KeyId = [u8; 4];

/// One key: the MAC key derived from the secret for one cluster, and its id.
#[derive(Clone)]
pub struct DatagramKey {
    id: KeyId,
    mac: HmacSha256,
}

impl std::fmt::Debug for DatagramKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatagramKey({})", hex::encode(self.id))
    }
}

impl DatagramKey {
    /// Derives the datagram key of `cluster` from `secret` (bound to the cluster's name, so
    /// one secret shared by two clusters still keeps their datagrams apart).
    pub fn derive(secret: &[u8], cluster: &str) -> DatagramKey {
        let derive = |label: &[u8]| {
            let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
            mac.update(label);
            mac.update(cluster.as_bytes());
            mac.finalize().into_bytes()
        };
        let key = derive(b"idlab datagram key v1\0");
        let id = derive(b"idlab key id v1\0");
        DatagramKey {
            id: id[..4].try_into().expect("32-byte digest"),
            mac: HmacSha256::new_from_slice(&key).expect("HMAC takes any key length"),
        }
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// A MAC over `parts`, in order.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the MAC over `parts` (compared in constant time).
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    }
}

/// The keys of a key file: the first signs, all verify.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<DatagramKey>,
}

impl KeyRing {
    /// Reads the key file at `path` for `cluster`.
    pub fn load(path: &Path, cluster: &str) -> Result<KeyRing> {
        let bytes = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("failed to read {}", path.display()), e))?
            .len();
        if bytes > CLUSTER_KEY_FILE_BYTES_MAX {
            return Err(Error::Config(format!(
                "{}: {bytes} bytes is not a cluster key file (at most {CLUSTER_KEY_FILE_BYTES_MAX})",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("failed to read {}", path.display()), e))?;
        KeyRing::parse(&text, cluster).map_err(|e| Error::Config(format!("{}:{e}", path.display())))
    }

    /// Parses a key file's text; errors name the line (`LINE: what`).
    pub fn parse(text: &str, cluster: &str) -> std::result::Result<KeyRing, String> {
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = number + 1;
            let secret = hex::decode(line).map_err(|e| {
                format!("{at}: a key is hex digits ({e}); make one with `openssl rand -hex 32`")
            })?;
            if secret.len() < CLUSTER_KEY_BYTES_MIN {
                return Err(format!(
                    "{at}: a key of {} bytes is too short (at least {CLUSTER_KEY_BYTES_MIN})",
                    secret.len()
                ));
            }
            keys.push(DatagramKey::derive(&secret, cluster));
        }
        if keys.is_empty() {
            return Err("1: no key in the file".into());
        }
        if keys.len() > CLUSTER_KEYS_MAX {
            return Err(format!(
                "1: {} keys listed; at most {CLUSTER_KEYS_MAX} (the signing key and the one rolled over)",
                keys.len()
            ));
        }
        Ok(KeyRing { keys })
    }

    /// The key datagrams are signed with.
    pub fn signing(&self) -> &DatagramKey {
        &self.keys[0]
    }

    /// The accepted key with this id.
    pub fn find(&self, id: KeyId) -> Option<&DatagramKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn first_key_signs_and_every_key_verifies() {
        let ring = KeyRing::parse(&format!("# rollover\n{B}\n\n{A}\n"), "c").unwrap();
        let a = DatagramKey::derive(&hex::decode(A).unwrap(), "c");
        let b = DatagramKey::derive(&hex::decode(B).unwrap(), "c");
        assert_eq!(ring.signing().id(), b.id());
        assert!(ring.find(a.id()).is_some());
        let tag = a.tag(&[b"x", b"y"]);
        assert!(ring.find(a.id()).unwrap().verify(&[b"xy"], &tag));
        assert!(!b.verify(&[b"xy"], &tag));
    }

    #[test]
    fn keys_are_bound_to_the_cluster() {
        let secret = hex::decode(A).unwrap();
        let one = DatagramKey::derive(&secret, "one");
        let two = DatagramKey::derive(&secret, "two");
        assert_ne!(one.id(), two.id());
        assert!(!two.verify(&[b"m"], &one.tag(&[b"m"])));
    }

    #[test]
    fn bad_files_name_the_line() {
        assert_eq!(
            KeyRing::parse("# only a comment\n", "c").unwrap_err(),
            "1: no key in the file"
        );
        let err = KeyRing::parse("# c\nnot hex\n", "c").unwrap_err();
        assert!(err.starts_with("2: a key is hex digits"), "{err}");
        let err = KeyRing::parse("abcd\n", "c").unwrap_err();
        assert!(err.starts_with("1: a key of 2 bytes is too short"), "{err}");
        let three = format!("{A}\n{B}\n{A}\n");
        assert!(KeyRing::parse(&three, "c")
            .unwrap_err()
            .contains("at most 2"));
    }
}
