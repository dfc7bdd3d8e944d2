//! `tweedctl lab up --topology FILE`: the lab's topology files (YAML).

use tweed_lab::topology_file::TopologyFile;

/// A topology file: an accepted one gives its nodes, pods and segments, or
/// a clear error for each (never a panic).
pub fn topology(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let Ok(file) = TopologyFile::parse(text) else {
        return;
    };
    let nodes = file.node_count();
    let _ = file.net_conf_segments();
    if let (Ok(nodes), Ok(pods)) = (nodes, file.pods()) {
        assert!(nodes > 0, "a lab with pods has nodes");
        let _ = pods;
    }
}
