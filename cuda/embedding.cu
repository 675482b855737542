// Embedding lookup (ggml's get_rows): y[t] = table[ids[t]] widened to f32, one block per token.
// table: [n_vocab][n_embd] of f16 / bf16 / f32; ids: [n_tokens] (checked against n_vocab on the
// host); y: [n_tokens][n_embd] f32.
extern "C" __global__ void get_rows_f16(float *y, const f16_bits *table, const unsigned int *ids, int n_embd) {
    const f16_bits *src = table + (size_t)ids[blockIdx.x] * n_embd;
    float *dst = y + (size_t)blockIdx.x * n_embd;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) dst[i] = f16_to_f32(src[i]);
}

extern "C" __global__ void get_rows_bf16(float *y, const bf16_bits *table, const unsigned int *ids, int n_embd) {
    const bf16_bits *src = table + (size_t)ids[blockIdx.x] * n_embd;
    float *dst = y + (size_t)blockIdx.x * n_embd;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) dst[i] = bf16_to_f32(src[i]);
}

extern "C" __global__ void get_rows_f32(float *y, const float *table, const unsigned int *ids, int n_embd) {
    const float *src = table + (size_t)ids[blockIdx.x] * n_embd;
    float *dst = y + (size_t)blockIdx.x * n_embd;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) dst[i] = src[i];
}
