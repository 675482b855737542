//! llama.cpp's sampler chain. (Filled by the sampling/CLI work.)
