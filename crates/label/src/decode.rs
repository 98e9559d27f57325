//! Reading a label back: find the Data Matrix symbol in a PNG or JPEG (a
//! rendered label, a scan or a phone photo) and return the indicium bytes.
//!
//! The image is decoded with the `image` crate and the symbol located and
//! read by `rxing`, a port of ZXing, which is independent of the encoder
//! used to draw labels. Data Matrix's default character set is ISO 8859-1, so
//! the decoded text maps one character to one byte.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};
use postvault_indicium::INDICIUM_LEN;
use rxing::{BarcodeFormat, DecodeHints, Exceptions};

use crate::LabelError;

/// The largest image width and height accepted (a 50-megapixel photo is
/// about 8700 pixels wide).
pub const MAX_IMAGE_SIDE: u32 = 12_000;

/// The most memory the image decoder may allocate, in bytes.
const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// Above this side, a failed search is retried on a half-size copy: a
/// phone photo's sensor noise and blur can hide the symbol at full size.
const RETRY_HALF_ABOVE: u32 = 1600;

/// Finds the Data Matrix symbol in `image` (PNG or JPEG bytes) and returns
/// its content, which must be exactly the 113 bytes of an indicium.
///
/// Fails with [`LabelError::NotAnImage`] for anything but a readable PNG or
/// JPEG, [`LabelError::TooLarge`] above [`MAX_IMAGE_SIDE`] pixels a side,
/// [`LabelError::NoSymbol`] when no symbol can be read, and
/// [`LabelError::NotBinary`] or [`LabelError::Length`] when the symbol holds
/// something other than an indicium. The bytes are not parsed or verified.
pub fn decode_image(image: &[u8]) -> Result<[u8; INDICIUM_LEN], LabelError> {
    let luma = load_luma(image)?;
    let (width, height) = luma.dimensions();
    let mut found = search(&luma);
    if matches!(found, Err(LabelError::NoSymbol)) && width.max(height) > RETRY_HALF_ABOVE {
        let half = image::imageops::resize(
            &luma,
            width / 2,
            height / 2,
            image::imageops::FilterType::Triangle,
        );
        found = search(&half);
    }
    indicium_bytes(&found?)
}

/// Looks for the symbol in `luma`, then in its mirror image: rxing's
/// detectors miss symbols turned by some angles (around 30 degrees) that
/// they find turned the other way, and the decoder reads a mirrored symbol
/// as well as a straight one.
fn search(luma: &image::GrayImage) -> Result<String, LabelError> {
    let (width, height) = luma.dimensions();
    match detect(luma.as_raw().clone(), width, height) {
        Err(LabelError::NoSymbol) => {
            let mirrored = image::imageops::flip_horizontal(luma);
            detect(mirrored.into_raw(), width, height)
        }
        other => other,
    }
}

/// Decodes a PNG or JPEG to 8-bit grayscale, within the size limits.
fn load_luma(image: &[u8]) -> Result<image::GrayImage, LabelError> {
    let not_image = |e: &dyn std::fmt::Display| LabelError::NotAnImage(e.to_string());
    let mut reader = ImageReader::new(Cursor::new(image))
        .with_guessed_format()
        .map_err(|e| not_image(&e))?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => f,
        Some(other) => {
            return Err(LabelError::NotAnImage(format!(
                "the file is {other:?}, not PNG or JPEG"
            )));
        }
        None => {
            return Err(LabelError::NotAnImage(
                "the file is neither PNG nor JPEG (unrecognized signature)".into(),
            ));
        }
    };
    // The header first: refuse a huge image before allocating for it.
    let (width, height) = ImageReader::with_format(Cursor::new(image), format)
        .into_dimensions()
        .map_err(|e| not_image(&e))?;
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(LabelError::TooLarge {
            width,
            height,
            max: MAX_IMAGE_SIDE,
        });
    }
    if width == 0 || height == 0 {
        return Err(LabelError::NotAnImage("the image is empty".into()));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| not_image(&e))?;
    Ok(decoded.into_luma8())
}

/// Runs rxing's Data Matrix reader (trying harder) over a grayscale image;
/// returns the decoded text.
fn detect(luma: Vec<u8>, width: u32, height: u32) -> Result<String, LabelError> {
    let mut hints = DecodeHints {
        TryHarder: Some(true),
        ..DecodeHints::default()
    };
    match rxing::helpers::detect_in_luma_with_hints(
        luma,
        width,
        height,
        Some(BarcodeFormat::DATA_MATRIX),
        &mut hints,
    ) {
        Ok(result) => Ok(result.getText().to_owned()),
        // Not found, or found but unreadable (checksum, format): to a person
        // both mean the symbol could not be read from this picture.
        Err(
            Exceptions::NotFoundException(_)
            | Exceptions::ChecksumException(_)
            | Exceptions::FormatException(_)
            | Exceptions::ReedSolomonException(_),
        ) => Err(LabelError::NoSymbol),
        Err(other) => Err(LabelError::NotAnImage(format!(
            "the barcode reader failed: {other}"
        ))),
    }
}

/// The decoded text as bytes (one ISO 8859-1 character per byte), which must
/// be exactly an indicium's 113.
fn indicium_bytes(text: &str) -> Result<[u8; INDICIUM_LEN], LabelError> {
    let bytes = text
        .chars()
        .map(|c| u8::try_from(u32::from(c)))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| {
            LabelError::NotBinary(format!(
                "it holds {} characters, some outside ISO 8859-1",
                text.chars().count()
            ))
        })?;
    bytes.as_slice().try_into().map_err(|_| LabelError::Length {
        expected: INDICIUM_LEN,
        actual: bytes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_to_bytes() {
        let all: String = (0u8..113).map(|b| char::from(b.wrapping_mul(37))).collect();
        let bytes = indicium_bytes(&all).unwrap();
        assert!(
            bytes
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i as u8).wrapping_mul(37))
        );
        assert_eq!(
            indicium_bytes("short"),
            Err(LabelError::Length {
                expected: 113,
                actual: 5
            })
        );
        let wide: String = std::iter::repeat_n('\u{263a}', 113).collect();
        assert!(matches!(
            indicium_bytes(&wide),
            Err(LabelError::NotBinary(_))
        ));
    }
}
