// Row-wise softmax of scale * x, one block per row. x, y: [n_rows][n] f32 (y may alias x).
extern "C" __global__ void softmax_f32(float *y, const float *x, int n, float scale) {
    __shared__ float red[32];
    const size_t row = (size_t)blockIdx.x * n;
    float m = -RS_INF;
    for (int i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, scale * x[row + i]);
    m = block_max(m, red);
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float e = expf(scale * x[row + i] - m);
        y[row + i] = e;
        s += e;
    }
    s = block_sum(s, red);
    const float inv = 1.0f / s;
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[row + i] *= inv;
}
