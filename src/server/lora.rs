//! LoRA adapters in rs-llama-server as llama-server has them (tools/server/server-context.cpp,
//! server-common.cpp): the adapters of `--lora`/`--lora-scaled` loaded once, by id in command-line
//! order; server-wide scales that `POST /lora-adapters` replaces (an adapter not listed goes to
//! 0); a request's `lora` field that sets its own scales the same way; a slot whose scales change
//! drops its cache; and only slots with equal scales share a forward pass.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::http::json::{obj, Json};
use crate::model::lora::{ActiveLora, LoraAdapter};

/// The loaded adapters and the server-wide scales (llama-server's `params_base.lora_adapters`).
#[derive(Default)]
pub struct ServerLoras {
    adapters: Vec<Arc<LoraAdapter>>,
    scales: Mutex<Vec<f32>>,
}

impl std::fmt::Debug for ServerLoras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerLoras").field("n_adapters", &self.adapters.len()).finish()
    }
}

/// Two loaded-adapter sets are equal for `ModelInfo`'s sake when they are the same object.
impl PartialEq for ServerLoras {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl ServerLoras {
    /// The adapters as loaded, with their command-line scales. (`--lora-init-without-apply` only
    /// keeps llama.cpp from applying them to the context before the first batch, whose slot then
    /// applies the server-wide scales: the listed scales are kept here too.)
    pub fn new(loaded: Vec<ActiveLora>) -> ServerLoras {
        let scales = Mutex::new(loaded.iter().map(|l| l.scale).collect());
        ServerLoras { adapters: loaded.into_iter().map(|l| l.adapter).collect(), scales }
    }

    pub fn is_empty(&self) -> bool {
        self.adapters.is_empty()
    }

    /// The server-wide scales now.
    pub fn global(&self) -> Vec<f32> {
        self.scales.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// llama-server's `construct_lora_list`: each adapter at the scale `config` gives its id, else 0.
    pub fn construct(&self, config: &BTreeMap<i64, f32>) -> Vec<f32> {
        (0..self.adapters.len()).map(|i| config.get(&(i as i64)).copied().unwrap_or(0.0)).collect()
    }

    /// `POST /lora-adapters`: the server-wide scales become `config`'s.
    pub fn set_global(&self, config: &BTreeMap<i64, f32>) {
        *self.scales.lock().unwrap_or_else(|e| e.into_inner()) = self.construct(config);
    }

    /// A request's scales: its own `lora` list when it has a non-empty one, else the server-wide.
    pub fn for_request(&self, config: &BTreeMap<i64, f32>) -> Vec<f32> {
        if config.is_empty() {
            self.global()
        } else {
            self.construct(config)
        }
    }

    /// The adapters to apply at `scales` (an adapter at 0 is left out by the forward).
    pub fn active(&self, scales: &[f32]) -> Vec<ActiveLora> {
        self.adapters
            .iter()
            .zip(scales)
            .map(|(a, &scale)| ActiveLora { adapter: Arc::clone(a), scale })
            .collect()
    }

    /// `GET /lora-adapters`.
    pub fn to_json(&self) -> Json {
        let scales = self.global();
        let list = self.adapters.iter().zip(&scales).enumerate().map(|(id, (a, &scale))| {
            obj! {
                "id" => id, "path" => a.path.as_str(), "scale" => scale,
                "task_name" => a.task_name.as_str(), "prompt_prefix" => a.prompt_prefix.as_str(),
            }
        });
        Json::Arr(list.collect())
    }
}

/// llama-server's `parse_lora_request`: each entry's `id` (default -1) and `scale` (default 0),
/// read as nlohmann's `json_value` reads them (a missing, null or wrongly typed field takes the
/// default; numbers convert, a float id truncates); a later entry for the same id wins.
pub fn parse_lora_request(entries: &[Value]) -> BTreeMap<i64, f32> {
    let num = |e: &Value, key: &str| -> Option<f64> {
        match e.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    };
    let mut out = BTreeMap::new();
    for e in entries {
        let id = match e.get("id") {
            Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).unwrap_or(-1),
            _ => num(e, "id").map_or(-1, |f| f as i64),
        };
        out.insert(id, num(e, "scale").unwrap_or(0.0) as f32);
    }
    out
}

/// The `lora` field of a completion request: an array of `{id, scale}` (no field: none).
pub fn request_field(data: &Value) -> Result<BTreeMap<i64, f32>, String> {
    match data.get("lora") {
        None => Ok(BTreeMap::new()),
        Some(Value::Array(entries)) => Ok(parse_lora_request(entries)),
        Some(_) => {
            Err("Field 'lora': Error: 'lora' must be an array of objects with 'id' and 'scale' fields".into())
        }
    }
}

/// `generation_settings.lora` of a request: its own list, as llama-server echoes it.
pub fn settings_json(config: &BTreeMap<i64, f32>) -> Json {
    Json::Arr(config.iter().map(|(&id, &scale)| obj! { "id" => id, "scale" => scale }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_read_as_llama_server_reads_them() {
        let v = json!([{"id": 1, "scale": 0.5}, {"id": 0}, {"scale": 2}, {"id": 1.9, "scale": true}, 5]);
        let m = parse_lora_request(v.as_array().unwrap());
        assert_eq!(m, BTreeMap::from([(-1, 0.0), (0, 0.0), (1, 1.0)]));
        assert_eq!(request_field(&json!({})).unwrap(), BTreeMap::new());
        assert!(request_field(&json!({"lora": {"id": 0}})).is_err());
        let empty = ServerLoras::default();
        assert_eq!(empty.construct(&m), Vec::<f32>::new());
        assert_eq!(empty.to_json(), Json::Arr(Vec::new()));
    }
}
