//! Kubernetes' own end-to-end tests against the cluster
//! (`scripts/e2e.sh run SUITE`, docs/e2e.md): run a suite and read what
//! ginkgo's JSON report says about every test it selected.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::{Cluster, STATE, repo_root};

/// One upstream test and how it ended.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The full name, e.g. `[sig-network] DNS should provide DNS for the
    /// cluster [Conformance]`.
    pub name: String,
    /// ginkgo's state: `passed`, `failed`, `skipped`, `timedout`, ...
    pub state: String,
    pub seconds: u64,
    /// The failure message, for tests that did not pass.
    pub failure: String,
}

/// A finished run of one suite.
pub struct Run {
    /// Every test the suite's focus selected (skipped ones included).
    pub specs: Vec<Spec>,
    /// Where the report and the full log are.
    pub dir: PathBuf,
}

impl Run {
    pub fn in_state(&self, state: &str) -> Vec<&Spec> {
        self.specs.iter().filter(|s| s.state == state).collect()
    }

    /// Panics, naming every test that ran and did not pass, unless all
    /// passed and exactly `expected` of them ran.
    pub fn assert_all_passed(&self, expected: usize) {
        let ran: Vec<&Spec> = self.specs.iter().filter(|s| s.state != "skipped").collect();
        let bad: Vec<String> = ran
            .iter()
            .filter(|s| s.state != "passed")
            .map(|s| format!("{} ({}): {}", s.name, s.state, s.failure))
            .collect();
        assert!(
            bad.is_empty(),
            "{} of {} upstream tests did not pass (log: {}/e2e.log):\n{}",
            bad.len(),
            ran.len(),
            self.dir.display(),
            bad.join("\n")
        );
        assert_eq!(
            ran.len(),
            expected,
            "the suite ran {} tests, not the {expected} it selects: {:#?}",
            ran.len(),
            ran.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
    }
}

/// Builds e2e.test and the test images (`scripts/e2e.sh build`); no
/// cluster needed, so a test can do it before it waits for its turn.
pub fn build() {
    let status = Command::new(repo_root().join("scripts/e2e.sh"))
        .arg("build")
        .stdin(Stdio::null())
        .status()
        .expect("run scripts/e2e.sh");
    assert!(status.success(), "scripts/e2e.sh build: {status}");
}

/// Runs `scripts/e2e.sh run SUITE ARGS...` against `_cluster` (tweed
/// installed) and reads its report. The script's own verdict is not
/// trusted alone: the report must exist and name the tests.
pub fn run(_cluster: &Cluster, suite: &str, args: &[&str]) -> Run {
    let status = Command::new(repo_root().join("scripts/e2e.sh"))
        .args(["run", suite])
        .args(args)
        .stdin(Stdio::null())
        .status()
        .expect("run scripts/e2e.sh");
    let dir = PathBuf::from(format!("{STATE}/e2e/{suite}"));
    let report = dir.join("report.json");
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "scripts/e2e.sh run {suite} ({status}) left no {}: {e}",
            report.display()
        )
    });
    let json: Value = serde_json::from_str(&text).expect("ginkgo's JSON report");
    let specs = parse(&json);
    assert!(!specs.is_empty(), "the report of {suite} names no test");
    Run { specs, dir }
}

/// The `It` nodes of ginkgo's report (`[{"SpecReports": [...]}]`).
fn parse(report: &Value) -> Vec<Spec> {
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
    report
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|suite| suite["SpecReports"].as_array().into_iter().flatten())
        .filter(|s| s["LeafNodeType"] == "It")
        .map(|s| {
            let mut name: Vec<String> = s["ContainerHierarchyTexts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(str_of)
                .collect();
            name.push(str_of(&s["LeafNodeText"]));
            Spec {
                name: name.join(" "),
                state: str_of(&s["State"]),
                seconds: s["RunTime"].as_u64().unwrap_or(0) / 1_000_000_000,
                failure: str_of(&s["Failure"]["Message"]),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gives_each_test_its_full_name_and_state() {
        let report = serde_json::json!([{"SpecReports": [
            {"LeafNodeType": "BeforeSuite", "State": "passed"},
            {"LeafNodeType": "It", "ContainerHierarchyTexts": ["[sig-network] DNS"],
             "LeafNodeText": "should provide DNS for the cluster [Conformance]",
             "State": "passed", "RunTime": 4_700_000_000u64},
            {"LeafNodeType": "It", "ContainerHierarchyTexts": ["[sig-network] Services"],
             "LeafNodeText": "should serve a basic endpoint from pods [Conformance]",
             "State": "failed", "RunTime": 1, "Failure": {"Message": "not reachable"}},
        ]}]);
        let specs = parse(&report);
        assert_eq!(specs.len(), 2);
        assert_eq!(
            specs[0].name,
            "[sig-network] DNS should provide DNS for the cluster [Conformance]"
        );
        assert_eq!((specs[0].state.as_str(), specs[0].seconds), ("passed", 4));
        assert_eq!(specs[1].failure, "not reachable");
    }
}
