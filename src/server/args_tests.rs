//! `rs-llama-server` flags: defaults, values, errors and the environment.

use super::*;
use crate::cli::device::DeviceChoice;

#[test]
fn defaults_are_llama_servers() {
    let c = parse::<&str>(&[]).unwrap();
    assert_eq!(
        (c.hosts.as_slice(), c.port, c.n_parallel, c.n_ctx),
        (&["127.0.0.1".to_string()][..], 8080, -1, 0)
    );
    assert_eq!((c.n_batch, c.n_ubatch, c.n_predict, c.timeout_s), (2048, 512, -1, 3600));
    assert!(c.use_jinja && c.cont_batching && c.cache_prompt && c.endpoint_slots);
    assert!(!c.endpoint_metrics && !c.endpoint_props);
    assert_eq!((c.n_slots(), c.unified_kv()), (4, true));
    assert_eq!(c.sampling, SamplingParams::default());
}

#[test]
fn flags_set_their_fields() {
    let c = parse(&[
        "-m",
        "x.gguf",
        "--host",
        "::1",
        "--port",
        "0",
        "-np",
        "2",
        "-c",
        "512",
        "-nocb",
        "--no-jinja",
        "--metrics",
        "--no-slots",
        "--props",
        "-to",
        "5",
        "--no-webui",
        "--api-key",
        "a,b",
        "--api-key",
        "c",
        "-a",
        "smol",
        "--temp",
        "0",
        "--top_k",
        "1",
        "-s",
        "-1",
        "--ignore-eos",
        "-dev",
        "sim",
        "--no-cache-prompt",
        "-t",
        "3",
    ])
    .unwrap();
    assert_eq!(c.model, Some(PathBuf::from("x.gguf")));
    assert_eq!(
        (c.hosts.as_slice(), c.port, c.n_slots(), c.unified_kv(), c.n_ctx),
        (&["::1".to_string()][..], 0, 2, false, 512)
    );
    assert!(!c.cont_batching && !c.use_jinja && c.endpoint_metrics && !c.endpoint_slots && c.endpoint_props);
    assert_eq!(c.api_keys, ["a", "b", "c"]);
    assert_eq!(c.alias, ["smol"]);
    assert_eq!((c.sampling.temp, c.sampling.top_k, c.sampling.seed), (0.0, 1, u32::MAX));
    assert!(c.sampling.ignore_eos && !c.webui && !c.cache_prompt);
    assert_eq!((c.timeout_s, c.n_threads(), c.device.device), (5, 3, DeviceChoice::Sim));
    assert!(c.warnings.is_empty(), "repeating --api-key adds keys");
}

#[test]
fn bad_arguments_are_one_line_errors() {
    assert_eq!(parse(&["--bogus"]).unwrap_err().to_string(), "error: invalid argument: --bogus");
    let e = parse(&["--mmproj", "x"]).unwrap_err().to_string();
    assert_eq!(e, "error: argument --mmproj is not supported yet by rs-llama");
    assert!(matches!(parse(&["--port", "http"]), Err(ArgError::BadValue { .. })));
    assert!(matches!(parse(&["-m"]), Err(ArgError::BadValue { .. })));
}

#[test]
fn environment_comes_first_and_flags_override_it() {
    let env = |k: &str| match k {
        "LLAMA_ARG_PORT" => Some("9000".to_string()),
        "LLAMA_ARG_MODEL" => Some("env.gguf".to_string()),
        "LLAMA_ARG_ENDPOINT_METRICS" => Some("1".to_string()),
        "LLAMA_ARG_NO_CONT_BATCHING" => Some("".to_string()),
        "LLAMA_API_KEY" => Some("k1".to_string()),
        _ => None,
    };
    let mut c = ServerConfig::default();
    apply(&mut c, &env_args(env).unwrap(), false).unwrap();
    apply(&mut c, &["--port", "9001"], true).unwrap();
    assert_eq!(
        (c.port, c.model, c.endpoint_metrics, c.cont_batching),
        (9001, Some("env.gguf".into()), true, false)
    );
    assert_eq!(c.api_keys, ["k1"]);
    assert!(c.warnings.is_empty());
}

#[test]
fn placement_flags_reach_the_device_config() {
    let c = parse(&["-ngl", "99", "-ncmoe", "3", "-ot", "exps=CPU", "--hot-experts", "off", "-dev", "sim"])
        .unwrap();
    assert_eq!(c.gpu_layers, Some(GpuLayers::Count(99)));
    assert_eq!((c.device.n_cpu_moe, c.device.hot_experts), (Some(3), Some(false)));
    assert_eq!(c.device.overrides, vec!["exps=CPU".to_string()]);
    assert_eq!(c.device.device, DeviceChoice::Sim);
    assert_eq!(parse(&["-ngl", "all"]).unwrap().gpu_layers, Some(GpuLayers::All));
    assert!(parse(&["-ot", "exps=NOWHERE"]).is_err(), "a buffer that is not CPU or CUDA0");
    assert!(parse(&["--hot-experts", "maybe"]).is_err());
}

/// `--host`, `-a` and `--tags` take comma-separated lists (`--host` keeps its order and needs one
/// address; aliases and tags are sorted sets), as llama-server's do.
#[test]
fn hosts_aliases_and_tags_are_lists() {
    let c =
        parse(&["--host", " 127.0.0.1, ::1 ,/tmp/x.sock", "-a", "b,a, b", "--tags", "chat,,code"]).unwrap();
    assert_eq!(c.hosts, ["127.0.0.1", "::1", "/tmp/x.sock"]);
    assert_eq!(c.alias, ["a", "b"]);
    assert_eq!(c.tags, ["chat", "code"]);
    let err = parse(&["--host", " , "]).unwrap_err().to_string();
    assert!(err.contains("--host requires at least one address"), "{err}");
    let env = env_args(|k| (k == "LLAMA_ARG_TAGS").then(|| "x,y".to_string())).unwrap();
    assert_eq!(env, ["--tags", "x,y"]);
}

/// `--sleep-idle-seconds`: -1 (never) by default; 0 and below -1 refused as llama-server does.
#[test]
fn sleep_idle_seconds_is_positive_or_minus_one() {
    assert_eq!(parse::<&str>(&[]).unwrap().sleep_idle_seconds, -1);
    assert_eq!(parse(&["--sleep-idle-seconds", "30"]).unwrap().sleep_idle_seconds, 30);
    for bad in ["0", "-2"] {
        let err = parse(&["--sleep-idle-seconds", bad]).unwrap_err().to_string();
        assert!(err.contains("invalid value: cannot be 0 or less than -1"), "{err}");
    }
}

/// `--ui-mcp-proxy` (and its `--webui-` and `--no-` forms): off by default, the last one given
/// wins, and `LLAMA_ARG_UI_MCP_PROXY` / `LLAMA_ARG_NO_UI_MCP_PROXY` stand for them.
#[test]
fn ui_mcp_proxy_flag_and_environment() {
    assert!(!parse::<&str>(&[]).unwrap().ui_mcp_proxy);
    assert!(parse(&["--ui-mcp-proxy"]).unwrap().ui_mcp_proxy);
    assert!(parse(&["--webui-mcp-proxy"]).unwrap().ui_mcp_proxy);
    assert!(!parse(&["--ui-mcp-proxy", "--no-webui-mcp-proxy"]).unwrap().ui_mcp_proxy);
    assert!(parse(&["--no-ui-mcp-proxy", "--webui-mcp-proxy"]).unwrap().ui_mcp_proxy);
    let env = |name: &'static str, value: &'static str| {
        env_args(move |k| (k == name).then(|| value.to_string())).unwrap()
    };
    assert_eq!(env("LLAMA_ARG_UI_MCP_PROXY", "1"), ["--ui-mcp-proxy"]);
    assert_eq!(env("LLAMA_ARG_UI_MCP_PROXY", "off"), ["--no-ui-mcp-proxy"]);
    assert_eq!(env("LLAMA_ARG_NO_UI_MCP_PROXY", ""), ["--no-ui-mcp-proxy"]);
    assert!(usage("rs-llama-server").contains("--ui-mcp-proxy, --webui-mcp-proxy"));
}
