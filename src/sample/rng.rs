//! The random numbers llama.cpp's samplers draw: `std::mt19937` and libstdc++'s
//! `uniform_real_distribution` over it, reproduced bit for bit so that a seed gives the same tokens.

/// The 32-bit Mersenne Twister (MT19937), as `std::mt19937`.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; Self::N],
    index: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mt19937 {{ index: {} }}", self.index)
    }
}

impl Mt19937 {
    const N: usize = 624;
    const M: usize = 397;
    const MATRIX_A: u32 = 0x9908_b0df;
    const UPPER: u32 = 0x8000_0000;
    const LOWER: u32 = 0x7fff_ffff;

    /// The seed `std::mt19937` uses when constructed without one.
    pub const DEFAULT_SEED: u32 = 5489;

    pub fn new(seed: u32) -> Mt19937 {
        let mut state = [0u32; Self::N];
        state[0] = seed;
        for i in 1..Self::N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { state, index: Self::N }
    }

    fn twist(&mut self) {
        for i in 0..Self::N {
            let y = (self.state[i] & Self::UPPER) | (self.state[(i + 1) % Self::N] & Self::LOWER);
            let mut next = self.state[(i + Self::M) % Self::N] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= Self::MATRIX_A;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.index >= Self::N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// libstdc++'s `generate_canonical<double, 53>`: two draws, the first one the low word, so
    /// `(lo + hi·2³²) / 2⁶⁴`; a sum that rounds up to 1.0 is pulled back below 1.
    pub fn canonical_f64(&mut self) -> f64 {
        const TWO_32: f64 = 4_294_967_296.0;
        let lo = self.next_u32() as f64;
        let hi = self.next_u32() as f64;
        let r = (lo + hi * TWO_32) / (TWO_32 * TWO_32);
        if r >= 1.0 {
            1.0f64.next_down_compat()
        } else {
            r
        }
    }

    /// libstdc++'s `generate_canonical<float, 24>`: one draw divided by 2³² in f32.
    pub fn canonical_f32(&mut self) -> f32 {
        let r = self.next_u32() as f32 / 4_294_967_296.0f32;
        if r >= 1.0 {
            1.0f32.next_down_compat()
        } else {
            r
        }
    }
}

/// `nextafter(x, 0)` for positive finite values (f64::next_down is newer than our MSRV).
trait NextDown {
    fn next_down_compat(self) -> Self;
}

impl NextDown for f64 {
    fn next_down_compat(self) -> f64 {
        f64::from_bits(self.to_bits() - 1)
    }
}

impl NextDown for f32 {
    fn next_down_compat(self) -> f32 {
        f32::from_bits(self.to_bits() - 1)
    }
}

/// A seed from the OS (llama.cpp uses `std::random_device`), falling back to the clock.
pub fn random_seed() -> u32 {
    use std::io::Read;
    let mut bytes = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(&mut bytes).is_ok() {
            return u32::from_le_bytes(bytes);
        }
    }
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    nanos as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    // Published MT19937 reference outputs (Matsumoto & Nishimura's mt19937ar; C++11 [rand.predef]).
    #[test]
    fn default_seed_first_outputs() {
        let mut rng = Mt19937::new(Mt19937::DEFAULT_SEED);
        let first: Vec<u32> = (0..5).map(|_| rng.next_u32()).collect();
        assert_eq!(first, [3_499_211_612, 581_869_302, 3_890_346_734, 3_586_334_585, 545_404_204]);
    }

    #[test]
    fn default_seed_ten_thousandth_output() {
        let mut rng = Mt19937::new(Mt19937::DEFAULT_SEED);
        let mut last = 0;
        for _ in 0..10_000 {
            last = rng.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }

    #[test]
    fn init_genrand_seed_1_first_output() {
        // mt19937ar.out starts with init_by_array; init_genrand(1) gives 1791095845 first.
        let mut rng = Mt19937::new(1);
        assert_eq!(rng.next_u32(), 1_791_095_845);
    }

    #[test]
    fn canonical_f64_combines_two_draws_low_word_first() {
        let mut a = Mt19937::new(1234);
        let mut b = Mt19937::new(1234);
        let lo = b.next_u32() as u128;
        let hi = b.next_u32() as u128;
        // Exact rational (lo + hi·2³²)/2⁶⁴, rounded once to f64 by the reference.
        let exact = ((hi << 32) | lo) as f64 / 18_446_744_073_709_551_616.0;
        let got = a.canonical_f64();
        // One rounding (of the 64-bit sum) on both sides, then an exact power-of-two division.
        assert_eq!(got, exact);
        assert!((0.0..1.0).contains(&got));
        // The next draw continues after the two words.
        assert_eq!(a.next_u32(), b.next_u32());
    }

    #[test]
    fn canonical_f64_clamps_below_one() {
        // Both words at their maximum round to 2⁶⁴ / 2⁶⁴ = 1.0 and must become the largest value below 1.
        let max = u32::MAX as f64;
        let r = (max + max * 4_294_967_296.0) / 18_446_744_073_709_551_616.0;
        assert_eq!(r, 1.0);
        assert_eq!(1.0f64.next_down_compat(), 0.999_999_999_999_999_9);
    }
}
