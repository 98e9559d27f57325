//! What people type, turned into what the API takes: ZIP codes, dollar
//! amounts (to mills), dates, mail classes and the bulk CSV. Every error
//! names the value and says what is expected.
use std::str::FromStr;

use postvault_indicium::{MailCategory, MailingDate, Zip4};

use crate::{ClientError, Result};

fn input(message: String) -> ClientError {
    ClientError::Input(message)
}

/// `10001-0001` -> 100010001, `10001` -> 100010000 (ZIP5 * 10000 + plus-4;
/// `100010001` is accepted too). ZIP 00000 is refused.
pub fn parse_zip(text: &str) -> Result<u32> {
    let t = text.trim();
    let zip = Zip4::from_str(t).map_err(|_| {
        input(format!(
            "{text:?} is not a ZIP code: give 5 digits or ZIP+4, e.g. 10001 or 10001-0001"
        ))
    })?;
    if zip.zip5() == 0 {
        return Err(input(format!(
            "{text:?} is not a ZIP code: 00000 does not exist"
        )));
    }
    Ok(zip.as_u32())
}

/// A ZIP as people write it: `10001-0001`, or `10001` when the plus-4 is 0.
pub fn format_zip(zip: u32) -> String {
    match Zip4::from_u32(zip) {
        Ok(z) => z.to_string(),
        Err(_) => zip.to_string(),
    }
}

/// Dollars to mills: `12.34` -> 12340, `0.685` -> 685, `$50` -> 50000. At
/// most 3 decimals; zero, negative and malformed amounts are refused.
pub fn parse_dollars(text: &str) -> Result<u64> {
    let t = text.trim();
    let bad = |why: &str| {
        input(format!(
            "{text:?} is not an amount: {why} (give dollars with up to 3 decimals, e.g. 0.68 or 50.00)"
        ))
    };
    if t.starts_with('-') {
        return Err(bad("it is negative"));
    }
    let t = t.strip_prefix('$').unwrap_or(t);
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) => (w, f),
        None => (t, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return Err(bad("there are no digits"));
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("only digits and one '.' may appear"));
    }
    if frac.len() > 3 {
        return Err(bad(
            "more than 3 decimals (a mill, $0.001, is the smallest unit)",
        ));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad("it is far too large"))?
    };
    let mut frac_mills: u64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        frac_mills += u64::from(b - b'0') * [100, 10, 1][i];
    }
    let mills = whole
        .checked_mul(1000)
        .and_then(|m| m.checked_add(frac_mills))
        .ok_or_else(|| bad("it is far too large"))?;
    if mills == 0 {
        return Err(bad("it is zero"));
    }
    Ok(mills)
}

/// Mills as dollars with 3 decimals: 680 -> `$0.680`.
pub fn format_mills(mills: u64) -> String {
    format!("${}.{:03}", mills / 1000, mills % 1000)
}

/// `YYYY-MM-DD` (a real calendar date) -> YYYYMMDD.
pub fn parse_date(text: &str) -> Result<u32> {
    let t = text.trim();
    let bad = || {
        input(format!(
            "{text:?} is not a date: give YYYY-MM-DD, e.g. 2026-11-23"
        ))
    };
    let parts: Vec<&str> = t.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let y: u16 = y.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    let d: u8 = d.parse().map_err(|_| bad())?;
    MailingDate::new(y, m, d)
        .map(MailingDate::as_u32)
        .map_err(|e| input(format!("{text:?} is not a date: {e}")))
}

/// The mail classes `--class` knows by name, and their category codes.
pub const CLASSES: &[(&str, &str)] = &[
    ("first", "FC"),
    ("priority", "PM"),
    ("express", "PE"),
    ("ground", "GA"),
    ("media", "MM"),
    ("library", "LM"),
];

/// A mail class name (`first`, `priority`, `express`, `ground`, `media`,
/// `library`) or a category code of 1 to 4 characters `A-Z0-9`, as the 4
/// space-padded bytes. `CORR` and `RFND` are reserved for corrections and
/// refunds and refused here.
pub fn parse_class(text: &str) -> Result<[u8; 4]> {
    let t = text.trim();
    let code = CLASSES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(t))
        .map(|(_, code)| (*code).to_string())
        .unwrap_or_else(|| t.to_ascii_uppercase());
    let names: Vec<&str> = CLASSES.iter().map(|(n, _)| *n).collect();
    let cat = category_bytes(&code).map_err(|_| {
        input(format!(
            "{text:?} is not a mail class: give one of {} or a category code of 1 to 4 letters and digits",
            names.join(", ")
        ))
    })?;
    if cat == MailCategory::CORRECTION.as_bytes() || cat == MailCategory::REFUND.as_bytes() {
        return Err(input(format!(
            "the category {code} is reserved: use `postvault client correct` for corrections and `postvault client refund` for refunds"
        )));
    }
    Ok(cat)
}

/// A category code (1 to 4 of `A-Z0-9`) as 4 space-padded bytes.
pub fn category_bytes(code: &str) -> Result<[u8; 4]> {
    let bad = || {
        input(format!(
            "{code:?} is not a category code (1 to 4 of A-Z, 0-9)"
        ))
    };
    if code.is_empty() || code.len() > 4 {
        return Err(bad());
    }
    let mut out = *b"    ";
    out[..code.len()].copy_from_slice(code.as_bytes());
    MailCategory::from_bytes(out).map_err(|_| bad())?;
    Ok(out)
}

/// The category as the API sends it: the code without padding.
pub fn category_text(category: &[u8; 4]) -> String {
    String::from_utf8_lossy(category).trim_end().to_string()
}

/// One row of a bulk CSV, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRow {
    /// The line of the file (1 is the header).
    pub line: usize,
    /// Postage, mills.
    pub postage_mills: u64,
    /// ZIP5 * 10000 + plus-4.
    pub origin_zip: u32,
    /// ZIP5 * 10000 + plus-4, 0 when empty.
    pub destination_zip: u32,
    /// 4 space-padded bytes (default first class).
    pub category: [u8; 4],
}

/// The header a bulk CSV must start with.
pub const BULK_HEADER: &str = "amount,from_zip,to_zip,class";

/// Parses and checks a whole bulk CSV (`amount,from_zip,to_zip,class`;
/// `to_zip` and `class` may be empty). Empty lines are skipped. The first
/// bad row fails the whole file with its line number, so nothing is printed
/// from a file that is partly wrong. Fields are plain (no quotes).
pub fn parse_bulk_csv(text: &str) -> Result<Vec<BulkRow>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate();
    let header = loop {
        match lines.next() {
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((i, l)) => break (i + 1, l),
            None => return Err(input("the CSV file is empty: its first line must be the header amount,from_zip,to_zip,class".into())),
        }
    };
    let cols: Vec<String> = header
        .1
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    if cols.join(",") != BULK_HEADER {
        return Err(input(format!(
            "line {}: the header is {:?}; it must be exactly {BULK_HEADER}",
            header.0,
            header.1.trim()
        )));
    }
    let mut rows = Vec::new();
    for (i, raw) in lines {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let at = |e: ClientError| input(format!("line {line}: {e}"));
        if raw.contains('"') {
            return Err(at(input(
                "quotes are not supported: write plain values separated by commas".into(),
            )));
        }
        let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
        if fields.len() != 4 {
            return Err(at(input(format!(
                "{} fields; every row needs 4 (amount,from_zip,to_zip,class; to_zip and class may be empty)",
                fields.len()
            ))));
        }
        if fields[0].is_empty() {
            return Err(at(input("the amount is empty".into())));
        }
        if fields[1].is_empty() {
            return Err(at(input("from_zip is empty".into())));
        }
        rows.push(BulkRow {
            line,
            postage_mills: parse_dollars(fields[0]).map_err(at)?,
            origin_zip: parse_zip(fields[1]).map_err(at)?,
            destination_zip: if fields[2].is_empty() {
                0
            } else {
                parse_zip(fields[2]).map_err(at)?
            },
            category: if fields[3].is_empty() {
                *b"FC  "
            } else {
                parse_class(fields[3]).map_err(at)?
            },
        });
    }
    if rows.is_empty() {
        return Err(input(
            "the CSV file has a header but no rows: add one row per label".into(),
        ));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn zips() {
        assert_eq!(parse_zip("10001-0001").unwrap(), 100_010_001);
        assert_eq!(parse_zip("10001").unwrap(), 100_010_000);
        assert_eq!(parse_zip(" 20500-0001 ").unwrap(), 205_000_001);
        assert_eq!(parse_zip("100010001").unwrap(), 100_010_001);
        for bad in [
            "",
            "1000",
            "10001-1",
            "1000a",
            "10001-00001",
            "ABCDE",
            "00000",
        ] {
            assert!(msg(parse_zip(bad)).contains("is not a ZIP code"), "{bad}");
        }
        assert_eq!(format_zip(100_010_001), "10001-0001");
        assert_eq!(format_zip(100_010_000), "10001");
    }

    #[test]
    fn dollars() {
        assert_eq!(parse_dollars("12.34").unwrap(), 12_340);
        assert_eq!(parse_dollars("0.68").unwrap(), 680);
        assert_eq!(parse_dollars("0.685").unwrap(), 685);
        assert_eq!(parse_dollars("50").unwrap(), 50_000);
        assert_eq!(parse_dollars("50.").unwrap(), 50_000);
        assert_eq!(parse_dollars(".5").unwrap(), 500);
        assert_eq!(parse_dollars("$1.5").unwrap(), 1_500);
        assert_eq!(parse_dollars("0.001").unwrap(), 1);
        assert!(msg(parse_dollars("-1")).contains("negative"));
        assert!(msg(parse_dollars("0")).contains("zero"));
        assert!(msg(parse_dollars("0.000")).contains("zero"));
        assert!(msg(parse_dollars("1.2345")).contains("3 decimals"));
        assert!(msg(parse_dollars("abc")).contains("only digits"));
        assert!(msg(parse_dollars("1,50")).contains("only digits"));
        assert!(msg(parse_dollars("1.2.3")).contains("only digits"));
        assert!(msg(parse_dollars("")).contains("no digits"));
        assert!(msg(parse_dollars(".")).contains("no digits"));
        assert!(msg(parse_dollars("99999999999999999999")).contains("too large"));
        assert!(msg(parse_dollars("18446744073709552")).contains("too large"));
        assert_eq!(format_mills(680), "$0.680");
        assert_eq!(format_mills(50_000), "$50.000");
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("2026-11-23").unwrap(), 20_261_123);
        assert_eq!(parse_date("2024-02-29").unwrap(), 20_240_229);
        for bad in [
            "2025-02-29",
            "2026-13-01",
            "20261123",
            "2026-1-1",
            "x",
            "2026-11-23-1",
        ] {
            assert!(msg(parse_date(bad)).contains("is not a date"), "{bad}");
        }
    }

    #[test]
    fn classes() {
        assert_eq!(parse_class("first").unwrap(), *b"FC  ");
        assert_eq!(parse_class("Priority").unwrap(), *b"PM  ");
        assert_eq!(parse_class("library").unwrap(), *b"LM  ");
        assert_eq!(parse_class("fc").unwrap(), *b"FC  ");
        assert_eq!(parse_class("ABCD").unwrap(), *b"ABCD");
        assert!(msg(parse_class("corr")).contains("reserved"));
        assert!(msg(parse_class("RFND")).contains("reserved"));
        assert!(msg(parse_class("toolong")).contains("is not a mail class"));
        assert!(msg(parse_class("a-b")).contains("is not a mail class"));
        assert!(msg(parse_class("")).contains("is not a mail class"));
        assert_eq!(category_text(b"FC  "), "FC");
        assert_eq!(category_bytes("CORR").unwrap(), *b"CORR");
    }

    #[test]
    fn bulk_csv() {
        let rows = parse_bulk_csv(
            "amount,from_zip,to_zip,class\n0.68,10001-0001,20500-0001,first\n\n1.00,10001,,\n",
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                BulkRow {
                    line: 2,
                    postage_mills: 680,
                    origin_zip: 100_010_001,
                    destination_zip: 205_000_001,
                    category: *b"FC  ",
                },
                BulkRow {
                    line: 4,
                    postage_mills: 1000,
                    origin_zip: 100_010_000,
                    destination_zip: 0,
                    category: *b"FC  ",
                },
            ]
        );
        // Header with different case and spaces, CRLF line ends.
        assert_eq!(
            parse_bulk_csv("Amount, from_zip, to_zip, class\r\n0.5,10001,,PM\r\n")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn bulk_csv_errors_name_the_line() {
        let h = "amount,from_zip,to_zip,class\n";
        let cases = [
            ("", "empty"),
            ("amount,zip\n1,10001\n", "line 1: the header"),
            (h, "no rows"),
            (
                &format!("{h}0.68,10001,,\n0.68,1000,,\n") as &str,
                "line 3:",
            ),
            (&format!("{h}0.68,10001,,\nabc,10001,,\n"), "line 3:"),
            (&format!("{h}0.68,10001\n"), "line 2: 2 fields"),
            (&format!("{h}0.68,10001,,,\n"), "line 2: 5 fields"),
            (&format!("{h},10001,,\n"), "line 2: the amount is empty"),
            (&format!("{h}1,,,\n"), "line 2: from_zip is empty"),
            (&format!("{h}1,10001,2050,\n"), "line 2:"),
            (
                &format!("{h}1,10001,,CORR\n"),
                "line 2: the category CORR is reserved",
            ),
            (&format!("{h}\"1\",10001,,\n"), "line 2: quotes"),
            (&format!("{h}-1,10001,,\n"), "line 2:"),
        ];
        for (text, want) in cases {
            let m = msg(parse_bulk_csv(text));
            assert!(m.contains(want), "{text:?}: {m}");
        }
    }
}
