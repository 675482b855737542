// Causal self-attention over an f16 KV cache, for prefill (many queries) and decode (one query).
//
// Cache layout, per layer: k_cache, v_cache: [n_ctx][n_kv_head][head_dim] f16.
// kv_store_f16 widens nothing: it rounds the new f32 K or V rows into the cache.

// src: [n_tokens][row_len] f32 -> cache rows pos0 .. pos0 + n_tokens (row_len = n_kv_head * head_dim).
extern "C" __global__ void kv_store_f16(f16_bits *cache, const float *src, int row_len, int pos0, int n_tokens) {
    const size_t total = (size_t)n_tokens * row_len;
    f16_bits *dst = cache + (size_t)pos0 * row_len;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = f32_to_f16(src[i]);
}

#define ATT_CHUNK 256   // keys scored per pass (shared memory: one float each)
#define ATT_MAX_HD 256  // head_dim limit: each thread of a 128-thread block owns two output dims

// q: [n_tokens][n_head][head_dim] f32; out: same shape. Query t stands at position pos0 + t and
// sees keys 0 ..= pos0 + t. Query head h reads KV head h / (n_head / n_kv_head) (grouped-query).
// grid: (n_head, n_tokens); block: 128 threads.
// Keys are taken in chunks with a running maximum (online softmax), so shared memory does not grow
// with the context: per chunk, a warp per key computes q.k, then every thread updates its output dims.
extern "C" __global__ void attention_f16kv(float *out, const float *q, const f16_bits *k_cache,
                                           const f16_bits *v_cache, int n_head, int n_kv_head,
                                           int head_dim, int pos0, float scale) {
    __shared__ float qs[ATT_MAX_HD];
    __shared__ float p[ATT_CHUNK];
    __shared__ float red[32];
    const int h = blockIdx.x, t = blockIdx.y;
    const int kv_h = h / (n_head / n_kv_head);
    const int n_keys = pos0 + t + 1;
    const size_t kv_row = (size_t)n_kv_head * head_dim;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;

    const float *q_row = q + ((size_t)t * n_head + h) * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) qs[d] = q_row[d] * scale;
    __syncthreads();

    const int d0 = threadIdx.x, d1 = threadIdx.x + blockDim.x;
    float run_max = -RS_INF, run_sum = 0.0f, acc0 = 0.0f, acc1 = 0.0f;
    for (int c0 = 0; c0 < n_keys; c0 += ATT_CHUNK) {
        const int cn = min(ATT_CHUNK, n_keys - c0);
        for (int j = warp; j < cn; j += n_warps) {
            const f16_bits *k_row = k_cache + (size_t)(c0 + j) * kv_row + (size_t)kv_h * head_dim;
            float s = 0.0f;
            for (int d = lane; d < head_dim; d += 32) s += qs[d] * f16_to_f32(k_row[d]);
            s = warp_sum(s);
            if (lane == 0) p[j] = s;
        }
        __syncthreads();
        float m = -RS_INF;
        for (int j = threadIdx.x; j < cn; j += blockDim.x) m = fmaxf(m, p[j]);
        m = block_max(m, red);
        const float new_max = fmaxf(run_max, m);
        const float rescale = expf(run_max - new_max);  // 0 on the first chunk
        float s = 0.0f;
        for (int j = threadIdx.x; j < cn; j += blockDim.x) {
            const float e = expf(p[j] - new_max);
            p[j] = e;
            s += e;
        }
        s = block_sum(s, red);  // its barriers also publish the p[j] written above
        run_sum = run_sum * rescale + s;
        run_max = new_max;
        acc0 *= rescale;
        acc1 *= rescale;
        for (int j = 0; j < cn; ++j) {
            const f16_bits *v_row = v_cache + (size_t)(c0 + j) * kv_row + (size_t)kv_h * head_dim;
            const float pj = p[j];
            if (d0 < head_dim) acc0 += pj * f16_to_f32(v_row[d0]);
            if (d1 < head_dim) acc1 += pj * f16_to_f32(v_row[d1]);
        }
        __syncthreads();  // the next chunk overwrites p
    }
    float *o = out + ((size_t)t * n_head + h) * head_dim;
    const float inv = 1.0f / run_sum;
    if (d0 < head_dim) o[d0] = acc0 * inv;
    if (d1 < head_dim) o[d1] = acc1 * inv;
}
