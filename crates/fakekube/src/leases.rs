//! `coordination.k8s.io/v1` Lease objects, namespaced, as far as tweed
//! uses them (segment address blocks): create (409 `AlreadyExists` when
//! the name is taken), get, list with an equality `labelSelector`, replace
//! with a `resourceVersion` precondition (409 `Conflict` when it is stale),
//! delete. No watch. Their resourceVersions come from the cluster's one
//! revision counter, as in the real server.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::cluster::Failure;

/// Leases by (namespace, name).
#[derive(Debug, Default)]
pub struct Leases {
    objects: BTreeMap<(String, String), Value>,
}

fn not_found(name: &str) -> Failure {
    Failure::new(
        404,
        "NotFound",
        format!("leases.coordination.k8s.io \"{name}\" not found"),
    )
}

fn name_of(object: &Value) -> Result<String, Failure> {
    object["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Failure::new(422, "Invalid", "metadata.name: Required value"))
}

/// Does `object` carry every `key=value` of `selector`?
fn selected(object: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => object["metadata"]["labels"][k.trim_end_matches('=')] == v,
            None => false,
        })
}

impl Leases {
    pub fn create(&mut self, ns: &str, mut object: Value, rv: u64) -> Result<Value, Failure> {
        let name = name_of(&object)?;
        let key = (ns.to_string(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(Failure::new(
                409,
                "AlreadyExists",
                format!("leases.coordination.k8s.io \"{name}\" already exists"),
            ));
        }
        stamp(&mut object, ns, rv);
        self.objects.insert(key, object.clone());
        Ok(object)
    }

    pub fn get(&self, ns: &str, name: &str) -> Result<Value, Failure> {
        self.objects
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| not_found(name))
    }

    pub fn list(&self, ns: &str, selector: Option<&str>, rv: u64) -> Value {
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((n, _), o)| n == ns && selector.is_none_or(|s| selected(o, s)))
            .map(|(_, o)| o.clone())
            .collect();
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "LeaseList",
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        })
    }

    /// PUT: the body's `metadata.resourceVersion`, when given, must be the
    /// stored one.
    pub fn replace(
        &mut self,
        ns: &str,
        name: &str,
        mut object: Value,
        rv: u64,
    ) -> Result<Value, Failure> {
        let key = (ns.to_string(), name.to_string());
        let current = self.objects.get(&key).ok_or_else(|| not_found(name))?;
        if let Some(want) = object["metadata"]["resourceVersion"].as_str()
            && Some(want) != current["metadata"]["resourceVersion"].as_str()
        {
            return Err(Failure::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                ),
            ));
        }
        stamp(&mut object, ns, rv);
        self.objects.insert(key, object.clone());
        Ok(object)
    }

    pub fn delete(&mut self, ns: &str, name: &str) -> Result<Value, Failure> {
        self.objects
            .remove(&(ns.to_string(), name.to_string()))
            .ok_or_else(|| not_found(name))
    }
}

fn stamp(object: &mut Value, ns: &str, rv: u64) {
    object["apiVersion"] = json!("coordination.k8s.io/v1");
    object["kind"] = json!("Lease");
    object["metadata"]["namespace"] = json!(ns);
    object["metadata"]["resourceVersion"] = json!(rv.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(name: &str, segment: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"tweed.io/segment": segment}}, "spec": {}})
    }

    #[test]
    fn create_is_exclusive_and_replace_checks_the_version() {
        let mut l = Leases::default();
        let a = l.create("ns", lease("a", "lab1"), 5).unwrap();
        assert_eq!(a["metadata"]["resourceVersion"], "5");
        assert_eq!(l.create("ns", lease("a", "lab1"), 6).unwrap_err().code, 409);
        assert!(l.create("other", lease("a", "lab1"), 6).is_ok());
        l.create("ns", lease("b", "lab2"), 7).unwrap();
        let listed = l.list("ns", Some("tweed.io/segment=lab1"), 7);
        assert_eq!(listed["items"].as_array().unwrap().len(), 1);
        assert_eq!(l.list("ns", None, 7)["items"].as_array().unwrap().len(), 2);

        let mut stale = a.clone();
        stale["metadata"]["resourceVersion"] = json!("4");
        assert_eq!(l.replace("ns", "a", stale, 8).unwrap_err().code, 409);
        let fresh = l.replace("ns", "a", a, 9).unwrap();
        assert_eq!(fresh["metadata"]["resourceVersion"], "9");
        assert!(l.delete("ns", "a").is_ok());
        assert_eq!(l.get("ns", "a").unwrap_err().code, 404);
    }
}
