//! The Data Matrix (ECC 200) symbol of an indicium, as a grid of modules.

use datamatrix::{DataMatrixBuilder, EncodationType, SymbolList, SymbolSize};
use postvault_indicium::INDICIUM_LEN;

use crate::LabelError;

/// Modules per side of the symbol: 113 bytes in one Base 256 segment take
/// 116 data codewords, which fit the 44x44 square symbol (144 codewords).
pub const SYMBOL_MODULES: usize = 44;

/// The symbol's modules, row by row from the top, `true` for dark.
pub(crate) struct Modules {
    /// Modules per side.
    pub side: usize,
    /// `side * side` modules, row-major.
    pub dark: Vec<bool>,
}

impl Modules {
    /// Whether the module at column `x`, row `y` (from the top) is dark.
    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        self.dark[y * self.side + x]
    }

    /// The dark runs of row `y`: (first column, length) of each.
    pub fn runs(&self, y: usize) -> Vec<(usize, usize)> {
        let mut runs = Vec::new();
        let mut x = 0;
        while x < self.side {
            if self.is_dark(x, y) {
                let start = x;
                while x < self.side && self.is_dark(x, y) {
                    x += 1;
                }
                runs.push((start, x - start));
            } else {
                x += 1;
            }
        }
        runs
    }
}

/// Encodes the indicium bytes as a square ECC 200 symbol using Base 256 only:
/// binary data needs no character set, so every reader returns the same
/// bytes, and the symbol size does not depend on the content.
pub(crate) fn encode(indicium: &[u8; INDICIUM_LEN]) -> Result<Modules, LabelError> {
    let code = DataMatrixBuilder::new()
        .with_encodation_types(EncodationType::Base256)
        .with_symbol_list(SymbolList::with_whitelist([SymbolSize::Square44]))
        .encode(indicium)
        .map_err(|e| LabelError::Encode(format!("{e:?}")))?;
    let bitmap = code.bitmap();
    let side = bitmap.width();
    if side != SYMBOL_MODULES || bitmap.height() != SYMBOL_MODULES {
        return Err(LabelError::Encode(format!(
            "expected a {SYMBOL_MODULES}x{SYMBOL_MODULES} symbol, got {side}x{}",
            bitmap.height()
        )));
    }
    let mut dark = vec![false; side * side];
    for (x, y) in bitmap.pixels() {
        dark[y * side + x] = true;
    }
    Ok(Modules { side, dark })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_is_44_with_finder_pattern() {
        for fill in [0u8, 0x41, 0xff] {
            let m = encode(&[fill; INDICIUM_LEN]).unwrap();
            assert_eq!(m.side, SYMBOL_MODULES);
            // The solid "L": left column and bottom row are dark.
            assert!((0..m.side).all(|y| m.is_dark(0, y)));
            assert!((0..m.side).all(|x| m.is_dark(x, m.side - 1)));
            // The clock track: top row and right column alternate.
            assert!((0..m.side).all(|x| m.is_dark(x, 0) == (x % 2 == 0)));
            assert!((0..m.side).all(|y| m.is_dark(m.side - 1, y) == (y % 2 == 1)));
        }
    }

    #[test]
    fn runs_cover_the_dark_modules() {
        let m = encode(&[0x5a; INDICIUM_LEN]).unwrap();
        for y in 0..m.side {
            let covered: usize = m.runs(y).iter().map(|(_, n)| n).sum();
            let dark = (0..m.side).filter(|&x| m.is_dark(x, y)).count();
            assert_eq!(covered, dark);
        }
    }
}
