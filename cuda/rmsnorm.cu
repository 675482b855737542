// RMS normalisation, one block per row.
// x, y: [n_rows][n] f32 (y may alias x); w: [n] f32.
// y[r][i] = x[r][i] / sqrt(mean_i(x[r][i]^2) + eps) * w[i]
extern "C" __global__ void rmsnorm_f32(float *y, const float *x, const float *w, int n, float eps) {
    __shared__ float red[32];
    const size_t row = (size_t)blockIdx.x * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += x[row + i] * x[row + i];
    ss = block_sum(ss, red);
    const float inv = rsqrtf(ss / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[row + i] = x[row + i] * inv * w[i];
}
