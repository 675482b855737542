// Activation conversions for the cuBLAS GEMMs, whose two inputs must share one type. To keep the
// f32 activations' precision, x is split in two 16-bit parts, hi = round(x) and
// lo = round(x - hi), and the GEMM runs twice (W·hi + W·lo): the pair carries about twice the
// mantissa bits of one 16-bit value. hi and lo: [n] each.
extern "C" __global__ void f32_split_f16(f16_bits *hi, f16_bits *lo, const float *x, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const f16_bits h = f32_to_f16(x[i]);
        hi[i] = h;
        lo[i] = f32_to_f16(x[i] - f16_to_f32(h));
    }
}

extern "C" __global__ void f32_split_bf16(bf16_bits *hi, bf16_bits *lo, const float *x, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const bf16_bits h = f32_to_bf16(x[i]);
        hi[i] = h;
        lo[i] = f32_to_bf16(x[i] - bf16_to_f32(h));
    }
}
