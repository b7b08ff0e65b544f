//! A reader for TensorBoard event files written independently of the writer: the TFRecord
//! framing (length, masked CRC-32C of the length, data, masked CRC-32C of the data — both CRCs
//! checked) and the few protobuf fields of `Event` / `Summary` the tests look at.

/// One `Summary.Value`.
#[derive(Debug, Default)]
pub struct Value {
    pub tag: String,
    pub simple: Option<f32>,
    pub histogram: bool,
    pub png: Option<Vec<u8>>,
}

/// One `Event`.
#[derive(Debug, Default)]
pub struct Event {
    pub step: i64,
    pub file_version: Option<String>,
    pub values: Vec<Value>,
}

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn masked(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// Every record's event; panics on a bad frame or CRC.
pub fn read_events(mut bytes: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len_bytes = &bytes[..8];
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        let len_crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        assert_eq!(len_crc, masked(len_bytes), "length CRC");
        let data = &bytes[12..12 + len];
        let data_crc = u32::from_le_bytes(bytes[12 + len..16 + len].try_into().expect("4 bytes"));
        assert_eq!(data_crc, masked(data), "data CRC");
        out.push(event(data));
        bytes = &bytes[16 + len..];
    }
    out
}

/// Protobuf fields of a message: (field number, wire type, varint value or bytes).
fn fields(mut b: &[u8]) -> Vec<(u64, u8, u64, &[u8])> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (key, rest) = varint(b);
        b = rest;
        let (field, wire) = (key >> 3, (key & 7) as u8);
        match wire {
            0 => {
                let (v, rest) = varint(b);
                out.push((field, wire, v, &b[..0]));
                b = rest;
            }
            1 => {
                out.push((
                    field,
                    wire,
                    u64::from_le_bytes(b[..8].try_into().expect("8")),
                    &b[..8],
                ));
                b = &b[8..];
            }
            2 => {
                let (len, rest) = varint(b);
                let len = len as usize;
                out.push((field, wire, len as u64, &rest[..len]));
                b = &rest[len..];
            }
            5 => {
                out.push((
                    field,
                    wire,
                    u64::from(u32::from_le_bytes(b[..4].try_into().expect("4"))),
                    &b[..4],
                ));
                b = &b[4..];
            }
            w => panic!("wire type {w}"),
        }
    }
    out
}

fn varint(b: &[u8]) -> (u64, &[u8]) {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (v, &b[i + 1..]);
        }
    }
    panic!("truncated varint")
}

fn event(data: &[u8]) -> Event {
    let mut e = Event::default();
    for (field, _, v, bytes) in fields(data) {
        match field {
            2 => e.step = v as i64,
            3 => e.file_version = Some(String::from_utf8_lossy(bytes).into_owned()),
            5 => {
                for (f, _, _, value) in fields(bytes) {
                    if f == 1 {
                        e.values.push(summary_value(value));
                    }
                }
            }
            _ => {}
        }
    }
    e
}

fn summary_value(data: &[u8]) -> Value {
    let mut v = Value::default();
    for (field, _, x, bytes) in fields(data) {
        match field {
            1 => v.tag = String::from_utf8_lossy(bytes).into_owned(),
            2 => v.simple = Some(f32::from_bits(x as u32)),
            4 => {
                v.png = fields(bytes)
                    .into_iter()
                    .find(|f| f.0 == 4)
                    .map(|f| f.3.to_vec());
            }
            5 => v.histogram = true,
            _ => {}
        }
    }
    v
}
