//! Label selectors as the API defines them: `matchLabels` and
//! `matchExpressions` (`In`, `NotIn`, `Exists`, `DoesNotExist`) all hold;
//! an empty selector selects every object.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// Whether `selector` selects an object with `labels`. An operator the
/// API does not define selects nothing: the API server refuses such a
/// selector, so none should arrive, and selecting nothing is the safe
/// reading of one that does.
pub fn matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expression = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_label && by_expression
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn an_empty_selector_selects_everything() {
        assert!(matches(&LabelSelector::default(), &labels(&[])));
        assert!(matches(&LabelSelector::default(), &labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_and_every_operator() {
        let pod = labels(&[("app", "web"), ("tier", "front")]);
        let with = |exprs: Vec<LabelSelectorRequirement>| LabelSelector {
            match_expressions: Some(exprs),
            ..LabelSelector::default()
        };
        let by_labels = |pairs: &[(&str, &str)]| LabelSelector {
            match_labels: Some(labels(pairs)),
            ..LabelSelector::default()
        };
        assert!(matches(&by_labels(&[("app", "web")]), &pod));
        assert!(!matches(&by_labels(&[("app", "db")]), &pod));
        assert!(!matches(&by_labels(&[("app", "web"), ("x", "y")]), &pod));
        assert!(matches(
            &with(vec![expr("app", "In", &["db", "web"])]),
            &pod
        ));
        assert!(!matches(&with(vec![expr("app", "In", &["db"])]), &pod));
        assert!(!matches(&with(vec![expr("app", "NotIn", &["web"])]), &pod));
        assert!(matches(&with(vec![expr("zone", "NotIn", &["a"])]), &pod));
        assert!(matches(&with(vec![expr("tier", "Exists", &[])]), &pod));
        assert!(!matches(&with(vec![expr("zone", "Exists", &[])]), &pod));
        assert!(matches(
            &with(vec![expr("zone", "DoesNotExist", &[])]),
            &pod
        ));
        assert!(!matches(&with(vec![expr("app", "Like", &["web"])]), &pod));
        // Labels and expressions must all hold.
        let both = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![expr("tier", "In", &["back"])]),
        };
        assert!(!matches(&both, &pod));
    }
}
