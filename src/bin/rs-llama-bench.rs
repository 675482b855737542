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
        // A bad device value is one worded line (tests and scripts read it); an unknown flag
        // prints the usage as llama-bench does.
        Err(args::ArgError::BadValue(e)) => {
            eprintln!("{e}");
            return ExitCode::from(1);
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
    let dev_specs = a.dev_specs();
    for &threads in &a.threads {
        for &n_batch in &a.n_batch {
            for &n_ubatch in &a.n_ubatch {
                for &dev in &dev_specs {
                    let mut push = |n_prompt, n_gen| {
                        specs.push(TestSpec { n_prompt, n_gen, n_batch, n_ubatch, threads, dev })
                    };
                    a.n_prompt.iter().filter(|&&p| p > 0).for_each(|&p| push(p, 0));
                    a.n_gen.iter().filter(|&&g| g > 0).for_each(|&g| push(0, g));
                    a.pg.iter().filter(|(p, g)| p + g > 0).for_each(|&(p, g)| push(p, g));
                }
            }
        }
    }
    if dev_specs.iter().any(|d| d.is_sim()) {
        // A bad --sim-hw is found before any model loads or any CPU test runs.
        bench::devices::hybrid_options(&a.sim, &bench::DevSpec::default(), 1).map_err(anyhow::Error::msg)?;
    }
    let mut pools = HashMap::new();
    let mut ceilings: HashMap<usize, Ceilings> = HashMap::new();
    let cpu_path = path::active().name();
    let mut results = Vec::new();
    let md = a.output == bench::OutputFormat::Md;
    let mut stdout = std::io::stdout();
    let cols = output::Columns::of(&specs);
    if md {
        write!(stdout, "{}", output::md_header(cols))?;
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
                    "rs-llama-bench: {} {} t={} dev={} ({cpu_path})",
                    info.filename,
                    spec.name(),
                    spec.threads,
                    spec.dev.device.name()
                );
            }
            let (samples, sim) = if spec.dev.is_sim() {
                let (samples, sim) = pool.install(|| {
                    bench::devices::run_sim_test(&model, spec, a.repetitions, a.warmup, &a.sim)
                })?;
                // A replanned load measures a smaller plan than asked for: always said.
                for note in &sim.notes {
                    eprintln!("rs-llama-bench: sim ({}, {}): {note}", sim.hw, spec.dev.policy.name());
                }
                if a.progress {
                    eprintln!("rs-llama-bench: sim ({}, {}): {}", sim.hw, spec.dev.policy.name(), sim.plan);
                }
                (samples, Some(sim))
            } else {
                (pool.install(|| bench::run_test(&model, spec, a.repetitions, a.warmup))?, None)
            };
            let r = TestResult {
                model: info.clone(),
                spec: *spec,
                cpu_path,
                test_time: bench::now_rfc3339(),
                samples_ns: samples,
                work: bench::work_of(&model, spec),
                ceilings: ceil,
                sim,
            };
            if md {
                write!(stdout, "{}", output::md_row(&r, cols))?;
            }
            if let Some(fmt) = a.output_err {
                eprint!("{}", output::render(fmt, std::slice::from_ref(&r)));
            }
            results.push(r);
        }
    }
    if md {
        writeln!(stdout)?;
        if let Some(note) = output::sim_note(&results) {
            writeln!(stdout, "{note}")?;
        }
        writeln!(stdout, "{}", output::build_line())?;
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
