//! `POST /slots/{id}?action=save|restore|erase`: a slot's KV cache to and from a file under
//! `--slot-save-path` (llama-server's endpoint, its checks in its order and its answers).

use axum::http::StatusCode;
use serde_json::Value;

use super::info::Ctx;
use super::json::{obj, Json};
use super::params::{parse_body, type_error};
use super::{json_response, Response};
use crate::server::api::{ApiError, ErrorKind, SlotAction, SlotActionDone};
use crate::server::slot_file::valid_filename;

/// Whether `path` is a slot action's (`/slots/` and one more path segment).
pub fn handles(path: &str) -> bool {
    path.strip_prefix("/slots/").is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

pub async fn handle(ctx: &Ctx<'_>, path: &str, query: &str, body: &[u8]) -> Result<Response, ApiError> {
    let Some(dir) = ctx.state.cfg.slot_save_path.as_ref() else {
        return Err(ApiError::new(
            ErrorKind::NotSupported,
            "This server does not support slots action. Start it with `--slot-save-path`",
        ));
    };
    let id_slot =
        leading_int(&path["/slots/".len()..]).ok_or_else(|| ApiError::invalid("Invalid slot ID"))?;
    let action = match query_param(query, "action").as_deref() {
        Some(a @ ("save" | "restore")) => {
            let filename = filename(&parse_body(body)?)?;
            let path = dir.join(&filename);
            if a == "save" {
                SlotAction::Save { id_slot, path, filename }
            } else {
                SlotAction::Restore { id_slot, path, filename }
            }
        }
        Some("erase") => SlotAction::Erase { id_slot },
        _ => return Err(ApiError::invalid("Invalid action")),
    };
    let rx = ctx.loaded.backend.slot_action(action);
    let done =
        rx.await.map_err(|_| ApiError::new(ErrorKind::Unavailable, "the server is shutting down"))??;
    Ok(json_response(StatusCode::OK, &answer(&done)))
}

/// The body's `filename`, read as llama-server reads it (a missing or non-string one is its JSON
/// library's error; an unsafe one is refused).
fn filename(body: &Value) -> Result<String, ApiError> {
    let v = body
        .get("filename")
        .ok_or_else(|| ApiError::invalid("[json.exception.out_of_range.403] key 'filename' not found"))?;
    let name = v.as_str().ok_or_else(|| ApiError::invalid(type_error("string", v)))?;
    if !valid_filename(name) {
        return Err(ApiError::invalid("Invalid filename"));
    }
    Ok(name.to_string())
}

fn answer(done: &SlotActionDone) -> Json {
    match done {
        SlotActionDone::Saved { id_slot, filename, n_saved, n_written, ms } => obj! {
            "id_slot" => *id_slot, "filename" => filename.as_str(), "n_saved" => *n_saved,
            "n_written" => *n_written, "timings" => obj! { "save_ms" => *ms },
        },
        SlotActionDone::Restored { id_slot, filename, n_restored, n_read, ms } => obj! {
            "id_slot" => *id_slot, "filename" => filename.as_str(), "n_restored" => *n_restored,
            "n_read" => *n_read, "timings" => obj! { "restore_ms" => *ms },
        },
        SlotActionDone::Erased { id_slot, n_erased } => {
            obj! { "id_slot" => *id_slot, "n_erased" => *n_erased }
        }
    }
}

/// `std::stoi`'s reading: optional leading whitespace and sign, then digits; what follows them is
/// ignored; None without digits or out of the int range.
fn leading_int(s: &str) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let v: i64 = rest[..digits].parse().ok()?;
    let v = sign * v;
    i32::try_from(v).ok().map(i64::from)
}

/// A query parameter's value, percent-decoded (`+` as a space).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

pub(super) fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_as_stoi_reads_them() {
        assert_eq!(leading_int("3"), Some(3));
        assert_eq!(leading_int(" 12abc"), Some(12));
        assert_eq!(leading_int("-1"), Some(-1));
        assert_eq!(leading_int("+7"), Some(7));
        assert_eq!(leading_int("abc"), None);
        assert_eq!(leading_int(""), None);
        assert_eq!(leading_int("99999999999"), None, "out of int range");
    }

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(query_param("action=save", "action").as_deref(), Some("save"));
        assert_eq!(query_param("x=1&action=%72estore", "action").as_deref(), Some("restore"));
        assert_eq!(query_param("action=a+b%2", "action").as_deref(), Some("a b%2"));
        assert_eq!(query_param("other=1", "action"), None);
        assert!(handles("/slots/0") && !handles("/slots/") && !handles("/slots/0/x") && !handles("/slots"));
    }
}
