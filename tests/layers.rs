//! The module layering docs/ARCHITECTURE.md states, checked on the source: every
//! `crate::<module>` a file names must be its own module or one of the layers below it. A
//! new import upward (or a circle) fails here, not in a reviewer's head. Test code (a
//! `tests.rs` or `tests/` beside the code, or what follows `#[cfg(test)]`) may also use the
//! test kit, which sits above everything.

use std::collections::BTreeMap;
use std::path::Path;

/// Each top-level module and the modules it may use (its layers below). Keep in step with
/// the table in docs/ARCHITECTURE.md.
const LAYERS: &[(&str, &[&str])] = &[
    ("types", &[]),
    ("dpdk", &["types"]),
    ("wire", &["types"]),
    ("config", &["types"]),
    ("stats", &["types"]),
    ("gslb", &["types", "config"]),
    ("flow", &["types", "dpdk", "wire", "config"]),
    ("lb", &["types", "config", "flow", "gslb"]),
    ("mode", &["types", "config", "wire", "flow", "lb"]),
    ("channel", &["types", "stats", "flow", "lb"]),
    (
        "datapath",
        &[
            "types", "config", "wire", "stats", "gslb", "flow", "lb", "mode", "channel",
        ],
    ),
    (
        "worker",
        &[
            "types", "dpdk", "wire", "stats", "lb", "flow", "channel", "datapath",
        ],
    ),
    (
        "mgmt",
        &[
            "types", "config", "wire", "stats", "gslb", "flow", "lb", "mode", "channel",
        ],
    ),
    ("ctl", &["types", "config"]),
    (
        "testkit",
        &[
            "types", "config", "wire", "stats", "gslb", "flow", "lb", "mode", "channel", "datapath",
        ],
    ),
    (
        "app",
        &[
            "types", "dpdk", "config", "stats", "flow", "lb", "channel", "datapath", "worker",
            "mgmt",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layers: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut seen = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(allowed) = layers.get(module) else {
            wrong.push(format!(
                "{}: module {module:?} is not in LAYERS",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        let test_file = rel
            .components()
            .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "tests.rs");
        let mut in_tests = test_file;
        for (n, line) in text.lines().enumerate() {
            in_tests |= line.trim() == "#[cfg(test)]";
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let used: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                seen += 1;
                let test_kit = in_tests && used == "testkit";
                if used != module && !allowed.contains(&used.as_str()) && !test_kit {
                    wrong.push(format!(
                        "{}:{}: {module} uses crate::{used}",
                        rel.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        seen > 100,
        "only {seen} crate:: paths found: is the scan right?"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}
