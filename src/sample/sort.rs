//! The sorts of libstdc++ that llama.cpp's samplers call (`std::partial_sort`, `std::sort`), rebuilt so
//! that candidates with equal logits end up in the same order as in llama.cpp — the order decides
//! which token a random draw lands on. `less(a, b)` is the C++ comparator ("a goes before b").
//!
//! The loops that libstdc++ runs unguarded (relying on a strict weak order) carry bounds checks here,
//! so a NaN cannot make them run off the slice; with a proper order the checks never fire.

/// Sift `value` down from `hole` in the heap `v[..len]`, then up again (libstdc++ `__adjust_heap`).
fn adjust_heap<T: Copy>(v: &mut [T], mut hole: usize, len: usize, value: T, less: &impl Fn(&T, &T) -> bool) {
    let top = hole;
    let mut child = hole;
    while len >= 2 && child < (len - 1) / 2 {
        child = 2 * (child + 1);
        if less(&v[child], &v[child - 1]) {
            child -= 1;
        }
        v[hole] = v[child];
        hole = child;
    }
    if len >= 2 && len & 1 == 0 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        v[hole] = v[child - 1];
        hole = child - 1;
    }
    // push_heap back towards `top`.
    while hole > top {
        let parent = (hole - 1) / 2;
        if !less(&v[parent], &value) {
            break;
        }
        v[hole] = v[parent];
        hole = parent;
    }
    v[hole] = value;
}

fn make_heap<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let len = v.len();
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let value = v[parent];
        adjust_heap(v, parent, len, value, less);
        if parent == 0 {
            return;
        }
        parent -= 1;
    }
}

/// Move the heap top of `v[..len]` to `v[result]`, and the old `v[result]` into the heap.
fn pop_heap_into<T: Copy>(v: &mut [T], len: usize, result: usize, less: &impl Fn(&T, &T) -> bool) {
    let value = v[result];
    v[result] = v[0];
    adjust_heap(v, 0, len, value, less);
}

/// `std::partial_sort(v, v + middle, v + len, less)`: the first `middle` elements end up sorted, the
/// rest in heap-select leftover order.
pub fn partial_sort<T: Copy>(v: &mut [T], middle: usize, less: &impl Fn(&T, &T) -> bool) {
    let middle = middle.min(v.len());
    if middle == 0 {
        return;
    }
    make_heap(&mut v[..middle], less);
    for i in middle..v.len() {
        if less(&v[i], &v[0]) {
            pop_heap_into(v, middle, i, less);
        }
    }
    // sort_heap
    let mut last = middle;
    while last > 1 {
        last -= 1;
        pop_heap_into(v, last, last, less);
    }
}

const INSERTION_THRESHOLD: usize = 16;

/// `std::sort(v, v + len, less)`: introsort, then a final insertion sort.
pub fn sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    if v.len() < 2 {
        return;
    }
    let depth = 2 * (usize::BITS - 1 - v.len().leading_zeros()) as usize;
    introsort_loop(v, depth, less);
    if v.len() > INSERTION_THRESHOLD {
        insertion_sort(&mut v[..INSERTION_THRESHOLD], less);
        for i in INSERTION_THRESHOLD..v.len() {
            linear_insert(v, i, less);
        }
    } else {
        insertion_sort(v, less);
    }
}

fn introsort_loop<T: Copy>(v: &mut [T], mut depth: usize, less: &impl Fn(&T, &T) -> bool) {
    let mut end = v.len();
    while end > INSERTION_THRESHOLD {
        if depth == 0 {
            partial_sort(&mut v[..end], end, less);
            return;
        }
        depth -= 1;
        let cut = partition_pivot(&mut v[..end], less);
        introsort_loop(&mut v[cut..end], depth, less);
        end = cut;
    }
}

/// Median of v[1], v[mid], v[len-1] moved to v[0], then Hoare partition of v[1..] around it.
fn partition_pivot<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) -> usize {
    let len = v.len();
    let (a, b, c) = (1, len / 2, len - 1);
    let median = if less(&v[a], &v[b]) {
        if less(&v[b], &v[c]) {
            b
        } else if less(&v[a], &v[c]) {
            c
        } else {
            a
        }
    } else if less(&v[a], &v[c]) {
        a
    } else if less(&v[b], &v[c]) {
        c
    } else {
        b
    };
    v.swap(0, median);
    let mut first = 1;
    let mut last = len;
    loop {
        while first < len && less(&v[first], &v[0]) {
            first += 1;
        }
        last -= 1;
        while last > 0 && less(&v[0], &v[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        v.swap(first, last);
        first += 1;
    }
}

fn insertion_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        if less(&v[i], &v[0]) {
            let value = v[i];
            v.copy_within(0..i, 1);
            v[0] = value;
        } else {
            linear_insert(v, i, less);
        }
    }
}

/// Shift v[i] left past every element it goes before (libstdc++ `__unguarded_linear_insert`).
fn linear_insert<T: Copy>(v: &mut [T], mut i: usize, less: &impl Fn(&T, &T) -> bool) {
    let value = v[i];
    while i > 0 && less(&value, &v[i - 1]) {
        v[i] = v[i - 1];
        i -= 1;
    }
    v[i] = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small deterministic generator for test data (not the sampler RNG).
    fn lcg_values(n: usize, seed: u64, modulo: u64) -> Vec<(u64, usize)> {
        let mut s = seed;
        (0..n)
            .map(|i| {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((s >> 33) % modulo, i)
            })
            .collect()
    }

    #[test]
    fn sort_orders_like_a_reference_sort_on_keys() {
        for (n, modulo) in [(0, 5), (1, 5), (15, 7), (16, 3), (17, 100), (300, 10), (5000, 1_000_000)] {
            let mut v = lcg_values(n, n as u64 + 1, modulo);
            let mut reference: Vec<u64> = v.iter().map(|x| x.0).collect();
            reference.sort_unstable_by(|a, b| b.cmp(a));
            sort(&mut v, &|a: &(u64, usize), b: &(u64, usize)| a.0 > b.0);
            let keys: Vec<u64> = v.iter().map(|x| x.0).collect();
            assert_eq!(keys, reference, "n={n}");
            let mut ids: Vec<usize> = v.iter().map(|x| x.1).collect();
            ids.sort_unstable();
            assert_eq!(ids, (0..n).collect::<Vec<_>>(), "a permutation, n={n}");
        }
    }

    #[test]
    fn partial_sort_puts_the_top_first_in_order() {
        for (n, k) in [(10, 3), (100, 40), (1000, 128), (50, 50), (7, 0)] {
            let mut v = lcg_values(n, 99 + n as u64, 37);
            let mut reference: Vec<u64> = v.iter().map(|x| x.0).collect();
            reference.sort_unstable_by(|a, b| b.cmp(a));
            partial_sort(&mut v, k, &|a: &(u64, usize), b: &(u64, usize)| a.0 > b.0);
            let keys: Vec<u64> = v[..k].iter().map(|x| x.0).collect();
            assert_eq!(keys, reference[..k], "n={n} k={k}");
        }
    }

    // The tie order itself is checked against libstdc++ in tests/sample_oracle.rs.
}
