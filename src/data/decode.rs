//! One encoded image (JPEG, PNG, WebP, BMP) to 8-bit CHW pixels, as torchvision's `pil_loader`
//! would see it: EXIF orientation applied, grayscale and RGB(A) converted to the set's channels
//! (alpha dropped, gray replicated to RGB, RGB to ITU-R 601 luma), 16-bit samples scaled to 8.

use std::io::{BufRead, Cursor, Seek};

use image::{DynamicImage, ImageDecoder, ImageReader};

/// The most memory one decoded image may take (a 170-megapixel RGB photo).
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

/// Decoded pixels in CHW order.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<u8>,
}

impl Decoded {
    pub fn planes(&self) -> crate::augment::Planes<'_, u8> {
        crate::augment::Planes {
            channels: self.channels,
            height: self.height,
            width: self.width,
            data: &self.pixels,
        }
    }
}

/// What the header says: size (after EXIF orientation) and whether the image has colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub width: usize,
    pub height: usize,
    pub color: bool,
}

/// An error as one line (decoders' messages may end in a newline).
fn one_line(error: impl std::fmt::Display) -> String {
    error
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn decoder<'a, R: BufRead + Seek + 'a>(reader: R) -> Result<impl ImageDecoder + 'a, String> {
    ImageReader::new(reader)
        .with_guessed_format()
        .map_err(one_line)?
        .into_decoder()
        .map_err(one_line)
}

/// Reads only the header.
pub fn header(bytes: &[u8]) -> Result<Header, String> {
    header_from(Cursor::new(bytes))
}

/// Reads only the header, from a reader positioned at the file's start.
pub fn header_from<R: BufRead + Seek>(reader: R) -> Result<Header, String> {
    let mut decoder = decoder(reader)?;
    let (w, h) = decoder.dimensions();
    let turned = matches!(
        decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms),
        image::metadata::Orientation::Rotate90
            | image::metadata::Orientation::Rotate270
            | image::metadata::Orientation::Rotate90FlipH
            | image::metadata::Orientation::Rotate270FlipH
    );
    let (width, height) = if turned { (h, w) } else { (w, h) };
    Ok(Header {
        width: width as usize,
        height: height as usize,
        color: decoder.color_type().has_color(),
    })
}

/// Decodes `bytes` to `channels` (1 or 3) planes; the error says why the file is unreadable.
pub fn decode(bytes: &[u8], channels: usize) -> Result<Decoded, String> {
    Ok(planar(&decode_image(bytes)?, channels))
}

/// Decodes `bytes` as it would be displayed (EXIF orientation applied).
pub fn decode_image(bytes: &[u8]) -> Result<DynamicImage, String> {
    if bytes.starts_with(&[0xFF, 0xD8]) && !jpeg_is_complete(bytes) {
        // The JPEG decoder fills a cut-off scan with grey instead of failing (PIL raises).
        return Err("truncated JPEG: no end-of-image marker after the last scan".into());
    }
    let mut decoder = decoder(Cursor::new(bytes))?;
    // Not every decoder enforces image's allocation limit: a damaged header must not ask for
    // more memory than any real photo needs.
    let (w, h) = decoder.dimensions();
    if decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(format!(
            "a {w}×{h} image would take {} MiB decoded, over the {} MiB limit: the header is damaged, or downscale the image",
            decoder.total_bytes() >> 20,
            MAX_DECODED_BYTES >> 20
        ));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(one_line)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Whether an end-of-image marker (FF D9) follows the last start-of-scan (FF DA). Neither can
/// occur inside entropy-coded data (a data byte FF is always followed by 00 or a restart marker),
/// so an EXIF thumbnail's own markers, earlier in the file, do not count.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let last_end = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    matches!((last_scan, last_end), (Some(scan), Some(end)) if end > scan)
}

/// `img` as `channels` CHW planes.
pub fn planar(img: &DynamicImage, channels: usize) -> Decoded {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let plane = width * height;
    let pixels = match (channels, img) {
        (1, DynamicImage::ImageLuma8(gray)) => gray.as_raw().clone(),
        (1, img) if !img.color().has_color() => img.to_luma8().into_raw(),
        (1, img) => {
            let rgb = img.to_rgb8();
            rgb.pixels()
                .map(|p| {
                    let [r, g, b] = p.0.map(f32::from);
                    (0.299 * r + 0.587 * g + 0.114 * b).round() as u8
                })
                .collect()
        }
        (_, img) => {
            let converted;
            let rgb = match img {
                DynamicImage::ImageRgb8(rgb) => rgb,
                other => {
                    converted = other.to_rgb8();
                    &converted
                }
            };
            let mut out = vec![0u8; 3 * plane];
            let (r, rest) = out.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
                r[i] = px[0];
                g[i] = px[1];
                b[i] = px[2];
            }
            out
        }
    };
    Decoded {
        channels: if channels == 1 { 1 } else { 3 },
        height,
        width,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageEncoder;

    fn png(img: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn conversions_follow_pil() {
        // RGBA: alpha dropped, not composited.
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            3,
            2,
            image::Rgba([200, 100, 50, 0]),
        ));
        let d = decode(&png(&rgba), 3).unwrap();
        assert_eq!((d.channels, d.height, d.width), (3, 2, 3));
        assert_eq!(&d.pixels[..], &[[200u8; 6], [100; 6], [50; 6]].concat()[..]);
        // RGB to gray with ITU-R 601 weights: 0.299·200 + 0.587·100 + 0.114·50 = 124.2.
        let d = decode(&png(&rgba), 1).unwrap();
        assert_eq!(d.pixels, vec![124; 6]);
        // Gray to RGB replicates; 16-bit gray scales to 8 bits.
        let gray16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(
            2,
            2,
            image::Luma([257u16 * 77]),
        ));
        let d = decode(&png(&gray16), 3).unwrap();
        assert_eq!(d.pixels, vec![77; 12]);
        assert!(!header(&png(&gray16)).unwrap().color);
        // Garbage and truncated files are errors, not panics.
        assert!(decode(b"not an image at all", 3).is_err());
        let bytes = png(&rgba);
        assert!(decode(&bytes[..bytes.len() / 2], 3).is_err());
        // A JPEG cut in half: its header reads, its pixels do not.
        let noisy = image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 7 + y * 13) as u8, (x * y) as u8, (x ^ y) as u8 * 4])
        });
        let mut jpeg = Vec::new();
        DynamicImage::ImageRgb8(noisy)
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let half = &jpeg[..jpeg.len() / 2];
        assert_eq!(header(half).unwrap().width, 64);
        let err = decode(half, 3).unwrap_err();
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 4×2 JPEG whose EXIF says "rotate 90° clockwise to display": it comes out 2×4.
        let img = image::RgbImage::from_fn(4, 2, |x, _| image::Rgb([(x * 60) as u8, 0, 0]));
        let mut jpeg = Vec::new();
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 100);
        encoder.set_exif_metadata(exif_orientation(6)).unwrap();
        encoder
            .write_image(img.as_raw(), 4, 2, image::ExtendedColorType::Rgb8)
            .unwrap();
        let h = header(&jpeg).unwrap();
        assert_eq!((h.width, h.height), (2, 4));
        let d = decode(&jpeg, 3).unwrap();
        assert_eq!((d.height, d.width), (4, 2));
        // Rotated clockwise: the left column (x = 0, dark) ends up on top.
        assert!(
            d.pixels[0] < 40 && d.pixels[3 * 2] > 140,
            "{:?}",
            &d.pixels[..8]
        );
    }

    /// A minimal little-endian EXIF block with one Orientation (0x0112) entry.
    fn exif_orientation(value: u16) -> Vec<u8> {
        let mut exif = b"II*\0\x08\0\0\0".to_vec();
        exif.extend(1u16.to_le_bytes());
        exif.extend(0x0112u16.to_le_bytes());
        exif.extend(3u16.to_le_bytes());
        exif.extend(1u32.to_le_bytes());
        exif.extend(value.to_le_bytes());
        exif.extend([0, 0]);
        exif.extend(0u32.to_le_bytes());
        exif
    }
}
