//! `glm4moe` (GLM-4.5, GLM-4.6, GLM-4.5-Air): the first `leading_dense_block_count` layers have a
//! dense SwiGLU FFN, the others sigmoid-routed experts with a selection bias and one plain shared
//! expert. What sets its attention and routing apart is in the `Arch` properties and
//! `HParams::routing`; the NextN block after the trunk is not loaded (llama.cpp skips it too
//! unless it drafts with it).

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
