// SwiGLU gate: y = silu(gate) * up, element-wise over n f32 values (y may alias gate or up).
extern "C" __global__ void swiglu_f32(float *y, const float *gate, const float *up, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float g = gate[i];
        y[i] = g / (1.0f + expf(-g)) * up[i];
    }
}
