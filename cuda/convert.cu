// Activation conversions for the cuBLAS GEMMs, whose two inputs must share one type:
// f32 activations are rounded (nearest even) to the weights' f16 or bf16 before the product.
extern "C" __global__ void f32_to_f16(f16_bits *y, const float *x, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = f32_to_f16(x[i]);
}

extern "C" __global__ void f32_to_bf16(bf16_bits *y, const float *x, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = f32_to_bf16(x[i]);
}
