//! The supported architectures and what sets them apart, as typed properties.
//!
//! Adding an architecture: a variant here (with its properties in every `match`), a file that
//! loads its tensors (like `llama.rs`), and a line in `Model::load`'s dispatch.

use crate::ops::moe::ExpertGating;
use crate::ops::rope::RopeStyle;

use super::ModelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// LLaMA-2/3, Mistral, SmolLM; Mixtral when `expert_count > 0`.
    Llama,
}

/// Whether a family of bias tensors is absent, optional or required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BiasRule {
    None,
    Optional,
    Required,
}

impl Arch {
    pub const ALL: &'static [Arch] = &[Arch::Llama];

    /// `general.architecture` as written in GGUF files.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
        }
    }

    pub fn from_name(name: &str) -> Result<Arch, ModelError> {
        Arch::ALL.iter().copied().find(|a| a.name() == name).ok_or_else(|| {
            let supported: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
            ModelError::UnknownArch(name.to_string(), supported.join(", "))
        })
    }

    pub fn rope_style(self) -> RopeStyle {
        match self {
            Arch::Llama => RopeStyle::Norm,
        }
    }

    /// The output head may be missing, in which case the token embedding is reused.
    pub fn output_may_be_tied(self) -> bool {
        match self {
            Arch::Llama => true,
        }
    }

    pub fn expert_gating(self) -> ExpertGating {
        match self {
            Arch::Llama => ExpertGating::Softmax,
        }
    }

    /// The top-k expert weights are renormalised to sum to one.
    pub fn normalizes_expert_weights(self) -> bool {
        match self {
            Arch::Llama => true,
        }
    }

    /// Biases of `attn_q/k/v` and `attn_output`.
    pub fn attn_bias(self) -> BiasRule {
        match self {
            Arch::Llama => BiasRule::Optional,
        }
    }

    /// Biases of the dense FFN's `ffn_gate/up/down`.
    pub fn ffn_bias(self) -> BiasRule {
        match self {
            Arch::Llama => BiasRule::Optional,
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_arch_names_it_and_lists_supported() {
        assert_eq!(Arch::from_name("llama").ok(), Some(Arch::Llama));
        let err = Arch::from_name("gpt-j").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("'gpt-j'") && err.contains("llama"), "{err}");
    }
}
