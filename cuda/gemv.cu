// Linear layers for small batches (decode): y[t][o] = sum_i x[t][i] * W[o][i] with the f32
// activations used as they are (no rounding to 16 bits) and f32 accumulation, for 1..8 tokens.
// W: [n_out][n_in] f16 or bf16; x: [n_tokens][n_in] f32; y: [n_tokens][n_out] f32.
// One warp per output row; each lane keeps one partial sum per token, the warp adds them up.

#define GEMV_MAX_TOKENS 8

template <int BF16>
__device__ __forceinline__ float weight_at(const unsigned short *w, size_t i) {
    return BF16 ? bf16_to_f32(w[i]) : f16_to_f32(w[i]);
}

template <int BF16>
__device__ __forceinline__ void gemv_rows(float *y, const unsigned short *w, const float *x, int n_in, int n_out,
                                          int n_tokens) {
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (row >= n_out) return;  // the whole warp leaves together
    const unsigned short *w_row = w + (size_t)row * n_in;
    float acc[GEMV_MAX_TOKENS];
#pragma unroll
    for (int t = 0; t < GEMV_MAX_TOKENS; ++t) acc[t] = 0.0f;
    for (int i = lane; i < n_in; i += 32) {
        const float wv = weight_at<BF16>(w_row, i);
#pragma unroll
        for (int t = 0; t < GEMV_MAX_TOKENS; ++t)
            if (t < n_tokens) acc[t] += wv * x[(size_t)t * n_in + i];
    }
#pragma unroll
    for (int t = 0; t < GEMV_MAX_TOKENS; ++t) {
        if (t < n_tokens) {  // uniform across the warp
            const float s = warp_sum(acc[t]);
            if (lane == 0) y[(size_t)t * n_out + row] = s;
        }
    }
}

extern "C" __global__ void gemv_f16(float *y, const f16_bits *w, const float *x, int n_in, int n_out, int n_tokens) {
    gemv_rows<0>(y, w, x, n_in, n_out, n_tokens);
}

extern "C" __global__ void gemv_bf16(float *y, const bf16_bits *w, const float *x, int n_in, int n_out, int n_tokens) {
    gemv_rows<1>(y, w, x, n_in, n_out, n_tokens);
}
