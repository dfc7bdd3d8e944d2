//! Writing a [`CniResult`] in the shape of one spec version.
//!
//! What each version allows:
//! - 0.3.0, 0.3.1, 0.4.0: `ips[].version` ("4"/"6") is required; interfaces carry only
//!   `name`, `mac`, `sandbox`; routes only `dst`, `gw`.
//! - 1.0.0: no `ips[].version`; otherwise as above.
//! - 1.1.0: interfaces add `mtu`, `socketPath`, `pciID`; routes add `mtu`, `advmss`,
//!   `priority`, `table`, `scope`.
//!
//! Omission follows the reference Go types' `omitempty`: empty lists, empty strings,
//! absent options and zero MTU/MSS/priority are left out; `table` and `scope` are
//! pointers there, so an explicit 0 is kept. An empty `dns` is omitted from 1.0.0 on and
//! written as `{}` before, as the Go types do.

use serde_json::{Map, Value};

use super::{CniResult, Dns, Interface, IpConfig, Route};
use crate::version::CniVersion;

impl CniResult {
    /// The result as JSON for `version`, with `cniVersion` set to it.
    pub fn to_json(&self, version: CniVersion) -> Value {
        let mut obj = Map::new();
        obj.insert("cniVersion".into(), version.as_str().into());
        let extended = version >= CniVersion::V1_1_0;
        let legacy = version < CniVersion::V1_0_0;
        put_list(&mut obj, "interfaces", &self.interfaces, |i| {
            interface(i, extended)
        });
        put_list(&mut obj, "ips", &self.ips, |ip| ip_config(ip, legacy));
        put_list(&mut obj, "routes", &self.routes, |r| route(r, extended));
        // The Go 0.4.0 type has no empty-DNS fix-up and always writes `"dns": {}`; 1.0.0
        // and later omit it. Matching this keeps our output identical to the reference
        // plugins'.
        if legacy || !self.dns.is_empty() {
            obj.insert("dns".into(), dns(&self.dns));
        }
        Value::Object(obj)
    }
}

fn put_list<T>(obj: &mut Map<String, Value>, key: &str, items: &[T], f: impl Fn(&T) -> Value) {
    if !items.is_empty() {
        obj.insert(key.into(), Value::Array(items.iter().map(f).collect()));
    }
}

fn put_str(obj: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(s) = v.as_deref().filter(|s| !s.is_empty()) {
        obj.insert(key.into(), s.into());
    }
}

fn put_nonzero(obj: &mut Map<String, Value>, key: &str, v: Option<u32>) {
    if let Some(n) = v.filter(|&n| n != 0) {
        obj.insert(key.into(), n.into());
    }
}

fn interface(i: &Interface, extended: bool) -> Value {
    let mut obj = Map::new();
    obj.insert("name".into(), i.name.as_str().into());
    put_str(&mut obj, "mac", &i.mac);
    if extended {
        put_nonzero(&mut obj, "mtu", i.mtu);
    }
    put_str(&mut obj, "sandbox", &i.sandbox);
    if extended {
        put_str(&mut obj, "socketPath", &i.socket_path);
        put_str(&mut obj, "pciID", &i.pci_id);
    }
    Value::Object(obj)
}

fn ip_config(ip: &IpConfig, legacy: bool) -> Value {
    let mut obj = Map::new();
    if legacy {
        let family = if ip.address.addr().is_ipv4() {
            "4"
        } else {
            "6"
        };
        obj.insert("version".into(), family.into());
    }
    if let Some(i) = ip.interface {
        obj.insert("interface".into(), i.into());
    }
    obj.insert("address".into(), ip.address.to_string().into());
    if let Some(gw) = ip.gateway {
        obj.insert("gateway".into(), gw.to_string().into());
    }
    Value::Object(obj)
}

fn route(r: &Route, extended: bool) -> Value {
    let mut obj = Map::new();
    obj.insert("dst".into(), r.dst.to_string().into());
    if let Some(gw) = r.gw {
        obj.insert("gw".into(), gw.to_string().into());
    }
    if extended {
        put_nonzero(&mut obj, "mtu", r.mtu);
        put_nonzero(&mut obj, "advmss", r.advmss);
        put_nonzero(&mut obj, "priority", r.priority);
        if let Some(t) = r.table {
            obj.insert("table".into(), t.into());
        }
        if let Some(s) = r.scope {
            obj.insert("scope".into(), s.into());
        }
    }
    Value::Object(obj)
}

fn dns(d: &Dns) -> Value {
    let mut obj = Map::new();
    put_list(&mut obj, "nameservers", &d.nameservers, |s| {
        s.as_str().into()
    });
    put_str(&mut obj, "domain", &d.domain);
    put_list(&mut obj, "search", &d.search, |s| s.as_str().into());
    put_list(&mut obj, "options", &d.options, |s| s.as_str().into());
    Value::Object(obj)
}
