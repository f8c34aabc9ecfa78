//! Every policy under `tests/broken/` is refused at the position its first line names:
//! `# expect: LINE:COL substring-of-message`. The binary's `trunkgate check` tests reuse
//! these files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use trunkgate_config::Policy;

/// `(line, col, substring)` from the `# expect:` header.
fn expectation(source: &str, file: &str) -> (usize, usize, String) {
    let header = source.lines().next().unwrap_or_default();
    let rest = header
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("{file}: first line must be `# expect: LINE:COL substring`"));
    let (pos, needle) = rest.split_once(' ').unwrap_or((rest, ""));
    let (line, col) = pos.split_once(':').expect("LINE:COL");
    (
        line.parse().expect("line"),
        col.parse().expect("col"),
        needle.to_owned(),
    )
}

#[test]
fn broken_policies_are_refused_at_the_expected_position() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "expected at least 8 broken policies, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let origin = format!(
            "tests/broken/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let source = std::fs::read_to_string(path).unwrap();
        let (line, col, needle) = expectation(&source, &origin);
        let Err(errors) = Policy::from_toml(&source, &origin) else {
            failures.push(format!("{origin}: was accepted"));
            continue;
        };
        let prefix = format!("{origin}:{line}:{col}: error: ");
        let shown = errors.to_string();
        let found = shown
            .lines()
            .any(|l| l.starts_with(&prefix) && l.contains(&needle));
        if !found {
            failures.push(format!(
                "{origin}: expected `{prefix}…{needle}…`, got:\n{shown}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
