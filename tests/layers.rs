//! The product's modules import one way only: every `crate::<module>` path
//! in `src/` goes from a higher layer to a lower one, in the order stated
//! in `src/lib.rs`. A new upward import (a cycle in the making) fails here.

use std::{collections::BTreeSet, path::Path};

/// Layers, lowest first; a module may import only from strictly lower
/// layers (modules on one line do not import each other).
const LAYERS: &[&[&str]] = &[
    &["money"],
    &["domain"],
    &["plan", "telemetry"],
    &["config"],
    &["keys"],
    &["chain", "journal"],
    &["exec"],
    &["balancer"],
    &["pb"],
    &["api"],
    &["server"],
    &["cli"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level modules a source file names through `crate::`.
fn imports(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::{c, d}, e}`: the first name of each item at depth 1.
            let mut depth = 1;
            let mut at_item_start = true;
            let mut name = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => at_item_start = true,
                    c if at_item_start && (c.is_alphanumeric() || c == '_') => name.push(c),
                    _ => {
                        if at_item_start && !name.is_empty() {
                            out.insert(std::mem::take(&mut name));
                            at_item_start = false;
                        }
                    }
                }
                if depth == 0 {
                    break;
                }
            }
            if !name.is_empty() {
                out.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out.remove("self");
    out
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_import_goes_down_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    let mut checked = 0;
    let mut upward = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue; // the crate root declares the modules; main is the binary
        }
        let from = rank(&top).unwrap_or_else(|| {
            panic!(
                "src/{}: module `{top}` has no layer in LAYERS",
                rel.display()
            )
        });
        for target in imports(&std::fs::read_to_string(file).unwrap()) {
            if target == top {
                continue;
            }
            checked += 1;
            let to = rank(&target).unwrap_or_else(|| {
                panic!(
                    "src/{}: imports `crate::{target}`, which has no layer",
                    rel.display()
                )
            });
            if to >= from {
                upward.push(format!("src/{} ({top}) -> {target}", rel.display()));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} imports found: the scan is broken"
    );
    assert!(
        upward.is_empty(),
        "imports that do not go down a layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_scanner_reads_grouped_and_nested_imports() {
    let found = imports(
        "use crate::{\n    chain::{A, b::C},\n    domain::X, // crate::api in a comment\n    money,\n};\nfn f() { crate::journal::now_ms(); }",
    );
    let want: BTreeSet<String> = ["chain", "domain", "money", "journal"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, want);
}
