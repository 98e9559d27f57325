//! Errors of label rendering and of decoding a label image.
//!
//! Each message says what is wrong and, for a scan that cannot be read, what a
//! person can do about it. Nothing here is secret.

/// Why a label could not be rendered, or an image could not be decoded to an
/// indicium.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LabelError {
    /// The requested resolution is outside the supported range.
    #[error("a resolution of {dpi} dpi is not supported; use {min} to {max} dpi")]
    Dpi {
        /// The resolution asked for.
        dpi: u32,
        /// The lowest supported resolution.
        min: u32,
        /// The highest supported resolution.
        max: u32,
    },
    /// The Data Matrix encoder refused the data (it cannot happen for 113
    /// bytes; kept so that no encoder failure is a panic).
    #[error("the indicium could not be encoded as a Data Matrix symbol: {0}")]
    Encode(String),
    /// The PNG encoder failed.
    #[error("the label could not be written as PNG: {0}")]
    Png(String),
    /// The bytes are not a PNG or JPEG image, or the image is corrupt.
    #[error("not a readable PNG or JPEG image: {0}")]
    NotAnImage(String),
    /// The image is larger than the decoder accepts.
    #[error(
        "the image is {width}x{height} pixels, larger than the {max}x{max} accepted; scale it down"
    )]
    TooLarge {
        /// Image width in pixels.
        width: u32,
        /// Image height in pixels.
        height: u32,
        /// The largest accepted width and height.
        max: u32,
    },
    /// No Data Matrix symbol was found in the image.
    #[error(
        "no Data Matrix symbol was found in the image (is the symbol in the picture, in focus, with a white margin around it?)"
    )]
    NoSymbol,
    /// A symbol was found but its content is not binary data (it holds
    /// characters beyond ISO 8859-1, so it is not an indicium).
    #[error("the Data Matrix symbol does not hold binary data, so it is not an indicium: {0}")]
    NotBinary(String),
    /// The symbol holds a number of bytes other than an indicium's.
    #[error(
        "the Data Matrix symbol holds {actual} bytes; a postvault indicium is exactly {expected} bytes"
    )]
    Length {
        /// The indicium length (113).
        expected: usize,
        /// The number of bytes found.
        actual: usize,
    },
}
