//! The OpenPGP cleartext signature framework (RFC 4880 section 7), written byte for byte the way gpg
//! writes it, so a CHECKSUM signed in process reads exactly like one signed by gpg.
//!
//! The framework has two views of a text: what is shown (dash-escaped, trailing whitespace kept) and what
//! is signed (lines joined by CR LF, trailing whitespace dropped, no final line ending). A verifier rebuilds
//! the second from the first, so both must follow the same rules as gpgv's reading of them.

/// The first line of a cleartext-signed message.
pub(crate) const BEGIN: &[u8] = b"-----BEGIN PGP SIGNED MESSAGE-----\n";

/// The text as it is shown between the armor headers and the signature.
///
/// Lines that start with `-` must be dash-escaped (`- `) so none can pass for an armor line. Lines that
/// start with `From ` are escaped too, as gpg does by default: some mailers turn them into `>From `, which
/// would break the signature, while an escaped line survives. The line ending before the signature's armor
/// belongs to the framework, not to the text, so a text without a final line ending gets one; a text that
/// has one reads the same.
pub(crate) fn shown_text(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    for line in text.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"-") || line.starts_with(b"From ") {
            out.extend_from_slice(b"- ");
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// The bytes the signature covers: each line without its line ending and without trailing spaces, tabs
/// and carriage returns, the lines joined by CR LF, and no line ending after the last line (the one before
/// the signature's armor is not part of the text).
pub(crate) fn signed_text(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32 + 2);
    for (i, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let kept = line
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .map_or(0, |last| last + 1);
        out.extend_from_slice(&line[..kept]);
    }
    out
}

/// The complete message: the header naming the hash, the shown text and the armored signature (which
/// starts with `-----BEGIN PGP SIGNATURE-----`).
pub(crate) fn message(hash_name: &str, text: &[u8], armored_signature: &[u8]) -> Vec<u8> {
    let shown = shown_text(text);
    let mut out = Vec::with_capacity(
        BEGIN.len() + hash_name.len() + shown.len() + armored_signature.len() + 8,
    );
    out.extend_from_slice(BEGIN);
    out.extend_from_slice(b"Hash: ");
    out.extend_from_slice(hash_name.as_bytes());
    out.extend_from_slice(b"\n\n");
    out.extend_from_slice(&shown);
    out.extend_from_slice(armored_signature);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashes_and_from_lines_are_escaped_and_the_rest_is_shown_as_is() {
        let text = b"-dash\n--\nFrom me\nFrom\nfrom x\nFromage\n a  \t\n\nend  ";
        assert_eq!(
            shown_text(text),
            b"- -dash\n- --\n- From me\nFrom\nfrom x\nFromage\n a  \t\n\nend  \n".to_vec()
        );
    }

    #[test]
    fn the_final_line_ending_belongs_to_the_framework() {
        assert_eq!(shown_text(b"abc"), b"abc\n".to_vec());
        assert_eq!(shown_text(b"abc\n"), b"abc\n".to_vec());
        assert_eq!(shown_text(b"abc\n\n"), b"abc\n\n".to_vec());
        assert_eq!(shown_text(b""), b"\n".to_vec());
        assert_eq!(signed_text(b"abc"), b"abc".to_vec());
        assert_eq!(signed_text(b"abc\n"), b"abc".to_vec());
        assert_eq!(signed_text(b"abc\n\n"), b"abc\r\n".to_vec());
        assert_eq!(signed_text(b""), b"".to_vec());
        assert_eq!(signed_text(b"\n"), b"".to_vec());
    }

    #[test]
    fn signed_text_drops_trailing_whitespace_and_escapes_and_uses_crlf() {
        assert_eq!(
            signed_text(b"a  \t\n- not escaped in the input\nFrom me\nx \r\n  \nend  "),
            b"a\r\n- not escaped in the input\r\nFrom me\r\nx\r\n\r\nend".to_vec()
        );
        // A carriage return inside a line is text, not a line ending.
        assert_eq!(signed_text(b"a\rb\r\nc\n"), b"a\rb\r\nc".to_vec());
    }

    #[test]
    fn message_has_the_header_the_text_and_the_signature() {
        let signed = message(
            "SHA256",
            b"-x\n",
            b"-----BEGIN PGP SIGNATURE-----\n\nAA==\n-----END PGP SIGNATURE-----\n",
        );
        assert_eq!(
            String::from_utf8(signed).expect("text"),
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n- -x\n-----BEGIN PGP SIGNATURE-----\n\nAA==\n-----END PGP SIGNATURE-----\n"
        );
    }
}
