// Rotary position embedding, in place.
// x: [n_tokens][n_head][head_dim] f32; pos: [n_tokens] i32. Only the first n_rot dims rotate.
// Pair i (0 <= i < n_rot/2) turns by pos * freq_scale * freq_base^(-2i/n_rot). The pair is
// (2i, 2i+1) in the normal style (llama) and (i, i + n_rot/2) in the NeoX style (qwen2, phi3).
// grid: n_tokens * n_head blocks; threads over pairs.
extern "C" __global__ void rope_f32(float *x, const int *pos, int n_head, int head_dim, int n_rot,
                                    float freq_base, float freq_scale, int neox) {
    const int token = blockIdx.x / n_head;
    float *v = x + (size_t)blockIdx.x * head_dim;
    const float p = (float)pos[token];
    const int half_rot = n_rot / 2;
    for (int i = threadIdx.x; i < half_rot; i += blockDim.x) {
        const float theta = p * freq_scale * powf(freq_base, -2.0f * (float)i / (float)n_rot);
        float s, c;
        sincosf(theta, &s, &c);
        const int a = neox ? i : 2 * i;
        const int b = neox ? i + half_rot : 2 * i + 1;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}
