//! The label layout, shared by the PNG and the PDF: a 4x6 inch page, in
//! points (1/72 inch) measured from the top-left corner.
//!
//! The symbol sits in the top-left corner inside a quiet zone of
//! [`QUIET_MODULES`] light modules; the text column starts to its right.

use crate::symbol::SYMBOL_MODULES;

/// Page width: 4 inches.
pub const PAGE_WIDTH: f32 = 288.0;
/// Page height: 6 inches.
pub const PAGE_HEIGHT: f32 = 432.0;
/// Margin from the page edges to the symbol's quiet zone and the text.
pub const MARGIN: f32 = 18.0;
/// Size of one module: 2 pt (0.71 mm), so the 44-module symbol is 88 pt
/// (1.22 inch), well within what 203 dpi label printers and phone cameras
/// resolve.
pub const MODULE: f32 = 2.0;
/// Light modules around the symbol (ISO/IEC 16022 requires at least one).
pub const QUIET_MODULES: usize = 4;
/// Side of the symbol with its quiet zone.
pub const SYMBOL_BLOCK: f32 = (SYMBOL_MODULES + 2 * QUIET_MODULES) as f32 * MODULE;
/// Left edge of the text column.
pub const TEXT_LEFT: f32 = MARGIN + SYMBOL_BLOCK + 4.0;
/// Width of the text column.
pub const TEXT_WIDTH: f32 = PAGE_WIDTH - MARGIN - TEXT_LEFT;
/// Font size of the amount.
pub const AMOUNT_SIZE: f32 = 18.0;
/// Font size of the other lines.
pub const LINE_SIZE: f32 = 8.0;
/// Top of the first text line (its cap height starts here).
pub const TEXT_TOP: f32 = MARGIN + QUIET_MODULES as f32 * MODULE;
/// Distance between the baselines of the other lines.
pub const LEADING: f32 = 13.0;

/// Baselines (from the top of the page) of the five text lines of
/// [`crate::LabelText::lines`].
pub fn baselines() -> [f32; 5] {
    let first = TEXT_TOP + AMOUNT_SIZE * 0.75;
    let second = first + AMOUNT_SIZE * 0.5 + LEADING;
    [
        first,
        second,
        second + LEADING,
        second + 2.0 * LEADING,
        second + 3.0 * LEADING,
    ]
}
