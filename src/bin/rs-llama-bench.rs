//! rs-llama-bench: llama-bench's tests and reports for rs-llama (see `rs_llama::bench`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use rs_llama::bench::{self, args, output, Ceilings, ModelInfo, TestResult, TestSpec};
use rs_llama::cli::threads::physical_cores;
use rs_llama::cpu::path;
use rs_llama::model::{LoadOptions, Model};

fn main() -> ExitCode {
    let argv = rs_llama::cli::lossy_args();
    let a = match args::parse(&argv, physical_cores()) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("{}", args::USAGE);
            return ExitCode::from(1);
        }
    };
    rs_llama::cli::threads::keep_freed_memory();
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(a: &bench::BenchArgs) -> anyhow::Result<()> {
    let mut specs = Vec::new();
    for &threads in &a.threads {
        for &n_batch in &a.n_batch {
            for &n_ubatch in &a.n_ubatch {
                let mut push =
                    |n_prompt, n_gen| specs.push(TestSpec { n_prompt, n_gen, n_batch, n_ubatch, threads });
                a.n_prompt.iter().filter(|&&p| p > 0).for_each(|&p| push(p, 0));
                a.n_gen.iter().filter(|&&g| g > 0).for_each(|&g| push(0, g));
                a.pg.iter().filter(|(p, g)| p + g > 0).for_each(|&(p, g)| push(p, g));
            }
        }
    }
    let mut pools = HashMap::new();
    let mut ceilings: HashMap<usize, Ceilings> = HashMap::new();
    let cpu_path = path::active().name();
    let mut results = Vec::new();
    let md = a.output == bench::OutputFormat::Md;
    let mut stdout = std::io::stdout();
    if md {
        let show_b = specs.iter().any(|s| s.n_batch != 2048);
        let show_ub = specs.iter().any(|s| s.n_ubatch != 512);
        write!(stdout, "{}", output::md_header(show_b, show_ub))?;
    }
    for model_path in &a.models {
        let model = Model::open(model_path, &LoadOptions::default())
            .map_err(|e| anyhow::anyhow!("failed to load model '{}': {e}", model_path.display()))?;
        let info = ModelInfo::of(&model, &model_path.display().to_string());
        for spec in &specs {
            let pool = match pools.entry(spec.threads) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    e.insert(rayon::ThreadPoolBuilder::new().num_threads(spec.threads).build()?)
                }
            };
            let ceil =
                *ceilings.entry(spec.threads).or_insert_with(|| pool.install(bench::ceilings::measure));
            if a.progress {
                eprintln!(
                    "rs-llama-bench: {} {} t={} ({cpu_path})",
                    info.filename,
                    spec.name(),
                    spec.threads
                );
            }
            let samples = pool.install(|| bench::run_test(&model, spec, a.repetitions, a.warmup))?;
            let r = TestResult {
                model: info.clone(),
                spec: *spec,
                cpu_path,
                test_time: bench::now_rfc3339(),
                samples_ns: samples,
                work: bench::work_of(&model, spec),
                ceilings: ceil,
            };
            if md {
                let show_b = specs.iter().any(|s| s.n_batch != 2048);
                let show_ub = specs.iter().any(|s| s.n_ubatch != 512);
                write!(stdout, "{}", output::md_row(&r, show_b, show_ub))?;
            }
            if let Some(fmt) = a.output_err {
                eprint!("{}", output::render(fmt, std::slice::from_ref(&r)));
            }
            results.push(r);
        }
    }
    if md {
        writeln!(stdout, "\n{}", output::build_line())?;
        for (t, c) in &ceilings {
            eprintln!(
                "ceilings ({t} threads): read {:.1} GB/s, fma {:.1} GFLOP/s",
                c.read_gbps, c.fma_gflops
            );
        }
    } else {
        write!(stdout, "{}", output::render(a.output, &results))?;
    }
    Ok(())
}
