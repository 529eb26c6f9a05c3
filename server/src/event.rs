//! Events: the writes (create, rename, delete) as facts with their results already decided,
//! so that every node that applies one stores the same record; and in strict mode each
//! coordinator's epoch-opening event. Reads are never events.

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// An event as a node's log keeps it: with the time this node applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// When this node wrote it to its Redis, milliseconds since the Unix epoch (the node's
    /// clock, read as the transaction is sent).
    pub applied_ms: u64,
}

/// What a password hash reads as in an event sent to a client (`Events`): that the account has
/// a password shows, the hash does not leave the cluster.
pub const REDACTED_PASSWORD_HASH: &str = "redacted";

impl LoggedEvent {
    /// The event as a client may see it: a password hash replaced by
    /// [`REDACTED_PASSWORD_HASH`] (hashes travel only between nodes, in replication).
    pub fn redacted(mut self) -> LoggedEvent {
        if let Change::Create {
            password_hash: Some(hash),
            ..
        } = &mut self.event.change
        {
            *hash = REDACTED_PASSWORD_HASH.to_string();
        }
        self
    }
}

impl Event {
    /// Whether `other` is the same event (same place, same making): histories that differ
    /// here have diverged.
    pub fn same_as(&self, other: &Event) -> bool {
        self.clock == other.clock
            && self.epoch == other.epoch
            && self.request_id == other.request_id
    }
}

impl crate::core::replication::Entry for Event {
    fn clock(&self) -> u64 {
        self.clock
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn same_as(&self, other: &Event) -> bool {
        Event::same_as(self, other)
    }
}

/// One write, numbered by its Lamport clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Lamport clock: the event's place in the total order.
    pub clock: u64,
    /// Election epoch in which the event was made.
    pub epoch: u64,
    /// Rank of the node that made it (breaks ties between equal clocks: lower first).
    pub origin_rank: u32,
    /// The client's request id, so a retry finds this event's result.
    pub request_id: Uuid,
    /// When it was made, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What changed.
    pub change: Change,
}

/// The change an event makes, with every generated value filled in. Tagged by `kind` (in the
/// event log's JSON: `change.kind`). Read by [`Deserialize`] below, field by field in any
/// order: serde's own reading of a tagged enum first copies the whole map into a buffer, which
/// cost replicas a twentieth of their CPU in every replicated batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A new account.
    Create {
        /// Generated UUID.
        uuid: Uuid,
        /// Normalised login name.
        login: String,
        /// Real name.
        real_name: String,
        /// Address of the creating client.
        client_addr: String,
        /// argon2id PHC string, if the account has a password.
        password_hash: Option<String>,
    },
    /// A rename.
    Rename {
        /// The account.
        uuid: Uuid,
        /// Its login before.
        old: String,
        /// Its login after.
        new: String,
    },
    /// A removal.
    Delete {
        /// The account.
        uuid: Uuid,
        /// Its login at removal.
        login: String,
    },
    /// The first event of a strict-mode coordinator's epoch (Raft's no-op entry). It changes
    /// no account. Once a majority holds it, everything before it is committed and no node
    /// without it can win a later election; until then the coordinator answers nothing from
    /// its state (a read, a refusal, an earlier result), since an older epoch's tail that it
    /// lacks could still win and contradict the answer.
    Open,
}

impl Change {
    /// The event kind's name, as in logs and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Create { .. } => "create",
            Change::Rename { .. } => "rename",
            Change::Delete { .. } => "delete",
            Change::Open => "open",
        }
    }

    /// The account the change is about (none for an epoch's opening).
    pub fn uuid(&self) -> Option<Uuid> {
        match self {
            Change::Create { uuid, .. }
            | Change::Rename { uuid, .. }
            | Change::Delete { uuid, .. } => Some(*uuid),
            Change::Open => None,
        }
    }
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Change, D::Error> {
        deserializer.deserialize_map(ChangeVisitor)
    }
}

struct ChangeVisitor;

impl<'de> Visitor<'de> for ChangeVisitor {
    type Value = Change;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a change (a map with its kind)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Change, A::Error> {
        let mut kind: Option<Kind> = None;
        let mut uuid: Option<Uuid> = None;
        let mut password_hash: Option<Option<String>> = None;
        let mut texts: [Option<String>; TEXT_FIELDS.len()] = Default::default();
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Kind => kind = Some(map.next_value()?),
                Field::Uuid => uuid = Some(map.next_value()?),
                Field::PasswordHash => password_hash = Some(map.next_value()?),
                Field::Text(i) => texts[i] = Some(map.next_value()?),
                Field::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let kind = kind.ok_or_else(|| de::Error::missing_field("kind"))?;
        let uuid = || uuid.ok_or_else(|| de::Error::missing_field("uuid"));
        let [login, real_name, client_addr, old, new] = texts;
        let text = |value: Option<String>, name: &'static str| {
            value.ok_or_else(|| de::Error::missing_field(name))
        };
        Ok(match kind {
            Kind::Create => Change::Create {
                uuid: uuid()?,
                login: text(login, "login")?,
                real_name: text(real_name, "real_name")?,
                client_addr: text(client_addr, "client_addr")?,
                password_hash: password_hash.flatten(),
            },
            Kind::Rename => Change::Rename {
                uuid: uuid()?,
                old: text(old, "old")?,
                new: text(new, "new")?,
            },
            Kind::Delete => Change::Delete {
                uuid: uuid()?,
                login: text(login, "login")?,
            },
            Kind::Open => Change::Open,
        })
    }
}

/// The text fields of the changes, in the order [`ChangeVisitor`] keeps them.
const TEXT_FIELDS: [&str; 5] = ["login", "real_name", "client_addr", "old", "new"];

/// A change's field name, read without copying it.
enum Field {
    Kind,
    Uuid,
    PasswordHash,
    /// One of TEXT_FIELDS.
    Text(usize),
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Field, D::Error> {
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

struct FieldVisitor;

impl Visitor<'_> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
        Ok(match name {
            "kind" => Field::Kind,
            "uuid" => Field::Uuid,
            "password_hash" => Field::PasswordHash,
            other => TEXT_FIELDS
                .iter()
                .position(|text| *text == other)
                .map_or(Field::Other, Field::Text),
        })
    }
}

/// A change's kind, read without copying it.
enum Kind {
    Create,
    Rename,
    Delete,
    Open,
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Kind, D::Error> {
        deserializer.deserialize_str(KindVisitor)
    }
}

struct KindVisitor;

impl Visitor<'_> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("create, rename, delete or open")
    }

    fn visit_str<E: de::Error>(self, kind: &str) -> Result<Kind, E> {
        match kind {
            "create" => Ok(Kind::Create),
            "rename" => Ok(Kind::Rename),
            "delete" => Ok(Kind::Delete),
            "open" => Ok(Kind::Open),
            other => Err(E::unknown_variant(
                other,
                &["create", "rename", "delete", "open"],
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_reads_back_from_cbor_and_json() {
        for change in crate::fuzz::sample_changes() {
            let mut cbor = Vec::new();
            ciborium::into_writer(&change, &mut cbor).unwrap();
            assert_eq!(
                ciborium::from_reader::<Change, _>(&cbor[..]).unwrap(),
                change
            );
            let json = serde_json::to_string(&change).unwrap();
            assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), change);
        }
    }

    #[test]
    fn fields_are_read_in_any_order_and_unknown_ones_skipped() {
        let json = r#"{"login":"zed","extra":[1,2],"uuid":"00000000-0000-4000-8000-000000000009","kind":"delete"}"#;
        assert_eq!(
            serde_json::from_str::<Change>(json).unwrap(),
            Change::Delete {
                uuid: Uuid::from_u128(0x4000_8000_0000_0000_0009),
                login: "zed".into()
            }
        );
        // A create without a password hash field has none.
        let json = r#"{"kind":"create","uuid":"00000000-0000-4000-8000-000000000009","login":"a","real_name":"","client_addr":"x"}"#;
        assert!(matches!(
            serde_json::from_str::<Change>(json).unwrap(),
            Change::Create {
                password_hash: None,
                ..
            }
        ));
    }

    #[test]
    fn a_change_without_its_kind_or_fields_is_refused_by_name() {
        let uuid = r#""uuid":"00000000-0000-4000-8000-000000000009""#;
        let cases = [
            (format!(r#"{{{uuid},"login":"a"}}"#), "kind"),
            (format!(r#"{{"kind":"rename",{uuid},"old":"a"}}"#), "new"),
            (format!(r#"{{"kind":"move",{uuid}}}"#), "unknown variant"),
            (r#"{"kind":"delete","login":"a"}"#.to_string(), "uuid"),
        ];
        assert_eq!(
            serde_json::from_str::<Change>(r#"{"kind":"open"}"#).unwrap(),
            Change::Open
        );
        assert_eq!(
            serde_json::to_string(&Change::Open).unwrap(),
            r#"{"kind":"open"}"#
        );
        for (json, why) in cases {
            let err = serde_json::from_str::<Change>(&json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{json}: {err}");
        }
    }
}
