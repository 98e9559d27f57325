//! The label as a grayscale PNG at a given resolution: the same layout as the
//! PDF, with every module a whole number of pixels (so the symbol prints
//! crisply) and the text drawn from an 8x8 bitmap font (`font8x8`), so no
//! font file is needed.

use font8x8::legacy::BASIC_LEGACY;
use postvault_indicium::INDICIUM_LEN;

use crate::layout::*;
use crate::{LabelError, LabelText, symbol};

/// The lowest supported resolution: below it the text no longer fits.
pub const MIN_DPI: u32 = 150;
/// The highest supported resolution.
pub const MAX_DPI: u32 = 600;

const WHITE: u8 = 0xff;
const BLACK: u8 = 0x00;

/// A white grayscale canvas.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: vec![WHITE; width * height],
        }
    }

    /// Fills a rectangle with black, clipped to the canvas.
    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize) {
        for row in y..(y + h).min(self.height) {
            let start = row * self.width + x.min(self.width);
            let end = row * self.width + (x + w).min(self.width);
            self.pixels[start..end].fill(BLACK);
        }
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel a
    /// `scale` x `scale` square; characters outside ASCII are drawn as `?`.
    fn text(&mut self, x: usize, y: usize, scale: usize, text: &str) {
        for (i, c) in text.chars().enumerate() {
            let glyph = BASIC_LEGACY[if c.is_ascii() {
                c as usize
            } else {
                usize::from(b'?')
            }];
            let left = x + i * 8 * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    // Bit 0 is the leftmost pixel of the row.
                    if bits >> col & 1 == 1 {
                        self.fill(left + col * scale, y + row * scale, scale, scale);
                    }
                }
            }
        }
    }
}

/// Renders the label as a 4x6 inch grayscale PNG at `dpi` dots per inch
/// (150 to 600; 203 and 300 are the usual label-printer resolutions). The PNG
/// records its resolution, so it prints at 4x6 inch.
///
/// The Data Matrix symbol holds exactly the 113 bytes of `indicium`; `text`
/// should be [`LabelText::from_indicium`] of the same indicium.
pub fn render_png(
    indicium: &[u8; INDICIUM_LEN],
    text: &LabelText,
    dpi: u32,
) -> Result<Vec<u8>, LabelError> {
    if !(MIN_DPI..=MAX_DPI).contains(&dpi) {
        return Err(LabelError::Dpi {
            dpi,
            min: MIN_DPI,
            max: MAX_DPI,
        });
    }
    let modules = symbol::encode(indicium)?;
    let scale = dpi as f32 / 72.0;
    let px = |pt: f32| (pt * scale).round() as usize;
    let mut canvas = Canvas::new(px(PAGE_WIDTH), px(PAGE_HEIGHT));

    let module = px(MODULE).max(1);
    let origin = px(MARGIN) + QUIET_MODULES * module;
    for y in 0..modules.side {
        for (x, len) in modules.runs(y) {
            canvas.fill(
                origin + x * module,
                origin + y * module,
                len * module,
                module,
            );
        }
    }

    // An 8x8 glyph's capitals are 7 pixels high; size them like the PDF's
    // Helvetica capitals (0.72 em), but never wider than the text column.
    let lines = text.lines();
    let column = px(TEXT_WIDTH);
    let widest = lines[1..]
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(1);
    let fit = |size: f32, chars: usize| {
        let wanted = (size * 0.72 * scale / 7.0).round() as usize;
        wanted.min(column / (8 * chars.max(1))).max(1)
    };
    let line_scale = fit(LINE_SIZE, widest);
    let amount_scale = fit(AMOUNT_SIZE, lines[0].chars().count());
    for (i, (line, baseline)) in lines.iter().zip(baselines()).enumerate() {
        let s = if i == 0 { amount_scale } else { line_scale };
        let top = px(baseline).saturating_sub(7 * s);
        canvas.text(px(TEXT_LEFT), top, s, line);
    }

    encode_png(&canvas, dpi)
}

/// The canvas as an 8-bit grayscale PNG with a pHYs chunk for `dpi`.
fn encode_png(canvas: &Canvas, dpi: u32) -> Result<Vec<u8>, LabelError> {
    let err = |e: png::EncodingError| LabelError::Png(e.to_string());
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, canvas.width as u32, canvas.height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let per_metre = (f64::from(dpi) / 0.0254).round() as u32;
    encoder.set_pixel_dims(Some(png::PixelDimensions {
        xppu: per_metre,
        yppu: per_metre,
        unit: png::Unit::Meter,
    }));
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(&canvas.pixels).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}
