//! `deploy/grafana-dashboard.json` is valid JSON in Grafana's dashboard shape, and every query in
//! it names only metrics the worker exports (`observe::metrics::FAMILIES`, which the metrics
//! unit test checks against the rendered page), so a renamed metric cannot leave a blank panel.

use std::collections::BTreeSet;
use std::path::PathBuf;

use invite_worker::observe::metrics::{FAMILIES, PREFIX};
use serde_json::Value;

const DASHBOARD: &str = "deploy/grafana-dashboard.json";

fn dashboard() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every `invite_worker_...` name in a query.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(PREFIX) {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

/// A name the page exports: a family, or a histogram family's `_bucket`/`_sum`/`_count`.
fn exported(name: &str) -> bool {
    let Some(bare) = name.strip_prefix(PREFIX) else {
        return false;
    };
    FAMILIES.contains(&bare)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            bare.strip_suffix(suffix)
                .is_some_and(|family| family.ends_with("_seconds") && FAMILIES.contains(&family))
        })
}

#[test]
fn every_panel_queries_metrics_the_worker_exports() {
    let d = dashboard();
    assert_eq!(d["title"], "invite-worker");
    assert!(d["uid"].is_string());
    let panels = d["panels"].as_array().expect("panels is an array");
    assert!(!panels.is_empty());
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("a numeric id")),
            "{title}: duplicate id"
        );
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("every target has an expr");
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "{title}: {expr} names no invite_worker metric"
            );
            for name in names {
                assert!(
                    exported(&name),
                    "{title}: {name} is not exported (in {expr})"
                );
                used.insert(name);
            }
        }
    }
    let variables = d["templating"]["list"].as_array().expect("templating.list");
    for variable in variables {
        if let Some(query) = variable["definition"].as_str() {
            for name in metric_names(query) {
                assert!(exported(&name), "variable {}: {name}", variable["name"]);
            }
        }
    }
    // What operators asked to see.
    for needed in [
        "invite_worker_messages_processed_total",
        "invite_worker_dead_letters_total",
        "invite_worker_retries_total",
        "invite_worker_downstream_call_duration_seconds_bucket",
        "invite_worker_downstream_calls_total",
        "invite_worker_circuit_open",
        "invite_worker_in_flight",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
    println!("{} panels, {} metrics: {used:?}", panels.len(), used.len());
}

#[test]
fn the_name_check_rejects_what_is_not_exported() {
    assert!(exported("invite_worker_retries_total"));
    assert!(exported("invite_worker_handler_duration_seconds_bucket"));
    assert!(!exported("invite_worker_retries_total_bucket"));
    assert!(!exported("invite_worker_no_such_metric"));
    assert_eq!(
        metric_names("sum(rate(invite_worker_a_total[5m])) / invite_worker_b"),
        ["invite_worker_a_total", "invite_worker_b"]
    );
}
