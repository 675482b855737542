use rs_llama::exec::session::BatchItem;
use rs_llama::exec::{OutputRows, Session};
use rs_llama::model::{LoadOptions, Model};
#[test]
fn tp() {
    let home = std::env::var("HOME").unwrap();
    let m =
        Model::open(&format!("{home}/.cache/rs-llama/models/smollm2-135m-f16.gguf"), &LoadOptions::default())
            .unwrap();
    for n in [1usize, 2, 4, 8] {
        let mut s = Session::with_sequences(&m, 512, n, 512).unwrap();
        let p: Vec<u32> = (1..20).collect();
        let items: Vec<BatchItem> =
            (0..n).map(|i| BatchItem { seq: i, tokens: &p, logits: OutputRows::Last }).collect();
        s.decode_batch(&items).unwrap();
        let t = std::time::Instant::now();
        let steps = 40;
        for k in 0..steps {
            let toks: Vec<[u32; 1]> = (0..n).map(|i| [(100 + k * 7 + i) as u32]).collect();
            let items: Vec<BatchItem> =
                (0..n).map(|i| BatchItem { seq: i, tokens: &toks[i], logits: OutputRows::Last }).collect();
            s.decode_batch(&items).unwrap();
        }
        let dt = t.elapsed().as_secs_f64();
        eprintln!(
            "n_seq {n}: {:.1} ms/step, aggregate {:.1} t/s",
            dt * 1e3 / steps as f64,
            (steps * n) as f64 / dt
        );
    }
}
