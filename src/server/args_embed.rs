//! The server's embedding and infill flags (kept beside [`super::args`]'s table, which reads
//! them through [`find`]): `--embedding(s)`, `--pooling`, `--embd-normalize`, `--spm-infill`.

use super::api::Pooling;
use super::args::{Flag, ServerConfig};
use crate::cli::args::parse_i32;

macro_rules! flag {
    ([$($name:literal),+], $value:expr, $help:literal, $set:expr) => {
        Flag { names: &[$($name),+], value: $value, help: $help, set: $set }
    };
}

pub static FLAGS: &[Flag] = &[
    flag!(["--embedding", "--embeddings"], None, "serve the embedding endpoints (default: disabled)", |c: &mut ServerConfig, _| {
        c.embedding = true;
        Ok(())
    }),
    flag!(["--pooling"], Some("{none,mean,cls,last}"), "pooling type for embeddings, use model default if unspecified", |c: &mut ServerConfig, v| {
        match Pooling::from_name(v) {
            Some(p) => c.pooling = Some(p),
            // llama.cpp has `rank` too, for reranking models with a classifier head.
            None if v == "rank" => return Err("--pooling rank (reranking) is not supported yet by rs-llama".into()),
            None => return Err("invalid value".into()),
        }
        Ok(())
    }),
    flag!(["--embd-normalize"], Some("N"), "normalisation for embeddings (default: 2) (-1=none, 0=max absolute int16, 1=taxicab, 2=euclidean, >2=p-norm)", |c: &mut ServerConfig, v| {
        c.embd_normalize = parse_i32(v)?;
        Ok(())
    }),
    flag!(["--spm-infill"], None, "use Suffix/Prefix/Middle pattern for infill (instead of Prefix/Suffix/Middle) as some models prefer this (default: disabled)", |c: &mut ServerConfig, _| {
        c.spm_infill = true;
        Ok(())
    }),
];

pub fn find(arg: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.names.contains(&arg))
}
