//! Streaming token pieces to a text sink: a piece may end inside a UTF-8 sequence, so bytes are held
//! back until they complete a character (or can never do so, then they go out as they are — the
//! terminal sees what llama.cpp would print).

/// Bytes not yet written because they may be the start of a multi-byte character.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn new() -> Utf8Stream {
        Utf8Stream::default()
    }

    /// Add a piece; returns the bytes that are ready to print (complete characters, or bytes that
    /// are invalid whatever follows).
    pub fn push(&mut self, piece: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(piece);
        let keep = incomplete_tail_len(&self.pending);
        let ready_len = self.pending.len() - keep;
        let rest = self.pending.split_off(ready_len);
        std::mem::replace(&mut self.pending, rest)
    }

    /// Whatever is left (an unfinished sequence at the end of generation).
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

/// Length of a trailing prefix of a multi-byte UTF-8 sequence that more bytes could complete.
fn incomplete_tail_len(bytes: &[u8]) -> usize {
    // A sequence is at most 4 bytes: look back at most 3 bytes for its lead byte.
    for back in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead
        }
        let need = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0, // ASCII or an invalid lead: nothing to wait for
        };
        if need <= back {
            return 0;
        }
        // Wait only if the bytes so far are a valid prefix.
        let tail = &bytes[bytes.len() - back..];
        return if is_valid_prefix(tail) { back } else { 0 };
    }
    0
}

fn is_valid_prefix(tail: &[u8]) -> bool {
    let Some((&lead, rest)) = tail.split_first() else { return false };
    // Second-byte ranges that exclude overlongs, surrogates and > U+10FFFF.
    let second_ok = |b: u8| match lead {
        0xE0 => (0xA0..=0xBF).contains(&b),
        0xED => (0x80..=0x9F).contains(&b),
        0xF0 => (0x90..=0xBF).contains(&b),
        0xF4 => (0x80..=0x8F).contains(&b),
        _ => (0x80..=0xBF).contains(&b),
    };
    let second_fits = match rest.first() {
        None => true,
        Some(&b) => second_ok(b),
    };
    second_fits && rest.iter().skip(1).all(|&b| b & 0xC0 == 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(pieces: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = Utf8Stream::new();
        let mut out: Vec<Vec<u8>> = pieces.iter().map(|p| s.push(p)).collect();
        out.push(s.finish());
        out
    }

    #[test]
    fn splits_multibyte_characters_across_pieces() {
        // "é" = C3 A9, "€" = E2 82 AC, "😀" = F0 9F 98 80
        let out = stream(&[b"a\xC3", b"\xA9b\xE2", b"\x82", b"\xAC\xF0\x9F\x98", b"\x80!"]);
        assert_eq!(
            out,
            vec![
                b"a".to_vec(),
                "éb".as_bytes().to_vec(),
                vec![],
                "€".as_bytes().to_vec(),
                "😀!".as_bytes().to_vec(),
                vec![]
            ]
        );
        let joined: Vec<u8> = out.concat();
        assert_eq!(String::from_utf8(joined).as_deref(), Ok("aéb€😀!"));
    }

    #[test]
    fn invalid_bytes_are_not_held_back() {
        // A lone continuation byte, an invalid lead and an impossible prefix (E0 80) pass straight on.
        assert_eq!(
            stream(&[b"x\x80", b"\xFFy", b"\xE0\x80"]),
            vec![b"x\x80".to_vec(), b"\xFFy".to_vec(), b"\xE0\x80".to_vec(), vec![]]
        );
    }

    #[test]
    fn unfinished_sequence_is_flushed_at_the_end() {
        assert_eq!(stream(&[b"ok\xE2\x82"]), vec![b"ok".to_vec(), b"\xE2\x82".to_vec()]);
    }
}
