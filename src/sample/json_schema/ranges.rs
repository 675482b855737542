//! Integer ranges as GBNF: a `minimum`/`maximum` pair becomes alternatives of digit classes, one
//! group per number of digits, written exactly as llama.cpp writes them so that both engines
//! sample under the same grammar text.

/// `[a-b]`, or `[a]` for one digit.
fn digit_range(out: &mut String, from: u8, to: u8) {
    out.push('[');
    out.push(from as char);
    if from != to {
        out.push('-');
        out.push(to as char);
    }
    out.push(']');
}

/// `[0-9]` repeated `min..=max` times (`i32::MAX` for no upper end).
fn more_digits(out: &mut String, min: i32, max: i32) {
    out.push_str("[0-9]");
    if min == max && min == 1 {
        return;
    }
    out.push('{');
    out.push_str(&min.to_string());
    if max != min {
        out.push(',');
        if max != i32::MAX {
            out.push_str(&max.to_string());
        }
    }
    out.push('}');
}

/// Every number from `from` to `to`, two digit strings of one length: the shared leading digits
/// as a literal, then the first differing digit split into its low edge, a free middle and its
/// high edge.
fn uniform_range(out: &mut String, from: &[u8], to: &[u8]) {
    let i = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if i > 0 {
        out.push('"');
        out.push_str(std::str::from_utf8(&from[..i]).unwrap_or_default());
        out.push('"');
    }
    if i >= from.len() || i >= to.len() {
        return;
    }
    if i > 0 {
        out.push(' ');
    }
    let rest = from.len() - i - 1;
    if rest == 0 {
        out.push('[');
        out.push(from[i] as char);
        out.push('-');
        out.push(to[i] as char);
        out.push(']');
        return;
    }
    let (from_rest, to_rest) = (&from[i + 1..], &to[i + 1..]);
    let zeros = vec![b'0'; rest];
    let nines = vec![b'9'; rest];
    let n = rest as i32;
    let mut reached_to = false;
    out.push('(');
    if from_rest == zeros.as_slice() {
        digit_range(out, from[i], to[i].wrapping_sub(1));
        out.push(' ');
        more_digits(out, n, n);
    } else {
        out.push('[');
        out.push(from[i] as char);
        out.push_str("] (");
        uniform_range(out, from_rest, &nines);
        out.push(')');
        if from[i] < to[i].wrapping_sub(1) {
            out.push_str(" | ");
            if to_rest == nines.as_slice() {
                digit_range(out, from[i] + 1, to[i]);
                reached_to = true;
            } else {
                digit_range(out, from[i] + 1, to[i] - 1);
            }
            out.push(' ');
            more_digits(out, n, n);
        }
    }
    if !reached_to {
        out.push_str(" | ");
        digit_range(out, to[i], to[i]);
        out.push(' ');
        uniform_range(out, &zeros, to_rest);
    }
    out.push(')');
}

/// The alternatives for the integers in `min..=max` (`i64::MIN` / `i64::MAX` for an open end).
/// `digits_left` caps how long an open-ended number may grow (16 digits at the top, as the
/// primitive `integer` rule); `top` is false inside a number, where leading zeros are digits.
pub fn min_max_int(out: &mut String, min: i64, max: i64, digits_left: i32, top: bool) {
    let has_min = min != i64::MIN;
    let has_max = max != i64::MAX;

    if has_min && has_max {
        if min < 0 && max < 0 {
            out.push_str("\"-\" (");
            min_max_int(out, max.wrapping_neg(), min.wrapping_neg(), digits_left, true);
            out.push(')');
            return;
        }
        let mut min = min;
        if min < 0 {
            out.push_str("\"-\" (");
            min_max_int(out, 0, min.wrapping_neg(), digits_left, true);
            out.push_str(") | ");
            min = 0;
        }
        // one group per digit count from min's to max's: min..=99..9, 10..0..=99..9, ..., 10..0..=max
        let mut low = min.to_string().into_bytes();
        let high = max.to_string().into_bytes();
        for digits in low.len()..high.len() {
            uniform_range(out, &low, &vec![b'9'; digits]);
            low = vec![b'0'; digits + 1];
            low[0] = b'1';
            out.push_str(" | ");
        }
        uniform_range(out, &low, &high);
        return;
    }

    let fewer = (digits_left - 1).max(1);

    if has_min {
        if min < 0 {
            out.push_str("\"-\" (");
            min_max_int(out, i64::MIN, min.wrapping_neg(), digits_left, false);
            out.push_str(") | [0] | [1-9] ");
            more_digits(out, 0, digits_left - 1);
        } else if min == 0 {
            if top {
                out.push_str("[0] | [1-9] ");
                more_digits(out, 0, fewer);
            } else {
                more_digits(out, 1, digits_left);
            }
        } else if min <= 9 {
            let c = b'0' + min as u8;
            let start = if top { b'1' } else { b'0' };
            if c > start {
                digit_range(out, start, c - 1);
                out.push(' ');
                more_digits(out, 1, fewer);
                out.push_str(" | ");
            }
            digit_range(out, c, b'9');
            out.push(' ');
            more_digits(out, 0, fewer);
        } else {
            // a first digit above min's is free, min's own first digit recurses on the rest
            let text = min.to_string().into_bytes();
            let len = text.len() as i32;
            let c = text[0];
            if c > b'1' {
                digit_range(out, if top { b'1' } else { b'0' }, c - 1);
                out.push(' ');
                more_digits(out, len, fewer);
                out.push_str(" | ");
            }
            digit_range(out, c, c);
            out.push_str(" (");
            let rest: i64 = std::str::from_utf8(&text[1..]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
            min_max_int(out, rest, i64::MAX, fewer, false);
            out.push(')');
            if c < b'9' {
                out.push_str(" | ");
                digit_range(out, c + 1, b'9');
                out.push(' ');
                more_digits(out, len - 1, fewer);
            }
        }
        return;
    }

    if has_max {
        if max >= 0 {
            if top {
                out.push_str("\"-\" [1-9] ");
                more_digits(out, 0, fewer);
                out.push_str(" | ");
            }
            min_max_int(out, 0, max, digits_left, true);
        } else {
            out.push_str("\"-\" (");
            min_max_int(out, max.wrapping_neg(), i64::MAX, digits_left, false);
            out.push(')');
        }
    }
}
