//! What flannel left that stays on purpose, named in the plan so nobody
//! wonders: under `--flannel-compat` tweed adopted these.

use std::path::Path;

use tweed_netlink::Netlink;

/// flannel's pod bridge, which the migration manifest has tweed's plugin
/// use (so the pods flannel created stay on the bridge the node routes to).
const BRIDGE: &str = "cni0";

/// flannel's network name in kube-flannel.yml; the migration manifest keeps
/// it, so host-local's address directory is shared and no address is
/// handed out twice.
const NETWORK: &str = "cbr0";

/// One line per thing kept that exists on this node.
pub fn kept(cni_state: &Path) -> Vec<String> {
    let mut out = Vec::new();
    match Netlink::new().and_then(|mut nl| nl.links()) {
        Ok(links) => {
            for l in links {
                let kind = l.kind.as_deref();
                if l.name.starts_with("flannel.") && kind == Some("vxlan") {
                    out.push(format!(
                        "{} (tweed's VXLAN device under --flannel-compat)",
                        l.name
                    ));
                } else if l.name == BRIDGE && kind == Some("bridge") {
                    out.push(format!(
                        "{} (the pods' bridge; tweed's plugin uses it in the migration manifest)",
                        l.name
                    ));
                }
            }
        }
        Err(e) => out.push(format!(
            "flannel.<VNI> and {BRIDGE}, whichever exist (cannot list the links: {e})"
        )),
    }
    let ipam = cni_state.join("networks").join(NETWORK);
    if ipam.is_dir() {
        out.push(format!(
            "{} (host-local's addresses, shared with tweed's plugin)",
            ipam.display()
        ));
    }
    out
}
