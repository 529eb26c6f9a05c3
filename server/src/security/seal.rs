//! Sealed datagrams: a cluster datagram signed with the cluster key, with a sequence number
//! the receiver checks against a window per sender, so a captured datagram cannot be replayed.
//!
//! Layout (all big-endian):
//!
//! ```text
//! 0..4    magic "IDs1"
//! 4..8    key id (which key of the ring signed it)
//! 8..16   sequence: counts the sender's datagrams, from its start time in microseconds since
//!         the Unix epoch (so it keeps increasing across restarts)
//! 16..48  HMAC-SHA256 over bytes 0..16 and the payload
//! 48..    payload: the CBOR datagram of `wire::datagram`
//! ```
//!
//! The sender's identity is the node id inside the payload, which the MAC covers. The window
//! is per node id: the highest sequence seen and which of the [`REPLAY_WINDOW`] below it were
//! seen. Anything older than the window, or seen already, is a replay. One sequence counts
//! every destination, so a datagram redirected to another member (which did not see that
//! number) passes the window once; a datagram meant for one member names it in the payload
//! (`Message::to`, under the MAC), and the core of any other member ignores it.

use super::keys::KeyRing;
use crate::limits::{REPLAY_SENDERS_MAX, REPLAY_WINDOW};
use std::collections::HashMap;
use uuid::Uuid;

/// The first bytes of a sealed datagram.
pub const MAGIC: &[u8; 4] = b"IDs1";

/// Bytes before the payload.
pub const HEADER_BYTES: usize = 48;

/// Why a datagram was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not sealed at all.
    Unsealed,
    /// Sealed with a key this node does not hold.
    UnknownKey,
    /// The MAC does not match: forged or damaged.
    BadTag,
    /// Seen before, or older than the window.
    Replayed,
}

impl Rejected {
    /// For logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Unsealed => "unauthenticated",
            Rejected::UnknownKey => "unknown key",
            Rejected::BadTag => "bad signature",
            Rejected::Replayed => "replayed",
        }
    }
}

/// Signs outgoing datagrams.
#[derive(Debug)]
pub struct Sealer {
    last_seq: u64,
}

impl Default for Sealer {
    fn default() -> Self {
        Sealer::new()
    }
}

impl Sealer {
    /// A sealer whose sequence starts at the current time (in microseconds: a process never
    /// sends a datagram per microsecond for long, so a restarted one starts above where it was).
    pub fn new() -> Self {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Sealer { last_seq: now_us }
    }

    /// `payload` sealed with the ring's signing key.
    pub fn seal(&mut self, keys: &KeyRing, payload: &[u8]) -> Vec<u8> {
        self.last_seq = self.last_seq.saturating_add(1);
        let key = keys.signing();
        let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&key.id());
        out.extend_from_slice(&self.last_seq.to_be_bytes());
        let tag = key.tag(&[&out[..16], payload]);
        out.extend_from_slice(&tag);
        out.extend_from_slice(payload);
        out
    }
}

/// A verified datagram: its sequence number and payload. The sequence still has to pass
/// [`Windows::admit`] once the payload names its sender.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// The sender's sequence number.
    pub seq: u64,
    /// The datagram inside.
    pub payload: &'a [u8],
}

/// Checks a sealed datagram's MAC against the ring.
pub fn open<'a>(keys: &KeyRing, bytes: &'a [u8]) -> Result<Opened<'a>, Rejected> {
    if bytes.len() < HEADER_BYTES || &bytes[..4] != MAGIC {
        return Err(Rejected::Unsealed);
    }
    let id = bytes[4..8].try_into().expect("4 bytes");
    let key = keys.find(id).ok_or(Rejected::UnknownKey)?;
    let payload = &bytes[HEADER_BYTES..];
    if !key.verify(&[&bytes[..16], payload], &bytes[16..HEADER_BYTES]) {
        return Err(Rejected::BadTag);
    }
    let seq = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes"));
    Ok(Opened { seq, payload })
}

/// The payload of a datagram that may be sealed, unverified: for clients, which hold no key
/// and take what servers say as hints (the TLS handshake is what proves a server).
pub fn payload_unverified(bytes: &[u8]) -> &[u8] {
    if bytes.len() >= HEADER_BYTES && &bytes[..4] == MAGIC {
        &bytes[HEADER_BYTES..]
    } else {
        bytes
    }
}

/// One sender's window: the highest sequence seen, and a bit per sequence just below it.
#[derive(Debug, Clone)]
struct Window {
    top: u64,
    /// Bit `i` set: `top - i` was seen (bit 0 is `top` itself).
    seen: Bits,
    /// When this sender was last admitted (a counter, for eviction).
    used: u64,
}

/// Replay windows of every sender heard from, bounded in number.
#[derive(Debug, Default)]
pub struct Windows {
    senders: HashMap<Uuid, Window>,
    admitted: u64,
}

impl Windows {
    /// Whether `seq` from `sender` is new; records it if so.
    pub fn admit(&mut self, sender: Uuid, seq: u64) -> bool {
        self.admitted += 1;
        let used = self.admitted;
        let Some(window) = self.senders.get_mut(&sender) else {
            if self.senders.len() >= REPLAY_SENDERS_MAX {
                // Only key holders get here: evicting the least recently heard one costs at
                // most a replay of its datagrams from before the eviction.
                if let Some(oldest) = self.senders.iter().min_by_key(|(_, w)| w.used) {
                    let oldest = *oldest.0;
                    self.senders.remove(&oldest);
                }
            }
            let mut seen = Bits::default();
            seen.set(0);
            self.senders.insert(
                sender,
                Window {
                    top: seq,
                    seen,
                    used,
                },
            );
            return true;
        };
        window.used = used;
        if seq > window.top {
            window.seen.shift_up(seq - window.top);
            window.seen.set(0);
            window.top = seq;
            return true;
        }
        let behind = window.top - seq;
        if behind >= REPLAY_WINDOW as u64 || window.seen.get(behind as usize) {
            return false;
        }
        window.seen.set(behind as usize);
        true
    }
}

const WORDS: usize = REPLAY_WINDOW / 64;

/// [`REPLAY_WINDOW`] bits; bit `i` stands for `top - i`.
#[derive(Debug, Clone, Default)]
struct Bits([u64; WORDS]);

impl Bits {
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    /// The top moved up by `by`: every bit moves `by` places further from it.
    fn shift_up(&mut self, by: u64) {
        if by >= REPLAY_WINDOW as u64 {
            self.0 = [0; WORDS];
            return;
        }
        let (words, bits) = ((by / 64) as usize, (by % 64) as u32);
        for i in (0..WORDS).rev() {
            let from = i.checked_sub(words);
            let high = from.map_or(0, |f| self.0[f]);
            let low = from.and_then(|f| f.checked_sub(1)).map_or(0, |f| self.0[f]);
            self.0[i] = if bits == 0 {
                high
            } else {
                (high << bits) | (low >> (64 - bits))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(hex_key: &str) -> KeyRing {
        KeyRing::parse(hex_key, "c").unwrap()
    }

    const A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn sealed_datagrams_open_with_the_ring_and_nothing_else() {
        let keys = ring(A);
        let mut sealer = Sealer::new();
        let sealed = sealer.seal(&keys, b"payload");
        let opened = open(&keys, &sealed).unwrap();
        assert_eq!(opened.payload, b"payload");
        assert_eq!(payload_unverified(&sealed), b"payload");
        assert_eq!(payload_unverified(b"plain"), b"plain");
        assert_eq!(open(&ring(B), &sealed), Err(Rejected::UnknownKey));
        assert_eq!(open(&keys, b"plain cbor"), Err(Rejected::Unsealed));
        // Any changed byte, header or payload, breaks the tag (the key id picks no key).
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            let got = open(&keys, &bad);
            assert!(got.is_err(), "byte {at} flipped and still accepted");
        }
        // A rollover ring (new key first, old second) opens what the old key sealed.
        let rollover = ring(&format!("{B}\n{A}"));
        assert!(open(&rollover, &sealed).is_ok());
        let newer = sealer.seal(&rollover, b"p");
        assert!(open(&ring(&format!("{A}\n{B}")), &newer).is_ok());
        assert_eq!(open(&keys, &newer), Err(Rejected::UnknownKey));
    }

    #[test]
    fn sequences_increase_with_every_datagram() {
        let keys = ring(A);
        let mut sealer = Sealer::new();
        let seqs: Vec<u64> = (0..1000)
            .map(|_| open(&keys, &sealer.seal(&keys, b"x")).unwrap().seq)
            .collect();
        assert!(seqs.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn the_window_admits_each_sequence_once_and_nothing_too_old() {
        let mut windows = Windows::default();
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert!(windows.admit(a, 1000));
        assert!(!windows.admit(a, 1000), "duplicate");
        assert!(windows.admit(b, 1000), "windows are per sender");
        assert!(windows.admit(a, 998), "reordered within the window");
        assert!(!windows.admit(a, 998));
        assert!(windows.admit(a, 1100));
        assert!(windows.admit(a, 999), "still within the window");
        assert!(!windows.admit(a, 999));
        assert!(
            !windows.admit(a, 998),
            "remembered across the move of the top"
        );
        let top = 1100 + REPLAY_WINDOW as u64;
        assert!(windows.admit(a, top));
        assert!(
            !windows.admit(a, top - REPLAY_WINDOW as u64),
            "just out of the window"
        );
        assert!(
            windows.admit(a, top - REPLAY_WINDOW as u64 + 1),
            "just within it"
        );
        assert!(windows.admit(a, 1_000_000), "a jump clears the window");
        assert!(!windows.admit(a, top));
    }

    #[test]
    fn the_window_matches_a_set_of_everything_seen() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut windows = Windows::default();
        let mut seen = std::collections::BTreeSet::new();
        let sender = Uuid::from_u128(3);
        let mut top = 10_000u64;
        for _ in 0..20_000 {
            // Mostly forward in small steps, sometimes back, sometimes far ahead.
            let seq = match rng.gen_range(0..10) {
                0 => top + rng.gen_range(1..3 * REPLAY_WINDOW as u64),
                1..=4 => top.saturating_sub(rng.gen_range(0..REPLAY_WINDOW as u64 + 5)),
                _ => top + rng.gen_range(0..4),
            };
            let highest = seen.last().copied().unwrap_or(0);
            let expected =
                !seen.contains(&seq) && (seen.is_empty() || seq + (REPLAY_WINDOW as u64) > highest);
            assert_eq!(
                windows.admit(sender, seq),
                expected,
                "seq {seq}, highest {highest}"
            );
            if expected {
                seen.insert(seq);
            }
            top = top.max(seq);
        }
    }

    #[test]
    fn the_number_of_senders_is_bounded() {
        let mut windows = Windows::default();
        for i in 0..(REPLAY_SENDERS_MAX as u128 + 10) {
            assert!(windows.admit(Uuid::from_u128(i), 5));
        }
        assert_eq!(windows.senders.len(), REPLAY_SENDERS_MAX);
        // The most recently heard keep their windows.
        let last = Uuid::from_u128(REPLAY_SENDERS_MAX as u128 + 9);
        assert!(!windows.admit(last, 5));
    }
}
