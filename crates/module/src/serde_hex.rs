//! Byte fields as lowercase hex in human-readable formats (the JSON files
//! operators carry between modules), as plain bytes on the wire.
use serde::{Deserializer, Serializer};

/// `Vec<u8>`.
pub mod vec {
    use super::*;

    /// Serializes bytes.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            // Into a buffer of the right size in one pass (sealed packages
            // are encoded for the database at every print).
            let mut text = vec![0u8; 2 * v.len()];
            const_hex::encode_to_slice(v, &mut text).map_err(serde::ser::Error::custom)?;
            let text = String::from_utf8(text).map_err(serde::ser::Error::custom)?;
            s.serialize_str(&text)
        } else {
            s.serialize_bytes(v)
        }
    }

    /// Deserializes bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(HexText)
        } else {
            serde_bytes_vec(d)
        }
    }

    /// Decodes hex text straight from the deserializer's string, borrowed
    /// or not (no copy of the text; sealed packages are read from the
    /// database for every batch of prints).
    struct HexText;

    impl serde::de::Visitor<'_> for HexText {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string of hex digits")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Vec<u8>, E> {
            if !s.len().is_multiple_of(2) {
                return Err(E::custom(hex::FromHexError::OddLength));
            }
            // const-hex would skip a "0x" prefix; these fields have none.
            if s.starts_with("0x") {
                return Err(E::custom("hex digits expected, without a 0x prefix"));
            }
            let mut out = vec![0u8; s.len() / 2];
            const_hex::decode_to_slice(s.as_bytes(), &mut out).map_err(E::custom)?;
            Ok(out)
        }
    }

    fn serde_bytes_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// `[u8; 16]`.
pub mod array16 {
    use super::*;

    /// Serializes the array.
    pub fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        vec::serialize(v, s)
    }

    /// Deserializes the array (exactly 16 bytes).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        super::array(d)
    }
}

/// `[u8; 64]`.
pub mod array64 {
    use super::*;

    /// Serializes the array.
    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        vec::serialize(v, s)
    }

    /// Deserializes the array (exactly 64 bytes).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        super::array(d)
    }
}

/// `[u8; 32]`.
pub mod array32 {
    use super::*;

    /// Serializes the array.
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        vec::serialize(v, s)
    }

    /// Deserializes the array (exactly 32 bytes).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        super::array(d)
    }
}

/// An array of exactly `N` bytes: hex in human-readable formats, bytes
/// otherwise (as [`vec`] writes them), read without a temporary `Vec` when
/// the format lends the bytes.
fn array<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    if d.is_human_readable() {
        return vec::deserialize(d)?
            .try_into()
            .map_err(|_| serde::de::Error::custom(format_args!("expected {N} bytes")));
    }
    struct V<const N: usize>;
    impl<'de, const N: usize> serde::de::Visitor<'de> for V<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{N} bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<[u8; N], E> {
            v.try_into()
                .map_err(|_| E::custom(format_args!("expected {N} bytes")))
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<[u8; N], E> {
            self.visit_bytes(&v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
            let mut out = Vec::with_capacity(N);
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            self.visit_byte_buf(out)
        }
    }
    d.deserialize_byte_buf(V::<N>)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Arrays {
        #[serde(with = "super::array16")]
        a: [u8; 16],
        #[serde(with = "super::array32")]
        b: [u8; 32],
        #[serde(with = "super::array64")]
        c: [u8; 64],
    }

    #[test]
    fn arrays_round_trip_as_bytes_and_as_hex() {
        let v = Arrays {
            a: [1; 16],
            b: [2; 32],
            c: [3; 64],
        };
        let wire = postcard::to_stdvec(&v).unwrap();
        // Length-prefixed bytes on the wire.
        assert_eq!(wire.len(), 1 + 16 + 1 + 32 + 1 + 64);
        assert_eq!(postcard::from_bytes::<Arrays>(&wire).unwrap(), v);
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.contains(&"01".repeat(16)));
        assert_eq!(serde_json::from_str::<Arrays>(&json).unwrap(), v);
    }

    #[test]
    fn arrays_of_the_wrong_length_are_refused() {
        #[derive(Serialize)]
        struct Short {
            #[serde(with = "super::vec")]
            a: Vec<u8>,
            #[serde(with = "super::array32")]
            b: [u8; 32],
            #[serde(with = "super::array64")]
            c: [u8; 64],
        }
        let short = Short {
            a: vec![1; 15],
            b: [2; 32],
            c: [3; 64],
        };
        let wire = postcard::to_stdvec(&short).unwrap();
        assert!(postcard::from_bytes::<Arrays>(&wire).is_err());
        let json = serde_json::to_string(&short).unwrap();
        assert!(serde_json::from_str::<Arrays>(&json).is_err());
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct T {
        #[serde(with = "super::vec")]
        v: Vec<u8>,
        #[serde(with = "super::array16")]
        a: [u8; 16],
    }

    #[test]
    fn hex_in_json_bytes_in_postcard() {
        let t = T {
            v: (0..=255).collect(),
            a: [0xab; 16],
        };
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains("\"000102"), "{json}");
        assert!(json.contains("fdfeff\""), "{json}");
        assert!(json.contains(&"ab".repeat(16)), "{json}");
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), t);
        // Upper case is read too; escapes in the string are resolved first.
        let upper = json.replace("fdfeff", "FDFEFF");
        assert_eq!(serde_json::from_str::<T>(&upper).unwrap(), t);
        let escaped = json.replace("\"000102", "\"\\u0030\\u00300102");
        assert_eq!(serde_json::from_str::<T>(&escaped).unwrap(), t);
        let bin = postcard::to_allocvec(&t).unwrap();
        assert_eq!(postcard::from_bytes::<T>(&bin).unwrap(), t);
        // Odd length, a non-hex digit and a wrong array length are refused.
        for bad in [
            r#"{"v":"abc","a":"abababababababababababababababab"}"#,
            r#"{"v":"zz","a":"abababababababababababababababab"}"#,
            r#"{"v":"","a":"abab"}"#,
            r#"{"v":12,"a":"abababababababababababababababab"}"#,
            r#"{"v":"0x00","a":"abababababababababababababababab"}"#,
            r#"{"v":"0x","a":"abababababababababababababababab"}"#,
            r#"{"v":"00","a":"0xabababababababababababababababab"}"#,
        ] {
            assert!(serde_json::from_str::<T>(bad).is_err(), "{bad}");
        }
        let ok = r#"{"v":"","a":"abababababababababababababababab"}"#;
        assert_eq!(serde_json::from_str::<T>(ok).unwrap().v, Vec::<u8>::new());
    }
}
