//! Matmuls over a batch of several sequences that give each sequence the bits it gets alone.
//!
//! ggml sums a one-token matmul's outputs in `vec_dot`'s order and a batch's in tinyBLAS's; so a
//! sequence's one decode token, batched with other sequences' rows, would come out in the batch's
//! order and differ (in the last bits, enough to change a greedy token now and then) from the
//! same sequence run alone. Here the rows are split by how they are summed alone — rows that are
//! their sequence's only row in the pass in `vec_dot`'s order (the batched kernel that keeps that
//! order per output: the one ggml's `mul_mat_id` uses), the others in the batch order — and put
//! back in place. The weights are read once for a pass of decode tokens only, twice when decode
//! and prompt rows share a pass.

/// Run `f(rows, per_row)` over the rows of `x` (`[n_rows][n_in]`) summed alone as one token
/// (`alone[row]`, with `per_row` true) and over the others (`per_row` false), and merge each of
/// its outputs (`[rows][width]`) back in row order.
pub fn by_row_order<F>(alone: &[bool], x: &[f32], n_in: usize, f: F) -> Vec<Vec<f32>>
where
    F: Fn(&[f32], bool) -> Vec<Vec<f32>>,
{
    let n_rows = x.len() / n_in.max(1);
    debug_assert_eq!(alone.len(), n_rows, "by_row_order: one flag per row");
    let n_alone = alone.iter().filter(|&&a| a).count();
    // A single row is summed as one token whichever way it is asked for.
    if n_alone == 0 || n_rows <= 1 {
        return f(x, false);
    }
    if n_alone == n_rows {
        return f(x, true);
    }
    let pick = |want: bool| -> Vec<f32> {
        let rows = x.chunks_exact(n_in).zip(alone).filter(|(_, &a)| a == want);
        rows.flat_map(|(r, _)| r).copied().collect()
    };
    let lone = f(&pick(true), true);
    let batch = f(&pick(false), false);
    lone.into_iter()
        .zip(batch)
        .map(|(a, b)| {
            let width = a.len() / n_alone;
            let mut out = Vec::with_capacity(n_rows * width);
            let (mut ia, mut ib) = (a.chunks_exact(width), b.chunks_exact(width));
            for &is_alone in alone {
                let row = if is_alone { ia.next() } else { ib.next() };
                out.extend_from_slice(row.unwrap_or_default());
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_to_their_order_and_come_back_in_place() {
        // Row r of x is [r, r]; f tags its outputs with the order it was asked for.
        let x: Vec<f32> = (0..5).flat_map(|r| [r as f32; 2]).collect();
        let alone = [true, false, false, true, false];
        let out = by_row_order(&alone, &x, 2, |rows, per_row| {
            let tag = if per_row { 100.0 } else { 0.0 };
            vec![rows.chunks_exact(2).map(|r| r[0] + tag).collect()]
        });
        assert_eq!(out, vec![vec![100.0, 1.0, 2.0, 103.0, 4.0]]);
        let all =
            by_row_order(&[true; 3], &x[..6], 2, |rows, p| vec![vec![f32::from(p as u8); rows.len() / 2]]);
        assert_eq!(all, vec![vec![1.0; 3]], "all alone: one call in vec_dot order");
        let one = by_row_order(&[true], &x[..2], 2, |_, p| vec![vec![f32::from(p as u8)]]);
        assert_eq!(one, vec![vec![0.0]], "one row: the plain call");
    }
}
