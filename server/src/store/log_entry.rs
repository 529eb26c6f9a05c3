//! The event log's entries (`idlab:events` members), packed: a write costs every node's Redis
//! one entry, which it hashes, keeps in memory, appends to its append-only file and ships in
//! every full sync, so the entry is about 100 bytes instead of the ~330 of JSON.
//!
//! Layout (version 1), integers big-endian, strings as a u32 length and UTF-8 bytes:
//!
//! ```text
//! 0x01 clock:u64 applied_ms:u64 epoch:u64 origin_rank:u32 request_id:[16] at_ms:u64
//!      kind:u8 then by kind
//!      b'c' uuid:[16] login real_name client_addr has_password:u8 [password_hash]
//!      b'r' uuid:[16] old new
//!      b'd' uuid:[16] login
//!      b'o' (an epoch's opening: nothing more)
//! ```
//!
//! Entries written by earlier versions, `<clock>|<applied ms>|<event JSON without its clock>`,
//! are read too: they begin with a digit, never with 0x01.

use crate::event::{Change, Event, LoggedEvent};
use uuid::Uuid;

/// First byte of a packed entry.
const PACKED_V1: u8 = 1;

/// The entry for `event` applied at `clock` by this node at `applied_ms`.
pub fn encode(event: &Event, clock: u64, applied_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(PACKED_V1);
    out.extend_from_slice(&clock.to_be_bytes());
    out.extend_from_slice(&applied_ms.to_be_bytes());
    out.extend_from_slice(&event.epoch.to_be_bytes());
    out.extend_from_slice(&event.origin_rank.to_be_bytes());
    out.extend_from_slice(event.request_id.as_bytes());
    out.extend_from_slice(&event.at_ms.to_be_bytes());
    let text = |out: &mut Vec<u8>, s: &str| {
        // Logins, names, addresses and hashes are bounded far below 4 GiB by the limits.
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    match &event.change {
        Change::Create {
            uuid,
            login,
            real_name,
            client_addr,
            password_hash,
        } => {
            out.push(b'c');
            out.extend_from_slice(uuid.as_bytes());
            text(&mut out, login);
            text(&mut out, real_name);
            text(&mut out, client_addr);
            match password_hash {
                None => out.push(0),
                Some(hash) => {
                    out.push(1);
                    text(&mut out, hash);
                }
            }
        }
        Change::Rename { uuid, old, new } => {
            out.push(b'r');
            out.extend_from_slice(uuid.as_bytes());
            text(&mut out, old);
            text(&mut out, new);
        }
        Change::Delete { uuid, login } => {
            out.push(b'd');
            out.extend_from_slice(uuid.as_bytes());
            text(&mut out, login);
        }
        Change::Open => out.push(b'o'),
    }
    out
}

/// Reads an entry, packed or (from earlier versions) text; the error says what is wrong.
pub fn decode(entry: &[u8]) -> Result<LoggedEvent, String> {
    match entry.first() {
        Some(&PACKED_V1) => decode_packed(&entry[1..]),
        Some(b'0'..=b'9') => decode_text(entry),
        Some(other) => Err(format!("unknown entry format {other:#04x}")),
        None => Err("empty entry".into()),
    }
}

fn decode_packed(body: &[u8]) -> Result<LoggedEvent, String> {
    let mut r = Reader(body);
    let clock = r.u64()?;
    let applied_ms = r.u64()?;
    let epoch = r.u64()?;
    let origin_rank = u32::from_be_bytes(r.array()?);
    let request_id = Uuid::from_bytes(r.array()?);
    let at_ms = r.u64()?;
    let kind = r.array::<1>()?[0];
    let change = match kind {
        b'c' => Change::Create {
            uuid: r.uuid()?,
            login: r.text()?,
            real_name: r.text()?,
            client_addr: r.text()?,
            password_hash: match r.array::<1>()?[0] {
                0 => None,
                1 => Some(r.text()?),
                other => return Err(format!("password flag {other}")),
            },
        },
        b'r' => Change::Rename {
            uuid: r.uuid()?,
            old: r.text()?,
            new: r.text()?,
        },
        b'd' => Change::Delete {
            uuid: r.uuid()?,
            login: r.text()?,
        },
        b'o' => Change::Open,
        other => return Err(format!("unknown event kind {other:#04x}")),
    };
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the event", r.0.len()));
    }
    let event = Event {
        clock,
        epoch,
        origin_rank,
        request_id,
        at_ms,
        change,
    };
    Ok(LoggedEvent { event, applied_ms })
}

/// `<clock>|<applied ms>|<event JSON without its clock>`.
fn decode_text(entry: &[u8]) -> Result<LoggedEvent, String> {
    let entry = std::str::from_utf8(entry).map_err(|e| e.to_string())?;
    let mut parts = entry.splitn(3, '|');
    let (Some(clock), Some(applied_ms), Some(json)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("not clock|applied|event".into());
    };
    let mut event: Event = serde_json::from_str(json).map_err(|e| e.to_string())?;
    event.clock = clock.parse().map_err(|_| "bad clock")?;
    let applied_ms = applied_ms.parse().map_err(|_| "bad applied time")?;
    Ok(LoggedEvent { event, applied_ms })
}

/// The unread rest of a packed entry.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err("entry cut short".into());
        };
        self.0 = rest;
        Ok(*head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn uuid(&mut self) -> Result<Uuid, String> {
        Ok(Uuid::from_bytes(self.array()?))
    }

    fn text(&mut self) -> Result<String, String> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        if len > self.0.len() {
            return Err("entry cut short".into());
        }
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(text.to_vec()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<Event> {
        let event = |clock, change| Event {
            clock,
            epoch: 7,
            origin_rank: 3,
            request_id: Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788),
            at_ms: 1_790_000_000_123,
            change,
        };
        let uuid = Uuid::from_u128(0xfeed_beef_0000_4000_8000_0000_0000_0001);
        vec![
            event(
                1,
                Change::Create {
                    uuid,
                    login: "ada".into(),
                    real_name: "Ada Lovelace, Countess".into(),
                    client_addr: "[2001:db8::1]:40000".into(),
                    password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
                },
            ),
            event(
                2,
                Change::Create {
                    uuid,
                    login: "zoë".into(),
                    real_name: String::new(),
                    client_addr: "198.18.0.1:1".into(),
                    password_hash: None,
                },
            ),
            event(
                3,
                Change::Rename {
                    uuid,
                    old: "ada".into(),
                    new: "countess".into(),
                },
            ),
            event(
                u64::MAX,
                Change::Delete {
                    uuid,
                    login: "countess".into(),
                },
            ),
            event(4, Change::Open),
        ]
    }

    #[test]
    fn every_kind_reads_back_as_written() {
        for event in events() {
            let entry = encode(&event, event.clock, 1_790_000_000_456);
            let logged = decode(&entry).unwrap();
            assert_eq!(logged.event, event);
            assert_eq!(logged.applied_ms, 1_790_000_000_456);
        }
    }

    #[test]
    fn a_packed_entry_is_much_smaller_than_the_text_one() {
        let event = &events()[1];
        let packed = encode(event, 2, 1_790_000_000_456).len();
        let json = serde_json::to_string(event).unwrap().len();
        assert!(packed * 2 < json, "packed {packed} bytes, JSON {json}");
    }

    #[test]
    fn an_entry_cut_short_or_with_trailing_bytes_is_refused() {
        for event in events() {
            let entry = encode(&event, event.clock, 1);
            for len in 0..entry.len() {
                assert!(decode(&entry[..len]).is_err(), "cut at {len} was accepted");
            }
            let mut longer = entry.clone();
            longer.push(0);
            assert!(decode(&longer).unwrap_err().contains("after the event"));
        }
    }

    #[test]
    fn bad_bytes_are_refused_with_the_reason() {
        let mut entry = encode(&events()[2], 3, 1);
        let kind_at = 1 + 8 + 8 + 8 + 4 + 16 + 8;
        entry[kind_at] = b'x';
        assert!(decode(&entry).unwrap_err().contains("unknown event kind"));
        assert!(decode(&[9, 1, 2])
            .unwrap_err()
            .contains("unknown entry format"));
        let mut bad_text = encode(&events()[3], 4, 1);
        let last = bad_text.len() - 1;
        bad_text[last] = 0xff;
        assert!(decode(&bad_text).is_err());
    }

    #[test]
    fn entries_of_earlier_versions_are_still_read() {
        let event = &events()[0];
        let json = serde_json::to_string(&Event {
            clock: 0,
            ..event.clone()
        })
        .unwrap();
        let entry = format!("{}|{}|{json}", event.clock, 55);
        let logged = decode(entry.as_bytes()).unwrap();
        assert_eq!(logged.event, *event);
        assert_eq!(logged.applied_ms, 55);
    }
}
