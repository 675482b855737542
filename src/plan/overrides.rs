//! llama.cpp's `-ot, --override-tensor PATTERN=BUFFER,...`: tensors whose GGUF name matches a
//! pattern (searched anywhere in the name, as llama.cpp's `std::regex_search`) are kept in host
//! memory (`CPU`) or on the GPU (`CUDA0`, `GPU`). A task is forced where any of its tensors is;
//! every policy then places the other tasks around those.

use gguf::names::TensorKind as T;
use regex::Regex;

use super::tasks::{Task, TaskGraph, TaskKind};
use super::PlanError;

#[derive(Debug, Clone)]
pub struct TensorOverride {
    pattern: Regex,
    on_gpu: bool,
}

/// Parses `PATTERN=BUFFER[,PATTERN=BUFFER...]` (what one `-ot` takes; give it several times to add
/// more). Buffers: `CPU` (also `CPU_Mapped`, `CPU_REPACK`), `CUDA0`..., `GPU`.
pub fn parse_overrides(text: &str) -> Result<Vec<TensorOverride>, PlanError> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|item| {
            let bad = |why: &str| PlanError::BadArg(format!("--override-tensor '{item}': {why}"));
            let (pattern, buffer) = item.rsplit_once('=').ok_or_else(|| bad("expected PATTERN=BUFFER"))?;
            let b = buffer.to_ascii_uppercase();
            let on_gpu = if b == "CPU" || b.starts_with("CPU_") {
                false
            } else if b == "GPU" || b.strip_prefix("CUDA").is_some_and(|n| n.parse::<u32>().is_ok()) {
                true
            } else {
                return Err(bad(&format!("unknown buffer type '{buffer}' (CPU, CUDA0, GPU)")));
            };
            // The regex crate's message draws the pattern over several lines; its last says why.
            let pattern = Regex::new(pattern).map_err(|e| {
                let msg = e.to_string();
                let why = msg.lines().last().unwrap_or_default().trim_start_matches("error: ").to_string();
                bad(&format!("bad pattern: {why}"))
            })?;
            Ok(TensorOverride { pattern, on_gpu })
        })
        .collect()
}

/// The GGUF names of the tensors task `t` computes with (both expert layouts for an expert).
pub fn tensor_names(t: &Task, g: &TaskGraph) -> Vec<String> {
    let il = t.layer as usize;
    let names = |kinds: &[T]| kinds.iter().map(|k| k.weight(il)).collect::<Vec<_>>();
    match t.kind {
        TaskKind::Attention => names(&[T::AttnNorm, T::AttnQ, T::AttnK, T::AttnV, T::AttnQkv, T::AttnOutput]),
        TaskKind::Router => names(&[T::FfnGateInp]),
        TaskKind::FfnRows { .. } => names(&[T::FfnNorm, T::FfnGate, T::FfnUp, T::FfnDown]),
        TaskKind::SharedExpert => {
            names(&[T::FfnGateInpShexp, T::FfnGateShexp, T::FfnUpShexp, T::FfnDownShexp])
        }
        TaskKind::Expert { expert } => {
            let mut n = names(&[T::FfnGateExps, T::FfnUpExps, T::FfnDownExps]);
            let legacy = [T::FfnGateExpert, T::FfnUpExpert, T::FfnDownExpert];
            n.extend(legacy.iter().map(|k| k.expert_weight(il, expert as usize)));
            n
        }
        TaskKind::Output => {
            let head = if g.shape.tied_output { T::TokenEmbd } else { T::Output };
            vec![head.weight(0), T::OutputNorm.weight(0)]
        }
    }
}

/// Per task: `Some(true)` forced onto the GPU, `Some(false)` kept in host memory, `None` free.
/// The first matching override of a tensor wins, as in llama.cpp.
pub fn forced(g: &TaskGraph, overrides: &[TensorOverride]) -> Vec<Option<bool>> {
    g.tasks
        .iter()
        .map(|t| {
            let names = tensor_names(t, g);
            let hit = |name: &String| overrides.iter().find(|o| o.pattern.is_match(name)).map(|o| o.on_gpu);
            let hits: Vec<bool> = names.iter().filter_map(hit).collect();
            // Host wins over GPU when a task's tensors disagree: its weights cannot all be resident.
            if hits.contains(&false) {
                Some(false)
            } else if hits.is_empty() {
                None
            } else {
                Some(true)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::shapes::{ModelShape, WeightType};

    #[test]
    fn experts_of_chosen_layers_go_to_the_cpu_and_attention_to_the_gpu() {
        let s = ModelShape::named("mixtral-8x7b", WeightType::F16).unwrap();
        let g = TaskGraph::build(&s, 1, 512);
        let o = parse_overrides(r"blk\.(1[0-9])\.ffn_.*_exps=CPU,attn=CUDA0").unwrap();
        let f = forced(&g, &o);
        let expert = |l: usize| g.layers[l].ffn[3];
        assert_eq!(f[expert(12)], Some(false));
        assert_eq!(f[expert(9)], None);
        assert_eq!(
            f[expert(21)],
            None,
            "1[0-9] must not match 21 (search, not full match, but the dots are literal)"
        );
        assert_eq!(f[g.layers[0].attention], Some(true));
        assert_eq!(f[g.layers[0].router.unwrap()], None);
        assert_eq!(f[g.output], None);
        // `exps=CPU`, the common form: every routed expert, nothing else.
        let f = forced(&g, &parse_overrides("exps=CPU").unwrap());
        let n_forced = f.iter().filter(|x| **x == Some(false)).count();
        assert_eq!(n_forced, 32 * 8);
    }

    #[test]
    fn bad_overrides_are_one_line_errors() {
        for bad in ["exps", "exps=TPU", "(=CPU"] {
            let e = parse_overrides(bad).unwrap_err().to_string();
            assert!(e.contains("--override-tensor") && !e.contains('\n'), "{e}");
        }
        assert_eq!(parse_overrides("a=cpu,b=cuda1,c=GPU").unwrap().len(), 3);
    }
}
