//! Integration tests of postage labels: PNG and PDF rendering, decoding back
//! with rxing after the distortions a scan or a phone photo brings (JPEG,
//! scaling, rotation, noise), decoding by an independent reader (libdmtx's
//! `dmtxread`, on the PNG and on the PDF rasterised by poppler's
//! `pdftoppm`), the PDF's page size and text (poppler's `pdfinfo` and
//! `pdftotext`), and errors for images that hold no indicium.
//!
//! The external programs come from the Debian packages `dmtx-utils` and
//! `poppler-utils`, which `scripts/test.sh` installs; a test that needs one
//! fails (never skips) when it is missing.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use image::{DynamicImage, GrayImage, ImageFormat, Luma, imageops};
use postvault_indicium::{DeviceId, INDICIUM_LEN, Indicium, MailCategory, MailingDate, Zip4};
use postvault_label::{LabelError, LabelText, decode_image, render_pdf, render_png};
use proptest::prelude::*;

/// A deterministic generator (SplitMix64), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self) -> [u8; INDICIUM_LEN] {
        let mut out = [0u8; INDICIUM_LEN];
        for b in &mut out {
            *b = self.next() as u8;
        }
        out
    }
}

/// A sample indicium (its signature is not valid; labels do not care).
fn sample() -> Indicium {
    Indicium {
        certificate_serial: 0x89AB_CDEF,
        device: DeviceId {
            vendor: 42,
            model: 1,
            serial: 17,
        },
        ascending_register: 1_234_567,
        postage: 730,
        date: MailingDate::new(2026, 11, 23).unwrap(),
        origin: Zip4::new(12345, 6789).unwrap(),
        software_id: 7,
        destination: Zip4::new(98765, 0).unwrap(),
        piece_counter: 17,
        descending_register: 98_765,
        category: MailCategory::FIRST_CLASS,
        signature: [0xa5; 64],
    }
}

/// Byte strings to put in symbols: the sample indicium, the edge values, and
/// random ones.
fn payloads() -> Vec<[u8; INDICIUM_LEN]> {
    let mut rng = Rng(0x5eed);
    let mut v = vec![
        sample().to_bytes().unwrap(),
        [0u8; INDICIUM_LEN],
        [0xff; INDICIUM_LEN],
    ];
    v.extend((0..4).map(|_| rng.bytes()));
    v
}

fn text() -> LabelText {
    LabelText::from_indicium(&sample())
}

fn png(bytes: &[u8; INDICIUM_LEN], dpi: u32) -> Vec<u8> {
    render_png(bytes, &text(), dpi).unwrap()
}

fn load(png: &[u8]) -> DynamicImage {
    image::load_from_memory(png).unwrap()
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn jpeg(img: &DynamicImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .unwrap();
    out
}

/// Adds deterministic noise of up to +-`amplitude` to every pixel.
fn noisy(img: &GrayImage, amplitude: i32, seed: u64) -> GrayImage {
    let mut rng = Rng(seed);
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let delta = (rng.next() % (2 * amplitude as u64 + 1)) as i32 - amplitude;
        p.0[0] = (i32::from(p.0[0]) + delta).clamp(0, 255) as u8;
    }
    out
}

fn scaled(img: &GrayImage, factor: f32) -> GrayImage {
    let w = (img.width() as f32 * factor).round() as u32;
    let h = (img.height() as f32 * factor).round() as u32;
    imageops::resize(img, w, h, imageops::FilterType::Triangle)
}

#[test]
fn png_round_trip_is_exact() {
    for (i, bytes) in payloads().iter().enumerate() {
        for dpi in [203, 300] {
            let png = png(bytes, dpi);
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            let img = load(&png);
            assert_eq!(
                (img.width(), img.height()),
                (4 * dpi, 6 * dpi),
                "a 4x6 inch image at {dpi} dpi"
            );
            assert_eq!(
                decode_image(&png).as_ref(),
                Ok(bytes),
                "payload {i} at {dpi} dpi"
            );
        }
    }
}

#[test]
fn png_decodes_after_scan_and_photo_distortions() {
    for (i, bytes) in payloads().iter().enumerate() {
        let gray = load(&png(bytes, 203)).into_luma8();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "jpeg quality 70",
                jpeg(&DynamicImage::ImageLuma8(gray.clone()), 70),
            ),
            (
                "scaled to 60%",
                encode(
                    &DynamicImage::ImageLuma8(scaled(&gray, 0.6)),
                    ImageFormat::Png,
                ),
            ),
            (
                "scaled to 170%",
                encode(
                    &DynamicImage::ImageLuma8(scaled(&gray, 1.7)),
                    ImageFormat::Png,
                ),
            ),
            (
                "rotated 90 degrees",
                encode(
                    &DynamicImage::ImageLuma8(imageops::rotate90(&gray)),
                    ImageFormat::Png,
                ),
            ),
            (
                "rotated 270 degrees",
                encode(
                    &DynamicImage::ImageLuma8(imageops::rotate270(&gray)),
                    ImageFormat::Png,
                ),
            ),
            (
                "noise +-60",
                encode(
                    &DynamicImage::ImageLuma8(noisy(&gray, 60, i as u64)),
                    ImageFormat::Png,
                ),
            ),
            (
                "photo: rotated, scaled to 75%, noise +-40, JPEG quality 70",
                jpeg(
                    &DynamicImage::ImageLuma8(noisy(
                        &scaled(&imageops::rotate90(&gray), 0.75),
                        40,
                        100 + i as u64,
                    )),
                    70,
                ),
            ),
        ];
        for (what, image) in cases {
            assert_eq!(
                decode_image(&image).as_ref(),
                Ok(bytes),
                "payload {i}, {what}"
            );
        }
    }
}

/// `img` rotated by `degrees` about its centre onto a white canvas large
/// enough to hold it (bilinear sampling), like a label photographed askew.
fn rotated(img: &GrayImage, degrees: f32) -> GrayImage {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let (sin, cos) = degrees.to_radians().sin_cos();
    let out_w = (w * cos.abs() + h * sin.abs()).ceil() as u32;
    let out_h = (w * sin.abs() + h * cos.abs()).ceil() as u32;
    let sample = |x: f32, y: f32| -> f32 {
        if x < 0.0 || y < 0.0 || x > w - 1.0 || y > h - 1.0 {
            return 255.0;
        }
        let (x0, y0) = (x.floor() as u32, y.floor() as u32);
        let (x1, y1) = (
            (x0 + 1).min(img.width() - 1),
            (y0 + 1).min(img.height() - 1),
        );
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let p = |x, y| f32::from(img.get_pixel(x, y).0[0]);
        let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
        let bottom = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    };
    GrayImage::from_fn(out_w, out_h, |x, y| {
        // Map each output pixel back into the source.
        let (dx, dy) = (x as f32 - out_w as f32 / 2.0, y as f32 - out_h as f32 / 2.0);
        let sx = dx * cos + dy * sin + w / 2.0;
        let sy = -dx * sin + dy * cos + h / 2.0;
        Luma([sample(sx, sy).round() as u8])
    })
}

#[test]
fn a_skewed_blurred_photo_decodes_with_rxing_and_dmtxread() {
    let dir = tempfile::tempdir().unwrap();
    for (i, bytes) in payloads().iter().enumerate().take(4) {
        let gray = load(&png(bytes, 203)).into_luma8();
        for degrees in [-11.0f32, 7.0, 27.0, 33.0] {
            let photo = noisy(
                &imageops::blur(&scaled(&rotated(&gray, degrees), 0.8), 1.0),
                30,
                i as u64,
            );
            let image = jpeg(&DynamicImage::ImageLuma8(photo), 70);
            assert_eq!(
                decode_image(&image).as_ref(),
                Ok(bytes),
                "payload {i}, rotated {degrees} degrees, blurred, noisy, JPEG"
            );
            let path = dir.path().join(format!("photo{i}.jpg"));
            std::fs::write(&path, &image).unwrap();
            assert_eq!(
                dmtxread(&path),
                bytes.to_vec(),
                "dmtxread: payload {i}, rotated {degrees} degrees"
            );
        }
    }
}

#[test]
fn every_rotation_decodes() {
    // One quadrant in 4-degree steps (rotations by 90 degrees are tested above).
    let bytes = &payloads()[5];
    let gray = load(&png(bytes, 203)).into_luma8();
    let failed: Vec<u32> = (0..90)
        .step_by(4)
        .filter(|&d| {
            let image = encode(
                &DynamicImage::ImageLuma8(rotated(&gray, d as f32)),
                ImageFormat::Png,
            );
            decode_image(&image).as_ref() != Ok(bytes)
        })
        .collect();
    assert!(failed.is_empty(), "not decoded at {failed:?} degrees");
}

#[test]
fn the_png_records_its_resolution() {
    for dpi in [203u32, 300] {
        let png = png(&payloads()[0], dpi);
        let decoder = ::png::Decoder::new(Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        let dims = reader.info().pixel_dims.expect("a pHYs chunk");
        assert_eq!(dims.unit, ::png::Unit::Meter);
        let back = f64::from(dims.xppu) * 0.0254;
        assert!((back - f64::from(dpi)).abs() < 0.01, "{back} dpi");
        assert_eq!(dims.xppu, dims.yppu);
    }
}

#[test]
fn a_colour_photo_with_a_grey_background_decodes() {
    // The label occupies the middle of a larger, darker, coloured frame.
    let bytes = &payloads()[3];
    let label = load(&png(bytes, 203)).into_rgb8();
    let mut frame = image::RgbImage::from_pixel(1400, 1700, image::Rgb([90, 100, 80]));
    imageops::overlay(&mut frame, &label, 250, 200);
    let photo = jpeg(&DynamicImage::ImageRgb8(frame), 70);
    assert_eq!(decode_image(&photo).as_ref(), Ok(bytes));
}

/// An image (PNG) of a Data Matrix symbol holding `data`, drawn here from the
/// encoder's module grid, 8 pixels a module with a 4-module margin.
fn symbol_png(data: &[u8]) -> Vec<u8> {
    let code = datamatrix::DataMatrix::encode(data, datamatrix::SymbolList::default()).unwrap();
    let bitmap = code.bitmap();
    let side = (bitmap.width() as u32 + 8) * 8;
    let mut img = GrayImage::from_pixel(side, (bitmap.height() as u32 + 8) * 8, Luma([255]));
    for (x, y) in bitmap.pixels() {
        for dy in 0..8 {
            for dx in 0..8 {
                img.put_pixel((x as u32 + 4) * 8 + dx, (y as u32 + 4) * 8 + dy, Luma([0]));
            }
        }
    }
    encode(&DynamicImage::ImageLuma8(img), ImageFormat::Png)
}

#[test]
fn images_without_an_indicium_are_errors() {
    // Not an image at all.
    for garbage in [
        &b""[..],
        b"hello",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xe0garbage",
    ] {
        let e = decode_image(garbage).unwrap_err();
        assert!(matches!(e, LabelError::NotAnImage(_)), "{e}");
        assert!(e.to_string().contains("PNG or JPEG"), "{e}");
    }
    // Another image format (a GIF signature and header).
    let e = decode_image(b"GIF89a\x04\x00\x04\x00\x80\x00\x00").unwrap_err();
    assert!(matches!(e, LabelError::NotAnImage(_)), "{e}");
    assert!(e.to_string().contains("Gif"), "{e}");
    // Too large: refused from the header, before decoding.
    let mut wide = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut wide, 20_000, 1);
    encoder.set_color(::png::ColorType::Grayscale);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&[255u8; 20_000]).unwrap();
    writer.finish().unwrap();
    let e = decode_image(&wide).unwrap_err();
    assert_eq!(
        e,
        LabelError::TooLarge {
            width: 20_000,
            height: 1,
            max: 12_000
        }
    );
    assert!(e.to_string().contains("scale it down"), "{e}");
    // A truncated label.
    let good = png(&payloads()[0], 203);
    assert!(matches!(
        decode_image(&good[..good.len() / 2]),
        Err(LabelError::NotAnImage(_))
    ));
    // Blank, noise, and a label whose symbol was cut out.
    let white = GrayImage::from_pixel(600, 400, Luma([255]));
    let e = decode_image(&encode(
        &DynamicImage::ImageLuma8(white.clone()),
        ImageFormat::Png,
    ))
    .unwrap_err();
    assert_eq!(e, LabelError::NoSymbol);
    assert!(e.to_string().contains("no Data Matrix symbol"), "{e}");
    let noise = noisy(&GrayImage::from_pixel(300, 300, Luma([128])), 127, 7);
    assert_eq!(
        decode_image(&encode(&DynamicImage::ImageLuma8(noise), ImageFormat::Png)),
        Err(LabelError::NoSymbol)
    );
    let mut cut = load(&good).into_luma8();
    for y in 0..250 {
        for x in 0..250 {
            cut.put_pixel(x, y, Luma([255]));
        }
    }
    assert_eq!(
        decode_image(&encode(&DynamicImage::ImageLuma8(cut), ImageFormat::Png)),
        Err(LabelError::NoSymbol)
    );
    // A symbol that holds something else.
    let e = decode_image(&symbol_png(b"HELLO WORLD")).unwrap_err();
    assert_eq!(
        e,
        LabelError::Length {
            expected: 113,
            actual: 11
        }
    );
    assert!(e.to_string().contains("11 bytes"), "{e}");
    assert!(matches!(
        decode_image(&symbol_png(&[7u8; 114])),
        Err(LabelError::Length { actual: 114, .. })
    ));
    // ...and a symbol drawn by the test with the right length decodes.
    let bytes = payloads()[4];
    assert_eq!(decode_image(&symbol_png(&bytes)), Ok(bytes));
}

#[test]
fn unsupported_resolutions_are_refused() {
    let bytes = payloads()[0];
    for dpi in [0, 72, 149, 601, u32::MAX] {
        assert!(
            matches!(
                render_png(&bytes, &text(), dpi),
                Err(LabelError::Dpi { .. })
            ),
            "{dpi}"
        );
    }
    for dpi in [150, 600] {
        assert_eq!(
            decode_image(&render_png(&bytes, &text(), dpi).unwrap()),
            Ok(bytes)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn decoding_garbage_is_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(decode_image(&bytes).is_err());
    }

    #[test]
    fn decoding_random_module_grids_is_an_error(
        side in 8u32..48,
        cells in proptest::collection::vec(any::<bool>(), 48 * 48),
        finder in any::<bool>(),
    ) {
        // Random modules, optionally with a Data Matrix finder pattern (solid
        // left and bottom edges, dotted top and right), to reach the
        // detector's and decoder's deeper paths.
        let scale = 5;
        let size = (side + 4) * scale;
        let img = GrayImage::from_fn(size, size, |x, y| {
            let (mx, my) = (x / scale, y / scale);
            if mx < 2 || my < 2 || mx >= side + 2 || my >= side + 2 {
                return Luma([255]);
            }
            let (cx, cy) = (mx - 2, my - 2);
            let dark = if finder && (cx == 0 || cy == side - 1) {
                true
            } else if finder && cy == 0 {
                cx % 2 == 0
            } else if finder && cx == side - 1 {
                cy % 2 == 1
            } else {
                cells[(cy * 48 + cx) as usize]
            };
            Luma([if dark { 0 } else { 255 }])
        });
        let png = encode(&DynamicImage::ImageLuma8(img), ImageFormat::Png);
        prop_assert!(decode_image(&png).is_err());
    }

    #[test]
    fn decoding_a_corrupted_png_never_panics(at in 0usize..4096, value in any::<u8>()) {
        // Flip one byte of a small label-like PNG: any result but a panic.
        let png = symbol_png(b"abc");
        let mut bad = png.clone();
        let at = at % bad.len();
        bad[at] = value;
        let _ = decode_image(&bad);
    }
}

#[test]
fn label_text_fields() {
    let t = text();
    assert_eq!(t.amount, "$0.73");
    assert_eq!(t.date, "2026-11-23");
    assert_eq!(t.origin, "12345-6789");
    assert_eq!(t.device, "0042-0001-00000017");
    assert_eq!(t.category, "FC");
    assert_eq!(
        t.lines(),
        [
            "$0.73",
            "MAILED 2026-11-23",
            "FROM ZIP 12345-6789",
            "DEVICE 0042-0001-00000017",
            "CATEGORY FC"
        ]
    );
    let mut i = sample();
    i.postage = 12_345;
    i.origin = Zip4::new(501, 0).unwrap();
    let t = LabelText::from_indicium(&i);
    assert_eq!((t.amount.as_str(), t.origin.as_str()), ("$12.345", "00501"));
}

// ---- independent readers and PDF tools (Debian dmtx-utils, poppler-utils) ----

/// Runs an external program; fails the test, saying how to install it, when
/// it is missing, and with its stderr when it fails.
fn tool(program: &str, package: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{program}` ({e}): it comes from the Debian package {package}; \
             run scripts/test.sh, which installs it (or: apt-get install {package})"
            )
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// What libdmtx's `dmtxread` reads from the image file: the first symbol's
/// bytes, unchanged (no trailing newline without -n).
fn dmtxread(path: &Path) -> Vec<u8> {
    tool(
        "dmtxread",
        "dmtx-utils",
        &["-N1", "-m", "60000", path.to_str().unwrap()],
    )
}

#[test]
fn dmtxread_decodes_the_png() {
    let dir = tempfile::tempdir().unwrap();
    for (i, bytes) in payloads().iter().enumerate().take(4) {
        let path = dir.path().join(format!("label{i}.png"));
        std::fs::write(&path, png(bytes, 203)).unwrap();
        assert_eq!(dmtxread(&path), bytes.to_vec(), "payload {i}");
    }
}

fn pdf_of(bytes: &[u8; INDICIUM_LEN]) -> Vec<u8> {
    render_pdf(bytes, &text()).unwrap()
}

#[test]
fn pdf_is_one_4x6_inch_page() {
    let pdf = pdf_of(&payloads()[0]);
    assert!(pdf.starts_with(b"%PDF-"));
    let s = String::from_utf8_lossy(&pdf);
    assert_eq!(s.matches("/MediaBox [0 0 288 432]").count(), 1, "{s}");
    assert_eq!(
        s.matches("/Type /Page").count() - s.matches("/Type /Pages").count(),
        1,
        "one page object"
    );
    assert!(s.contains("/BaseFont /Helvetica"), "standard font");
    assert!(!s.contains("/FontFile"), "no embedded font");
    assert!(
        !s.contains("/Subtype /Image"),
        "the symbol is vector, not an image"
    );

    // poppler agrees: one page, 288x432 pt.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("label.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let info =
        String::from_utf8(tool("pdfinfo", "poppler-utils", &[path.to_str().unwrap()])).unwrap();
    assert!(
        info.lines()
            .any(|l| l.split_whitespace().eq(["Pages:", "1"])),
        "{info}"
    );
    assert!(
        info.contains("Page size:") && info.contains("288 x 432 pts"),
        "{info}"
    );
}

#[test]
fn pdf_holds_the_plain_text_fields() {
    let pdf = pdf_of(&payloads()[0]);
    let s = String::from_utf8_lossy(&pdf);
    for line in text().lines() {
        assert!(
            s.contains(&format!("({line})")),
            "{line:?} in the content stream"
        );
    }
    // As extracted by poppler.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("label.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let extracted = String::from_utf8(tool(
        "pdftotext",
        "poppler-utils",
        &[path.to_str().unwrap(), "-"],
    ))
    .unwrap();
    for field in [
        "$0.73",
        "2026-11-23",
        "12345-6789",
        "0042-0001-00000017",
        "FC",
    ] {
        assert!(extracted.contains(field), "{field:?} in {extracted:?}");
    }
}

#[test]
fn pdf_rasterised_by_poppler_decodes_with_dmtxread_and_rxing() {
    let dir = tempfile::tempdir().unwrap();
    for (i, bytes) in payloads().iter().enumerate().take(3) {
        let pdf = dir.path().join(format!("label{i}.pdf"));
        std::fs::write(&pdf, pdf_of(bytes)).unwrap();
        for dpi in ["150", "300"] {
            let prefix = dir.path().join(format!("page{i}-{dpi}"));
            tool(
                "pdftoppm",
                "poppler-utils",
                &[
                    "-r",
                    dpi,
                    "-gray",
                    "-png",
                    "-singlefile",
                    pdf.to_str().unwrap(),
                    prefix.to_str().unwrap(),
                ],
            );
            let page = prefix.with_extension("png");
            let raster = std::fs::read(&page).unwrap();
            let img = load(&raster);
            let expected = if dpi == "150" {
                (600, 900)
            } else {
                (1200, 1800)
            };
            assert_eq!(
                (img.width(), img.height()),
                expected,
                "4x6 inch at {dpi} dpi"
            );
            assert_eq!(
                dmtxread(&page),
                bytes.to_vec(),
                "dmtxread, payload {i} at {dpi} dpi"
            );
            assert_eq!(
                decode_image(&raster).as_ref(),
                Ok(bytes),
                "rxing, payload {i} at {dpi} dpi"
            );
        }
    }
}
