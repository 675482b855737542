//! Slot choice and the host-memory prompt cache (`--cache-ram`, `--cache-idle-slots`, `-kvu`,
//! `-sps`) against llama-server's own answers: for request sequences under ten flag sets, each
//! request must land on the same slot, reuse the same number of cached prompt tokens, evaluate
//! the same number, and give the same text as llama-server 11434 did on the same model
//! (`tests/fixtures/server/prompt-cache-llama-server.json`, made by `make-prompt-cache.py`).

mod server_support;

use serde_json::Value;
use server_support::*;

#[test]
fn slots_and_cached_prompts_follow_llama_server() {
    let Some(model) = model("smollm2-135m-f16.gguf") else { return };
    let fixture: Value = serde_json::from_str(include_str!("fixtures/server/prompt-cache-llama-server.json"))
        .expect("fixture parses");
    let scenarios = fixture["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 10);
    // The fixture exercises restores from host memory, not only a slot's own cache: the first two
    // sequences differ only in `--cache-ram 100` / `0`.
    let cache_n = |sc: &Value| -> Vec<u64> {
        sc["answers"].as_array().unwrap().iter().map(|a| a["cache_n"].as_u64().unwrap()).collect()
    };
    let (with, without) = (cache_n(&scenarios[0]), cache_n(&scenarios[1]));
    assert!(with.iter().zip(&without).filter(|(w, wo)| w > wo).count() >= 3, "{with:?} vs {without:?}");
    for sc in scenarios {
        let flags: Vec<&str> = sc["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
        let server = Server::ready(&model, &flags);
        let answers = sc["answers"].as_array().unwrap();
        for (k, (body, want)) in sc["requests"].as_array().unwrap().iter().zip(answers).enumerate() {
            let r = send(server.port, "POST", "/completion", body.to_string().as_bytes()).expect("answer");
            assert_eq!(r.status, 200, "{flags:?} request {k}: {}", r.text());
            let got = r.json();
            let t = &got["timings"];
            let seen = serde_json::json!({
                "id_slot": got["id_slot"], "cache_n": t["cache_n"], "prompt_n": t["prompt_n"],
                "content": got["content"],
            });
            assert_eq!(&seen, want, "{flags:?} request {k} ({})", body["prompt"]);
        }
    }
}
