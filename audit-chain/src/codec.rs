//! Serde helpers: fixed-size byte arrays as lowercase hex strings.

use serde::{Deserialize, Deserializer, Serializer, de::Error};

/// `[u8; N]` as hex.
pub mod hex_array {
    use super::*;

    /// Serialize as hex.
    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    /// Deserialize from hex of exactly N bytes.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        decode::<N>(&s).map_err(D::Error::custom)
    }
}

/// `Vec<[u8; 32]>` as a list of hex strings.
pub mod hex_hashes {
    use super::*;
    use serde::ser::SerializeSeq;

    /// Serialize as a list of hex strings.
    pub fn serialize<S: Serializer>(v: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for h in v {
            seq.serialize_element(&hex::encode(h))?;
        }
        seq.end()
    }

    /// Deserialize from a list of 32-byte hex strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| decode::<32>(s).map_err(D::Error::custom))
            .collect()
    }
}

/// Decode exactly N bytes of hex (either case).
pub fn decode<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let b = hex::decode(s).map_err(|e| e.to_string())?;
    b.try_into()
        .map_err(|b: Vec<u8>| format!("expected {N} bytes, got {}", b.len()))
}
