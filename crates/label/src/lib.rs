//! postvault-label: the postage label. An indicium is printed as a Data
//! Matrix (ECC 200) symbol holding exactly its 113 bytes, with the amount,
//! date of mailing, origin ZIP, device ID and mail category beside it in
//! plain text, on a 4x6 inch label.
//!
//! - [`LabelText`] is the plain text, taken from an [`Indicium`].
//! - [`render_png`] and [`render_pdf`] draw the label (same layout in both).
//!   The PDF draws the symbol as vector squares and the text in the standard
//!   Helvetica font, so it embeds no font and no image.
//! - [`decode_image`] finds the symbol in a PNG or JPEG (a scan, a photo, or a
//!   rendered label) and returns the 113 bytes, ready for
//!   [`Indicium::from_bytes`].
//!
//! The symbol always uses one Base 256 segment, so it is the same size
//! (44x44 modules) for every indicium and every reader returns the bytes
//! unchanged. This crate does no I/O and holds no secrets.
#![forbid(unsafe_code)]

mod decode;
mod error;
mod layout;
mod pdf;
mod png;
mod symbol;

pub use decode::{MAX_IMAGE_SIDE, decode_image};
pub use error::LabelError;
pub use pdf::render_pdf;
pub use png::{MAX_DPI, MIN_DPI, render_png};
pub use postvault_indicium::INDICIUM_LEN;
pub use symbol::SYMBOL_MODULES;

use postvault_indicium::Indicium;

/// The plain-text fields printed beside the symbol, so that a person can read
/// the label without a scanner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelText {
    /// The postage in dollars: cents when the amount is a whole number of
    /// cents (`$0.73`), else mills, i.e. three decimals (`$0.735`).
    pub amount: String,
    /// The date of mailing, `YYYY-MM-DD`.
    pub date: String,
    /// The originating ZIP, `12345` or `12345-6789`.
    pub origin: String,
    /// The device ID, `vendor-model-serial` (`0042-0001-00000017`).
    pub device: String,
    /// The mail category (`FC`, `PM`, `CORR`, ...).
    pub category: String,
}

impl LabelText {
    /// The fields of `indicium`, formatted for people.
    pub fn from_indicium(indicium: &Indicium) -> Self {
        Self {
            amount: amount(indicium.postage),
            date: indicium.date.to_string(),
            origin: indicium.origin.to_string(),
            device: indicium.device.to_string(),
            category: indicium.category.to_string(),
        }
    }

    /// The printed lines, top to bottom: the amount first (printed larger),
    /// then one `NAME value` line per other field.
    pub fn lines(&self) -> [String; 5] {
        [
            self.amount.clone(),
            format!("MAILED {}", self.date),
            format!("FROM ZIP {}", self.origin),
            format!("DEVICE {}", self.device),
            format!("CATEGORY {}", self.category),
        ]
    }
}

/// Mills as dollars: `$0.73` for a whole number of cents, `$0.735` otherwise.
fn amount(mills: u32) -> String {
    let dollars = mills / 1000;
    let rest = mills % 1000;
    if rest.is_multiple_of(10) {
        format!("${dollars}.{:02}", rest / 10)
    } else {
        format!("${dollars}.{rest:03}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(amount(0), "$0.00");
        assert_eq!(amount(730), "$0.73");
        assert_eq!(amount(735), "$0.735");
        assert_eq!(amount(5), "$0.005");
        assert_eq!(amount(12_340), "$12.34");
        assert_eq!(amount(16_777_215), "$16777.215");
    }
}
