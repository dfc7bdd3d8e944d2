//! What a pod asks of its guest attachment, gathered from every place a
//! runtime or user can say it, each validated and named in errors.
//!
//! Sources, later ones overriding earlier ones field by field:
//!
//! 1. the network config's `guest` section (the operator's defaults),
//! 2. the pod's annotations, which containerd and CRI-O hand to CNI as
//!    `runtimeConfig["io.kubernetes.cri.pod-annotations"]` (the user's
//!    choice per pod: `tweed.io/guest`, `tweed.io/guest-tap-name`,
//!    `tweed.io/guest-owner`, `tweed.io/guest-group`,
//!    `tweed.io/guest-localhost-ports`, `tweed.io/guest-pod-services`),
//! 3. `runtimeConfig.guest` (a runtime that knows it starts a VM),
//! 4. `CNI_ARGS` (`TWEED_GUEST`, `TWEED_GUEST_TAP`, `TWEED_GUEST_UID`,
//!    `TWEED_GUEST_GID`, `TWEED_GUEST_PORTS`, `TWEED_GUEST_POD_SERVICES`,
//!    and tc-redirect-tap's `TC_REDIRECT_TAP_NAME/UID/GID`).
//!
//! File paths (`resolvConf`, `stateDir`) come from the network config
//! only: a pod must not make the plugin read or write files of its choice.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use tweed_cni::env::validate_ifname;
use tweed_cni::error::CniError;
use tweed_guest::record::DEFAULT_STATE_DIR;
use tweed_guest::{GuestMode, Port};

/// The runtimeConfig key under which CRI runtimes pass pod annotations.
pub const POD_ANNOTATIONS: &str = "io.kubernetes.cri.pod-annotations";
/// Annotation prefix tweed reads.
pub const ANNOTATION_PREFIX: &str = "tweed.io/";

/// A complete, validated guest request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRequest {
    pub mode: GuestMode,
    /// The tap or macvtap device to create in the pod.
    pub device: String,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    /// virtio-net's offload header on the tap (default on).
    pub vnet_hdr: bool,
    /// `127.0.0.1:<port>` in the pod reaches the guest's port.
    pub localhost_ports: Vec<Port>,
    /// The guest reaches `127.0.0.1:<port>` of the pod.
    pub pod_services: Vec<Port>,
    /// The pod's resolv.conf, `{containerId}` replaced.
    pub resolv_conf: Option<PathBuf>,
    pub state_dir: PathBuf,
}

/// The network config's `guest` section.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuestSection {
    mode: Option<String>,
    tap_name: Option<String>,
    owner: Option<u32>,
    group: Option<u32>,
    vnet_hdr: Option<bool>,
    localhost_ports: Option<Vec<Port>>,
    pod_services: Option<Vec<Port>>,
    resolv_conf: Option<String>,
    state_dir: Option<PathBuf>,
}

/// `runtimeConfig.guest`: the per-pod fields only.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuntimeGuest {
    mode: Option<String>,
    tap_name: Option<String>,
    owner: Option<u32>,
    group: Option<u32>,
    localhost_ports: Option<Vec<Port>>,
    pod_services: Option<Vec<Port>>,
}

/// One source's say, before merging. `Some(None)` for `mode` means the
/// source said "no guest".
#[derive(Debug, Default)]
struct Layer {
    mode: Option<Option<GuestMode>>,
    device: Option<(String, String)>,
    owner: Option<(u32, String)>,
    group: Option<(u32, String)>,
    localhost_ports: Option<Vec<Port>>,
    pod_services: Option<Vec<Port>>,
}

impl Layer {
    fn over(self, base: Layer) -> Layer {
        Layer {
            mode: self.mode.or(base.mode),
            device: self.device.or(base.device),
            owner: self.owner.or(base.owner),
            group: self.group.or(base.group),
            localhost_ports: self.localhost_ports.or(base.localhost_ports),
            pod_services: self.pod_services.or(base.pod_services),
        }
    }
}

/// Where a bad value came from, for the error.
#[derive(Clone, Copy)]
enum Origin {
    Config,
    Runtime,
    Args,
}

impl Origin {
    fn error(self, field: &str, msg: String) -> CniError {
        match self {
            Origin::Args => CniError::invalid_env("CNI_ARGS", format!("{field}: {msg}")),
            Origin::Config | Origin::Runtime => CniError::invalid_config(field, msg),
        }
    }
}

fn parse_mode(s: &str, origin: Origin, field: &str) -> Result<Option<GuestMode>, CniError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "tap" => Ok(Some(GuestMode::Tap)),
        "macvtap" => Ok(Some(GuestMode::Macvtap)),
        "" | "none" | "off" => Ok(None),
        other => Err(origin.error(
            field,
            format!("{other:?} is not a guest mode (tap, macvtap or none)"),
        )),
    }
}

fn parse_id(s: &str, origin: Origin, field: &str) -> Result<u32, CniError> {
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|id| *id != u32::MAX)
        .ok_or_else(|| origin.error(field, format!("{s:?} is not a numeric user or group ID")))
}

fn parse_ports(s: &str, origin: Origin, field: &str) -> Result<Vec<Port>, CniError> {
    tweed_guest::port::parse_list(s).map_err(|e| origin.error(field, e.to_string()))
}

fn section_layer(s: &GuestSection) -> Result<Layer, CniError> {
    Ok(Layer {
        mode: s
            .mode
            .as_deref()
            .map(|m| parse_mode(m, Origin::Config, "guest.mode"))
            .transpose()?,
        device: s.tap_name.clone().map(|n| (n, "guest.tapName".to_string())),
        owner: s.owner.map(|o| (o, "guest.owner".to_string())),
        group: s.group.map(|g| (g, "guest.group".to_string())),
        localhost_ports: s.localhost_ports.clone(),
        pod_services: s.pod_services.clone(),
    })
}

fn annotations_layer(runtime: &serde_json::Map<String, Value>) -> Result<Layer, CniError> {
    let Some(value) = runtime.get(POD_ANNOTATIONS) else {
        return Ok(Layer::default());
    };
    let annotations: BTreeMap<String, Value> = match value {
        Value::Object(m) => m.clone().into_iter().collect(),
        Value::Null => return Ok(Layer::default()),
        _ => {
            return Err(CniError::invalid_config(
                &format!("runtimeConfig.{POD_ANNOTATIONS}"),
                "must be an object of annotation names to strings",
            ));
        }
    };
    let mut layer = Layer::default();
    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        if !name.starts_with("guest") {
            continue;
        }
        let field = format!("runtimeConfig.{POD_ANNOTATIONS}[{key:?}]");
        let Some(text) = value.as_str() else {
            return Err(CniError::invalid_config(&field, "must be a string"));
        };
        let o = Origin::Runtime;
        match name {
            "guest" => layer.mode = Some(parse_mode(text, o, &field)?),
            "guest-tap-name" => layer.device = Some((text.to_string(), field)),
            "guest-owner" => layer.owner = Some((parse_id(text, o, &field)?, field)),
            "guest-group" => layer.group = Some((parse_id(text, o, &field)?, field)),
            "guest-localhost-ports" => layer.localhost_ports = Some(parse_ports(text, o, &field)?),
            "guest-pod-services" => layer.pod_services = Some(parse_ports(text, o, &field)?),
            _ => {
                return Err(CniError::invalid_config(
                    &field,
                    "unknown tweed guest annotation (known: tweed.io/guest, guest-tap-name, \
                     guest-owner, guest-group, guest-localhost-ports, guest-pod-services)",
                ));
            }
        }
    }
    Ok(layer)
}

fn runtime_layer(runtime: &serde_json::Map<String, Value>) -> Result<Layer, CniError> {
    let Some(value) = runtime.get("guest").filter(|v| !v.is_null()) else {
        return Ok(Layer::default());
    };
    let g: RuntimeGuest = tweed_cni::config::from_value_at(value, "runtimeConfig.guest")?;
    Ok(Layer {
        mode: g
            .mode
            .as_deref()
            .map(|m| parse_mode(m, Origin::Runtime, "runtimeConfig.guest.mode"))
            .transpose()?,
        device: g
            .tap_name
            .map(|n| (n, "runtimeConfig.guest.tapName".to_string())),
        owner: g
            .owner
            .map(|o| (o, "runtimeConfig.guest.owner".to_string())),
        group: g
            .group
            .map(|o| (o, "runtimeConfig.guest.group".to_string())),
        localhost_ports: g.localhost_ports,
        pod_services: g.pod_services,
    })
}

fn args_layer(args: &[(String, String)]) -> Result<Layer, CniError> {
    let mut layer = Layer::default();
    let o = Origin::Args;
    for (key, value) in args {
        match key.as_str() {
            "TWEED_GUEST" => layer.mode = Some(parse_mode(value, o, key)?),
            "TWEED_GUEST_TAP" | "TC_REDIRECT_TAP_NAME" => {
                layer.device = Some((value.clone(), format!("CNI_ARGS {key}")));
            }
            "TWEED_GUEST_UID" | "TC_REDIRECT_TAP_UID" => {
                layer.owner = Some((parse_id(value, o, key)?, format!("CNI_ARGS {key}")));
            }
            "TWEED_GUEST_GID" | "TC_REDIRECT_TAP_GID" => {
                layer.group = Some((parse_id(value, o, key)?, format!("CNI_ARGS {key}")));
            }
            "TWEED_GUEST_PORTS" => layer.localhost_ports = Some(parse_ports(value, o, key)?),
            "TWEED_GUEST_POD_SERVICES" => layer.pod_services = Some(parse_ports(value, o, key)?),
            _ => {}
        }
    }
    Ok(layer)
}

/// The default device name for a pod interface: `tap0` (or `macvtap0`)
/// behind `eth0`, `tap1` behind `eth1`, `tap-<ifname>` otherwise.
pub fn default_device(mode: GuestMode, ifname: &str) -> String {
    let prefix = match mode {
        GuestMode::Tap => "tap",
        GuestMode::Macvtap => "macvtap",
    };
    let digits: String = ifname
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let name = if !digits.is_empty() && digits.len() < ifname.len() {
        format!("{prefix}{digits}")
    } else {
        format!("{prefix}-{ifname}")
    };
    name.chars().take(15).collect()
}

/// Where guest records live for this network (DEL and GC need it even
/// when the rest of the request no longer resolves).
pub fn state_dir(section: Option<&GuestSection>) -> PathBuf {
    section
        .and_then(|s| s.state_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// Everything the call offers about a guest.
pub struct Sources<'a> {
    pub section: Option<&'a GuestSection>,
    pub runtime_config: &'a serde_json::Map<String, Value>,
    pub args: &'a [(String, String)],
    pub container_id: &'a str,
    pub ifname: &'a str,
}

/// The merged request, or `None` when no source asks for a guest.
pub fn resolve(src: &Sources) -> Result<Option<GuestRequest>, CniError> {
    let section = src.section.map(section_layer).transpose()?;
    let merged = args_layer(src.args)?
        .over(runtime_layer(src.runtime_config)?)
        .over(annotations_layer(src.runtime_config)?)
        .over(section.unwrap_or_default());
    let Some(Some(mode)) = merged.mode else {
        return Ok(None);
    };

    let device = match merged.device {
        Some((name, field)) => {
            validate_ifname(&name).map_err(|why| named_error(&field, why.to_string()))?;
            if name == src.ifname {
                return Err(named_error(
                    &field,
                    format!("{name:?} is CNI_IFNAME itself; the guest device needs its own name"),
                ));
            }
            name
        }
        None => default_device(mode, src.ifname),
    };
    if mode == GuestMode::Macvtap {
        // A macvtap's character device is made and owned by the runtime;
        // the kernel has no owner to set.
        if let Some((_, field)) = merged.owner.as_ref().or(merged.group.as_ref()) {
            return Err(named_error(
                field,
                "owner and group apply to tap devices; a macvtap's /dev node is created by the runtime",
            ));
        }
    }
    let localhost_ports = merged.localhost_ports.unwrap_or_default();
    let pod_services = merged.pod_services.unwrap_or_default();
    if mode == GuestMode::Macvtap && !(localhost_ports.is_empty() && pod_services.is_empty()) {
        return Err(CniError::invalid_config(
            "guest.localhostPorts",
            "localhost ports and pod services need tap mode: a bridge-mode macvtap gives \
             the pod no path of its own to the guest",
        ));
    }
    let section = src.section;
    let resolv_conf = section
        .and_then(|s| s.resolv_conf.as_deref())
        .map(|t| PathBuf::from(t.replace("{containerId}", src.container_id)));
    let state_dir = state_dir(section);
    if !state_dir.is_absolute() {
        return Err(CniError::invalid_config(
            "guest.stateDir",
            format!("{} is not an absolute path", state_dir.display()),
        ));
    }
    Ok(Some(GuestRequest {
        mode,
        device,
        owner: merged.owner.map(|(o, _)| o),
        group: merged.group.map(|(g, _)| g),
        vnet_hdr: section.and_then(|s| s.vnet_hdr).unwrap_or(true),
        localhost_ports,
        pod_services,
        resolv_conf,
        state_dir,
    }))
}

/// An error for a field recorded as `CNI_ARGS KEY` or a config path.
fn named_error(field: &str, msg: impl AsRef<str>) -> CniError {
    match field.strip_prefix("CNI_ARGS ") {
        Some(key) => CniError::invalid_env("CNI_ARGS", format!("{key}: {}", msg.as_ref())),
        None => CniError::invalid_config(field, msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve_with(
        section: Option<Value>,
        runtime: Value,
        args: &[(&str, &str)],
    ) -> Result<Option<GuestRequest>, CniError> {
        let section: Option<GuestSection> = section.map(|v| serde_json::from_value(v).unwrap());
        let runtime = runtime.as_object().cloned().unwrap_or_default();
        let args: Vec<(String, String)> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(&Sources {
            section: section.as_ref(),
            runtime_config: &runtime,
            args: &args,
            container_id: "c1",
            ifname: "eth0",
        })
    }

    #[test]
    fn nothing_asked_means_no_guest() {
        assert_eq!(resolve_with(None, json!({}), &[]).unwrap(), None);
        // A section with defaults but no mode: pods opt in.
        assert_eq!(
            resolve_with(Some(json!({"owner": 1000})), json!({}), &[]).unwrap(),
            None
        );
    }

    #[test]
    fn later_sources_override_earlier_ones() {
        let r = resolve_with(
            Some(json!({"mode": "tap", "tapName": "vm0", "localhostPorts": [8080]})),
            json!({POD_ANNOTATIONS: {"tweed.io/guest-tap-name": "fromann", "other/x": "1"}}),
            &[("TWEED_GUEST_UID", "1000"), ("TC_REDIRECT_TAP_GID", "100")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.mode, GuestMode::Tap);
        assert_eq!(r.device, "fromann");
        assert_eq!((r.owner, r.group), (Some(1000), Some(100)));
        assert_eq!(r.localhost_ports, vec![Port::tcp(8080)]);
        assert!(r.vnet_hdr);
        assert_eq!(r.state_dir, PathBuf::from("/run/tweed"));

        // An annotation can turn the config's guest off for one pod, and
        // CNI_ARGS can turn it back on.
        let off = resolve_with(
            Some(json!({"mode": "tap"})),
            json!({POD_ANNOTATIONS: {"tweed.io/guest": "none"}}),
            &[],
        )
        .unwrap();
        assert_eq!(off, None);
        let on = resolve_with(
            None,
            json!({POD_ANNOTATIONS: {"tweed.io/guest": "none"}}),
            &[("TWEED_GUEST", "macvtap")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(on.mode, GuestMode::Macvtap);
        assert_eq!(on.device, "macvtap0");
    }

    #[test]
    fn bad_values_name_their_source() {
        let e = resolve_with(None, json!({}), &[("TWEED_GUEST", "vhost")]).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(
            e.msg.contains("TWEED_GUEST") && e.msg.contains("vhost"),
            "{}",
            e.msg
        );

        let e = resolve_with(
            Some(json!({"mode": "tap", "tapName": "a/b"})),
            json!({}),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("guest.tapName"), "{}", e.msg);

        let e = resolve_with(
            None,
            json!({POD_ANNOTATIONS: {"tweed.io/guest": "tap", "tweed.io/guest-owner": "-1"}}),
            &[],
        )
        .unwrap_err();
        assert!(e.msg.contains("tweed.io/guest-owner"), "{}", e.msg);

        let e = resolve_with(
            None,
            json!({}),
            &[("TWEED_GUEST", "tap"), ("TWEED_GUEST_TAP", "eth0")],
        )
        .unwrap_err();
        assert!(e.msg.contains("TWEED_GUEST_TAP"), "{}", e.msg);

        let e = resolve_with(
            None,
            json!({"guest": {"mode": "tap", "resolvConf": "/etc/shadow"}}),
            &[],
        )
        .unwrap_err();
        assert!(e.msg.contains("resolvConf"), "{}", e.msg);

        let e = resolve_with(
            None,
            json!({"guest": {"mode": "macvtap", "localhostPorts": ["80"]}}),
            &[],
        )
        .unwrap_err();
        assert!(e.msg.contains("tap mode"), "{}", e.msg);

        let e = resolve_with(
            None,
            json!({}),
            &[("TWEED_GUEST", "macvtap"), ("TWEED_GUEST_UID", "7")],
        )
        .unwrap_err();
        assert!(e.msg.contains("TWEED_GUEST_UID"), "{}", e.msg);

        let e = resolve_with(
            None,
            json!({POD_ANNOTATIONS: {"tweed.io/guest-typo": "x"}}),
            &[],
        )
        .unwrap_err();
        assert!(e.msg.contains("guest-typo"), "{}", e.msg);
    }

    #[test]
    fn default_device_names() {
        assert_eq!(default_device(GuestMode::Tap, "eth0"), "tap0");
        assert_eq!(default_device(GuestMode::Tap, "net12"), "tap12");
        assert_eq!(default_device(GuestMode::Macvtap, "eth1"), "macvtap1");
        assert_eq!(default_device(GuestMode::Tap, "podnet"), "tap-podnet");
        assert_eq!(default_device(GuestMode::Tap, "averylongname").len(), 15);
    }

    #[test]
    fn resolv_conf_template() {
        let r = resolve_with(
            Some(json!({"mode": "tap", "resolvConf": "/run/pods/{containerId}/resolv.conf"})),
            json!({}),
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            r.resolv_conf,
            Some(PathBuf::from("/run/pods/c1/resolv.conf"))
        );
    }
}
