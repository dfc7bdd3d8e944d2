//! The two PATCH flavours tweed sends, applied to JSON the way the API
//! server applies them to a Node.
//!
//! - `application/merge-patch+json` (RFC 7386): objects merge key by key,
//!   `null` deletes, anything else (arrays included) replaces.
//! - `application/strategic-merge-patch+json`: the same, except for the
//!   Node lists whose Go type declares `patchStrategy:"merge"` — those
//!   merge element by element on their merge key (`type` for
//!   `status.conditions` and `status.addresses`), and an element carrying
//!   `"$patch": "delete"` removes its match. Other `$` directives
//!   (`$setElementOrder/...`, `$retainKeys`) are accepted and ignored.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    StrategicMerge,
}

impl PatchKind {
    /// From the request's Content-Type; `None` for patch types the fake
    /// does not serve (JSON patch, server-side apply).
    pub fn from_content_type(ct: &str) -> Option<PatchKind> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::StrategicMerge),
            _ => None,
        }
    }

    pub fn apply(self, target: &mut Value, patch: &Value) {
        merge(target, patch, self == PatchKind::StrategicMerge, "");
    }
}

/// Node list fields merged by key in a strategic merge patch.
fn merge_key(path: &str) -> Option<&'static str> {
    match path {
        ".conditions" | ".status.conditions" | ".addresses" | ".status.addresses" => Some("type"),
        _ => None,
    }
}

fn merge(target: &mut Value, patch: &Value, strategic: bool, path: &str) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object above");
    for (k, v) in p {
        if strategic && k.starts_with('$') {
            continue;
        }
        let child = format!("{path}.{k}");
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Array(items) if strategic => match merge_key(&child) {
                Some(key) => {
                    let slot = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                    merge_list(slot, items, key, &child);
                }
                None => {
                    t.insert(k.clone(), v.clone());
                }
            },
            Value::Object(_) => {
                merge(
                    t.entry(k.clone()).or_insert(Value::Null),
                    v,
                    strategic,
                    &child,
                );
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_list(slot: &mut Value, items: &[Value], key: &str, path: &str) {
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    let list = slot.as_array_mut().expect("made an array above");
    for item in items {
        let id = &item[key];
        let at = list.iter().position(|e| &e[key] == id);
        if item["$patch"] == "delete" {
            if let Some(i) = at {
                list.remove(i);
            }
            continue;
        }
        match at {
            Some(i) => merge(&mut list[i], item, true, path),
            None => {
                let mut fresh = Value::Null;
                merge(&mut fresh, item, true, path);
                list.push(fresh);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_is_rfc_7386() {
        let mut t =
            json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "status": {"conditions": [{"type": "A"}]}});
        PatchKind::Merge.apply(
            &mut t,
            &json!({"a": {"b": null, "d": 3}, "l": [3], "status": {"conditions": [{"type": "B"}]}}),
        );
        assert_eq!(
            t,
            json!({"a": {"c": 2, "d": 3}, "l": [3], "status": {"conditions": [{"type": "B"}]}})
        );
    }

    #[test]
    fn strategic_merge_merges_conditions_by_type() {
        let mut t = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated", "message": "m"}
        ]}, "spec": {"taints": [{"key": "a"}]}});
        PatchKind::StrategicMerge.apply(
            &mut t,
            &json!({
                "$setElementOrder/conditions": [{"type": "Ready"}],
                "status": {"conditions": [
                    {"type": "NetworkUnavailable", "status": "False", "reason": "TweedIsUp"},
                    {"type": "Extra", "status": "True"}
                ]},
                "spec": {"taints": [{"key": "b"}]}
            }),
        );
        assert_eq!(
            t,
            json!({"status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "NetworkUnavailable", "status": "False", "reason": "TweedIsUp", "message": "m"},
                {"type": "Extra", "status": "True"}
            ]}, "spec": {"taints": [{"key": "b"}]}})
        );
        PatchKind::StrategicMerge.apply(
            &mut t,
            &json!({"status": {"conditions": [{"type": "Extra", "$patch": "delete"}]}}),
        );
        assert_eq!(t["status"]["conditions"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchKind::Merge)
        );
        assert_eq!(
            PatchKind::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchKind::StrategicMerge)
        );
        assert_eq!(
            PatchKind::from_content_type("application/json-patch+json"),
            None
        );
    }
}
