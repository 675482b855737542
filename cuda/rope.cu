// Rotary position embedding, in place.
// x: [n_tokens][n_head][head_dim] f32; pos: [n_tokens] i32; freq_factors: [n_rot/2] f32 or null
// (LLaMA-3's rope_freqs). Only the first n_rot dims rotate. Pair i turns by
// freq_scale * theta_i / ff_i with theta_i = pos * base^(-2i/n_rot), where the power is built by
// repeated f32 multiplication as ggml does, so that long positions get llama.cpp's angles.
// The pair is (2i, 2i+1) in the normal style (llama) and (i, i + n_rot/2) in the NeoX style.
// grid: n_tokens * n_head blocks; threads over pairs.
extern "C" __global__ void rope_f32(float *x, const int *pos, const float *freq_factors, int n_head, int head_dim,
                                    int n_rot, float freq_base, float freq_scale, int neox) {
    const int token = blockIdx.x / n_head;
    float *v = x + (size_t)blockIdx.x * head_dim;
    const float step = powf(freq_base, -2.0f / (float)n_rot);
    const int half_rot = n_rot / 2;
    for (int i = threadIdx.x; i < half_rot; i += blockDim.x) {
        float theta = (float)pos[token];
        for (int j = 0; j < i; ++j) theta *= step;
        const float ff = freq_factors ? freq_factors[i] : 1.0f;
        const float angle = freq_scale * (theta / ff);
        const float c = cosf(angle), s = sinf(angle);
        const int a = neox ? i : 2 * i;
        const int b = neox ? i + half_rot : 2 * i + 1;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}
