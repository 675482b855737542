// Helpers prepended to every kernel file by src/gpu/kernels.rs. Our kernels include no header at all,
// so NVRTC needs no include path (neither CI nor the device has to find cuda_fp16.h): f16 and bf16
// travel as raw 16-bit words and are converted here.

typedef unsigned short f16_bits;  // IEEE binary16
typedef unsigned short bf16_bits; // bfloat16

#define RS_INF __int_as_float(0x7f800000)

__device__ __forceinline__ float f16_to_f32(f16_bits h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ f16_bits f32_to_f16(float f) {
    f16_bits h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float bf16_to_f32(bf16_bits b) {
    return __uint_as_float(((unsigned int)b) << 16);
}

// Round to nearest even, NaN kept quiet (the same rounding as the `half` crate on the host).
__device__ __forceinline__ bf16_bits f32_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_bits)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_bits)(u >> 16);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide reductions; every thread gets the result. blockDim.x must be a multiple of 32 and all
// threads must call. `red` holds 32 floats of shared memory; the first barrier lets a block reuse it
// straight after a previous reduction.
__device__ __forceinline__ float block_sum(float v, float *red) {
    v = warp_sum(v);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float s = 0.0f;
    for (int i = 0; i < n_warps; ++i) s += red[i];
    return s;
}

__device__ __forceinline__ float block_max(float v, float *red) {
    v = warp_max(v);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float m = -RS_INF;
    for (int i = 0; i < n_warps; ++i) m = fmaxf(m, red[i]);
    return m;
}
