//! Running sums and the printed statistics of the KL-divergence mode, with llama.cpp's estimators:
//! standard errors `sqrt((E[x²] − E[x]²)/(n − 1))`, linear-interpolation percentiles in f32, and
//! the error propagation used for ratios and differences of perplexities.

/// Sums over all scored tokens so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KldSums {
    pub sum_nll: f64,
    pub sum_nll2: f64,
    pub sum_nll_base: f64,
    pub sum_nll_base2: f64,
    pub sum_nll_nll_base: f64,
    pub sum_kld: f64,
    pub sum_kld2: f64,
    pub sum_p_diff: f64,
    pub sum_p_diff2: f64,
    pub sum_p_diff4: f64,
    pub n_same_top: usize,
    pub count: usize,
}

/// Below this many scored tokens the summary blocks are not printed.
pub const MIN_TOKENS_FOR_SUMMARY: usize = 100;

/// Mean and its standard error; the error is 0 for ten samples or fewer.
pub fn mean_and_uncertainty(sum: f64, sum2: f64, count: usize) -> (f64, f64) {
    if count < 1 {
        return (0.0, 0.0);
    }
    let n = count as f64;
    let mean = sum / n;
    let var = sum2 / n - mean * mean;
    let err = if var > 0.0 && count > 10 { (var / (n - 1.0)).sqrt() } else { 0.0 };
    (mean, err)
}

/// Covariance of the two means (0 for fewer than ten samples).
pub fn covariance(sum_a: f64, sum_b: f64, sum_ab: f64, count: usize) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1.0)
}

/// Linear interpolation between the two sorted values around `fraction·(len − 1)`.
pub fn percentile(sorted: &[f32], fraction: f32) -> f32 {
    if fraction <= 0.0 {
        return sorted[0];
    }
    if fraction >= 1.0 {
        return sorted[sorted.len() - 1];
    }
    let pos = fraction * (sorted.len() - 1) as f32;
    let i = pos as usize;
    let t = pos - i as f32;
    (1.0 - t) * sorted[i] + t * sorted[(i + 1).min(sorted.len() - 1)]
}

fn median(sorted: &[f32]) -> f32 {
    let n = sorted.len();
    if n.is_multiple_of(2) {
        0.5 * (sorted[n / 2] + sorted[n / 2 - 1])
    } else {
        sorted[n / 2]
    }
}

struct Derived {
    ppl: (f64, f64),
    log_ppl: (f64, f64),
    log_ppl_base: (f64, f64),
    log_ratio: (f64, f64),
    log_cov: f64,
}

fn derive(s: &KldSums) -> Derived {
    let log_ppl = mean_and_uncertainty(s.sum_nll, s.sum_nll2, s.count);
    let log_ppl_base = mean_and_uncertainty(s.sum_nll_base, s.sum_nll_base2, s.count);
    let log_cov = covariance(s.sum_nll, s.sum_nll_base, s.sum_nll_nll_base, s.count);
    let ppl = log_ppl.0.exp();
    let ratio_err = (log_ppl.1 * log_ppl.1 + log_ppl_base.1 * log_ppl_base.1 - 2.0 * log_cov).sqrt();
    Derived {
        ppl: (ppl, ppl * log_ppl.1),
        log_ppl,
        log_ppl_base,
        log_ratio: (log_ppl.0 - log_ppl_base.0, ratio_err),
        log_cov,
    }
}

/// Column titles printed before the first chunk row.
pub const CHUNK_HEADER: &str = "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p";

/// The cumulative row printed after chunk `chunk` (1-based).
pub fn chunk_row(chunk: usize, s: &KldSums) -> String {
    let d = derive(s);
    let kld = mean_and_uncertainty(s.sum_kld, s.sum_kld2, s.count);
    let (rms, rms_err) = rms_p_diff(s);
    let (top, top_err) = same_top(s);
    let f = printf_f;
    format!(
        "{chunk:4}    {} ± {}    {} ± {}    {} ± {}    {} ± {} %    {} ± {} %",
        f(d.ppl.0, 9, 4),
        f(d.ppl.1, 9, 4),
        f(d.log_ratio.0, 10, 5),
        f(d.log_ratio.1, 10, 5),
        f(kld.0, 10, 5),
        f(kld.1, 10, 5),
        f(100.0 * rms, 6, 3),
        f(100.0 * rms_err, 6, 3),
        f(100.0 * top, 6, 3),
        f(100.0 * top_err, 6, 3)
    )
}

/// `%W.Plf` as glibc prints it, NaN included (`nan`/`-nan`; e.g. the square root of a variance
/// that rounding made slightly negative).
fn printf_f(v: f64, width: usize, prec: usize) -> String {
    if v.is_nan() {
        let text = if v.is_sign_negative() { "-nan" } else { "nan" };
        format!("{text:>width$}")
    } else {
        format!("{v:width$.prec$}")
    }
}

fn rms_p_diff(s: &KldSums) -> (f64, f64) {
    let mse = mean_and_uncertainty(s.sum_p_diff2, s.sum_p_diff4, s.count);
    let rms = mse.0.sqrt();
    (rms, 0.5 / rms * mse.1)
}

fn same_top(s: &KldSums) -> (f64, f64) {
    let n = s.count as f64;
    let top = s.n_same_top as f64 / n;
    (top, (top * (1.0 - top) / (n - 1.0)).sqrt())
}

/// The three summary blocks; `kld_values` and `p_diff_values` hold one value per scored token.
pub fn summary(s: &KldSums, kld_values: &mut [f32], p_diff_values: &mut [f32]) -> String {
    kld_values.sort_by(f32::total_cmp);
    p_diff_values.sort_by(f32::total_cmp);
    let d = derive(s);
    let base_ppl = d.log_ppl_base.0.exp();
    let base_err = base_ppl * d.log_ppl_base.1;
    let ratio = d.log_ratio.0.exp();
    let diff_err = (d.ppl.1 * d.ppl.1 + base_err * base_err - 2.0 * d.ppl.0 * base_ppl * d.log_cov).sqrt();
    let mut out = String::new();
    let mut line = |l: String| {
        out += &l;
        out.push('\n');
    };
    line("====== Perplexity statistics ======".into());
    line(format!("Mean PPL(Q)                   : {:10.6} ± {:10.6}", d.ppl.0, d.ppl.1));
    line(format!("Mean PPL(base)                : {base_ppl:10.6} ± {base_err:10.6}"));
    let cor = d.log_cov / (d.log_ppl.1 * d.log_ppl_base.1);
    line(format!("Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%", 100.0 * cor));
    line(format!("Mean ln(PPL(Q)/PPL(base))     : {:10.6} ± {:10.6}", d.log_ratio.0, d.log_ratio.1));
    line(format!("Mean PPL(Q)/PPL(base)         : {ratio:10.6} ± {:10.6}", ratio * d.log_ratio.1));
    line(format!("Mean PPL(Q)-PPL(base)         : {:10.6} ± {diff_err:10.6}", d.ppl.0 - base_ppl));
    line(String::new());

    line("====== KL divergence statistics ======".into());
    let kld = mean_and_uncertainty(s.sum_kld, s.sum_kld2, s.count);
    line(format!("Mean    KLD: {:10.6} ± {:10.6}", kld.0, kld.1));
    let k = &*kld_values;
    line(format!("Maximum KLD: {:10.6}", k[k.len() - 1]));
    for (label, f) in [("99.9%", 0.999), ("99.0%", 0.990), ("95.0%", 0.950), ("90.0%", 0.900)] {
        line(format!("{label}   KLD: {:10.6}", percentile(k, f)));
    }
    line(format!("Median  KLD: {:10.6}", median(k)));
    for (label, f) in [("10.0%", 0.100), (" 5.0%", 0.050), (" 1.0%", 0.010), (" 0.1%", 0.001)] {
        line(format!("{label}   KLD: {:10.6}", percentile(k, f)));
    }
    line(format!("Minimum KLD: {:10.6}", k[0]));
    line(String::new());

    line("====== Token probability statistics ======".into());
    let p_diff = mean_and_uncertainty(s.sum_p_diff, s.sum_p_diff2, s.count);
    line(format!("Mean    Δp: {:6.3} ± {:5.3} %", 100.0 * p_diff.0, 100.0 * p_diff.1));
    let p = &*p_diff_values;
    line(format!("Maximum Δp: {:6.3}%", 100.0 * f64::from(p[p.len() - 1])));
    for (label, f) in
        [("99.9%", 0.999), ("99.0%", 0.990), ("95.0%", 0.950), ("90.0%", 0.900), ("75.0%", 0.750)]
    {
        line(format!("{label}   Δp: {:6.3}%", 100.0 * f64::from(percentile(p, f))));
    }
    line(format!("Median  Δp: {:6.3}%", 100.0 * f64::from(median(p))));
    for (label, f) in
        [("25.0%", 0.250), ("10.0%", 0.100), (" 5.0%", 0.050), (" 1.0%", 0.010), (" 0.1%", 0.001)]
    {
        line(format!("{label}   Δp: {:6.3}%", 100.0 * f64::from(percentile(p, f))));
    }
    line(format!("Minimum Δp: {:6.3}%", 100.0 * f64::from(p[0])));
    let (rms, rms_err) = rms_p_diff(s);
    line(format!("RMS Δp    : {:6.3} ± {:5.3} %", 100.0 * rms, 100.0 * rms_err));
    let (top, top_err) = same_top(s);
    line(format!("Same top p: {:6.3} ± {:5.3} %", 100.0 * top, 100.0 * top_err));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_neighbours() {
        let v = [1.0f32, 2.0, 4.0, 8.0, 16.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 1.0), 16.0);
        assert_eq!(percentile(&v, 0.5), 4.0);
        // position 0.9·4 = 3.6: 0.4·8 + 0.6·16
        assert!((percentile(&v, 0.9) - 12.8).abs() < 1e-5);
        assert_eq!(median(&v), 4.0);
        assert_eq!(median(&v[..4]), 3.0);
    }

    #[test]
    fn nan_prints_as_c_does() {
        assert_eq!(printf_f(f64::NAN, 10, 5), "       nan");
        assert_eq!(printf_f(-f64::NAN, 10, 5), "      -nan");
        assert_eq!(printf_f(-0.000123, 10, 5), "  -0.00012");
    }

    #[test]
    fn standard_error_of_the_mean() {
        // 1..=20: mean 10.5, population variance 33.25, error sqrt(33.25/19).
        let (s, s2) = (1..=20).fold((0.0, 0.0), |(a, b), x| (a + x as f64, b + (x * x) as f64));
        let (m, e) = mean_and_uncertainty(s, s2, 20);
        assert!((m - 10.5).abs() < 1e-12);
        assert!((e - (33.25f64 / 19.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_and_uncertainty(s, s2, 10).1, 0.0, "no error with ten samples or fewer");
    }
}
