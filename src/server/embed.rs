//! What llama-server does to hidden states to make embeddings: pooling over a sequence's rows
//! (llama.cpp's graph pooling) and `common_embd_normalize`, with its arithmetic (sums in `f64`
//! of `f32` products, the factor rounded to `f32`), and the base64 form of the OpenAI endpoint.

use super::api::Pooling;
use gguf::value::Metadata;

/// The model's `{arch}.pooling_type`, else none (llama.cpp's default for a model without one).
pub fn model_pooling(file: &gguf::GgufFile) -> Pooling {
    let arch = file.get_str("general.architecture").ok().flatten().unwrap_or_default();
    let n = file.get_u32(&format!("{arch}.pooling_type")).ok().flatten();
    n.and_then(Pooling::from_gguf).unwrap_or_default()
}

/// `hidden` `[n_tokens][n_embd]` pooled as `pooling` says: one vector, or each token's own.
pub fn pool(hidden: &[f32], n_embd: usize, pooling: Pooling) -> Vec<Vec<f32>> {
    if n_embd == 0 || hidden.len() < n_embd {
        return Vec::new();
    }
    let rows = hidden.chunks_exact(n_embd);
    match pooling {
        Pooling::None => rows.map(<[f32]>::to_vec).collect(),
        Pooling::Cls => rows.take(1).map(<[f32]>::to_vec).collect(),
        Pooling::Last => rows.last().map(<[f32]>::to_vec).into_iter().collect(),
        Pooling::Mean => {
            // llama.cpp multiplies the rows by a column of 1/n (`inp_mean`), in f32.
            let n = hidden.len() / n_embd;
            let scale = 1.0f32 / n as f32;
            let mut mean = vec![0f32; n_embd];
            for row in rows {
                for (m, &x) in mean.iter_mut().zip(row) {
                    *m += x * scale;
                }
            }
            vec![mean]
        }
    }
}

/// llama.cpp's `common_embd_normalize`: -1 none, 0 max-abs scaled to the int16 range, 2
/// Euclidean, any other p a p-norm (1 is taxicab).
pub fn normalize(v: &[f32], embd_norm: i32) -> Vec<f32> {
    let mut sum = 0.0f64;
    match embd_norm {
        -1 => sum = 1.0,
        0 => {
            for &x in v {
                sum = sum.max(f64::from(x.abs()));
            }
            sum /= 32760.0;
        }
        2 => {
            for &x in v {
                sum += f64::from(x * x);
            }
            sum = sum.sqrt();
        }
        p => {
            for &x in v {
                sum += f64::from(x.abs()).powf(f64::from(p));
            }
            sum = sum.powf(1.0 / f64::from(p));
        }
    }
    let norm = if sum > 0.0 { (1.0 / sum) as f32 } else { 0.0 };
    v.iter().map(|&x| x * norm).collect()
}

/// The vector's little-endian `f32` bytes in standard base64 with padding (the OpenAI
/// `encoding_format: "base64"`).
pub fn base64_f32(v: &[f32]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(ABC[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_rows() {
        let h = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 3 tokens of 2
        assert_eq!(pool(&h, 2, Pooling::None).len(), 3);
        assert_eq!(pool(&h, 2, Pooling::Cls), vec![vec![1.0, 2.0]]);
        assert_eq!(pool(&h, 2, Pooling::Last), vec![vec![5.0, 6.0]]);
        let m = &pool(&h, 2, Pooling::Mean)[0];
        assert!((m[0] - 3.0).abs() < 1e-6 && (m[1] - 4.0).abs() < 1e-6);
        assert!(pool(&[], 2, Pooling::Mean).is_empty());
    }

    #[test]
    fn normalizes_as_llama_cpp() {
        let v = [3.0f32, -4.0];
        assert_eq!(normalize(&v, 2), vec![0.6, -0.8]);
        assert_eq!(normalize(&v, -1), v.to_vec());
        let m = normalize(&v, 0);
        assert!((m[1] + 32760.0).abs() < 1e-2 && (m[0] - 24570.0).abs() < 1e-2);
        let t = normalize(&v, 1);
        assert!((t[0] - 3.0 / 7.0).abs() < 1e-7);
        assert_eq!(normalize(&[0.0, 0.0], 2), vec![0.0, 0.0]);
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[]), "");
        assert_eq!(base64_f32(&[1.0, 0.0, -2.0]).len(), 16);
    }
}
