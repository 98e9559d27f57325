//! The label as a one-page PDF, 4x6 inch (288x432 pt): the symbol drawn as
//! filled vector rectangles (one per horizontal run of dark modules, so no
//! hairline seams appear between modules) and the text in Helvetica, one of
//! the standard PDF fonts, so nothing is embedded.

use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};
use postvault_indicium::INDICIUM_LEN;

use crate::layout::*;
use crate::{LabelError, LabelText, symbol};

/// Renders the label as PDF: one 4x6 inch page holding the Data Matrix
/// symbol of `indicium` (exactly these 113 bytes) and `text` beside it.
///
/// `text` should be [`LabelText::from_indicium`] of the same indicium; it is
/// printed as given. Text outside printable ASCII is replaced by `?`.
pub fn render_pdf(indicium: &[u8; INDICIUM_LEN], text: &LabelText) -> Result<Vec<u8>, LabelError> {
    let modules = symbol::encode(indicium)?;

    let catalog_id = Ref::new(1);
    let page_tree_id = Ref::new(2);
    let page_id = Ref::new(3);
    let font_id = Ref::new(4);
    let content_id = Ref::new(5);
    let info_id = Ref::new(6);
    let font_name = Name(b"F1");

    let mut content = Content::new();
    // The symbol, black on the white page; PDF's y axis points up.
    content.set_fill_gray(0.0);
    let left = MARGIN + QUIET_MODULES as f32 * MODULE;
    let top = PAGE_HEIGHT - (MARGIN + QUIET_MODULES as f32 * MODULE);
    for y in 0..modules.side {
        for (x, len) in modules.runs(y) {
            content.rect(
                left + x as f32 * MODULE,
                top - (y + 1) as f32 * MODULE,
                len as f32 * MODULE,
                MODULE,
            );
        }
    }
    content.fill_nonzero();

    let lines = text.lines();
    for (i, (line, baseline)) in lines.iter().zip(baselines()).enumerate() {
        let size = if i == 0 { AMOUNT_SIZE } else { LINE_SIZE };
        let bytes = printable(line);
        content.begin_text();
        content.set_font(font_name, size);
        content.set_text_matrix([1.0, 0.0, 0.0, 1.0, TEXT_LEFT, PAGE_HEIGHT - baseline]);
        content.show(Str(&bytes));
        content.end_text();
    }

    let mut pdf = Pdf::new();
    pdf.catalog(catalog_id).pages(page_tree_id);
    pdf.pages(page_tree_id).kids([page_id]).count(1);
    let mut page = pdf.page(page_id);
    page.parent(page_tree_id)
        .media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT))
        .contents(content_id);
    page.resources().fonts().pair(font_name, font_id);
    drop(page);
    pdf.type1_font(font_id)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.stream(content_id, &content.finish());
    pdf.document_info(info_id)
        .title(pdf_writer::TextStr("postvault postage label"))
        .producer(pdf_writer::TextStr("postvault"));
    Ok(pdf.finish())
}

/// `line` as single-byte text: printable ASCII kept, anything else `?`.
fn printable(line: &str) -> Vec<u8> {
    line.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c as u8
            } else {
                b'?'
            }
        })
        .collect()
}
