//! What travels between clients and servers: frames and the messages inside them.

mod frame;
mod message;

pub use frame::{decode, encode, frame_len, FrameError};
pub use message::{
    Envelope, EnvelopeHead, ListKind, Reply, Request, StatusView, WireError, PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN,
};
