//! Entry points for coverage-guided fuzzing (`fuzz/`, run with `cargo afl`) and for the
//! bounded smoke CI runs over the same code (`server/tests/fuzz_smoke.rs`): every decoder of
//! input from the network or the store, fed arbitrary bytes. Each must return (an error is
//! fine) and never panic; where a decoder has an encoder, what it decodes must encode and
//! decode back to the same value.

use crate::security::seal::{self, Windows};
use crate::security::KeyRing;
use crate::wire::{decode, encode, frame_len, Envelope, EnvelopeHead, Reply, Request};
use rand::Rng;
use std::sync::LazyLock;

/// A fuzz target: takes any bytes, must not panic.
pub type Target = fn(&[u8]);

/// The fuzz targets by name.
pub const TARGETS: [(&str, Target); 6] = [
    ("frame", frame),
    ("datagram", datagram),
    ("log_entry", log_entry),
    ("record", record),
    ("key_file", key_file),
    ("input", input),
];

/// Frames: the length prefix, then the payload as a request envelope, a reply envelope and
/// an envelope head (what a node or a client reads off a connection).
pub fn frame(data: &[u8]) {
    if let Ok(Some(total)) = frame_len(data, 1 << 20) {
        let payload = &data[crate::limits::FRAME_PREFIX_BYTES..total];
        if let Ok(request) = decode::<Envelope<Request>>(payload) {
            let again = encode(&request, usize::MAX).expect("a decoded request encodes");
            let back: Envelope<Request> =
                decode(&again[crate::limits::FRAME_PREFIX_BYTES..]).expect("and decodes");
            assert_eq!(back, request, "a request changed in a round trip");
        }
        if let Ok(reply) = decode::<Envelope<Reply>>(payload) {
            let again = encode(&reply, usize::MAX).expect("a decoded reply encodes");
            let back: Envelope<Reply> =
                decode(&again[crate::limits::FRAME_PREFIX_BYTES..]).expect("and decodes");
            assert_eq!(back, reply, "a reply changed in a round trip");
        }
        let _ = decode::<EnvelopeHead>(payload);
    }
}

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    KeyRing::parse(
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "fuzz",
    )
    .expect("a valid key")
});

/// Datagrams: opened with a key ring (sealed or not), their payload decoded as the cluster
/// task and a client do, and the sequence put through a replay window.
pub fn datagram(data: &[u8]) {
    let mut windows = Windows::default();
    if let Ok(opened) = seal::open(&RING, data) {
        if let Ok(msg) = crate::wire::decode_datagram("fuzz", opened.payload) {
            windows.admit(msg.from.node_id, opened.seq);
            windows.admit(msg.from.node_id, opened.seq.wrapping_sub(1));
        }
    }
    let payload = seal::payload_unverified(data);
    if let Ok(msg) = crate::wire::decode_datagram("fuzz", payload) {
        let _ = msg.highest_epoch();
        let again = crate::wire::encode_datagram("fuzz", &msg);
        if let Ok(again) = again {
            assert_eq!(
                crate::wire::decode_datagram("fuzz", &again),
                Ok(msg),
                "a datagram changed in a round trip"
            );
        }
    }
}

/// Event log entries as read back from Redis (packed, or text from older versions).
pub fn log_entry(data: &[u8]) {
    if let Ok(logged) = crate::store::decode_log_entry(data) {
        let again =
            crate::store::encode_log_entry(&logged.event, logged.event.clock, logged.applied_ms);
        let back = crate::store::decode_log_entry(&again).expect("an encoded entry decodes");
        assert_eq!(back, logged, "a log entry changed in a round trip");
    }
}

/// Account records and request results as read back from Redis (first byte: which).
pub fn record(data: &[u8]) {
    crate::store::decode_records(data);
}

/// Cluster key files.
pub fn key_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = KeyRing::parse(text, "fuzz");
    }
}

/// A client's input as the server checks it: login names (NFC), real names, UUIDs.
pub fn input(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(login) = crate::account::normalize_login(text) {
            assert_eq!(
                crate::account::normalize_login(&login).ok().as_deref(),
                Some(login.as_str()),
                "a normalised login normalises to itself"
            );
        }
        let _ = crate::account::check_real_name(text);
        let _ = crate::account::parse_uuid(text);
    }
}

/// Mutations per target in CI's smoke (the fuzzer runs 10^7 and more: docs/development.md).
pub const SMOKE_MUTATIONS: usize = 100_000;

/// One input made from `inputs` by a few random edits (bytes flipped, inserted, removed,
/// spliced from another input, truncated, set to a boundary value): the smoke's mutator.
pub fn mutate(rng: &mut impl Rng, inputs: &[Vec<u8>]) -> Vec<u8> {
    let mut data = inputs[rng.gen_range(0..inputs.len())].clone();
    for _ in 0..rng.gen_range(1..6) {
        match rng.gen_range(0..6) {
            0 if !data.is_empty() => {
                let at = rng.gen_range(0..data.len());
                data[at] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let at = rng.gen_range(0..=data.len());
                data.insert(at, rng.gen());
            }
            2 if !data.is_empty() => {
                let at = rng.gen_range(0..data.len());
                data.remove(at);
            }
            3 => data.truncate(rng.gen_range(0..=data.len())),
            4 => {
                let other = &inputs[rng.gen_range(0..inputs.len())];
                let from = rng.gen_range(0..=other.len());
                let at = rng.gen_range(0..=data.len());
                data.splice(at..at, other[from..].iter().copied());
            }
            _ if !data.is_empty() => {
                // An interesting value somewhere: 0, 0xff, a length-ish byte.
                let at = rng.gen_range(0..data.len());
                data[at] = [0x00, 0xff, 0x7f, 0x80, 0x1b, 0x5b][rng.gen_range(0..6)];
            }
            _ => {}
        }
    }
    data
}

/// The regression inputs of `target` (every crash a fuzzer found), kept in
/// `fuzz/regressions/TARGET/` of the workspace whose member `crate_dir` is.
pub fn regressions(crate_dir: &std::path::Path, target: &str) -> Vec<Vec<u8>> {
    let dir = crate_dir.join("../fuzz/regressions").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect()
}

/// The account of [`sample_changes`].
pub const SAMPLE_UUID: uuid::Uuid =
    uuid::Uuid::from_u128(0x1234_5678_9abc_4def_8000_0000_0000_0001);

/// One change of every kind (a create with and one without a password, a rename, a delete, a
/// strict epoch's opening), for seeds and for the encoders' tests.
pub fn sample_changes() -> Vec<crate::event::Change> {
    use crate::event::Change;
    let uuid = SAMPLE_UUID;
    vec![
        Change::Create {
            uuid,
            login: "ada".into(),
            real_name: "Ada Lovelace".into(),
            client_addr: "127.0.0.1:5000".into(),
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        },
        Change::Create {
            uuid,
            login: "bob".into(),
            real_name: String::new(),
            client_addr: "[::1]:2".into(),
            password_hash: None,
        },
        Change::Rename {
            uuid,
            old: "ada".into(),
            new: "countess".into(),
        },
        Change::Delete {
            uuid,
            login: "countess".into(),
        },
        Change::Open,
    ]
}

/// Starting inputs for `target`, made by the real encoders (every request and reply kind,
/// sealed and plain datagrams of every kind, log entries of every change, …), so that fuzzing
/// starts from what the decoders really see.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    use crate::core::{Body, Message, NodeRef, Purpose, Role, VoteRequest};
    use crate::event::Event;
    use crate::wire::{ListKind, Listing};
    use serde_bytes::ByteBuf;
    let uuid = SAMPLE_UUID;
    let changes = sample_changes();
    let events: Vec<Event> = changes
        .into_iter()
        .enumerate()
        .map(|(i, change)| Event {
            clock: i as u64 + 1,
            epoch: 3,
            origin_rank: 1,
            request_id: uuid,
            at_ms: 1_800_000_000_000,
            change,
        })
        .collect();
    match target {
        "frame" => {
            let requests = vec![
                Request::Create {
                    login: "ada".into(),
                    real_name: "Ada".into(),
                    password: Some(ByteBuf::from(vec![7u8; 64])),
                    request_id: uuid,
                },
                Request::Lookup {
                    login: "ada".into(),
                },
                Request::ReverseLookup { uuid },
                Request::Modify {
                    old: "ada".into(),
                    new: "bob".into(),
                    password: None,
                    request_id: uuid,
                },
                Request::Delete {
                    login: "bob".into(),
                    password: None,
                    request_id: uuid,
                },
                Request::List {
                    what: ListKind::All,
                    from: 7,
                },
                Request::Status,
                Request::Events {
                    since: 1,
                    limit: 10,
                },
                Request::Replicate {
                    epoch: 3,
                    prev: events.first().cloned(),
                    events: events.clone(),
                },
                Request::Snapshot {
                    epoch: 3,
                    offset: 0,
                    sha256: Some(ByteBuf::from(vec![1u8; 32])),
                    data: ByteBuf::from(b"REDIS0011".to_vec()),
                },
            ];
            let forward = Request::Forward {
                epoch: 3,
                client_addr: "127.0.0.1:1".into(),
                request: Box::new(requests[0].clone()),
                password_hash: None,
                verified_uuid: Some(uuid),
            };
            let replies = vec![
                Reply::Created { uuid },
                Reply::Listed {
                    page: Listing::Users(vec!["ada".into()]),
                    next: Some(9),
                },
                Reply::Replicated {
                    applied: 4,
                    status: crate::core::ReplicaStatus::Diverged { at: 3 },
                },
                Reply::Error(crate::wire::WireError {
                    code: crate::ErrorCode::Forbidden,
                    message: "no".into(),
                }),
            ];
            let mut out: Vec<Vec<u8>> = requests
                .into_iter()
                .chain([forward])
                .map(|r| encode(&Envelope::new("fuzz", 1, r), usize::MAX).expect("encodes"))
                .collect();
            out.extend(
                replies
                    .into_iter()
                    .map(|r| encode(&Envelope::new("fuzz", 1, r), usize::MAX).expect("encodes")),
            );
            out
        }
        "datagram" => {
            let me = NodeRef {
                node_id: uuid,
                rank: Some(2),
                addr: "198.18.0.2:5151".parse().expect("an address"),
            };
            let vote = VoteRequest {
                epoch: 4,
                last_epoch: 3,
                last_clock: 9,
                pre: true,
                transfer: false,
            };
            let bodies = vec![
                Body::GetRank {
                    purpose: Purpose::Election {
                        round: 1,
                        vote: Some(vote),
                    },
                },
                Body::GetRank {
                    purpose: Purpose::Heartbeat {
                        members: vec![me],
                        sent_ms: 5,
                        rtt_ms: 1,
                        elected_clock: 9,
                    },
                },
                Body::Rank {
                    purpose: Purpose::Join,
                    clock: 9,
                    last_epoch: 3,
                    role: Role::Follower,
                    coordinator: Some(me),
                    hears_coordinator: true,
                    granted: false,
                    held: false,
                },
                Body::GetMaster,
                Body::Master {
                    coordinator: me,
                    clock: 9,
                    members: vec![me],
                    answer: false,
                },
                Body::NewMaster { winner: me },
                Body::Leave,
            ];
            let mut sealer = seal::Sealer::new();
            let mut out = Vec::new();
            for body in bodies {
                let plain = crate::wire::encode_datagram(
                    "fuzz",
                    &Message {
                        from: me,
                        epoch: 3,
                        to: None,
                        body,
                    },
                )
                .expect("encodes");
                out.push(sealer.seal(&RING, &plain));
                out.push(plain);
            }
            out
        }
        "log_entry" => events
            .iter()
            .map(|e| crate::store::encode_log_entry(e, e.clock, 1_800_000_000_001))
            .chain([b"12 1800000000000 {}".to_vec()])
            .collect(),
        "record" => vec![
            [&[0u8][..], b"c", uuid.as_bytes()].concat(),
            [
                &[1u8, 40][..],
                &[0x84, 0x1b, 0, 0, 1, 0x86, 0xa0, 0, 0, 0],
                b"ab",
            ]
            .concat(),
        ],
        "key_file" => vec![
            b"# key\n00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n".to_vec(),
        ],
        "input" => vec![
            "ada".into(),
            "Ade\u{301}le".as_bytes().to_vec(),
            uuid.to_string().into_bytes(),
            "Ada Lovelace".into(),
        ],
        _ => Vec::new(),
    }
}
