//! `POST /slots/{id}?action=save|restore|erase` with `--slot-save-path`, on SmolLM2: a slot saved,
//! erased and restored into another slot serves the same prompt from the restored rows (all but
//! its last token cached) with the same greedy text; ids wrap around; every refusal has the status
//! and body llama-server 11434 gave for the same request (checked side by side with it on this
//! model, the commands in tests/fixtures/server/README.md).

mod server_support;

use serde_json::{json, Value};
use server_support::*;

const LONG: &str = "Once upon a time in a land far away, there lived a brave knight who traveled across \
mountains and rivers to find the legendary golden sword hidden deep within the enchanted forest of whispers.";

fn post(port: u16, path: &str, body: &[u8]) -> (u16, Value) {
    let r = send(port, "POST", path, body).expect("answer");
    (r.status, r.json())
}

fn error(code: u16, message: &str) -> Value {
    let kind = if code == 400 { "invalid_request_error" } else { "not_supported_error" };
    json!({"error": {"code": code, "message": message, "type": kind}})
}

#[test]
fn a_saved_slot_restored_elsewhere_serves_its_prompt() {
    let Some(model) = model("smollm2-135m-f16.gguf") else { return };
    let dir = std::env::temp_dir().join(format!("rs-llama-slot-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_string_lossy().into_owned();
    let server = Server::ready(&model, &["-np", "2", "-c", "2048", "-t", "2", "--slot-save-path", &d]);
    let port = server.port;
    let ask =
        |slot: usize| json!({"prompt": LONG, "id_slot": slot, "n_predict": 6, "temperature": 0}).to_string();
    let (s, first) = post(port, "/completion", ask(0).as_bytes());
    assert_eq!(s, 200);
    let n_prompt = first["tokens_evaluated"].as_u64().unwrap();

    let (s, saved) = post(port, "/slots/0?action=save", br#"{"filename":"long.bin"}"#);
    assert_eq!(s, 200, "{saved}");
    let n_saved = saved["n_saved"].as_u64().unwrap();
    assert!(n_saved > n_prompt, "the prompt and the answer's tokens but the last: {n_saved}");
    let size = std::fs::metadata(dir.join("long.bin")).unwrap().len();
    assert_eq!(saved["n_written"], size);
    assert_eq!(saved["filename"], "long.bin");
    assert!(saved["timings"]["save_ms"].is_number());

    let (_, erased) = post(port, "/slots/0?action=erase", b"");
    assert_eq!(erased, json!({"id_slot": 0, "n_erased": n_saved}));
    let (s, restored) = post(port, "/slots/3?action=restore", br#"{"filename":"long.bin"}"#);
    assert_eq!(s, 200, "{restored}");
    assert_eq!(restored["id_slot"], 3, "the id as asked; 3 wraps to slot 1");
    assert_eq!(restored["n_restored"], n_saved);
    assert_eq!(restored["n_read"], size);

    let (_, again) = post(port, "/completion", ask(1).as_bytes());
    assert_eq!(again["content"], first["content"]);
    assert_eq!(again["timings"]["cache_n"], n_prompt - 1, "served from the restored rows");
    assert_eq!(again["id_slot"], 1);

    // Refusals, each as llama-server answers it.
    let cases: &[(&str, &[u8], u16, &str)] = &[
        ("/slots/abc?action=erase", b"", 400, "Invalid slot ID"),
        ("/slots/0?action=nope", b"", 400, "Invalid action"),
        ("/slots/0?action=save", br#"{"filename":"../x"}"#, 400, "Invalid filename"),
        ("/slots/0?action=save", b"{}", 400, "[json.exception.out_of_range.403] key 'filename' not found"),
        (
            "/slots/0?action=save",
            br#"{"filename":3}"#,
            400,
            "[json.exception.type_error.302] type must be string, but is number",
        ),
        (
            "/slots/0?action=restore",
            br#"{"filename":"missing.bin"}"#,
            400,
            "Unable to restore slot: No available space in KV cache or invalid slot save file",
        ),
    ];
    for &(path, body, code, message) in cases {
        assert_eq!(post(port, path, body), (code, error(code, message)), "{path}");
    }
    // A damaged file is refused and leaves the slot empty.
    let bytes = std::fs::read(dir.join("long.bin")).unwrap();
    std::fs::write(dir.join("cut.bin"), &bytes[..bytes.len() / 2]).unwrap();
    let (s, _) = post(port, "/slots/1?action=restore", br#"{"filename":"cut.bin"}"#);
    assert_eq!(s, 400);
    let (_, erased) = post(port, "/slots/1?action=erase", b"");
    assert_eq!(erased["n_erased"], 0, "the failed restore emptied the slot");
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();

    // Without --slot-save-path every action is refused.
    let plain = Server::ready(&model, &["-np", "1", "-c", "512"]);
    let message = "This server does not support slots action. Start it with `--slot-save-path`";
    assert_eq!(post(plain.port, "/slots/0?action=erase", b""), (501, error(501, message)));
}
