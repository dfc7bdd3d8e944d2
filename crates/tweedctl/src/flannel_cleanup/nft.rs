//! flannel's nftables leftovers: the `FLANNEL-*` chains it made through
//! iptables-nft and the rules that send packets into them, and the tables
//! flannel keeps itself with `EnableNFTables`.
//!
//! The ruleset is read as plain JSON values, not with the `nftables`
//! crate's typed schema: the listing holds everybody's rules (kube-proxy's,
//! the runtime's, the distribution's), and one expression the schema does
//! not know would make the whole listing unreadable. Only family, table,
//! chain names, rule handles and jump/goto targets are needed. Removal is
//! written with the typed schema and applied as one transaction, so it
//! happens entirely or not at all.

use std::fmt;

use nftables::batch::Batch;
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, Nftables, Rule, Table};
use nftables::types::NfFamily;
use serde_json::Value;
use tweed_netlink::nft::{self, NftError};

/// The iptables-nft tables flannel's rules can be in: flannel uses `nat`
/// and `filter`; `mangle` is searched too, because a chain named
/// `FLANNEL-*` there can only be flannel's as well.
const XTABLES: [&str; 3] = ["nat", "filter", "mangle"];

/// flannel names every iptables chain it creates `FLANNEL-<something>`
/// (`FLANNEL-POSTRTG`, `FLANNEL-FWD` in v0.28).
const CHAIN_PREFIX: &str = "FLANNEL-";

/// The tables flannel creates with `EnableNFTables: true`
/// (pkg/trafficmngr/nftables in v0.28: `ipv4Table`, `ipv6Table`).
const OWN_TABLES: [(Family, &str); 2] =
    [(Family::Ip, "flannel-ipv4"), (Family::Ip6, "flannel-ipv6")];

/// The families iptables-nft and flannel use; nothing else is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ip,
    Ip6,
}

impl Family {
    fn parse(s: &str) -> Option<Family> {
        match s {
            "ip" => Some(Family::Ip),
            "ip6" => Some(Family::Ip6),
            _ => None,
        }
    }

    fn nf(self) -> NfFamily {
        match self {
            Family::Ip => NfFamily::IP,
            Family::Ip6 => NfFamily::IP6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        })
    }
}

/// One thing of flannel's in the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A rule in a chain that is not flannel's (POSTROUTING, FORWARD) that
    /// sends packets into one of flannel's chains.
    Jump {
        family: Family,
        table: String,
        chain: String,
        handle: u32,
        verdict: &'static str,
        target: String,
    },
    /// One of flannel's chains, removed with the rules in it.
    Chain {
        family: Family,
        table: String,
        name: String,
        rules: usize,
    },
    /// A table flannel keeps itself.
    Table { family: Family, name: String },
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Jump {
                family,
                table,
                chain,
                handle,
                verdict,
                target,
            } => write!(
                f,
                "nftables rule {family} {table} {chain} handle {handle} ({verdict} {target})"
            ),
            Item::Chain {
                family,
                table,
                name,
                rules,
            } => write!(
                f,
                "nftables chain {family} {table} {name} (with {})",
                super::plural(*rules, "rule")
            ),
            Item::Table { family, name } => write!(
                f,
                "nftables table {family} {name} (flannel's own, from EnableNFTables)"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error("nft's JSON listing is not as expected: {0}")]
    Listing(String),
}

/// flannel's leftovers in this network namespace's ruleset.
pub fn find_leftovers() -> Result<Vec<Item>, Error> {
    find(&nft::list_ruleset()?)
}

/// Removes `items` in one transaction: if any part fails, nothing changed.
pub fn remove(items: &[Item]) -> Result<(), NftError> {
    nft::apply(&batch(items), "remove flannel's rules, chains and tables")
}

/// The objects of one `nft -j list ruleset` listing, by kind.
struct Listing<'a> {
    tables: Vec<(Family, &'a str)>,
    chains: Vec<Place<'a>>,
    rules: Vec<(Place<'a>, &'a Value)>,
}

/// A chain: family, table, name.
#[derive(Clone, Copy)]
struct Place<'a> {
    family: Family,
    table: &'a str,
    chain: &'a str,
}

impl<'a> Place<'a> {
    /// In one of the iptables-nft tables flannel's iptables mode uses.
    fn in_xtables(&self) -> bool {
        XTABLES.contains(&self.table)
    }

    fn is_flannels(&self) -> bool {
        self.in_xtables() && self.chain.starts_with(CHAIN_PREFIX)
    }
}

fn str_of<'a>(obj: &'a Value, key: &str) -> Result<&'a str, Error> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Listing(format!("an object without \"{key}\": {obj}")))
}

impl<'a> Listing<'a> {
    /// Sorts the listing's objects, keeping only the families in scope.
    fn read(listing: &'a Value) -> Result<Listing<'a>, Error> {
        let objects = listing
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Listing("no \"nftables\" array".into()))?;
        let mut out = Listing {
            tables: Vec::new(),
            chains: Vec::new(),
            rules: Vec::new(),
        };
        for o in objects {
            let (kind, body) = match o.as_object().and_then(|m| m.iter().next()) {
                Some((k, b)) => (k.as_str(), b),
                None => continue,
            };
            if !matches!(kind, "table" | "chain" | "rule") {
                continue; // metainfo, sets, maps, flowtables, ...
            }
            let Some(family) = Family::parse(str_of(body, "family")?) else {
                continue;
            };
            match kind {
                "table" => out.tables.push((family, str_of(body, "name")?)),
                "chain" => out.chains.push(Place {
                    family,
                    table: str_of(body, "table")?,
                    chain: str_of(body, "name")?,
                }),
                _ => {
                    let place = Place {
                        family,
                        table: str_of(body, "table")?,
                        chain: str_of(body, "chain")?,
                    };
                    out.rules.push((place, body));
                }
            }
        }
        Ok(out)
    }
}

/// The jump or goto to one of flannel's chains in a rule, if any.
/// Verdicts stand at the top level of a rule's `expr` list
/// (`{"jump": {"target": "FLANNEL-FWD"}}`).
fn flannel_verdict(rule: &Value) -> Option<(&'static str, &str)> {
    let expr = rule.get("expr")?.as_array()?;
    expr.iter().find_map(|stmt| {
        ["jump", "goto"].into_iter().find_map(|verdict| {
            let target = stmt.get(verdict)?.get("target")?.as_str()?;
            target
                .starts_with(CHAIN_PREFIX)
                .then_some((verdict, target))
        })
    })
}

/// flannel's leftovers in a listing: jumps first, then chains, then
/// tables, the order they must be removed in.
pub fn find(listing: &Value) -> Result<Vec<Item>, Error> {
    let listing = Listing::read(listing)?;
    let mut jumps = Vec::new();
    let mut chains: Vec<Item> = Vec::new();
    for c in listing.chains.iter().filter(|c| c.is_flannels()) {
        let rules = listing
            .rules
            .iter()
            .filter(|(p, _)| p.family == c.family && p.table == c.table && p.chain == c.chain)
            .count();
        chains.push(Item::Chain {
            family: c.family,
            table: c.table.to_string(),
            name: c.chain.to_string(),
            rules,
        });
    }
    // Rules inside flannel's chains go with their chain; only the rules
    // elsewhere that lead into them need deleting one by one.
    for (place, rule) in &listing.rules {
        if !place.in_xtables() || place.is_flannels() {
            continue;
        }
        let Some((verdict, target)) = flannel_verdict(rule) else {
            continue;
        };
        let handle = rule
            .get("handle")
            .and_then(Value::as_u64)
            .and_then(|h| u32::try_from(h).ok())
            .ok_or_else(|| Error::Listing(format!("a rule without a handle: {rule}")))?;
        jumps.push(Item::Jump {
            family: place.family,
            table: place.table.to_string(),
            chain: place.chain.to_string(),
            handle,
            verdict,
            target: target.to_string(),
        });
    }
    let tables = listing
        .tables
        .iter()
        .filter(|t| OWN_TABLES.contains(t))
        .map(|&(family, name)| Item::Table {
            family,
            name: name.to_string(),
        });
    Ok(jumps.into_iter().chain(chains).chain(tables).collect())
}

/// The transaction removing `items`: the jumps into flannel's chains
/// first, then every chain is flushed before any is deleted (a rule in one
/// `FLANNEL-*` chain may jump to another, and the kernel refuses to delete
/// a chain something still jumps to), then chains and tables go.
fn batch(items: &[Item]) -> Nftables<'static> {
    const JUMPS: u8 = 0;
    const FLUSHES: u8 = 1;
    const DELETES: u8 = 2;
    let mut cmds: Vec<(u8, NfCmd<'static>)> = Vec::new();
    for item in items {
        match item {
            Item::Jump {
                family,
                table,
                chain,
                handle,
                ..
            } => cmds.push((
                JUMPS,
                NfCmd::Delete(NfListObject::Rule(Rule {
                    family: family.nf(),
                    table: table.clone().into(),
                    chain: chain.clone().into(),
                    handle: Some(*handle),
                    ..Rule::default()
                })),
            )),
            Item::Chain {
                family,
                table,
                name,
                ..
            } => {
                let chain = Chain {
                    family: family.nf(),
                    table: table.clone().into(),
                    name: name.clone().into(),
                    ..Chain::default()
                };
                cmds.push((FLUSHES, NfCmd::Flush(FlushObject::Chain(chain.clone()))));
                cmds.push((DELETES, NfCmd::Delete(NfListObject::Chain(chain))));
            }
            Item::Table { family, name } => cmds.push((
                DELETES,
                NfCmd::Delete(NfListObject::Table(Table {
                    family: family.nf(),
                    name: name.clone().into(),
                    handle: None,
                })),
            )),
        }
    }
    // Stable: within a phase, the order `find` gave.
    cmds.sort_by_key(|(phase, _)| *phase);
    let mut batch = Batch::new();
    for (_, cmd) in cmds {
        batch.add_cmd(cmd);
    }
    batch.to_nftables()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(family: &str, table: &str, chain: &str, handle: u32, expr: Value) -> Value {
        json!({"rule": {"family": family, "table": table, "chain": chain, "handle": handle, "expr": expr}})
    }

    fn chain(family: &str, table: &str, name: &str) -> Value {
        json!({"chain": {"family": family, "table": table, "name": name, "handle": 1}})
    }

    /// Shaped like `nft -j list ruleset` after flannel (iptables-nft) and
    /// kube-proxy, with the `xt` comment matches iptables-nft leaves opaque.
    fn listing() -> Value {
        let comment = json!({"xt": {"type": "match", "name": "comment"}});
        json!({"nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "ip", "name": "nat", "handle": 1}},
            chain("ip", "nat", "FLANNEL-POSTRTG"),
            chain("ip", "nat", "POSTROUTING"),
            chain("ip", "nat", "KUBE-POSTROUTING"),
            rule("ip", "nat", "FLANNEL-POSTRTG", 4, json!([comment, {"return": null}])),
            rule("ip", "nat", "FLANNEL-POSTRTG", 5, json!([comment, {"xt": {"type": "target", "name": "MASQUERADE"}}])),
            rule("ip", "nat", "POSTROUTING", 3, json!([comment, {"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "FLANNEL-POSTRTG"}}])),
            rule("ip", "nat", "POSTROUTING", 7, json!([{"jump": {"target": "KUBE-POSTROUTING"}}])),
            {"table": {"family": "ip6", "name": "filter", "handle": 2}},
            chain("ip6", "filter", "FLANNEL-FWD"),
            chain("ip6", "filter", "FORWARD"),
            rule("ip6", "filter", "FORWARD", 9, json!([{"goto": {"target": "FLANNEL-FWD"}}])),
            {"table": {"family": "ip", "name": "flannel-ipv4", "handle": 3}},
            chain("ip", "flannel-ipv4", "postrtg"),
            // Somebody else's: the name alone does not make it flannel's.
            {"table": {"family": "inet", "name": "other", "handle": 4}},
            chain("inet", "other", "FLANNEL-LIKE"),
            rule("inet", "other", "c", 2, json!([{"jump": {"target": "FLANNEL-LIKE"}}])),
            {"table": {"family": "ip", "name": "custom", "handle": 5}},
            chain("ip", "custom", "FLANNEL-X"),
        ]})
    }

    #[test]
    fn finds_flannels_chains_the_jumps_into_them_and_its_tables_only() {
        let items = find(&listing()).expect("find");
        let text: Vec<String> = items.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "nftables rule ip nat POSTROUTING handle 3 (jump FLANNEL-POSTRTG)",
                "nftables rule ip6 filter FORWARD handle 9 (goto FLANNEL-FWD)",
                "nftables chain ip nat FLANNEL-POSTRTG (with 2 rules)",
                "nftables chain ip6 filter FLANNEL-FWD (with 0 rules)",
                "nftables table ip flannel-ipv4 (flannel's own, from EnableNFTables)",
            ]
        );
    }

    #[test]
    fn nothing_of_flannels_finds_nothing() {
        let empty = json!({"nftables": [{"metainfo": {"version": "1.0.6"}}]});
        assert_eq!(find(&empty).expect("find"), []);
        assert!(matches!(find(&json!({})), Err(Error::Listing(_))));
    }

    #[test]
    fn batch_deletes_jumps_then_flushes_then_deletes_chains_and_tables() {
        let items = find(&listing()).expect("find");
        let v = serde_json::to_value(batch(&items)).expect("encode");
        let cmds: Vec<String> = v["nftables"]
            .as_array()
            .expect("array")
            .iter()
            .map(|c| {
                let (cmd, obj) = c.as_object().unwrap().iter().next().unwrap();
                let (kind, body) = obj.as_object().unwrap().iter().next().unwrap();
                let name = body.get("handle").map_or_else(
                    || body["name"].as_str().unwrap().to_string(),
                    |h| h.to_string(),
                );
                format!("{cmd} {kind} {name}")
            })
            .collect();
        assert_eq!(
            cmds,
            [
                "delete rule 3",
                "delete rule 9",
                "flush chain FLANNEL-POSTRTG",
                "flush chain FLANNEL-FWD",
                "delete chain FLANNEL-POSTRTG",
                "delete chain FLANNEL-FWD",
                "delete table flannel-ipv4",
            ]
        );
    }
}
