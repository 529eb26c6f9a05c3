//! Length-prefixed CBOR frames, parsed from and built into byte slices. Never touches a socket
//! (that is [`crate::connection`]).
//!
//! A frame is a big-endian `u32` payload length followed by that many bytes of CBOR.

use crate::limits::FRAME_PREFIX_BYTES;
use serde::{de::DeserializeOwned, Serialize};

/// Why a frame could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the receiver accepts.
    #[error("frame of {bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge {
        /// Announced payload size.
        bytes: usize,
        /// The receiver's limit.
        max_bytes: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed after {bytes} bytes of an unfinished frame")]
    Truncated {
        /// Bytes received of the unfinished frame.
        bytes: usize,
    },
    /// The payload is not the CBOR message expected.
    #[error("failed to decode frame: {0}")]
    Decode(String),
}

/// Whether `buf` starts with a whole frame: `Ok(Some(total_len))` if so, `Ok(None)` if more
/// bytes are needed, an error if the announced length is over `max_bytes`.
pub fn frame_len(buf: &[u8], max_bytes: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..FRAME_PREFIX_BYTES) else {
        return Ok(None);
    };
    let bytes = u32::from_be_bytes(prefix.try_into().expect("prefix is 4 bytes")) as usize;
    if bytes > max_bytes {
        return Err(FrameError::TooLarge { bytes, max_bytes });
    }
    let total = FRAME_PREFIX_BYTES + bytes;
    Ok((buf.len() >= total).then_some(total))
}

/// Encodes `msg` as one frame (prefix included).
pub fn encode<T: Serialize>(msg: &T, max_bytes: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; FRAME_PREFIX_BYTES];
    ciborium::into_writer(msg, &mut out).expect("writing CBOR to a Vec cannot fail");
    let bytes = out.len() - FRAME_PREFIX_BYTES;
    if bytes > max_bytes {
        return Err(FrameError::TooLarge { bytes, max_bytes });
    }
    out[..FRAME_PREFIX_BYTES].copy_from_slice(&(bytes as u32).to_be_bytes());
    Ok(out)
}

/// Decodes one frame's payload (without its prefix).
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    ciborium::from_reader(payload).map_err(|e| FrameError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial_input() {
        let frame = encode(&("hello", 7u32), 1024).unwrap();
        for cut in 0..frame.len() {
            assert_eq!(frame_len(&frame[..cut], 1024), Ok(None), "cut at {cut}");
        }
        assert_eq!(frame_len(&frame, 1024), Ok(Some(frame.len())));
        let back: (String, u32) = decode(&frame[FRAME_PREFIX_BYTES..]).unwrap();
        assert_eq!(back, ("hello".to_string(), 7));
    }

    #[test]
    fn oversized_prefix_is_refused_before_buffering() {
        let buf = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            frame_len(&buf, 1024),
            Err(FrameError::TooLarge {
                bytes: 0xffff_ffff,
                max_bytes: 1024
            })
        ));
        assert!(matches!(
            encode(&"x".repeat(2000), 1024),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_payload_is_a_decode_error() {
        let err = decode::<(String, u32)>(&[0xff, 0x00, 0x13]).unwrap_err();
        assert!(matches!(err, FrameError::Decode(_)));
    }
}
