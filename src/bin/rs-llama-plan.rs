//! rs-llama-plan: print the CPU/GPU/PCIe partition plan for a model on a machine, with the reason
//! for each placement and the predicted prefill and decode speed; or measure this machine.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use rs_llama::plan::cost::CostModel;
use rs_llama::plan::presets::{self, PRESET_NAMES};
use rs_llama::plan::print::{plan_text, prediction_text, timeline_svg, timeline_text, Report};
use rs_llama::plan::profile::{measure_cpu, HwProfile};
use rs_llama::plan::shapes::{ModelShape, WeightType, SHAPE_NAMES};
use rs_llama::plan::tasks::TaskGraph;
use rs_llama::plan::workload::{run_step, steps};
use rs_llama::plan::{make_plan, parse_size, predict, PolicyKind, PolicyOptions, Popularity, Workload};

#[derive(Parser, Debug)]
#[command(name = "rs-llama-plan", about = "Partition plan for CPU + GPU + PCIe inference, with predictions")]
struct Args {
    /// GGUF model file.
    #[arg(short = 'm', long = "model")]
    model: Option<String>,
    /// Named model shape instead of a file.
    #[arg(long, help = format!("named shape: {}", SHAPE_NAMES.join(", ")))]
    shape: Option<String>,
    /// Weight type for --shape (f16, bf16, f32).
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// Hardware preset or profile JSON file.
    #[arg(long, default_value = "host", help = format!("preset ({}) or profile JSON", PRESET_NAMES.join(", ")))]
    hw: String,
    /// GPU memory budget, binary units (24G = 24GB = 24GiB = 24·2^30 bytes, 512M = 512·2^20; 0 = a
    /// CPU-only plan); default: the GPU's memory.
    #[arg(long = "gpu-mem")]
    gpu_mem: Option<String>,
    #[arg(long, default_value = "auto")]
    policy: String,
    #[arg(long, default_value_t = 512)]
    prompt: u64,
    #[arg(long, default_value_t = 128)]
    gen: u64,
    /// Context the KV cache is sized for (llama.cpp -c); 0 = prompt + gen. rs-llama's own sessions
    /// plan with their real context (its default: the model's training context).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0)]
    ctx_size: u64,
    /// Prompt tokens per step (llama.cpp -ub).
    #[arg(long, default_value_t = 512)]
    ubatch: u64,
    /// `layers`: llama.cpp -ngl (default: the best that fits); `auto`: caps the resident bytes at what
    /// -ngl N would hold.
    #[arg(long = "n-gpu-layers", visible_alias = "ngl")]
    ngl: Option<u32>,
    /// `layers`: llama.cpp --n-cpu-moe (default: the best that fits).
    #[arg(long = "n-cpu-moe")]
    n_cpu_moe: Option<u32>,
    /// llama.cpp's -ot: PATTERN=CPU|CUDA0,... (repeatable): tasks whose tensors match are kept in
    /// host memory or put on the GPU; the policy places the rest.
    #[arg(long = "override-tensor")]
    override_tensor: Vec<String>,
    /// `auto`: exactly this many staging slots (default: the best of 0-4).
    #[arg(long)]
    slots: Option<u32>,
    /// Expert popularity skew: 0 = uniform, s > 0 = Zipf exponent (seeded ranking per layer).
    #[arg(long, default_value_t = 0.0)]
    skew: f64,
    /// Dense FFN row blocks per layer (the granularity of intra-layer splits).
    #[arg(long, default_value_t = 8)]
    row_blocks: u32,
    /// Stream from pageable memory (llama.cpp's default mmap load) instead of pinned.
    #[arg(long)]
    pageable: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Print the first prefill chunk's timeline (`text` or an SVG file path ending in .svg).
    #[arg(long)]
    timeline: Option<String>,
    /// Measure this machine and write the profile JSON to stdout.
    #[arg(long)]
    profile: bool,
}

fn run(args: Args) -> Result<()> {
    if args.profile {
        return profile();
    }
    let wtype = WeightType::parse(&args.dtype)?;
    let shape = match (&args.model, &args.shape) {
        (Some(path), None) => {
            let file = gguf::GgufFile::open(path)?;
            let name = std::path::Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned());
            ModelShape::from_gguf(&file, &name.unwrap_or_default())?
        }
        (None, Some(name)) => ModelShape::named(name, wtype)?,
        _ => bail!("give exactly one of -m FILE or --shape NAME"),
    };
    let hw = presets::load(&args.hw)?;
    let gpu_mem = match (&args.gpu_mem, &hw.gpu) {
        (Some(s), Some(g)) => parse_size(s).context("--gpu-mem")?.min(g.mem_bytes),
        (None, Some(g)) => g.mem_bytes,
        (_, None) => 0,
    };
    let policy = PolicyKind::parse(&args.policy)?;
    if args.prompt == 0 && args.gen == 0 {
        bail!("--prompt and --gen are both 0: nothing to plan for");
    }
    let workload =
        Workload { prompt: args.prompt, gen: args.gen, ubatch: args.ubatch.max(1), ..Workload::default() };
    let popularity = if args.skew > 0.0 {
        Popularity::zipf(shape.n_layer, shape.n_expert, args.skew, 0x9e37)
    } else {
        Popularity::uniform(shape.n_layer, shape.n_expert)
    };
    let n_ctx = if args.ctx_size > 0 { args.ctx_size } else { args.prompt + args.gen };
    let graph = TaskGraph::build(&shape, args.row_blocks, n_ctx);
    let cost = CostModel::new(&hw, shape.wtype, !args.pageable);
    let mut overrides = Vec::new();
    for o in &args.override_tensor {
        overrides.extend(rs_llama::plan::overrides::parse_overrides(o)?);
    }
    let opts = PolicyOptions {
        gpu_mem_bytes: gpu_mem,
        workload,
        popularity,
        ngl: args.ngl,
        n_cpu_moe: args.n_cpu_moe,
        min_batch: 32,
        slots: args.slots,
        forced: rs_llama::plan::overrides::forced(&graph, &overrides),
    };
    let plan = make_plan(policy, &graph, &cost, &opts, &hw.name)?;
    let pred = predict(&plan, &graph, &cost, &opts.popularity, &workload)?;
    if args.json {
        let report = Report {
            policy: policy.name(),
            model: &plan.model,
            hw: &plan.hw,
            gpu_mem_bytes: plan.gpu_mem_bytes,
            gpu_resident_bytes: plan.gpu_resident_bytes,
            staging_bytes: plan.staging_bytes,
            scratch_bytes: plan.scratch_bytes,
            prefill_tps: pred.prefill_tps,
            decode_tps: pred.decode_tps,
            prompt: args.prompt,
            gen: args.gen,
            summary: &plan.summary,
            prediction: &pred,
            plan: &plan,
        };
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", plan_text(&plan, &|i| graph.tasks[i].layer));
        print!("{}", prediction_text(&pred, &workload));
    }
    if let Some(where_to) = &args.timeline {
        let (prefill, decode) = steps(&graph, &opts.popularity, &workload);
        let step = prefill.first().or(decode.first()).context("no step to show")?;
        let tl = run_step(&plan, &graph, &cost, step)?;
        if where_to == "text" {
            eprint!("{}", timeline_text(&tl));
        } else {
            std::fs::write(where_to, timeline_svg(&tl)).with_context(|| format!("writing {where_to}"))?;
            eprintln!("timeline written to {where_to}");
        }
    }
    Ok(())
}

fn profile() -> Result<()> {
    let start = std::time::Instant::now();
    let cpu = measure_cpu();
    let dram = cpu.at().mem_gbs;
    eprintln!("rs-llama-plan: CPU measured in {:.1} s", start.elapsed().as_secs_f64());
    eprintln!("rs-llama-plan: the GPU part needs the `cuda` feature and a GPU (not built yet): GPU and PCIe fields left out");
    let p = HwProfile {
        name: "measured".into(),
        source: "rs-llama-plan --profile (CPU only; FMA figure is a register-loop ceiling)".into(),
        cpu,
        dram_gbs: dram,
        gpu: None,
        pcie: None,
    };
    println!("{}", p.to_json());
    Ok(())
}

fn main() -> ExitCode {
    // `--profile` and `--hw host` probe our kernels, which allocate scratch of megabytes per call:
    // probe them under the allocator settings that rs-llama and rs-llama-bench run them with, or
    // every call pays fresh page faults.
    rs_llama::cli::threads::keep_freed_memory();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rs-llama-plan: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
