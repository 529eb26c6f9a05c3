//! What the store hands back: an account as stored, a write's result as remembered for its
//! request id, and what applying an event did.

use crate::account::AccountView;
use uuid::Uuid;

/// An account with its password hash, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccount {
    /// What clients may see.
    pub view: AccountView,
    /// argon2id PHC string, if any.
    pub password_hash: Option<String>,
}

/// The result of a write, as remembered for its request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteResult {
    /// `create`, `rename` or `delete`.
    pub kind: &'static str,
    /// The account written.
    pub uuid: Uuid,
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event was applied at this clock.
    Done(WriteResult, u64),
    /// The request id was seen before: nothing changed; this is the first result.
    Duplicate(WriteResult),
}
