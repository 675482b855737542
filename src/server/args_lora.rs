//! The server's LoRA flags (beside [`super::args`]'s table, which reads them through its `find`):
//! `--lora` and `--lora-scaled` as rs-llama reads them ([`crate::cli::lora`]), and
//! `--lora-init-without-apply`, accepted as llama-server accepts it (see
//! [`crate::server::lora::ServerLoras::new`]).

use super::args::{Flag, ServerConfig};

pub static FLAGS: &[Flag] = &[
    Flag {
        names: &["--lora"],
        value: Some("FNAME"),
        help: "path to LoRA adapter (use comma-separated values to load multiple adapters)",
        set: |c: &mut ServerConfig, v| {
            c.lora.extend(crate::cli::lora::parse_lora(v));
            Ok(())
        },
    },
    Flag {
        names: &["--lora-scaled"],
        value: Some("FNAME:SCALE,..."),
        help: "path to LoRA adapter with user defined scaling (format: FNAME:SCALE,...)",
        set: |c: &mut ServerConfig, v| {
            c.lora.extend(crate::cli::lora::parse_lora_scaled(v)?);
            Ok(())
        },
    },
    Flag {
        names: &["--lora-init-without-apply"],
        value: None,
        help: "load LoRA adapters without applying them (apply later via POST /lora-adapters)",
        set: |c: &mut ServerConfig, _| {
            c.lora_init_without_apply = true;
            Ok(())
        },
    },
];
