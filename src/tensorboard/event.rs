//! TensorBoard's event-file format: TFRecord framing around hand-encoded `Event` protobufs.
//!
//! Written here rather than taken from a crate: the one Rust crate for it, `tensorboard-rs`
//! (0.5.9), is unmaintained since 2021 and pulls `protobuf` 2.x (with a RUSTSEC advisory),
//! `image` 0.23 and its own generated protos for ~20 of our needs' worth of bytes. What we write
//! is small: a record is `u64 LE length`, `masked CRC-32C of those 8 bytes`, the data, `masked
//! CRC-32C of the data` (mask: rotate right 15, add 0xa282ead8), and the data an `Event` with
//! `wall_time` (1, double), `step` (2, int64) and either `file_version` (3) or a `Summary` (5) of
//! `Value`s: `tag` (1) with a `simple_value` (2, float) for scalars, or `metadata` (9) and a
//! string `tensor` (8) for the text plugin. CRC-32C comes from the `crc32c` crate. The reader
//! below checks both CRCs and decodes what we write (resume and tests); tests/tensorboard.rs
//! checks the files with TensorBoard's own reader.

use anyhow::{bail, Result};

/// The first event of every file.
pub const FILE_VERSION: &str = "brain.Event:2";

const MASK_DELTA: u32 = 0xa282_ead8;

/// CRC-32C masked as TFRecord stores it.
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// One TFRecord: length, its CRC, the data, its CRC.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// The records of an event file, CRCs checked. A record cut short at the end (a process killed
/// mid-write) ends the list; a CRC mismatch is an error.
pub fn records(bytes: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= 12 {
        let len_bytes = &bytes[at..at + 8];
        let stored = u32::from_le_bytes(bytes[at + 8..at + 12].try_into()?);
        if masked_crc(len_bytes) != stored {
            bail!("event file: bad length CRC at byte {at}");
        }
        let len = u64::from_le_bytes(len_bytes.try_into()?) as usize;
        let start = at + 12;
        let Some(end) = start.checked_add(len).filter(|e| e + 4 <= bytes.len()) else {
            break;
        };
        let stored = u32::from_le_bytes(bytes[end..end + 4].try_into()?);
        if masked_crc(&bytes[start..end]) != stored {
            bail!("event file: bad data CRC in the record at byte {at}");
        }
        out.push(&bytes[start..end]);
        at = end + 4;
    }
    Ok(out)
}

// --- protobuf encoding (only the wire types we use) ---

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    key(out, field, 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn event_head(wall_time: f64, step: i64) -> Vec<u8> {
    let mut out = Vec::new();
    key(&mut out, 1, 1);
    out.extend_from_slice(&wall_time.to_le_bytes());
    key(&mut out, 2, 0);
    varint(&mut out, step as u64);
    out
}

/// The `file_version` event that opens a file.
pub fn file_version_event(wall_time: f64) -> Vec<u8> {
    let mut out = event_head(wall_time, 0);
    bytes_field(&mut out, 3, FILE_VERSION.as_bytes());
    out
}

/// An event with one scalar per `(tag, value)`.
pub fn scalars_event(wall_time: f64, step: i64, scalars: &[(String, f32)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, v) in scalars {
        let mut value = Vec::new();
        bytes_field(&mut value, 1, tag.as_bytes());
        key(&mut value, 2, 5);
        value.extend_from_slice(&v.to_le_bytes());
        bytes_field(&mut summary, 1, &value);
    }
    let mut out = event_head(wall_time, step);
    bytes_field(&mut out, 5, &summary);
    out
}

/// An event with one text summary (TensorBoard's Text tab): a scalar string tensor tagged for
/// the `text` plugin.
pub fn text_event(wall_time: f64, step: i64, tag: &str, text: &str) -> Vec<u8> {
    let mut plugin = Vec::new();
    bytes_field(&mut plugin, 1, b"text");
    let mut metadata = Vec::new();
    bytes_field(&mut metadata, 1, &plugin);
    key(&mut metadata, 4, 0);
    varint(&mut metadata, 2); // DATA_CLASS_TENSOR
    let mut tensor = Vec::new();
    key(&mut tensor, 1, 0);
    varint(&mut tensor, 7); // DT_STRING
    bytes_field(&mut tensor, 2, &[]); // a scalar: the empty shape
    bytes_field(&mut tensor, 8, text.as_bytes());
    let mut value = Vec::new();
    bytes_field(&mut value, 1, tag.as_bytes());
    bytes_field(&mut value, 9, &metadata);
    bytes_field(&mut value, 8, &tensor);
    let mut summary = Vec::new();
    bytes_field(&mut summary, 1, &value);
    let mut out = event_head(wall_time, step);
    bytes_field(&mut out, 5, &summary);
    out
}

// --- decoding (what we write) ---

/// An event as far as this module writes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    pub scalars: Vec<(String, f32)>,
    pub texts: Vec<(String, String)>,
}

/// Protobuf fields of a message as `(field, wire value)`.
enum Wire<'a> {
    Int(u64),
    Fixed64([u8; 8]),
    Fixed32([u8; 4]),
    Bytes(&'a [u8]),
}

fn read_varint(b: &[u8], at: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = b.get(*at) else {
            bail!("event: truncated varint");
        };
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    bail!("event: varint too long")
}

fn fields(b: &[u8]) -> Result<Vec<(u64, Wire<'_>)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let k = read_varint(b, &mut at)?;
        let take = |at: &mut usize, n: usize| -> Result<&[u8]> {
            let s = b
                .get(*at..*at + n)
                .ok_or_else(|| anyhow::anyhow!("event: truncated"))?;
            *at += n;
            Ok(s)
        };
        let w = match k & 7 {
            0 => Wire::Int(read_varint(b, &mut at)?),
            1 => Wire::Fixed64(take(&mut at, 8)?.try_into()?),
            5 => Wire::Fixed32(take(&mut at, 4)?.try_into()?),
            2 => {
                let n = read_varint(b, &mut at)? as usize;
                Wire::Bytes(take(&mut at, n)?)
            }
            w => bail!("event: unsupported wire type {w}"),
        };
        out.push((k >> 3, w));
    }
    Ok(out)
}

fn decode_value(b: &[u8], ev: &mut Decoded) -> Result<()> {
    let (mut tag, mut scalar, mut text) = (String::new(), None, None);
    for (f, w) in fields(b)? {
        match (f, w) {
            (1, Wire::Bytes(t)) => tag = String::from_utf8_lossy(t).into_owned(),
            (2, Wire::Fixed32(v)) => scalar = Some(f32::from_le_bytes(v)),
            (8, Wire::Bytes(t)) => {
                for (g, w) in fields(t)? {
                    if let (8, Wire::Bytes(s)) = (g, w) {
                        text = Some(String::from_utf8_lossy(s).into_owned());
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(v) = scalar {
        ev.scalars.push((tag, v));
    } else if let Some(t) = text {
        ev.texts.push((tag, t));
    }
    Ok(())
}

/// Decodes one record's `Event`.
pub fn decode(b: &[u8]) -> Result<Decoded> {
    let mut ev = Decoded::default();
    for (f, w) in fields(b)? {
        match (f, w) {
            (1, Wire::Fixed64(v)) => ev.wall_time = f64::from_le_bytes(v),
            (2, Wire::Int(v)) => ev.step = v as i64,
            (3, Wire::Bytes(v)) => ev.file_version = Some(String::from_utf8_lossy(v).into_owned()),
            (5, Wire::Bytes(s)) => {
                for (g, w) in fields(s)? {
                    if let (1, Wire::Bytes(v)) = (g, w) {
                        decode_value(v, &mut ev)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_its_mask_match_known_values() {
        // The CRC-32C check value (RFC 3720, B.4).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // Masked, as TensorBoard's own `pywrap_tensorflow.masked_crc32c(b"123456789")` gives it.
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
        // The length CRC of an empty record (eight zero bytes), as TensorBoard's own
        // `pywrap_tensorflow.masked_crc32c` computes it (crc32c 0x8c28b28a).
        assert_eq!(crc32c::crc32c(&[0u8; 8]), 0x8c28_b28a);
        assert_eq!(masked_crc(&[0u8; 8]), 0x0798_0329);
    }

    #[test]
    fn framing_round_trips_and_catches_corruption() {
        let a = file_version_event(1.5);
        let b = scalars_event(2.0, 7, &[("loss/train".into(), 3.25), ("x".into(), -1.0)]);
        let c = text_event(3.0, 0, "run/label", "block_size=64");
        let mut file: Vec<u8> = [&a, &b, &c].iter().flat_map(|d| frame(d)).collect();
        let recs = records(&file).unwrap();
        assert_eq!(recs, vec![&a[..], &b[..], &c[..]]);
        let ev = decode(recs[0]).unwrap();
        assert_eq!(ev.file_version.as_deref(), Some(FILE_VERSION));
        assert_eq!(ev.wall_time, 1.5);
        let ev = decode(recs[1]).unwrap();
        assert_eq!(ev.step, 7);
        assert_eq!(
            ev.scalars,
            vec![("loss/train".to_string(), 3.25), ("x".to_string(), -1.0)]
        );
        let ev = decode(recs[2]).unwrap();
        assert_eq!(
            ev.texts,
            vec![("run/label".to_string(), "block_size=64".to_string())]
        );
        // A record cut short by a kill ends the list; a flipped data byte is an error.
        let whole = file.len();
        assert_eq!(records(&file[..whole - 3]).unwrap().len(), 2);
        file[whole - 6] ^= 1;
        let err = records(&file).unwrap_err();
        assert!(format!("{err}").contains("bad data CRC"), "{err}");
    }
}
