// Mixture-of-experts routing and data movement.
// A token's j-th choice (0 <= j < k) owns "slot" t * k + j in the [n_tokens * k][n_embd] buffer
// that the experts' outputs are scattered into; the weighted sum then folds the k slots of each
// token in a fixed order, so the result does not depend on the order the experts ran in.

// Router, one thread per token: softmax over the n_expert logits, the k largest probabilities
// (ties go to the lower expert id), renormalised to sum 1 when `renorm` is set (llama/Mixtral).
// logits: [n_tokens][n_expert] f32 -> ids: [n_tokens][k] i32, weights: [n_tokens][k] f32.
extern "C" __global__ void moe_topk_f32(int *ids, float *weights, const float *logits, int n_tokens,
                                        int n_expert, int k, int renorm) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n_tokens) return;
    const float *l = logits + (size_t)t * n_expert;
    float m = -RS_INF;
    for (int e = 0; e < n_expert; ++e) m = fmaxf(m, l[e]);
    float z = 0.0f;
    for (int e = 0; e < n_expert; ++e) z += expf(l[e] - m);
    // Selection by rank: each pick is the best expert strictly below the previous pick.
    float prev_v = RS_INF;
    int prev_e = -1;
    float picked = 0.0f;
    for (int j = 0; j < k; ++j) {
        int best = -1;
        float best_v = -RS_INF;
        for (int e = 0; e < n_expert; ++e) {
            const float v = l[e];
            const bool below_prev = v < prev_v || (v == prev_v && e > prev_e);
            if (below_prev && (best < 0 || v > best_v)) {
                best = e;
                best_v = v;
            }
        }
        const float prob = expf(best_v - m) / z;
        ids[(size_t)t * k + j] = best;
        weights[(size_t)t * k + j] = prob;
        picked += prob;
        prev_v = best_v;
        prev_e = best;
    }
    if (renorm)
        for (int j = 0; j < k; ++j) weights[(size_t)t * k + j] /= picked;
}

// xs[r] = x[rows[r]]: the tokens routed to one expert, made contiguous. One block per row.
// x: [n_tokens][n_embd]; rows: [n_rows]; xs: [n_rows][n_embd].
extern "C" __global__ void moe_gather_f32(float *xs, const float *x, const int *rows, int n_embd) {
    const float *src = x + (size_t)rows[blockIdx.x] * n_embd;
    float *dst = xs + (size_t)blockIdx.x * n_embd;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) dst[i] = src[i];
}

// buf[slots[r]] = ys[r]: one expert's outputs back to their tokens' slots. One block per row.
// ys: [n_rows][n_embd]; slots: [n_rows]; buf: [n_tokens * k][n_embd].
extern "C" __global__ void moe_scatter_f32(float *buf, const float *ys, const int *slots, int n_embd) {
    const float *src = ys + (size_t)blockIdx.x * n_embd;
    float *dst = buf + (size_t)slots[blockIdx.x] * n_embd;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) dst[i] = src[i];
}

// out[t] = sum_j weights[t][j] * buf[t * k + j], j in order. One block per token.
extern "C" __global__ void moe_weighted_sum_f32(float *out, const float *buf, const float *weights, int k, int n_embd) {
    const size_t t = blockIdx.x;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) {
        float s = 0.0f;
        for (int j = 0; j < k; ++j) s += weights[t * k + j] * buf[(t * k + j) * n_embd + i];
        out[t * n_embd + i] = s;
    }
}
