//! A small CNI runtime for conflists, doing what libcni does: run each
//! plugin of the list in order on ADD (feeding each the previous result as
//! `prevResult`), in reverse on DEL, inject `runtimeConfig` for the
//! capabilities a plugin declares, and cache the final result for DEL and
//! CHECK.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::cni::{CniCall, CniOutput, REFERENCE_PLUGIN_DIR};

/// A network configuration list plus the plugin binaries to run for it.
pub struct Chain {
    pub conflist: Value,
    /// Plugin type → binary; types not listed are taken from /usr/lib/cni.
    pub binaries: HashMap<String, PathBuf>,
    pub node_netns: Option<String>,
    /// `CNI_PATH` handed to plugins (for delegated IPAM).
    pub cni_path: String,
}

/// One attachment's runtime-side inputs.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub cni_args: Option<String>,
    /// Capability arguments (`portMappings`, `ips`, `mac`, `dns`, ...).
    pub capability_args: Map<String, Value>,
}

impl Chain {
    pub fn new(conflist: Value) -> Chain {
        Chain {
            conflist,
            binaries: HashMap::new(),
            node_netns: None,
            cni_path: REFERENCE_PLUGIN_DIR.to_string(),
        }
    }

    pub fn binary(mut self, plugin_type: &str, path: impl Into<PathBuf>) -> Chain {
        self.binaries.insert(plugin_type.to_string(), path.into());
        self
    }

    pub fn in_node(mut self, node: &str) -> Chain {
        self.node_netns = Some(node.to_string());
        self
    }

    fn plugins(&self) -> Vec<Value> {
        self.conflist["plugins"]
            .as_array()
            .cloned()
            .expect("conflist has plugins")
    }

    fn plugin_config(&self, plugin: &Value, att: &Attachment, prev: Option<&Value>) -> Value {
        let mut conf = plugin.as_object().cloned().expect("plugin is an object");
        conf.insert("name".into(), self.conflist["name"].clone());
        conf.insert("cniVersion".into(), self.conflist["cniVersion"].clone());
        let mut runtime = Map::new();
        if let Some(caps) = plugin["capabilities"].as_object() {
            for (cap, enabled) in caps {
                if enabled == true
                    && let Some(v) = att.capability_args.get(cap)
                {
                    runtime.insert(cap.clone(), v.clone());
                }
            }
        }
        conf.remove("capabilities");
        if !runtime.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        if let Some(p) = prev {
            conf.insert("prevResult".into(), p.clone());
        }
        Value::Object(conf)
    }

    fn call(&self, plugin: &Value, command: &str, att: &Attachment, conf: &Value) -> CniOutput {
        let kind = plugin["type"].as_str().expect("plugin type");
        let bin = self
            .binaries
            .get(kind)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(REFERENCE_PLUGIN_DIR).join(kind));
        let mut call = CniCall::new(bin, command)
            .env("CNI_PATH", &self.cni_path)
            .config(conf);
        if !att.container_id.is_empty() {
            call = call.env("CNI_CONTAINERID", &att.container_id);
        }
        if !att.netns.is_empty() {
            call = call.env("CNI_NETNS", &att.netns);
        }
        if !att.ifname.is_empty() {
            call = call.env("CNI_IFNAME", &att.ifname);
        }
        if let Some(a) = &att.cni_args {
            call = call.env("CNI_ARGS", a);
        }
        if let Some(n) = &self.node_netns {
            call = call.in_node(n);
        }
        call.run()
    }

    /// ADD through the whole list; returns the final result, or the failing
    /// plugin's output (after undoing the plugins that succeeded, as
    /// libcni does not, but a careful runtime should).
    pub fn add(&self, att: &Attachment) -> Result<Value, CniOutput> {
        let mut prev: Option<Value> = None;
        for plugin in self.plugins() {
            let conf = self.plugin_config(&plugin, att, prev.as_ref());
            let out = self.call(&plugin, "ADD", att, &conf);
            if !out.ok() {
                return Err(out);
            }
            prev = Some(out.json());
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL through the list in reverse, with the cached result.
    pub fn del(&self, att: &Attachment, cached: Option<&Value>) -> Result<(), CniOutput> {
        for plugin in self.plugins().iter().rev() {
            let conf = self.plugin_config(plugin, att, cached);
            let out = self.call(plugin, "DEL", att, &conf);
            if !out.ok() {
                return Err(out);
            }
        }
        Ok(())
    }

    /// CHECK through the list, with the cached result.
    pub fn check(&self, att: &Attachment, cached: &Value) -> Result<(), CniOutput> {
        for plugin in self.plugins() {
            let conf = self.plugin_config(&plugin, att, Some(cached));
            let out = self.call(&plugin, "CHECK", att, &conf);
            if !out.ok() {
                return Err(out);
            }
        }
        Ok(())
    }

    /// GC with the attachments that must be kept (spec 1.1.0).
    pub fn gc(&self, valid: &[(&str, &str)]) -> Result<(), CniOutput> {
        let list: Vec<Value> = valid
            .iter()
            .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
            .collect();
        for plugin in self.plugins() {
            let mut conf = self.plugin_config(&plugin, &Attachment::default(), None);
            conf["cni.dev/valid-attachments"] = Value::Array(list.clone());
            let out = self.call(&plugin, "GC", &Attachment::default(), &conf);
            if !out.ok() {
                return Err(out);
            }
        }
        Ok(())
    }
}
