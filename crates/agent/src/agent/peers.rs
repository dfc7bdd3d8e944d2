//! The peers as last seen in the store, and handing them to the workers.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::backend::LocalNode;
use crate::lease::{Lease, LeaseKey};
use crate::reconcile::{Input, PeersMailbox};

/// The peers as last seen in the store.
///
/// Each lease is shared (`Arc`) with the sets handed to the reconciler, so
/// handing over a set copies pointers, not leases.
pub(super) struct Peers {
    map: BTreeMap<LeaseKey, Arc<Lease>>,
    /// The wire controller, which needs the peers that publish wire ends.
    wires: std::sync::mpsc::Sender<crate::wires::Input>,
}

impl Peers {
    pub(super) fn new(wires: std::sync::mpsc::Sender<crate::wires::Input>) -> Peers {
        Peers {
            map: BTreeMap::new(),
            wires,
        }
    }

    pub(super) fn replace(&mut self, leases: Vec<Lease>, ours: &LeaseKey) {
        self.map = leases
            .into_iter()
            .filter(|l| &l.key != ours)
            .map(|l| (l.key, Arc::new(l)))
            .collect();
    }

    /// Takes a full list of the store. A list without this node's own
    /// lease comes from a store that lost data (wiped, restored from an
    /// older backup) or in which we lost the lease: it cannot tell which
    /// peers are gone, so it only adds and updates them, and the data plane
    /// to peers that are re-claiming their subnets stays up. The next list
    /// that has our lease (at the latest the periodic relist) removes the
    /// peers that are really gone. Returns whether our lease was in it.
    pub(super) fn apply_list(&mut self, leases: Vec<Lease>, ours: &Lease) -> bool {
        let present = leases
            .iter()
            .any(|l| l.key == ours.key && l.same_owner(&ours.attrs));
        if present {
            self.replace(leases, &ours.key);
        } else {
            for l in leases.into_iter().filter(|l| l.key != ours.key) {
                self.put(l);
            }
        }
        present
    }

    pub(super) fn put(&mut self, lease: Lease) {
        self.map.insert(lease.key, Arc::new(lease));
    }

    pub(super) fn remove(&mut self, key: &LeaseKey) {
        self.map.remove(key);
    }

    pub(super) fn send(
        &self,
        tx: &std::sync::mpsc::Sender<Input>,
        mailbox: &PeersMailbox,
        local: &Arc<LocalNode>,
    ) {
        let peers = Arc::new(self.map.values().cloned().collect());
        if mailbox.post((local.clone(), peers)) {
            let _ = tx.send(Input::Peers);
        }
        let with_wires = self
            .map
            .values()
            .filter(|l| !l.attrs.wire_ends.is_empty())
            .cloned()
            .collect();
        let _ = self.wires.send(crate::wires::Input::Peers(with_wires));
    }
}
