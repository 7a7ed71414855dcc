//! Standard base64 (RFC 4648, `+/`, `=` padding) decoding: WebDriver returns screenshots
//! in it. Whitespace is skipped, as MIME-style line breaks are harmless.

use anyhow::{Result, bail};

/// Decodes standard base64; padding is optional, anything else malformed is an error.
pub fn decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    let mut symbols = 0usize;
    let mut padding = 0usize;

    for (index, byte) in text.bytes().enumerate() {
        if byte.is_ascii_whitespace() {
            continue;
        }
        if byte == b'=' {
            padding += 1;
            continue;
        }
        if padding > 0 {
            bail!("base64 data continues after padding, at byte {index}");
        }
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("invalid base64 byte {:?} at byte {index}", char::from(byte)),
        };
        symbols += 1;
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }

    // One symbol alone in a final group carries 6 bits: not even one byte.
    if symbols % 4 == 1 {
        bail!("base64 data is truncated ({symbols} symbols)");
    }
    if padding > 0 && (symbols + padding) % 4 != 0 {
        bail!("base64 padding does not fill the last group ({symbols} symbols, {padding} `=`)");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<u8> {
        decode(text).expect("valid base64")
    }

    #[test]
    fn decodes_rfc_4648_vectors() {
        assert_eq!(ok(""), b"");
        assert_eq!(ok("Zg=="), b"f");
        assert_eq!(ok("Zm8="), b"fo");
        assert_eq!(ok("Zm9v"), b"foo");
        assert_eq!(ok("Zm9vYg=="), b"foob");
        assert_eq!(ok("Zm9vYmE="), b"fooba");
        assert_eq!(ok("Zm9vYmFy"), b"foobar");
    }

    #[test]
    fn decodes_without_padding_and_across_line_breaks() {
        assert_eq!(ok("Zm9vYg"), b"foob");
        assert_eq!(ok("Zm9v\r\nYmFy\n"), b"foobar");
    }

    #[test]
    fn decodes_a_png_signature_and_the_high_alphabet() {
        assert_eq!(ok("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
        assert_eq!(ok("+/+/"), [0xfb, 0xff, 0xbf]);
    }

    #[test]
    fn decodes_a_websocket_accept_to_a_sha1() {
        // RFC 6455's example Sec-WebSocket-Accept: base64 of a 20-byte SHA-1.
        assert_eq!(ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=").len(), 20);
    }

    #[test]
    fn rejects_malformed_input() {
        assert!(decode("Zm9v!").is_err());
        assert!(decode("Z").is_err());
        assert!(decode("Zg=x").is_err());
        assert!(decode("Zg=").is_err());
        assert!(
            decode("Zm9v-_").is_err(),
            "url-safe alphabet is not standard base64"
        );
    }
}
