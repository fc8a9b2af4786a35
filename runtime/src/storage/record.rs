//! The record framing of the log: log segments are a sequence of records, and the log's
//! small files (vote, purged, committed) are one record each.
//!
//! A record is a 13-byte header followed by its payload:
//!
//! ```text
//! offset  size  field
//! 0       1     magic, 0xA7 (never zero, so a zero-filled tail is told apart from a record)
//! 1       4     payload length in bytes, u32 little-endian
//! 5       4     CRC32 of the payload, little-endian
//! 9       4     CRC32 of bytes 0..9 (magic, length, payload CRC), little-endian
//! 13      len   payload: postcard
//! ```
//!
//! The header has its own checksum so that a damaged length is recognised before it is
//! used to find the next record.
//!
//! Reading never trusts the input: every slice is taken with `get` and every sum is
//! checked, because these bytes come from a disk that may have been damaged.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Corruption;

/// The first byte of every record.
pub(crate) const MAGIC: u8 = 0xA7;
/// The length of a record header in bytes.
pub(crate) const HEADER_LEN: usize = 13;

/// Why the bytes at some offset are not a whole, intact record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Everything from here to the end is zero: space the file system allocated for an
    /// append whose data never reached the disk.
    ZeroFill,
    /// The input ends inside the header.
    ShortHeader {
        /// How many header bytes are missing.
        missing_bytes: u64,
    },
    /// The header is intact but the input ends inside the payload.
    ShortPayload {
        /// How many payload bytes are missing.
        missing_bytes: u64,
    },
    /// The header is intact, the payload is all there, but its checksum does not match.
    PayloadChecksum {
        /// The length of the whole record in bytes.
        record_len: usize,
    },
    /// The first byte is not [`MAGIC`].
    BadMagic {
        /// The byte found.
        found: u8,
    },
    /// The header's checksum does not match.
    HeaderChecksum,
    /// The header is intact but claims a payload larger than the bound.
    TooLarge {
        /// The claimed length.
        len_bytes: u64,
    },
}

impl Damage {
    /// What the damage means when it cannot be a torn tail.
    pub(crate) fn corruption(self, max_bytes: u32) -> Corruption {
        match self {
            Damage::ZeroFill => Corruption::BadMagic { found: 0 },
            Damage::ShortHeader { missing_bytes } | Damage::ShortPayload { missing_bytes } => {
                Corruption::Truncated { missing_bytes }
            }
            Damage::PayloadChecksum { .. } => Corruption::PayloadChecksum,
            Damage::BadMagic { found } => Corruption::BadMagic { found },
            Damage::HeaderChecksum => Corruption::HeaderChecksum,
            Damage::TooLarge { len_bytes } => Corruption::RecordTooLarge {
                len_bytes,
                max_bytes: u64::from(max_bytes),
            },
        }
    }
}

/// Appends one record framing `payload` to `out`. The caller has checked that the payload
/// is no larger than its bound, which is a `u32`; a larger one is refused here too.
pub(crate) fn encode(payload: &[u8], out: &mut Vec<u8>) -> Result<(), PayloadTooLarge> {
    let len = u32::try_from(payload.len()).map_err(|_| PayloadTooLarge)?;
    let mut header = [0u8; HEADER_LEN];
    header[0] = MAGIC;
    header[1..5].copy_from_slice(&len.to_le_bytes());
    header[5..9].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let header_crc = crc32fast::hash(&header[..9]);
    header[9..13].copy_from_slice(&header_crc.to_le_bytes());
    out.reserve(HEADER_LEN.saturating_add(payload.len()));
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    Ok(())
}

/// A payload longer than a record can frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PayloadTooLarge;

/// Reads the record at the start of `input`: `Ok(None)` when `input` is empty, otherwise
/// the payload and the length of the whole record, or what is wrong with it.
pub(crate) fn read(input: &[u8], max_bytes: u32) -> Result<Option<(&[u8], usize)>, Damage> {
    let Some(&first) = input.first() else {
        return Ok(None);
    };
    if first != MAGIC {
        if input.iter().all(|&byte| byte == 0) {
            return Err(Damage::ZeroFill);
        }
        return Err(Damage::BadMagic { found: first });
    }
    let Some(header) = input.get(..HEADER_LEN) else {
        let missing = HEADER_LEN.saturating_sub(input.len());
        return Err(Damage::ShortHeader {
            missing_bytes: super::as_u64(missing),
        });
    };
    let len = u32_at(header, 1);
    let payload_crc = u32_at(header, 5);
    let header_crc = u32_at(header, 9);
    if header.get(..9).map(crc32fast::hash) != Some(header_crc) {
        return Err(Damage::HeaderChecksum);
    }
    if len > max_bytes {
        return Err(Damage::TooLarge {
            len_bytes: u64::from(len),
        });
    }
    // A u32 always fits a usize on the 32- and 64-bit targets rota runs on; were it not to,
    // the record could not be in memory either, so treat it as running past the end.
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let end = HEADER_LEN.saturating_add(len);
    let Some(payload) = input.get(HEADER_LEN..end) else {
        let missing = end.saturating_sub(input.len());
        return Err(Damage::ShortPayload {
            missing_bytes: super::as_u64(missing),
        });
    };
    if crc32fast::hash(payload) != payload_crc {
        return Err(Damage::PayloadChecksum { record_len: end });
    }
    Ok(Some((payload, end)))
}

/// The little-endian `u32` at `at` in a header; zero if out of bounds, which the callers
/// rule out by taking a whole header first.
fn u32_at(header: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(bytes) = header.get(at..at.saturating_add(4)) {
        word.copy_from_slice(bytes);
    }
    u32::from_le_bytes(word)
}

/// Decodes a postcard payload that must be exactly one value, with no bytes left over.
pub(crate) fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Corruption> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(Corruption::Undecodable {
            reason: format!("{} bytes left over after the value", rest.len()),
        }),
        Err(e) => Err(Corruption::Undecodable {
            reason: e.to_string(),
        }),
    }
}

/// A small file holding one value: one record.
pub(crate) fn encode_file<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    let payload = postcard::to_allocvec(value)?;
    let mut out = Vec::with_capacity(HEADER_LEN.saturating_add(payload.len()));
    // Values stored in small files are a few dozen bytes.
    encode(&payload, &mut out).map_err(|PayloadTooLarge| postcard::Error::SerializeBufferFull)?;
    Ok(out)
}

/// Reads a small file written by [`encode_file`]: exactly one intact record. Errors are
/// the offset of the damage and what it is.
pub(crate) fn decode_file<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, (u64, Corruption)> {
    // Small files hold a vote or a log id; a generous bound still stops a damaged length.
    const SMALL_FILE_BYTES_MAX: u32 = 64 * 1024;
    match read(bytes, SMALL_FILE_BYTES_MAX) {
        Ok(Some((payload, len))) => {
            if len != bytes.len() {
                return Err((
                    super::as_u64(len),
                    Corruption::Undecodable {
                        reason: "bytes after the record".to_owned(),
                    },
                ));
            }
            decode_payload(payload).map_err(|c| (super::as_u64(HEADER_LEN), c))
        }
        Ok(None) => Err((
            0,
            Corruption::Truncated {
                missing_bytes: super::as_u64(HEADER_LEN),
            },
        )),
        Err(damage) => Err((0, damage.corruption(SMALL_FILE_BYTES_MAX))),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_record_reads_back_and_the_next_one_starts_after_it() {
        let mut bytes = Vec::new();
        encode(b"hello", &mut bytes).unwrap();
        encode(b"", &mut bytes).unwrap();
        let (payload, len) = read(&bytes, 100).unwrap().unwrap();
        assert_eq!((payload, len), (&b"hello"[..], HEADER_LEN + 5));
        let (payload, len) = read(&bytes[len..], 100).unwrap().unwrap();
        assert_eq!((payload, len), (&b""[..], HEADER_LEN));
        assert_eq!(read(&bytes[HEADER_LEN * 2 + 5..], 100), Ok(None));
    }

    #[test]
    fn each_kind_of_damage_is_named() {
        let mut bytes = Vec::new();
        encode(b"hello", &mut bytes).unwrap();
        assert_eq!(
            read(&bytes[..4], 100),
            Err(Damage::ShortHeader { missing_bytes: 9 })
        );
        assert_eq!(
            read(&bytes[..15], 100),
            Err(Damage::ShortPayload { missing_bytes: 3 })
        );
        assert_eq!(read(&bytes, 4), Err(Damage::TooLarge { len_bytes: 5 }));
        assert_eq!(read(&[0, 0, 0], 100), Err(Damage::ZeroFill));
        assert_eq!(read(&[0, 0, 1], 100), Err(Damage::BadMagic { found: 0 }));

        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 1] ^= 1;
        assert_eq!(
            read(&flipped, 100),
            Err(Damage::PayloadChecksum { record_len: 18 })
        );
        let mut flipped = bytes.clone();
        flipped[2] ^= 1;
        assert_eq!(read(&flipped, 100), Err(Damage::HeaderChecksum));
        let mut flipped = bytes;
        flipped[0] = 0x55;
        assert_eq!(read(&flipped, 100), Err(Damage::BadMagic { found: 0x55 }));
    }

    #[test]
    fn small_files_hold_exactly_one_value() {
        let bytes = encode_file(&(7u64, 9u64)).unwrap();
        assert_eq!(decode_file::<(u64, u64)>(&bytes), Ok((7, 9)));
        let mut longer = bytes.clone();
        longer.push(1);
        assert!(decode_file::<(u64, u64)>(&longer).is_err());
        assert!(decode_file::<(u64, u64)>(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_file::<(u64, u64)>(&[]).is_err());
        // A payload with bytes left over after the value is not that value.
        assert!(decode_file::<u64>(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 0u32..100) {
            let _ = read(&bytes, max);
            let _ = decode_file::<(u64, String)>(&bytes);
        }
    }
}
