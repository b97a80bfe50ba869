//! The encoding of actor arguments, messages and replies (public so that
//! layers above, like serve, encode their own arguments the same way): bincode 1 with
//! fixed-width integers (as `bincode::serialize`), a size limit, and no
//! trailing bytes.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The largest value [`decode`] accepts.
const MAX_BYTES: u64 = 256 * 1024 * 1024;

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(MAX_BYTES)
        .reject_trailing_bytes()
}

/// `value` encoded. Serde types that cannot be encoded (a map with
/// non-string keys is fine; a custom `Serialize` that errors is not) are a
/// programming error.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // One pass: bincode walks the value twice (size, then bytes) for
    // `serialize` or when a size limit is set; the limit guards decoding.
    let mut bytes = Vec::with_capacity(64);
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .serialize_into(&mut bytes, value)
        .unwrap_or_else(|e| panic!("a message, reply or argument failed to encode: {e}"));
    bytes
}

/// Decodes `bytes`, the error as text.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    options().deserialize(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_trailing_bytes() {
        let bytes = encode(&(7u64, "seven".to_string()));
        assert_eq!(decode::<(u64, String)>(&bytes), Ok((7, "seven".into())));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<(u64, String)>(&longer).is_err());
        assert!(decode::<(u64, String)>(&bytes[..4]).is_err());
    }
}
