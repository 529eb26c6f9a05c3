//! Cluster datagrams: a [`Message`] of the core in the same envelope as frames (version range,
//! cluster name, reserved authentication field), encoded as one CBOR datagram.

use super::frame::FrameError;
use super::message::{Envelope, EnvelopeHead};
use crate::core::Message;
use crate::limits::{DATAGRAM_BYTES_MAX, EPOCH_MAX};

/// Why a datagram was ignored (each is counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// Not a datagram of ours at all.
    Unreadable,
    /// From a node of another cluster.
    ForeignCluster,
    /// From a node speaking no version we speak.
    IncompatibleVersion,
    /// Carries an epoch above [`EPOCH_MAX`]: malformed or forged.
    EpochOutOfRange,
}

/// Encodes `msg` for `cluster`.
pub fn encode_datagram(cluster: &str, msg: &Message) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    ciborium::into_writer(&Envelope::new(cluster, 0, msg), &mut out)
        .expect("writing CBOR to a Vec cannot fail");
    if out.len() > DATAGRAM_BYTES_MAX {
        return Err(FrameError::TooLarge {
            bytes: out.len(),
            max_bytes: DATAGRAM_BYTES_MAX,
        });
    }
    Ok(out)
}

/// Decodes a datagram meant for `cluster`.
pub fn decode_datagram(cluster: &str, bytes: &[u8]) -> Result<Message, Ignored> {
    let head: EnvelopeHead = ciborium::from_reader(bytes).map_err(|_| Ignored::Unreadable)?;
    if head.cluster != cluster {
        return Err(Ignored::ForeignCluster);
    }
    if !head.version_compatible() {
        return Err(Ignored::IncompatibleVersion);
    }
    let envelope: Envelope<Message> =
        ciborium::from_reader(bytes).map_err(|_| Ignored::Unreadable)?;
    if envelope.body.highest_epoch() > EPOCH_MAX {
        return Err(Ignored::EpochOutOfRange);
    }
    Ok(envelope.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Body, NodeRef};

    fn message() -> Message {
        Message {
            from: NodeRef {
                node_id: uuid::Uuid::from_u128(7),
                rank: Some(2),
                addr: "127.0.0.1:5151".parse().unwrap(),
            },
            epoch: 3,
            to: None,
            body: Body::GetMaster,
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode_datagram("c", &message()).unwrap();
        assert_eq!(decode_datagram("c", &bytes), Ok(message()));
    }

    #[test]
    fn foreign_unreadable_and_future_datagrams_are_told_apart() {
        let bytes = encode_datagram("other", &message()).unwrap();
        assert_eq!(decode_datagram("c", &bytes), Err(Ignored::ForeignCluster));
        assert_eq!(
            decode_datagram("c", b"\x00garbage"),
            Err(Ignored::Unreadable)
        );
        let mut future = Envelope::new("c", 0, message());
        future.version_min = 50;
        future.version_max = 60;
        let mut bytes = Vec::new();
        ciborium::into_writer(&future, &mut bytes).unwrap();
        assert_eq!(
            decode_datagram("c", &bytes),
            Err(Ignored::IncompatibleVersion)
        );
    }

    #[test]
    fn epochs_beyond_the_range_are_refused_wherever_they_are() {
        let mut huge = message();
        huge.epoch = u64::MAX;
        let bytes = encode_datagram("c", &huge).unwrap();
        assert_eq!(decode_datagram("c", &bytes), Err(Ignored::EpochOutOfRange));
        let mut vote = message();
        vote.body = Body::GetRank {
            purpose: crate::core::Purpose::Election {
                round: 1,
                vote: Some(crate::core::VoteRequest {
                    epoch: EPOCH_MAX + 1,
                    last_epoch: 0,
                    last_clock: 0,
                    pre: true,
                    transfer: false,
                }),
            },
        };
        let bytes = encode_datagram("c", &vote).unwrap();
        assert_eq!(decode_datagram("c", &bytes), Err(Ignored::EpochOutOfRange));
        let mut edge = message();
        edge.epoch = EPOCH_MAX;
        let bytes = encode_datagram("c", &edge).unwrap();
        assert_eq!(decode_datagram("c", &bytes), Ok(edge));
    }
}
