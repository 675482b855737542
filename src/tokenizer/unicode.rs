//! Code points as llama.cpp sees them: its lenient UTF-8 decoder, its character classes (Unicode
//! 15.1 general categories plus a fixed white-space list) and GPT-2's byte ↔ character mapping.

use super::unicode_table::{CLASS_RANGES, LOWERCASE, NFD_FIRST};
use std::sync::OnceLock;

pub const REPLACEMENT: u32 = 0xFFFD;
/// Code points above this are not characters; llama.cpp gives them the "undefined" class.
pub const MAX_CODEPOINT: u32 = 0x10FFFF;

/// Coarse general category (`\p{L}`, `\p{N}`, ...), as the pre-tokenizer regexes use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    Unassigned,
    Number,
    Letter,
    Separator,
    Mark,
    Punctuation,
    Symbol,
    Other,
}

impl CharClass {
    fn from_table(class: u8) -> CharClass {
        match class {
            1 => CharClass::Number,
            2 => CharClass::Letter,
            3 => CharClass::Separator,
            4 => CharClass::Mark,
            5 => CharClass::Punctuation,
            6 => CharClass::Symbol,
            7 => CharClass::Other,
            _ => CharClass::Unassigned,
        }
    }
}

/// Properties of one code point of a fragment. `Flags::default()` (nothing set, `present` false)
/// stands for a position past the end of the fragment, which the splitters probe freely.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub present: bool,
    pub letter: bool,
    pub number: bool,
    pub mark: bool,
    pub punctuation: bool,
    pub whitespace: bool,
}

impl Flags {
    pub fn of(cpt: u32) -> Flags {
        let class = class_of(cpt);
        Flags {
            present: true,
            letter: class == CharClass::Letter,
            number: class == CharClass::Number,
            mark: class == CharClass::Mark,
            punctuation: class == CharClass::Punctuation,
            whitespace: is_whitespace(cpt),
        }
    }
}

pub fn class_of(cpt: u32) -> CharClass {
    // The Basic Multilingual Plane, where nearly all text lives, is looked up directly.
    static BMP: OnceLock<Box<[u8]>> = OnceLock::new();
    let bmp = BMP.get_or_init(|| (0..0x10000).map(class_in_ranges).collect());
    CharClass::from_table(match bmp.get(cpt as usize) {
        Some(&class) => class,
        None => class_in_ranges(cpt),
    })
}

fn class_in_ranges(cpt: u32) -> u8 {
    if cpt > MAX_CODEPOINT {
        return 0;
    }
    // Index of the last range starting at or before `cpt`; the table starts at 0.
    let idx = CLASS_RANGES.partition_point(|&(start, _)| start <= cpt);
    CLASS_RANGES[idx.saturating_sub(1)].1
}

/// Unicode's White_Space property (PropList.txt), which is what llama.cpp means by `\s`.
pub fn is_whitespace(cpt: u32) -> bool {
    matches!(
        cpt,
        0x09..=0x0D
            | 0x20
            | 0x85
            | 0xA0
            | 0x1680
            | 0x2000..=0x200A
            | 0x2028
            | 0x2029
            | 0x202F
            | 0x205F
            | 0x3000
    )
}

/// llama.cpp's "NFD" of one code point: the first code point of its canonical decomposition (the
/// marks that would follow are dropped), or the code point itself.
pub fn nfd_first(cpt: u32) -> u32 {
    let idx = NFD_FIRST.partition_point(|&(first, _, _)| first <= cpt);
    match idx.checked_sub(1).map(|i| NFD_FIRST[i]) {
        Some((_, last, target)) if cpt <= last => target,
        _ => cpt,
    }
}

/// Unicode's simple lowercase mapping (one code point to one).
pub fn to_lower(cpt: u32) -> u32 {
    match LOWERCASE.binary_search_by_key(&cpt, |&(from, _)| from) {
        Ok(i) => LOWERCASE[i].1,
        Err(_) => cpt,
    }
}

/// Length of the UTF-8 sequence announced by a lead byte (continuation bytes count as 1), the way
/// the SPM and BPE merge loops cut text into initial symbols.
pub fn utf8_len_from_lead(byte: u8) -> usize {
    match byte >> 4 {
        0xC | 0xD => 2,
        0xE => 3,
        0xF => 4,
        _ => 1,
    }
}

/// Decode bytes to code points like llama.cpp: overlong forms and surrogates are accepted, and each
/// byte that does not start a well-formed sequence becomes one U+FFFD.
pub fn decode_lenient(bytes: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut pos = 0;
    while pos < bytes.len() {
        match decode_one(bytes, pos) {
            Some((cpt, len)) => {
                out.push(cpt);
                pos += len;
            }
            None => {
                out.push(REPLACEMENT);
                pos += 1;
            }
        }
    }
    out
}

fn decode_one(bytes: &[u8], pos: usize) -> Option<(u32, usize)> {
    let lead = bytes[pos];
    let cont = |k: usize| bytes.get(pos + k).copied().filter(|b| b & 0xC0 == 0x80).map(|b| (b & 0x3F) as u32);
    if lead & 0x80 == 0 {
        return Some((lead as u32, 1));
    }
    if lead & 0x40 == 0 {
        return None;
    }
    if lead & 0x20 == 0 {
        return Some(((((lead & 0x1F) as u32) << 6) | cont(1)?, 2));
    }
    if lead & 0x10 == 0 {
        return Some(((((lead & 0x0F) as u32) << 12) | (cont(1)? << 6) | cont(2)?, 3));
    }
    if lead & 0x08 == 0 {
        let cpt = (((lead & 0x07) as u32) << 18) | (cont(1)? << 12) | (cont(2)? << 6) | cont(3)?;
        // llama.cpp would throw when re-encoding such a value; treat it as an invalid byte instead.
        return (cpt <= MAX_CODEPOINT).then_some((cpt, 4));
    }
    None
}

/// Append the UTF-8 encoding of `cpt` (surrogates included, as llama.cpp writes them).
pub fn push_utf8(out: &mut Vec<u8>, cpt: u32) {
    match cpt {
        0..=0x7F => out.push(cpt as u8),
        0x80..=0x7FF => out.extend_from_slice(&[0xC0 | (cpt >> 6) as u8, 0x80 | (cpt & 0x3F) as u8]),
        0x800..=0xFFFF => out.extend_from_slice(&[
            0xE0 | (cpt >> 12) as u8,
            0x80 | ((cpt >> 6) & 0x3F) as u8,
            0x80 | (cpt & 0x3F) as u8,
        ]),
        _ => out.extend_from_slice(&[
            0xF0 | ((cpt >> 18) & 0x07) as u8,
            0x80 | ((cpt >> 12) & 0x3F) as u8,
            0x80 | ((cpt >> 6) & 0x3F) as u8,
            0x80 | (cpt & 0x3F) as u8,
        ]),
    }
}

/// GPT-2's reversible byte → printable character table: bytes that are printable Latin-1 stand for
/// themselves, the others are moved, in byte order, to U+0100 and up.
pub struct ByteMap {
    /// `[byte] → code point`.
    to_char: [u32; 256],
    /// `[code point − 0x100] → byte` for the 68 moved bytes.
    moved: [u8; 68],
}

impl ByteMap {
    pub fn new() -> ByteMap {
        let mut to_char = [0u32; 256];
        let mut moved = [0u8; 68];
        let mut n_moved = 0;
        for (byte, slot) in to_char.iter_mut().enumerate() {
            if matches!(byte, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF) {
                *slot = byte as u32;
            } else {
                *slot = 0x100 + n_moved as u32;
                moved[n_moved] = byte as u8;
                n_moved += 1;
            }
        }
        ByteMap { to_char, moved }
    }

    pub fn char_of(&self, byte: u8) -> u32 {
        self.to_char[byte as usize]
    }

    /// The byte a character stands for, if it is one of the 256.
    pub fn byte_of(&self, cpt: u32) -> Option<u8> {
        match cpt {
            0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => Some(cpt as u8),
            0x100..=0x143 => Some(self.moved[(cpt - 0x100) as usize]),
            _ => None,
        }
    }

    /// The UTF-8 bytes of the character standing for `byte`.
    pub fn encode_byte(&self, out: &mut Vec<u8>, byte: u8) {
        push_utf8(out, self.char_of(byte));
    }
}

impl Default for ByteMap {
    fn default() -> Self {
        ByteMap::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_unicode_categories() {
        assert_eq!(class_of('a' as u32), CharClass::Letter);
        assert_eq!(class_of('7' as u32), CharClass::Number);
        assert_eq!(class_of('½' as u32), CharClass::Number); // No
        assert_eq!(class_of('!' as u32), CharClass::Punctuation);
        assert_eq!(class_of('$' as u32), CharClass::Symbol);
        assert_eq!(class_of(' ' as u32), CharClass::Separator);
        assert_eq!(class_of('\n' as u32), CharClass::Other);
        assert_eq!(class_of(0x0301), CharClass::Mark); // combining acute
        assert_eq!(class_of(0x4E00), CharClass::Letter); // CJK
        assert_eq!(class_of(0x2EBF0), CharClass::Letter); // CJK Ext. I, new in Unicode 15.1
        assert_eq!(class_of(0x1F600), CharClass::Symbol); // emoji
        assert_eq!(class_of(0x0378), CharClass::Unassigned);
        assert_eq!(class_of(0x10FFFF), CharClass::Unassigned);
        assert_eq!(class_of(0x110000), CharClass::Unassigned);
    }

    #[test]
    fn nfd_and_lowercase_tables() {
        assert_eq!(nfd_first('é' as u32), 'e' as u32);
        assert_eq!(nfd_first('Å' as u32), 'A' as u32);
        assert_eq!(nfd_first(0x1E09), 'c' as u32); // ḉ: c + cedilla + acute
        assert_eq!(nfd_first(0xAC00), 0x1100); // Hangul syllable → leading jamo
        assert_eq!(nfd_first('a' as u32), 'a' as u32);
        assert_eq!(nfd_first(0x10FFFF), 0x10FFFF);
        assert_eq!(to_lower('A' as u32), 'a' as u32);
        assert_eq!(to_lower('Ä' as u32), 'ä' as u32);
        assert_eq!(to_lower(0x0130), 'i' as u32); // İ: simple mapping only
        assert_eq!(to_lower(0x03A3), 0x03C3); // Σ → σ
        assert_eq!(to_lower('a' as u32), 'a' as u32);
        assert_eq!(to_lower(0x1F600), 0x1F600);
    }

    #[test]
    fn lenient_decoding_replaces_each_bad_byte() {
        assert_eq!(decode_lenient("aé€🦙".as_bytes()), vec![0x61, 0xE9, 0x20AC, 0x1F999]);
        // A truncated 3-byte sequence: the lead byte and the lone continuation byte each become U+FFFD.
        assert_eq!(decode_lenient(b"\xE2\x82"), vec![REPLACEMENT, REPLACEMENT]);
        // Overlong NUL is accepted as code point 0.
        assert_eq!(decode_lenient(b"\xC0\x80x"), vec![0, 0x78]);
        let mut buf = Vec::new();
        push_utf8(&mut buf, 0x1F999);
        assert_eq!(buf, "🦙".as_bytes());
    }

    #[test]
    fn gpt2_byte_map_round_trips() {
        let map = ByteMap::new();
        assert_eq!(map.char_of(b' '), 0x120); // 'Ġ'
        assert_eq!(map.char_of(b'\n'), 0x10A); // 'Ċ'
        assert_eq!(map.char_of(b'a'), 'a' as u32);
        assert_eq!(map.char_of(0xAD), 0x143);
        for b in 0..=255u8 {
            assert_eq!(map.byte_of(map.char_of(b)), Some(b));
        }
        assert_eq!(map.byte_of(0x20), None);
        assert_eq!(map.byte_of(0x144), None);
    }
}
