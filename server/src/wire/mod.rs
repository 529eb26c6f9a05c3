//! What travels between clients and servers: frames and the messages inside them.

mod datagram;
mod frame;
mod message;

pub use datagram::{decode_datagram, encode_datagram, Ignored};
pub use frame::{decode, encode, frame_len, FrameError};
pub use message::{
    BackupInfo, Envelope, EnvelopeHead, ListKind, Listing, MemberStatus, ReplicaStatus, Reply,
    Request, StatusView, WireError, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN,
};
