//! ARCHITECTURE.md's code map is data, and this test holds the code to it.
//!
//! Each row of the map names a crate and, in its last column, the crates it must not
//! depend on (backticked names before the " — " that starts the reason). The test reads the
//! workspace's real dependency graph from `cargo metadata` and fails when a crate reaches a
//! forbidden one, directly or through another workspace crate (normal and build
//! dependencies: what ends up in the crate's binary; dev-dependencies are for its tests).
//! It also fails when the map and the workspace disagree about which crates exist, so a new
//! crate can't arrive without a row, and a row can't outlive its crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/strongroom sits two levels below the workspace root")
        .to_path_buf()
}

/// Workspace crate → the workspace crates it depends on directly (normal and build).
fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null() || d["kind"] == "build")
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|name| members.contains(name))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

/// Crate → the crates the code map says it must not depend on. Rows for things outside
/// the workspace (`fuzz/`) are returned too, under their path.
fn code_map() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
    let section = text
        .split("\n## Code map")
        .nth(1)
        .expect("ARCHITECTURE.md has a \"## Code map\" section");
    let section = section.split("\n## ").next().unwrap();
    let mut map = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(
            cells.len() >= 5,
            "a code map row with three columns: {line}"
        );
        let name = cells[1].trim_matches('`');
        let name = name.strip_prefix("crates/").unwrap_or(name).to_string();
        let names = cells[3].split(" — ").next().unwrap();
        let forbidden = names
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        assert!(
            map.insert(name.clone(), forbidden).is_none(),
            "{name} has two rows in the code map"
        );
    }
    map
}

/// Every workspace crate `from` reaches through normal and build dependencies.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeMap<String, String> {
    // crate → the crate through which it was first reached, to print the path.
    let mut via = BTreeMap::new();
    let mut stack = vec![from.to_string()];
    while let Some(c) = stack.pop() {
        for d in &graph[&c] {
            if d != from && !via.contains_key(d) {
                via.insert(d.clone(), c.clone());
                stack.push(d.clone());
            }
        }
    }
    via
}

fn path_to(via: &BTreeMap<String, String>, from: &str, to: &str) -> String {
    let mut path = vec![to.to_string()];
    let mut at = to;
    while at != from {
        at = &via[at];
        path.push(at.to_string());
    }
    path.reverse();
    path.join(" → ")
}

/// The check itself, separate from the files so the wrong-arrow test below can feed it one.
fn violations(
    graph: &BTreeMap<String, BTreeSet<String>>,
    map: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for name in graph.keys().filter(|n| !map.contains_key(*n)) {
        problems.push(format!(
            "crate {name} has no row in ARCHITECTURE.md's code map"
        ));
    }
    for (name, forbidden) in map {
        if !graph.contains_key(name) {
            if !name.ends_with('/') {
                problems.push(format!("the code map's {name} is not a workspace crate"));
            }
            continue;
        }
        let via = reachable(graph, name);
        for f in forbidden {
            if !graph.contains_key(f) {
                problems.push(format!("{name}'s row forbids `{f}`, which is not a crate"));
            } else if via.contains_key(f) {
                problems.push(format!(
                    "{name} must not depend on {f}, but does: {}",
                    path_to(&via, name, f)
                ));
            }
        }
    }
    problems
}

#[test]
fn the_code_map_matches_the_dependency_graph() {
    let graph = dependency_graph();
    let map = code_map();
    assert!(map.len() >= 10, "the code map parsed to {} rows", map.len());
    let problems = violations(&graph, &map);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_wrong_arrow_fails() {
    // The real graph plus one arrow the map forbids: storage → sealed.
    let mut graph = dependency_graph();
    let map = code_map();
    assert!(map["storage"].contains("sealed"));
    graph.get_mut("storage").unwrap().insert("sealed".into());
    let problems = violations(&graph, &map);
    assert!(
        problems
            .iter()
            .any(|p| p == "storage must not depend on sealed, but does: storage → sealed"),
        "{problems:?}"
    );
    // And a crate without a row.
    graph.insert("newcrate".into(), BTreeSet::new());
    assert!(
        violations(&graph, &map)
            .iter()
            .any(|p| p.contains("newcrate has no row"))
    );
}
