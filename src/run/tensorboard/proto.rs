//! The few `Event` / `Summary` protocol-buffer fields TensorBoard reads, encoded and decoded by
//! hand (wire format only: varints, fixed64 / fixed32 and length-delimited fields).

use super::{Event, Value};

// Field numbers of tensorflow/core/util/event.proto and framework/summary.proto.
const EVENT_WALL_TIME: u32 = 1;
const EVENT_STEP: u32 = 2;
const EVENT_FILE_VERSION: u32 = 3;
const EVENT_SUMMARY: u32 = 5;
const SUMMARY_VALUE: u32 = 1;
const VALUE_TAG: u32 = 1;
const VALUE_SIMPLE: u32 = 2;
const VALUE_IMAGE: u32 = 4;
const VALUE_TENSOR: u32 = 8;
const VALUE_METADATA: u32 = 9;
const IMAGE_HEIGHT: u32 = 1;
const IMAGE_WIDTH: u32 = 2;
const IMAGE_COLORSPACE: u32 = 3;
const IMAGE_ENCODED: u32 = 4;
const METADATA_PLUGIN: u32 = 1;
const PLUGIN_NAME: u32 = 1;
const TENSOR_DTYPE: u32 = 1;
const TENSOR_STRING_VAL: u32 = 8;
const DT_STRING: u64 = 7;
/// Colorspace 3: RGB; TensorBoard decodes the PNG itself, this only labels it.
const RGB: u64 = 3;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const BYTES: u32 = 2;
const FIXED32: u32 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(out, u64::from(field << 3 | wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_key(out, field, BYTES);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, VARINT);
    put_varint(out, v);
}

pub(super) fn encode_event(event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    put_key(&mut out, EVENT_WALL_TIME, FIXED64);
    out.extend_from_slice(&event.wall_time.to_le_bytes());
    put_uint(&mut out, EVENT_STEP, event.step as u64);
    if let Some(version) = &event.file_version {
        put_bytes(&mut out, EVENT_FILE_VERSION, version.as_bytes());
    }
    if !event.values.is_empty() {
        let mut summary = Vec::new();
        for (tag, value) in &event.values {
            put_bytes(&mut summary, SUMMARY_VALUE, &encode_value(tag, value));
        }
        put_bytes(&mut out, EVENT_SUMMARY, &summary);
    }
    out
}

fn encode_value(tag: &str, value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, VALUE_TAG, tag.as_bytes());
    match value {
        Value::Scalar(v) => {
            put_key(&mut out, VALUE_SIMPLE, FIXED32);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Value::Image { width, height, png } => {
            let mut image = Vec::new();
            put_uint(&mut image, IMAGE_HEIGHT, u64::from(*height));
            put_uint(&mut image, IMAGE_WIDTH, u64::from(*width));
            put_uint(&mut image, IMAGE_COLORSPACE, RGB);
            put_bytes(&mut image, IMAGE_ENCODED, png);
            put_bytes(&mut out, VALUE_IMAGE, &image);
        }
        Value::Text(text) => {
            let mut plugin = Vec::new();
            put_bytes(&mut plugin, PLUGIN_NAME, b"text");
            let mut metadata = Vec::new();
            put_bytes(&mut metadata, METADATA_PLUGIN, &plugin);
            put_bytes(&mut out, VALUE_METADATA, &metadata);
            let mut tensor = Vec::new();
            put_uint(&mut tensor, TENSOR_DTYPE, DT_STRING);
            put_bytes(&mut tensor, TENSOR_STRING_VAL, text.as_bytes());
            put_bytes(&mut out, VALUE_TENSOR, &tensor);
        }
    }
    out
}

/// A protocol buffer's fields, one at a time.
struct Fields<'a> {
    data: &'a [u8],
}

enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Fixed32([u8; 4]),
    Bytes(&'a [u8]),
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.data.split_first().ok_or("truncated varint")?;
            self.data = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if n > self.data.len() {
            return Err(format!("field of {n} bytes past the end"));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn next_field(&mut self) -> Option<std::result::Result<(u32, Field<'a>), String>> {
        if self.data.is_empty() {
            return None;
        }
        Some((|| {
            let key = self.varint()?;
            let field = (key >> 3) as u32;
            let value = match (key & 7) as u32 {
                VARINT => Field::Varint(self.varint()?),
                FIXED64 => Field::Fixed64(self.take(8)?.try_into().expect("8 bytes")),
                FIXED32 => Field::Fixed32(self.take(4)?.try_into().expect("4 bytes")),
                BYTES => {
                    let n = self.varint()? as usize;
                    Field::Bytes(self.take(n)?)
                }
                wire => return Err(format!("unsupported wire type {wire}")),
            };
            Ok((field, value))
        })())
    }
}

fn fields(data: &[u8]) -> Fields<'_> {
    Fields { data }
}

fn utf8(bytes: &[u8]) -> std::result::Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "text that is not UTF-8".to_string())
}

pub(super) fn decode_event(data: &[u8]) -> std::result::Result<Event, String> {
    let mut event = Event {
        wall_time: 0.0,
        step: 0,
        file_version: None,
        values: Vec::new(),
    };
    let mut it = fields(data);
    while let Some(field) = it.next_field() {
        match field? {
            (EVENT_WALL_TIME, Field::Fixed64(b)) => event.wall_time = f64::from_le_bytes(b),
            (EVENT_STEP, Field::Varint(v)) => event.step = v as i64,
            (EVENT_FILE_VERSION, Field::Bytes(b)) => event.file_version = Some(utf8(b)?),
            (EVENT_SUMMARY, Field::Bytes(summary)) => {
                let mut values = fields(summary);
                while let Some(value) = values.next_field() {
                    if let (SUMMARY_VALUE, Field::Bytes(v)) = value? {
                        event.values.push(decode_value(v)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(event)
}

fn decode_value(data: &[u8]) -> std::result::Result<(String, Value), String> {
    let (mut tag, mut value) = (String::new(), None);
    let mut it = fields(data);
    while let Some(field) = it.next_field() {
        match field? {
            (VALUE_TAG, Field::Bytes(b)) => tag = utf8(b)?,
            (VALUE_SIMPLE, Field::Fixed32(b)) => value = Some(Value::Scalar(f32::from_le_bytes(b))),
            (VALUE_IMAGE, Field::Bytes(image)) => {
                let (mut width, mut height, mut png) = (0, 0, Vec::new());
                let mut parts = fields(image);
                while let Some(part) = parts.next_field() {
                    match part? {
                        (IMAGE_HEIGHT, Field::Varint(v)) => height = v as u32,
                        (IMAGE_WIDTH, Field::Varint(v)) => width = v as u32,
                        (IMAGE_ENCODED, Field::Bytes(b)) => png = b.to_vec(),
                        _ => {}
                    }
                }
                value = Some(Value::Image { width, height, png });
            }
            (VALUE_TENSOR, Field::Bytes(tensor)) => {
                let mut parts = fields(tensor);
                while let Some(part) = parts.next_field() {
                    if let (TENSOR_STRING_VAL, Field::Bytes(b)) = part? {
                        value = Some(Value::Text(utf8(b)?));
                    }
                }
            }
            _ => {}
        }
    }
    let value = value.ok_or_else(|| format!("value '{tag}' holds no scalar, image or text"))?;
    Ok((tag, value))
}
