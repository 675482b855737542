//! Models whose layers are not all of one kind: `glm4moe` (GLM-4.5/4.6/4.5-Air: the first
//! `leading_dense_block_count` layers dense, then sigmoid-routed experts with a selection bias and
//! a plain shared expert; the NextN block after the trunk is not loaded, as llama.cpp skips it when
//! not drafting) and `llama4` (Scout/Maverick: experts every `interleave_moe_layer_step`-th layer,
//! dense SwiGLU between them) and `deepseek2` (leading dense layers as GLM's, with latent
//! attention: `super::deepseek2`). Which layer is which is `HParams::layer_is_moe`; what sets their
//! attention and routing apart is in the `Arch` properties and `HParams`.

use super::arch::Arch;
use super::blocks::{load_dense, load_model, load_moe};
use super::hparams::HParams;
use super::tensors::ModelWeights;
use super::weights::Loader;
use super::ModelError;

pub fn load(ld: &Loader, hp: &HParams, arch: Arch) -> Result<ModelWeights, ModelError> {
    load_model(ld, hp, arch, |il| {
        if hp.layer_is_moe(il) {
            load_moe(ld, hp, arch, il)
        } else {
            load_dense(ld, hp, arch, il)
        }
    })
}
