//! The file `POST /slots/{id}?action=save` writes and `restore` reads: a slot's tokens and its
//! KV rows. rs-llama's own layout (llama.cpp's state files hold its cache's internal layout):
//!
//! `RSLLSLOT`, then little-endian u32s: version (1), layers, K row, V row (the model's cache
//! shape, checked on restore), token count, the tokens, positions; then the positions' f16 values,
//! every layer's K rows, then every layer's V rows. A file whose size is not what its header
//! says is refused before anything is allocated.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use half::f16;

use crate::exec::KvSnapshot;
use crate::TokenId;

const MAGIC: &[u8; 8] = b"RSLLSLOT";
const VERSION: u32 = 1;
const HEADER_WORDS: usize = 5;

/// The model's KV cache shape: layers, K row, V row.
pub type CacheShape = (usize, usize, usize);

/// Write `tokens` and their rows; the bytes written.
pub fn write(
    path: &Path,
    shape: CacheShape,
    tokens: &[TokenId],
    kv: Option<&KvSnapshot>,
) -> Result<u64, String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut w = BufWriter::new(std::fs::File::create(path).map_err(fail)?);
    let n_pos = kv.map_or(0, KvSnapshot::n_positions);
    let word = |v: usize| u32::try_from(v).map_err(|_| "slot too large to save".to_string());
    let mut head = Vec::with_capacity(8 + 4 * (HEADER_WORDS + 2 + tokens.len()));
    head.extend_from_slice(MAGIC);
    for v in [VERSION as usize, shape.0, shape.1, shape.2, tokens.len()] {
        head.extend_from_slice(&word(v)?.to_le_bytes());
    }
    for &t in tokens {
        head.extend_from_slice(&t.to_le_bytes());
    }
    head.extend_from_slice(&word(n_pos)?.to_le_bytes());
    w.write_all(&head).map_err(fail)?;
    let mut written = head.len() as u64;
    if let Some(kv) = kv {
        for part in kv.values() {
            let bytes: Vec<u8> = part.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect();
            w.write_all(&bytes).map_err(fail)?;
            written += bytes.len() as u64;
        }
    }
    w.flush().map_err(fail)?;
    Ok(written)
}

/// What a slot file holds: its tokens, their rows (None for an empty slot), and its size.
pub struct SlotFile {
    pub tokens: Vec<TokenId>,
    pub kv: Option<KvSnapshot>,
    pub n_bytes: u64,
}

/// Read a slot file made for a cache of `shape`.
pub fn read(path: &Path, shape: CacheShape) -> Result<SlotFile, String> {
    // llama-server's words for any file it cannot read back.
    let invalid = || "No available space in KV cache or invalid slot save file".to_string();
    let file = std::fs::File::open(path).map_err(|_| invalid())?;
    let size = file.metadata().map_err(|_| invalid())?.len();
    let mut r = BufReader::new(file);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| invalid())?;
    if &magic != MAGIC {
        return Err(invalid());
    }
    let mut word = || -> Result<usize, String> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).map_err(|_| invalid())?;
        Ok(u32::from_le_bytes(b) as usize)
    };
    let (version, n_layer, k_row, v_row, n_tokens) = (word()?, word()?, word()?, word()?, word()?);
    if version != VERSION as usize {
        return Err(format!("slot save file version {version} (this build reads {VERSION})"));
    }
    if (n_layer, k_row, v_row) != shape {
        return Err("slot save file is from a model with another KV cache shape".into());
    }
    let head = 8 + 4 * (HEADER_WORDS + 1) as u64 + 4 * n_tokens as u64;
    if head > size {
        return Err(invalid());
    }
    let mut tokens = Vec::with_capacity(n_tokens);
    for _ in 0..n_tokens {
        tokens.push(word()? as TokenId);
    }
    let n_pos = word()?;
    let values = n_pos as u64 * (n_layer * (k_row + v_row)) as u64;
    if n_pos > n_tokens || head + 2 * values != size {
        return Err(invalid());
    }
    let kv = if n_pos == 0 {
        None
    } else {
        let mut buf = Vec::new();
        let snap = KvSnapshot::read(shape, n_pos, |dst| {
            buf.resize(dst.len() * 2, 0);
            r.read_exact(&mut buf).map_err(|_| invalid())?;
            for (d, b) in dst.iter_mut().zip(buf.chunks_exact(2)) {
                *d = f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
            }
            Ok(())
        })?;
        Some(snap)
    };
    Ok(SlotFile { tokens, kv, n_bytes: size })
}

/// llama.cpp's rule for a slot file's name: one path component of printable characters, none of
/// `/ \ : * ? " < > |`, no `..`, no leading or trailing space, no trailing dot, at most 255 bytes.
pub fn valid_filename(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 || name == "." || name.contains("..") {
        return false;
    }
    if name.starts_with(' ') || name.ends_with(' ') || name.ends_with('.') {
        return false;
    }
    name.chars().all(|c| {
        let forbidden = (c as u32) <= 0x1f
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || matches!(c, '\u{ff0e}' | '\u{2215}' | '\u{2216}' | '\u{fffd}' | '\u{feff}')
            || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|');
        !forbidden
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::KvCache;

    #[test]
    fn a_saved_slot_reads_back_and_a_damaged_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("rs-llama-slotfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.bin");
        let mut c = KvCache::growable(2, 16, 3, 2).unwrap();
        c.reserve(4).unwrap();
        for il in 0..2 {
            let k: Vec<f32> = (0..12).map(|i| (il * 100 + i) as f32).collect();
            let v: Vec<f32> = (0..8).map(|i| -((il * 100 + i) as f32)).collect();
            c.store(il, 0, &k, &v);
        }
        let snap = c.snapshot(4).unwrap();
        let n = write(&path, (2, 3, 2), &[7, 8, 9, 10], Some(&snap)).unwrap();
        // 8 magic + 4·(5 + 4 tokens + 1) header bytes + 4 positions · 2 layers · 5 values · 2 bytes.
        assert_eq!(n, 8 + 40 + 80);
        let back = read(&path, (2, 3, 2)).unwrap();
        assert_eq!(back.tokens, vec![7, 8, 9, 10]);
        assert_eq!(back.n_bytes, n);
        let kv = back.kv.expect("rows");
        assert!(kv.values().eq(snap.values()));
        assert!(read(&path, (2, 3, 3)).err().expect("refused").contains("another KV cache shape"));
        // Cut short, or a different magic: refused.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(read(&path, (2, 3, 2)).err().unwrap().contains("invalid slot save file"));
        std::fs::write(&path, [b"GGSQ".as_slice(), &bytes[4..]].concat()).unwrap();
        assert!(read(&path, (2, 3, 2)).is_err());
        // An empty slot: tokens and rows both empty.
        write(&path, (2, 3, 2), &[], None).unwrap();
        let empty = read(&path, (2, 3, 2)).unwrap();
        assert!(empty.tokens.is_empty() && empty.kv.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_names_follow_llama_cpps_rule() {
        for ok in ["slot0.bin", "a b.bin", "日本.bin", ".hidden"] {
            assert!(valid_filename(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "../x",
            "x..y",
            " a",
            "a ",
            "a.",
            "a:b",
            "a?b",
            "a\u{1}",
            "a\u{2215}b",
        ] {
            assert!(!valid_filename(bad), "{bad:?}");
        }
        assert!(!valid_filename(&"x".repeat(256)));
    }
}
