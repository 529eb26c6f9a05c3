//! Account records and the input rules of SPEC.md (login names, real names, UUIDs).
//!
//! Validation happens here, before anything reaches storage or the network; this module does
//! no I/O.

use crate::error::{Error, ErrorCode, Result};
use crate::limits::{LOGIN_CHARS_MAX, REAL_NAME_CHARS_MAX};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

/// An account as clients see it: everything stored except the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// Generated once at creation; survives renames.
    pub uuid: Uuid,
    /// The login name, NFC-normalised.
    pub login: String,
    /// Free text, at most [`REAL_NAME_CHARS_MAX`] characters.
    pub real_name: String,
    /// Address of the client that created the account.
    pub client_addr: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Time of the last change (rename), milliseconds since the Unix epoch.
    pub changed_ms: u64,
    /// Whether the account is protected by a password.
    pub has_password: bool,
}

/// Normalises a login name to NFC and checks SPEC.md's rules: 1 to 64 characters, each a
/// letter, a digit, `.`, `_` or `-`.
pub fn normalize_login(raw: &str) -> Result<String> {
    let login: String = raw.nfc().collect();
    let chars = login.chars().count();
    if chars == 0 {
        return Err(invalid("login name is empty".to_string()));
    }
    if chars > LOGIN_CHARS_MAX {
        return Err(invalid(format!(
            "login name has {chars} characters; at most {LOGIN_CHARS_MAX} are allowed"
        )));
    }
    if let Some(bad) = login
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(format!(
            "login name {login:?} contains {bad:?}; only letters, digits, '.', '_' and '-' are allowed"
        )));
    }
    Ok(login)
}

/// Checks a real name: at most 256 characters and no control characters.
pub fn check_real_name(real_name: &str) -> Result<()> {
    let chars = real_name.chars().count();
    if chars > REAL_NAME_CHARS_MAX {
        return Err(invalid(format!(
            "real name has {chars} characters; at most {REAL_NAME_CHARS_MAX} are allowed"
        )));
    }
    if real_name.chars().any(char::is_control) {
        return Err(invalid(
            "real name contains a control character".to_string(),
        ));
    }
    Ok(())
}

/// Parses a UUID given by a user (any of the usual textual forms).
pub fn parse_uuid(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|e| invalid(format!("{raw:?} is not a UUID: {e}")))
}

fn invalid(message: String) -> Error {
    Error::refused(ErrorCode::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_rules() {
        assert_eq!(normalize_login("alice.b_c-9").unwrap(), "alice.b_c-9");
        assert_eq!(normalize_login(&"a".repeat(64)).unwrap().len(), 64);
        for bad in ["", "a b", "a/b", "a\u{0}", "x@y", &"a".repeat(65)] {
            let err = normalize_login(bad).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn login_is_nfc_normalised_and_counted_in_characters() {
        // "é" as e + combining acute becomes one precomposed character.
        let decomposed = "Jose\u{0301}";
        assert_eq!(normalize_login(decomposed).unwrap(), "Jos\u{e9}");
        assert!(normalize_login(&"é".repeat(64)).is_ok());
    }

    #[test]
    fn real_name_rules() {
        assert!(check_real_name("").is_ok());
        assert!(check_real_name("Ada Lovelace").is_ok());
        assert!(check_real_name(&"x".repeat(256)).is_ok());
        assert!(check_real_name(&"x".repeat(257)).is_err());
        assert!(check_real_name("tab\there").is_err());
    }

    #[test]
    fn uuid_parsing() {
        let id = Uuid::new_v4();
        assert_eq!(parse_uuid(&id.to_string()).unwrap(), id);
        assert_eq!(
            parse_uuid("not-a-uuid").unwrap_err().code(),
            ErrorCode::InvalidInput
        );
    }
}
