//! Passwords: the client's SHA-512 digest (the clear text never leaves the client) and the
//! server's argon2id hash of that digest, computed in a bounded pool off the async threads.

use crate::error::{Error, ErrorCode, Result};
use crate::limits::{
    PASSWORD_DIGEST_BYTES, PASSWORD_HASHES_CONCURRENT_MAX, PASSWORD_HASH_CHARS_MAX,
};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordVerifier, Version};
use sha2::{Digest, Sha512};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// OWASP's argon2id recommendation: 19 MiB of memory, 2 passes, 1 lane.
const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
const ARGON2_PASSES: u32 = 2;
const ARGON2_LANES: u32 = 1;

/// What a client sends instead of the password: its SHA-512 digest.
pub fn client_digest(password: &str) -> Vec<u8> {
    Sha512::digest(password.as_bytes()).to_vec()
}

/// The hash's length (argon2's default).
const ARGON2_OUTPUT_BYTES: usize = 32;

fn argon2_params() -> Params {
    Params::new(
        ARGON2_MEMORY_KIB,
        ARGON2_PASSES,
        ARGON2_LANES,
        Some(ARGON2_OUTPUT_BYTES),
    )
    .expect("OWASP argon2 parameters are valid")
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon2_params())
}

/// Checks that `hash` is an argon2id PHC string made with this server's parameters, as every
/// hash a node stores must be: a hash a peer forwards is stored as it is and verified later
/// with the parameters it names, so other parameters (a memory or time bomb for every node
/// that later verifies it) are refused, as is anything longer than a PHC string of ours.
pub fn check_hash(hash: &str) -> Result<()> {
    let invalid = |why: String| Err(Error::refused(ErrorCode::InvalidInput, why));
    if hash.len() > PASSWORD_HASH_CHARS_MAX {
        return invalid(format!(
            "password hash of {} characters; at most {PASSWORD_HASH_CHARS_MAX}",
            hash.len()
        ));
    }
    let parsed = match PasswordHash::new(hash) {
        Ok(parsed) => parsed,
        Err(e) => return invalid(format!("password hash is not a PHC string: {e}")),
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT || parsed.version != Some(0x13) {
        return invalid("password hash is not argon2id version 19".into());
    }
    let ours = argon2_params();
    match Params::try_from(&parsed) {
        Ok(params)
            if params.m_cost() == ours.m_cost()
                && params.t_cost() == ours.t_cost()
                && params.p_cost() == ours.p_cost()
                && parsed.hash.is_some_and(|h| h.len() == ARGON2_OUTPUT_BYTES)
                && parsed.salt.is_some() =>
        {
            Ok(())
        }
        _ => invalid(format!(
            "password hash does not use this cluster's argon2id parameters (m={ARGON2_MEMORY_KIB}, \
             t={ARGON2_PASSES}, p={ARGON2_LANES}, {ARGON2_OUTPUT_BYTES}-byte output)"
        )),
    }
}

fn check_digest(digest: &[u8]) -> Result<()> {
    if digest.len() != PASSWORD_DIGEST_BYTES {
        return Err(Error::refused(
            ErrorCode::InvalidInput,
            format!(
                "password digest has {} bytes; a SHA-512 digest has {PASSWORD_DIGEST_BYTES}",
                digest.len()
            ),
        ));
    }
    Ok(())
}

/// Hashes and verifies password digests, at most a few at a time.
#[derive(Debug, Clone)]
pub struct PasswordPool {
    permits: Arc<Semaphore>,
}

impl Default for PasswordPool {
    fn default() -> Self {
        PasswordPool {
            permits: Arc::new(Semaphore::new(PASSWORD_HASHES_CONCURRENT_MAX)),
        }
    }
}

impl PasswordPool {
    /// The argon2id hash of `digest` with a fresh salt, as a PHC string.
    pub async fn hash(&self, digest: Vec<u8>) -> Result<String> {
        check_digest(&digest)?;
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(&digest, &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::refused(ErrorCode::Internal, format!("argon2 failed: {e}")))
        })
        .await
    }

    /// Whether `digest` matches the stored hash (constant-time comparison inside argon2).
    pub async fn verify(&self, digest: Vec<u8>, stored: String) -> Result<bool> {
        check_digest(&digest)?;
        // Verified with the parameters the hash names: never with any but ours.
        check_hash(&stored).map_err(|e| {
            Error::refused(ErrorCode::Internal, format!("stored hash refused: {e}"))
        })?;
        self.run(move || {
            let parsed = PasswordHash::new(&stored).map_err(|e| {
                Error::refused(ErrorCode::Internal, format!("stored hash is corrupt: {e}"))
            })?;
            Ok(argon2().verify_password(&digest, &parsed).is_ok())
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closed");
        let (tx, rx) = tokio::sync::oneshot::channel();
        hashing_threads()
            .lock()
            .expect("hashing pool lock poisoned")
            .send(Box::new(move || {
                let _ = tx.send(work());
            }))
            .map_err(|_| Error::refused(ErrorCode::Internal, "the hashing threads are gone"))?;
        rx.await
            .map_err(|_| Error::refused(ErrorCode::Internal, "a hashing thread failed"))?
    }
}

type HashJob = Box<dyn FnOnce() + Send>;

/// The process's hashing threads: a fixed few, so that argon2's 19 MiB per hash is allocated
/// by the same threads again and again (a thread per job left each one's allocator arena
/// holding its memory: over a gigabyte under a burst of password writes).
fn hashing_threads() -> &'static std::sync::Mutex<std::sync::mpsc::Sender<HashJob>> {
    static POOL: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<HashJob>>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for n in 0..PASSWORD_HASHES_CONCURRENT_MAX {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || loop {
                    let job = rx.lock().expect("hashing queue lock poisoned").recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })
                .expect("failed to start a hashing thread");
        }
        std::sync::Mutex::new(tx)
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn only_hashes_with_this_clusters_argon2id_parameters_are_taken() {
        let salt = SaltString::generate(&mut OsRng);
        let digest = client_digest("pw");
        let ours = argon2().hash_password(&digest, &salt).unwrap().to_string();
        assert!(check_hash(&ours).is_ok(), "{ours}");
        // A memory bomb for whoever verifies it later (here only 8 KiB, same shape).
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password(&digest, &salt)
        .unwrap()
        .to_string();
        let refused = |hash: &str| check_hash(hash).unwrap_err().code();
        assert_eq!(refused(&other), ErrorCode::InvalidInput);
        let argon2i = ours.replacen("$argon2id$", "$argon2i$", 1);
        assert_eq!(refused(&argon2i), ErrorCode::InvalidInput);
        assert_eq!(refused("plain text"), ErrorCode::InvalidInput);
        assert_eq!(
            refused(&format!("{ours}{}", "A".repeat(200))),
            ErrorCode::InvalidInput
        );
    }

    use super::*;

    #[tokio::test]
    async fn hash_verifies_only_the_same_digest() {
        let pool = PasswordPool::default();
        let stored = pool.hash(client_digest("s3cret")).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(pool
            .verify(client_digest("s3cret"), stored.clone())
            .await
            .unwrap());
        assert!(!pool.verify(client_digest("wrong"), stored).await.unwrap());
    }

    #[tokio::test]
    async fn a_digest_of_the_wrong_size_is_invalid_input() {
        let err = PasswordPool::default()
            .hash(b"clear text".to_vec())
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidInput);
    }
}
