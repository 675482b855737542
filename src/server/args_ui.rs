//! The server's web UI flags (kept beside [`super::args`]'s table, which reads them through its
//! `find`): `--ui` is accepted though rs-llama-server serves no UI; `--ui-mcp-proxy` turns on
//! the `/cors-proxy` endpoint the UI's MCP client uses (experimental in llama-server, off by
//! default, also `LLAMA_ARG_UI_MCP_PROXY`).

use super::args::{Flag, ServerConfig};

macro_rules! flag {
    ([$($name:literal),+], $help:literal, $set:expr) => {
        Flag { names: &[$($name),+], value: None, help: $help, set: $set }
    };
}

pub static FLAGS: &[Flag] = &[
    flag!(["--ui", "--webui"], "accepted; rs-llama-server has no web UI", |c: &mut ServerConfig, _| {
        c.webui = true;
        Ok(())
    }),
    flag!(["--no-ui", "--no-webui"], "accepted (there is no web UI)", |c: &mut ServerConfig, _| {
        c.webui = false;
        Ok(())
    }),
    flag!(["--ui-mcp-proxy", "--webui-mcp-proxy"], "experimental: whether to enable MCP CORS proxy (/cors-proxy) - do not enable in untrusted environments (default: disabled)", |c: &mut ServerConfig, _| {
        c.ui_mcp_proxy = true;
        Ok(())
    }),
    flag!(["--no-ui-mcp-proxy", "--no-webui-mcp-proxy"], "disable the MCP CORS proxy", |c: &mut ServerConfig, _| {
        c.ui_mcp_proxy = false;
        Ok(())
    }),
];
