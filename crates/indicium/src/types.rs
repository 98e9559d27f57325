//! The typed fields of an indicium: device ID, ZIP+4, mail category and date
//! of mailing.
//!
//! Each type can only hold a value that encodes into its indicium field, so
//! an [`crate::Indicium`] built from them needs range checks only for its
//! plain integer fields.

use std::fmt;
use std::str::FromStr;

use crate::IndiciumError;

/// A PSD's device ID: IBI vendor ID, PSD model number and PSD serial number
/// (indicium fields 4, 5 and 6).
///
/// Shown to people as `vendor-model-serial` in decimal, zero-padded to 4, 4
/// and 8 digits, e.g. `0042-0001-00000017`; that string is what the PSD
/// certificate's subject common name carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId {
    /// IBI vendor ID.
    pub vendor: u16,
    /// PSD model number.
    pub model: u16,
    /// PSD serial number.
    pub serial: u32,
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl DeviceId {
    /// The display form (`{:04}-{:04}-{:08}`, e.g. `0042-0001-00000017`)
    /// without a heap allocation: a module compares and formats device IDs
    /// several times per piece.
    pub fn text(&self) -> DeviceIdText {
        let mut t = DeviceIdText {
            buf: [0; DEVICE_ID_TEXT_MAX],
            len: 0,
        };
        t.push_decimal(u32::from(self.vendor), 4);
        t.buf[t.len] = b'-';
        t.len += 1;
        t.push_decimal(u32::from(self.model), 4);
        t.buf[t.len] = b'-';
        t.len += 1;
        t.push_decimal(self.serial, 8);
        t
    }
}

/// A [`DeviceId`]'s display form in a fixed buffer ([`DeviceId::text`]);
/// dereferences to `str`.
#[derive(Clone, Copy)]
pub struct DeviceIdText {
    buf: [u8; DEVICE_ID_TEXT_MAX],
    len: usize,
}

/// The longest display form of a device ID: 5 + 1 + 5 + 1 + 10 digits and dashes.
const DEVICE_ID_TEXT_MAX: usize = 22;

impl DeviceIdText {
    /// Appends `value` in decimal, zero-padded to at least `width` digits.
    fn push_decimal(&mut self, mut value: u32, width: usize) {
        let mut digits = [0u8; 10];
        let mut n = 0;
        while value > 0 || n < width {
            digits[n] = b'0' + (value % 10) as u8;
            value /= 10;
            n += 1;
        }
        for &d in digits[..n].iter().rev() {
            self.buf[self.len] = d;
            self.len += 1;
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("ASCII digits and dashes")
    }
}

impl std::ops::Deref for DeviceIdText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for DeviceIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for DeviceIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceId {
    type Err = IndiciumError;

    /// Parses `vendor-model-serial`: three groups of decimal digits separated
    /// by `-`, each fitting its field (leading zeros are optional, so the
    /// [`Display`](fmt::Display) form always parses back).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| IndiciumError::DeviceId {
            value: s.to_owned(),
            reason,
        };
        let parts: Vec<&str> = s.split('-').collect();
        let [vendor, model, serial] = parts.as_slice() else {
            return Err(err(format!(
                "expected 3 groups of digits separated by '-' (vendor-model-serial, e.g. 0042-0001-00000017), found {}",
                parts.len()
            )));
        };
        let group = |name: &str, text: &str, max: u32| -> Result<u32, IndiciumError> {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(format!(
                    "the {name} group {text:?} is not a non-empty string of decimal digits"
                )));
            }
            match text.parse::<u64>() {
                Ok(v) if v <= u64::from(max) => Ok(v as u32),
                _ => Err(err(format!(
                    "the {name} group {text} is above the maximum {max}"
                ))),
            }
        };
        Ok(Self {
            vendor: group("vendor", vendor, u32::from(u16::MAX))? as u16,
            model: group("model", model, u32::from(u16::MAX))? as u16,
            serial: group("serial", serial, u32::MAX)?,
        })
    }
}

/// A ZIP+4 code held as the integer ZIP5 * 10000 + plus-4 (indicium fields 10
/// and 12). The plus-4 is 0 when unknown; [`Zip4::NONE`] (0) marks a piece
/// that is not addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Zip4(u32);

impl Zip4 {
    /// No ZIP code (the destination of a piece that is not addressed).
    pub const NONE: Zip4 = Zip4(0);

    /// The largest valid value, `99999-9999`.
    const MAX: u32 = 99_999 * 10_000 + 9_999;

    /// Builds a ZIP+4 from its two parts; `zip5` must be at most 99999 and
    /// `plus4` at most 9999.
    pub fn new(zip5: u32, plus4: u16) -> Result<Self, IndiciumError> {
        if zip5 > 99_999 {
            return Err(IndiciumError::OutOfRange {
                field: "zip5",
                value: u64::from(zip5),
                max: 99_999,
            });
        }
        if plus4 > 9_999 {
            return Err(IndiciumError::OutOfRange {
                field: "plus4",
                value: u64::from(plus4),
                max: 9_999,
            });
        }
        Ok(Self(zip5 * 10_000 + u32::from(plus4)))
    }

    /// Checks an encoded value (ZIP5 * 10000 + plus-4): it must be at most
    /// 999999999, since the plus-4 (the value mod 10000) is at most 9999 by
    /// construction and only the ZIP5 can be too large.
    pub fn from_u32(value: u32) -> Result<Self, IndiciumError> {
        if value > Self::MAX {
            return Err(IndiciumError::Zip {
                field: "zip",
                value: value.to_string(),
                reason: format!(
                    "its ZIP5 part {} (value / 10000) is above 99999; the encoded value must be at most {}",
                    value / 10_000,
                    Self::MAX
                ),
            });
        }
        Ok(Self(value))
    }

    /// The 5-digit ZIP code.
    pub fn zip5(self) -> u32 {
        self.0 / 10_000
    }

    /// The plus-4 part (0 when unknown).
    pub fn plus4(self) -> u16 {
        // At most 9999.
        (self.0 % 10_000) as u16
    }

    /// The encoded value, ZIP5 * 10000 + plus-4.
    pub fn as_u32(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Zip4 {
    /// `12345-6789`, or `12345` when the plus-4 is 0.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.plus4() == 0 {
            write!(f, "{:05}", self.zip5())
        } else {
            write!(f, "{:05}-{:04}", self.zip5(), self.plus4())
        }
    }
}

impl FromStr for Zip4 {
    type Err = IndiciumError;

    /// Accepts `12345`, `12345-6789` or `123456789` (ASCII digits only).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let (zip5, plus4) = match (s.len(), s.split_once('-')) {
            (5, None) if digits(s) => (s, "0"),
            (9, None) if digits(s) => (&s[..5], &s[5..]),
            (10, Some((a, b))) if a.len() == 5 && digits(a) && b.len() == 4 && digits(b) => (a, b),
            _ => {
                return Err(IndiciumError::Zip {
                    field: "zip",
                    value: s.to_owned(),
                    reason: "expected 5 digits, 5 digits '-' 4 digits, or 9 digits (e.g. 12345, 12345-6789, 123456789)".into(),
                });
            }
        };
        // Both parts are at most 5 and 4 ASCII digits, so they parse and fit.
        let zip5: u32 = zip5.parse().unwrap_or(u32::MAX);
        let plus4: u16 = plus4.parse().unwrap_or(u16::MAX);
        Self::new(zip5, plus4)
    }
}

/// The mail (rate) category (indicium field 15): 1 to 4 characters of `A-Z`
/// and `0-9`, stored left-justified and space-padded to 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailCategory([u8; 4]);

impl MailCategory {
    /// First-Class Mail, `FC`.
    pub const FIRST_CLASS: MailCategory = MailCategory(*b"FC  ");
    /// Priority Mail, `PM`.
    pub const PRIORITY: MailCategory = MailCategory(*b"PM  ");
    /// A correction indicium, `CORR`.
    pub const CORRECTION: MailCategory = MailCategory(*b"CORR");
    /// A refund indicium, `RFND`.
    pub const REFUND: MailCategory = MailCategory(*b"RFND");

    /// Checks the 4 encoded bytes: 1 to 4 characters of `A-Z`, `0-9`, then
    /// only spaces.
    pub fn from_bytes(bytes: [u8; 4]) -> Result<Self, IndiciumError> {
        let err = |reason: String| IndiciumError::Category {
            field: "category",
            value: format!("b\"{}\"", bytes.escape_ascii()),
            reason,
        };
        let len = bytes.iter().take_while(|&&b| allowed(b)).count();
        if len == 0 {
            return Err(err(if bytes[0] == b' ' {
                "it is empty (starts with a space); it must start with one of A-Z, 0-9".into()
            } else {
                format!("byte 0 is 0x{:02x}, not one of A-Z, 0-9", bytes[0])
            }));
        }
        if let Some(i) = (len..4).find(|&i| bytes[i] != b' ') {
            return Err(err(format!(
                "byte {i} is 0x{:02x}; after 1 to 4 characters of A-Z, 0-9 only space padding (0x20) may follow",
                bytes[i]
            )));
        }
        Ok(Self(bytes))
    }

    /// The category without its padding, e.g. `FC`.
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().take_while(|&&b| b != b' ').count();
        // Only ASCII by construction.
        std::str::from_utf8(&self.0[..len]).unwrap_or_default()
    }

    /// The 4 encoded bytes, e.g. `b"FC  "`.
    pub fn as_bytes(&self) -> [u8; 4] {
        self.0
    }
}

/// `A-Z` or `0-9`.
fn allowed(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

impl fmt::Display for MailCategory {
    /// The category without padding, e.g. `FC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MailCategory {
    type Err = IndiciumError;

    /// Accepts 1 to 4 characters of `A-Z`, `0-9` (`"FC"` becomes `b"FC  "`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| IndiciumError::Category {
            field: "category",
            value: format!("{s:?}"),
            reason,
        };
        let n = s.chars().count();
        if n == 0 {
            return Err(err(
                "it is empty; expected 1 to 4 characters of A-Z, 0-9".into()
            ));
        }
        if n > 4 {
            return Err(err(format!(
                "it is {n} characters long; at most 4 characters of A-Z, 0-9"
            )));
        }
        if let Some((i, c)) = s
            .chars()
            .enumerate()
            .find(|&(_, c)| !c.is_ascii() || !allowed(c as u8))
        {
            return Err(err(format!(
                "character {c:?} at position {i} is not one of A-Z, 0-9"
            )));
        }
        let mut bytes = [b' '; 4];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Ok(Self(bytes))
    }
}

/// The date of mailing (indicium field 9), held as the integer YYYYMMDD.
/// Always a real Gregorian calendar date in years 0001 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailingDate(u32);

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl MailingDate {
    /// Builds a date from year (1 to 9999), month (1 to 12) and day (1 to
    /// the month's length, with Gregorian leap years).
    pub fn new(year: u16, month: u8, day: u8) -> Result<Self, IndiciumError> {
        let value = format!("year {year}, month {month}, day {day}");
        check_date(u32::from(year), u32::from(month), u32::from(day)).map_err(|reason| {
            IndiciumError::Date {
                field: "date",
                value,
                reason,
            }
        })?;
        Ok(Self(
            u32::from(year) * 10_000 + u32::from(month) * 100 + u32::from(day),
        ))
    }

    /// Checks an encoded YYYYMMDD value (e.g. 20261123).
    pub fn from_u32(value: u32) -> Result<Self, IndiciumError> {
        check_date(value / 10_000, value / 100 % 100, value % 100).map_err(|reason| {
            IndiciumError::Date {
                field: "date",
                value: format!("{value:08}"),
                reason,
            }
        })?;
        Ok(Self(value))
    }

    /// The UTC date of a Unix time (seconds); `None` outside years 1 to
    /// 9999.
    pub fn from_unix(secs: i64) -> Option<Self> {
        // Howard Hinnant's days-to-civil algorithm.
        let z = secs.div_euclid(86_400) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let value = u32::try_from(year * 10_000 + month * 100 + day).ok()?;
        Self::from_u32(value).ok()
    }

    /// The year (1 to 9999).
    pub fn year(self) -> u16 {
        (self.0 / 10_000) as u16
    }

    /// The month (1 to 12).
    pub fn month(self) -> u8 {
        (self.0 / 100 % 100) as u8
    }

    /// The day of the month (1 to 31).
    pub fn day(self) -> u8 {
        (self.0 % 100) as u8
    }

    /// The encoded value YYYYMMDD.
    pub fn as_u32(self) -> u32 {
        self.0
    }
}

/// Gregorian leap year.
fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// `Ok` for a real date; otherwise why not.
fn check_date(year: u32, month: u32, day: u32) -> Result<(), String> {
    if !(1..=9_999).contains(&year) {
        return Err(format!("year {year} is outside 1 to 9999"));
    }
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} is outside 1 to 12"));
    }
    let days = match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=days).contains(&day) {
        return Err(format!(
            "day {day} is outside 1 to {days} ({} {year} has {days} days)",
            MONTHS[month as usize - 1]
        ));
    }
    Ok(())
}

impl fmt::Display for MailingDate {
    /// ISO 8601, e.g. `2026-11-23`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.year(),
            self.month(),
            self.day()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_text_is_the_padded_decimal_form() {
        for (vendor, model, serial) in [
            (0, 0, 0),
            (42, 1, 17),
            (9999, 9999, 99_999_999),
            (10_000, 12_345, 100_000_000),
            (u16::MAX, u16::MAX, u32::MAX),
            (7, 65_535, 1),
        ] {
            let d = DeviceId {
                vendor,
                model,
                serial,
            };
            let expected = format!("{vendor:04}-{model:04}-{serial:08}");
            assert_eq!(d.text().as_str(), expected);
            assert_eq!(d.to_string(), expected);
            assert_eq!(expected.parse::<DeviceId>().unwrap(), d);
        }
    }

    #[test]
    fn device_id_display_and_parse() {
        let d = DeviceId {
            vendor: 42,
            model: 1,
            serial: 17,
        };
        assert_eq!(d.to_string(), "0042-0001-00000017");
        assert_eq!("0042-0001-00000017".parse::<DeviceId>().unwrap(), d);
        assert_eq!("42-1-17".parse::<DeviceId>().unwrap(), d);
        let max = DeviceId {
            vendor: u16::MAX,
            model: u16::MAX,
            serial: u32::MAX,
        };
        assert_eq!(max.to_string().parse::<DeviceId>().unwrap(), max);
        for bad in [
            "",
            "0042-0001",
            "0042-0001-00000017-1",
            "0042--00000017",
            "65536-0001-00000017",
            "0042-0001-4294967296",
            "+042-0001-00000017",
            "0042-0001-0000001a",
        ] {
            let e = bad.parse::<DeviceId>().unwrap_err();
            assert!(matches!(e, IndiciumError::DeviceId { .. }), "{bad}: {e}");
        }
        let e = "65536-1-1".parse::<DeviceId>().unwrap_err().to_string();
        assert!(e.contains("vendor") && e.contains("65535"), "{e}");
    }

    #[test]
    fn zip4_parts_display_and_parse() {
        let z = Zip4::new(12345, 6789).unwrap();
        assert_eq!(z.as_u32(), 123_456_789);
        assert_eq!((z.zip5(), z.plus4()), (12345, 6789));
        assert_eq!(z.to_string(), "12345-6789");
        assert_eq!(Zip4::new(501, 0).unwrap().to_string(), "00501");
        assert_eq!(Zip4::NONE.as_u32(), 0);
        for (text, value) in [
            ("12345", 123_450_000),
            ("12345-6789", 123_456_789),
            ("123456789", 123_456_789),
            ("00501", 5_010_000),
            ("99999-9999", 999_999_999),
        ] {
            let z: Zip4 = text.parse().unwrap();
            assert_eq!(z.as_u32(), value, "{text}");
            assert_eq!(z.to_string().parse::<Zip4>().unwrap(), z);
        }
        for bad in [
            "",
            "1234",
            "123456",
            "12345-",
            "12345-678",
            "1234-56789",
            "12345 6789",
            "1234a",
            "12345-678x",
            "+12345678",
            "１２３４５",
        ] {
            assert!(bad.parse::<Zip4>().is_err(), "{bad}");
        }
        assert_eq!(
            Zip4::new(100_000, 0).unwrap_err(),
            IndiciumError::OutOfRange {
                field: "zip5",
                value: 100_000,
                max: 99_999
            }
        );
        assert!(
            Zip4::new(1, 10_000)
                .unwrap_err()
                .to_string()
                .contains("plus4")
        );
        assert!(Zip4::from_u32(999_999_999).is_ok());
        let e = Zip4::from_u32(1_000_000_000).unwrap_err().to_string();
        assert!(e.contains("1000000000") && e.contains("99999"), "{e}");
    }

    #[test]
    fn category_parse_and_bytes() {
        assert_eq!(
            "FC".parse::<MailCategory>().unwrap(),
            MailCategory::FIRST_CLASS
        );
        assert_eq!(MailCategory::FIRST_CLASS.as_bytes(), *b"FC  ");
        assert_eq!(MailCategory::FIRST_CLASS.as_str(), "FC");
        assert_eq!(MailCategory::REFUND.as_str(), "RFND");
        assert_eq!(
            "CORR".parse::<MailCategory>().unwrap(),
            MailCategory::CORRECTION
        );
        assert_eq!(
            "PM".parse::<MailCategory>().unwrap(),
            MailCategory::PRIORITY
        );
        assert_eq!("A1".parse::<MailCategory>().unwrap().as_bytes(), *b"A1  ");
        for (bad, needle) in [
            ("fc", "'f'"),
            ("", "empty"),
            ("TOOLONG", "7 characters"),
            ("F C", "' '"),
            ("FC ", "' '"),
            ("ÉÉ", "'É'"),
            ("F-", "'-'"),
        ] {
            let e = bad.parse::<MailCategory>().unwrap_err();
            let msg = e.to_string();
            assert!(matches!(
                e,
                IndiciumError::Category {
                    field: "category",
                    ..
                }
            ));
            assert!(msg.contains(needle), "{bad}: {msg}");
        }
        assert!(MailCategory::from_bytes(*b"FC  ").is_ok());
        assert!(MailCategory::from_bytes(*b"X   ").is_ok());
        for bad in [
            *b"    ",
            *b" FC ",
            *b"F C ",
            *b"fc  ",
            *b"FC\0\0",
            [0xc3, 0x89, b' ', b' '],
        ] {
            assert!(MailCategory::from_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dates() {
        let d = MailingDate::new(2026, 11, 23).unwrap();
        assert_eq!(d.as_u32(), 20_261_123);
        assert_eq!(d.to_string(), "2026-11-23");
        assert_eq!((d.year(), d.month(), d.day()), (2026, 11, 23));
        assert_eq!(MailingDate::from_u32(20_261_123).unwrap(), d);
        assert!(MailingDate::new(2024, 2, 29).is_ok());
        assert!(MailingDate::new(2000, 2, 29).is_ok());
        assert!(MailingDate::new(1900, 2, 29).is_err());
        assert!(MailingDate::new(2026, 2, 29).is_err());
        assert!(MailingDate::new(2026, 4, 31).is_err());
        assert!(MailingDate::new(2026, 12, 31).is_ok());
        assert!(MailingDate::new(2026, 13, 1).is_err());
        assert!(MailingDate::new(2026, 0, 1).is_err());
        assert!(MailingDate::new(2026, 1, 0).is_err());
        assert!(MailingDate::new(0, 1, 1).is_err());
        assert!(MailingDate::new(10_000, 1, 1).is_err());
        assert_eq!(MailingDate::new(1, 1, 1).unwrap().to_string(), "0001-01-01");
        let e = MailingDate::from_u32(20_260_230).unwrap_err().to_string();
        assert!(
            e.contains("date 20260230") && e.contains("February 2026 has 28 days"),
            "{e}"
        );
        for bad in [
            0,
            1,
            99_999_999,
            100_000_101,
            u32::MAX,
            20_261_232,
            20_261_300,
        ] {
            assert!(MailingDate::from_u32(bad).is_err(), "{bad}");
        }
    }
}
