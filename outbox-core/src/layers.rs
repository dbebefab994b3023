//! The check that imports run one way: a module of a layer uses only its own layer and
//! those below (see `lib.rs` for the order, and ARCHITECTURE.md).

use std::fs;
use std::path::{Path, PathBuf};

/// The layer modules, bottom up.
const LAYERS: [&str; 7] = [
    "key", "row", "backend", "write", "deliver", "drain", "outbox",
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| *layer == module)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::name` in code (not comments) of `source`; `$crate::` paths of exported
/// macros, which expand in user crates, are left out.
fn crate_paths(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let macro_path = rest[..at].ends_with('$');
            let name: String = rest[at + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !macro_path {
                found.push((number + 1, name));
            }
            rest = &rest[at + 7..];
        }
    }
    found
}

#[test]
fn every_module_imports_only_its_own_layer_and_those_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap_or(file);
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs");
        let Some(own) = layer_of(top) else {
            continue; // lib.rs, private.rs and this file sit above every layer
        };
        checked += 1;
        let source = fs::read_to_string(file).unwrap_or_default();
        for (line, name) in crate_paths(&source) {
            match layer_of(&name) {
                Some(used) if used <= own => {}
                Some(used) => violations.push(format!(
                    "{}:{line}: layer {} `{top}` uses layer {} `{name}`",
                    relative.display(),
                    own + 1,
                    used + 1
                )),
                None => violations.push(format!(
                    "{}:{line}: `crate::{name}` is not a layer: go through the layer that owns it",
                    relative.display()
                )),
            }
        }
        if source.contains("super::super::") {
            violations.push(format!(
                "{}: `super::super::` reaches out of its layer: use `crate::layer::...`",
                relative.display()
            ));
        }
    }
    assert!(checked > 20, "the layer check found only {checked} files");
    assert!(
        violations.is_empty(),
        "imports against the layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_upward_and_unknown_paths() {
    let source =
        "use crate::drain::Drainer;\n// crate::outbox in a comment\nlet x = $crate::outbox::y;";
    assert_eq!(crate_paths(source), vec![(1, "drain".to_owned())]);
}
