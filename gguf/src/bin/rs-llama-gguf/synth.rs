//! `rs-llama-gguf synth`: write a seeded synthetic model (see `gguf::synth`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::ValueEnum;
use gguf::synth::{
    self, ArchSynth, ExpertLayout, FfnKind, LoraSynthSpec, SynthArch, SynthSpec, UpcycleSpec, Vocab,
};
use gguf::{DType, GgufFile};

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// LLaMA with a dense SwiGLU FFN.
    Dense,
    /// Mixtral-style MoE (llama architecture with experts).
    Moe,
    /// MoE whose experts are perturbed copies of the FFN of `--from`.
    Upcycle,
    /// A random LoRA adapter (llama.cpp's adapter GGUF) for the model `--from`.
    Lora,
}

/// `general.architecture` of the model (dense / moe kinds).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Arch {
    Llama,
    Qwen2,
    Qwen2moe,
    Phi3,
    Phimoe,
    Qwen3,
    Qwen3moe,
    Glm4moe,
    Llama4,
    #[value(name = "gpt-oss")]
    GptOss,
    Deepseek2,
    /// deepseek2 laid out as DeepSeek-V2-Lite (Q without low rank, softmax routing, no groups).
    #[value(name = "deepseek2-lite")]
    Deepseek2Lite,
}

#[derive(Clone, Copy, ValueEnum)]
enum Dtype {
    F16,
    Bf16,
    F32,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    kind: Kind,
    /// Architecture (qwen2moe, phimoe, qwen3moe, glm4moe, llama4, gpt-oss, deepseek2 and
    /// deepseek2-lite need --kind moe, the others --kind dense).
    #[arg(long, value_enum, default_value = "llama")]
    arch: Arch,
    /// Q/K/V head size (qwen3, qwen3moe, glm4moe, gpt-oss; default n_embd / n_head).
    #[arg(long)]
    head_dim: Option<usize>,
    /// Width of qwen2moe's shared expert (default 2 × n_ff).
    #[arg(long)]
    n_ff_shexp: Option<usize>,
    /// Take the tokenizer (every tokenizer.* key) from this GGUF file. Not used by upcycle, which keeps
    /// the vocabulary of --from.
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// The dense model to upcycle (f32/f16/bf16 FFN tensors), or the base model of a LoRA adapter.
    #[arg(long)]
    from: Option<PathBuf>,
    /// LoRA rank (--kind lora).
    #[arg(long, default_value_t = 16)]
    rank: usize,
    /// LoRA `adapter.lora.alpha` (--kind lora; llama.cpp scales by alpha / rank, 0: by 1).
    #[arg(long, default_value_t = 32.0)]
    lora_alpha: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 256)]
    n_embd: usize,
    #[arg(long, default_value_t = 4)]
    n_layer: usize,
    #[arg(long, default_value_t = 8)]
    n_head: usize,
    #[arg(long, default_value_t = 4)]
    n_head_kv: usize,
    /// FFN width (per expert for MoE).
    #[arg(long, default_value_t = 512)]
    n_ff: usize,
    #[arg(long, default_value_t = 8)]
    n_expert: usize,
    #[arg(long, default_value_t = 2)]
    n_expert_used: usize,
    /// Store experts as one tensor per expert (`ffn_gate.{e}`), the early Mixtral layout.
    #[arg(long)]
    per_expert: bool,
    /// Relative noise of upcycled experts.
    #[arg(long, default_value_t = 1e-2)]
    noise: f64,
    /// Weight type (upcycle: of the expert tensors; default there: the dense FFN's type).
    #[arg(long, value_enum)]
    dtype: Option<Dtype>,
    #[arg(long, default_value_t = 2048)]
    ctx: u32,
    /// Tie the output head to token_embd (no output.weight).
    #[arg(long)]
    tied: bool,
    /// Output file.
    #[arg(short = 'o', long)]
    output: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let dtype = args.dtype.map(|d| match d {
        Dtype::F16 => DType::F16,
        Dtype::Bf16 => DType::BF16,
        Dtype::F32 => DType::F32,
    });
    let writer = match args.kind {
        Kind::Lora => {
            let Some(from) = &args.from else { bail!("--kind lora needs --from BASE.gguf") };
            let base = GgufFile::open(from).with_context(|| format!("reading {}", from.display()))?;
            let spec = LoraSynthSpec {
                seed: args.seed,
                rank: args.rank,
                alpha: args.lora_alpha,
                dtype: dtype.unwrap_or(DType::F16),
                ..LoraSynthSpec::default()
            };
            synth::lora_adapter(&base, &spec)?
        }
        Kind::Upcycle => {
            if args.arch != Arch::Llama {
                bail!("--kind upcycle makes llama models only");
            }
            let Some(from) = &args.from else { bail!("--kind upcycle needs --from DENSE.gguf") };
            let dense = GgufFile::open(from).with_context(|| format!("reading {}", from.display()))?;
            let spec = UpcycleSpec {
                seed: args.seed,
                n_expert: args.n_expert,
                n_expert_used: args.n_expert_used,
                noise: args.noise,
                dtype,
                ..UpcycleSpec::default()
            };
            synth::upcycle(&dense, &spec)?
        }
        Kind::Dense | Kind::Moe => {
            let Some(vocab_path) = &args.vocab else { bail!("--kind dense|moe needs --vocab FILE.gguf") };
            let vocab_file =
                GgufFile::open(vocab_path).with_context(|| format!("reading {}", vocab_path.display()))?;
            let vocab = Vocab::from_gguf(&vocab_file)
                .with_context(|| format!("vocabulary of {}", vocab_path.display()))?;
            let ffn = match args.kind {
                Kind::Dense => FfnKind::Dense,
                _ => FfnKind::Moe {
                    n_expert: args.n_expert,
                    n_expert_used: args.n_expert_used,
                    layout: if args.per_expert { ExpertLayout::PerExpert } else { ExpertLayout::Stacked },
                },
            };
            let spec = SynthSpec {
                seed: args.seed,
                n_embd: args.n_embd,
                n_layer: args.n_layer,
                n_head: args.n_head,
                n_head_kv: args.n_head_kv,
                n_ff: args.n_ff,
                ffn,
                dtype: dtype.unwrap_or(DType::F16),
                context_length: args.ctx,
                untied_output: !args.tied,
                ..SynthSpec::default()
            };
            let arch = match args.arch {
                Arch::Llama => None,
                Arch::Qwen2 => Some(SynthArch::Qwen2),
                Arch::Qwen2moe => Some(SynthArch::Qwen2Moe),
                Arch::Phi3 => Some(SynthArch::Phi3),
                Arch::Phimoe => Some(SynthArch::PhiMoe),
                Arch::Qwen3 => Some(SynthArch::Qwen3),
                Arch::Qwen3moe => Some(SynthArch::Qwen3Moe),
                Arch::Glm4moe => Some(SynthArch::Glm4Moe),
                Arch::Llama4 => Some(SynthArch::Llama4),
                Arch::GptOss => Some(SynthArch::GptOss),
                Arch::Deepseek2 => Some(SynthArch::Deepseek2),
                Arch::Deepseek2Lite => Some(SynthArch::Deepseek2Lite),
            };
            match arch {
                None if args.head_dim.is_some() || args.n_ff_shexp.is_some() => {
                    bail!("--head-dim and --n-ff-shexp need another --arch than llama")
                }
                None => synth::to_writer(&spec, &vocab)?,
                Some(arch) => {
                    let extra = ArchSynth { arch, head_dim: args.head_dim, n_ff_shexp: args.n_ff_shexp };
                    synth::to_writer_arch(&spec, &extra, &vocab)?
                }
            }
        }
    };
    writer.write(&args.output).with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
