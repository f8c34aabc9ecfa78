//! What a reload would change, key by key: the running policy's file text against the new
//! one, both read as TOML. Tables compare key by key; `[[trunk]]` and `[[route]]` entries
//! compare by `name` (`trunk carrier-a: max_sessions 300 -> 500`, `trunk carrier-c: added`).
//! Keys the running process only reads at start are marked `restart`: they take effect at
//! the next start, never by a reload (docs/policy.md, column "reload-safe").
//!
//! Values are shown as written. `admin.token_file` is a path, never the token.

use serde::Serialize;
use toml::{Table, Value};

/// One changed key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `sip.t1`, `trunk carrier-a`, `trunk carrier-a: max_sessions`, `route default: trunks`.
    pub key: String,
    /// As written before / after; `None`: absent (added / removed).
    pub old: Option<String>,
    pub new: Option<String>,
    /// Applied at the next start only.
    pub restart: bool,
}

/// Sections and keys that a reload does not apply (the process reads them once, at start).
const RESTART_SECTIONS: &[&str] = &["listen", "sip", "media", "limits", "records"];
const RESTART_KEYS: &[&str] = &["admin.listen"];
/// Keys of those sections that a reload does apply (read through admission per call).
const RELOADED_KEYS: &[&str] = &["sip.overflow_retry_after"];

fn needs_restart(key: &str) -> bool {
    let section = key.split('.').next().unwrap_or_default();
    (RESTART_SECTIONS.contains(&section) || RESTART_KEYS.contains(&key))
        && !RELOADED_KEYS.contains(&key)
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The changes from `old` to `new` (both TOML text). `Err`: `new` is not TOML (the
/// validator reports where).
pub fn diff(old: &str, new: &str) -> Result<Vec<Change>, String> {
    let old: Table = old.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let new: Table = new.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut out = Vec::new();
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        match (old.get(key), new.get(key)) {
            (Some(Value::Array(a)), Some(Value::Array(b))) if key == "trunk" || key == "route" => {
                named_entries(&mut out, key, a, b);
            }
            (Some(Value::Table(a)), Some(Value::Table(b))) => table(&mut out, key, a, b),
            (a, b) => leaf(&mut out, key.clone(), a, b, needs_restart(key)),
        }
    }
    Ok(out)
}

fn leaf(out: &mut Vec<Change>, key: String, a: Option<&Value>, b: Option<&Value>, restart: bool) {
    if a != b {
        out.push(Change {
            key,
            old: a.map(show),
            new: b.map(show),
            restart,
        });
    }
}

fn table(out: &mut Vec<Change>, prefix: &str, a: &Table, b: &Table) {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let path = format!("{prefix}.{key}");
        let restart = needs_restart(&path);
        leaf(out, path, a.get(key), b.get(key), restart);
    }
}

fn name_of(v: &Value) -> Option<&str> {
    v.as_table()?.get("name")?.as_str()
}

fn named_entries(out: &mut Vec<Change>, kind: &str, a: &[Value], b: &[Value]) {
    for old in a {
        let Some(name) = name_of(old) else { continue };
        let label = format!("{kind} {name}");
        match b.iter().find(|n| name_of(n) == Some(name)) {
            None => out.push(Change {
                key: label,
                old: Some("present".into()),
                new: None,
                restart: false,
            }),
            Some(new) => {
                if let (Some(x), Some(y)) = (old.as_table(), new.as_table()) {
                    let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                    keys.sort();
                    keys.dedup();
                    for key in keys {
                        leaf(
                            out,
                            format!("{label}: {key}"),
                            x.get(key),
                            y.get(key),
                            false,
                        );
                    }
                }
            }
        }
    }
    for new in b {
        let Some(name) = name_of(new) else { continue };
        if !a.iter().any(|o| name_of(o) == Some(name)) {
            out.push(Change {
                key: format!("{kind} {name}"),
                old: None,
                new: Some("added".into()),
                restart: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"
[listen]
sip = ["udp:127.0.0.1:5060"]
[admin]
listen = "127.0.0.1:9091"
[[trunk]]
name = "carrier-a"
max_sessions = 300
[[trunk]]
name = "carrier-b"
[[route]]
name = "default"
trunks = ["carrier-a", "carrier-b"]
"#;

    #[test]
    fn changes_per_trunk_route_and_key() {
        let new = OLD
            .replace("max_sessions = 300", "max_sessions = 500")
            .replace("127.0.0.1:5060", "127.0.0.1:5070")
            .replace(
                "[[trunk]]\nname = \"carrier-b\"\n",
                "[[trunk]]\nname = \"carrier-c\"\n",
            )
            .replace(
                "\"carrier-a\", \"carrier-b\"",
                "\"carrier-a\", \"carrier-c\"",
            )
            + "[admin.extra]\n";
        let new = new.replace("[admin.extra]\n", "[drill]\nmax_duration = \"10m\"\n");
        let changes = diff(OLD, &new).unwrap();
        let keys: Vec<(&str, bool)> = changes
            .iter()
            .map(|c| (c.key.as_str(), c.restart))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("drill", false),
                ("listen.sip", true),
                ("route default: trunks", false),
                ("trunk carrier-a: max_sessions", false),
                ("trunk carrier-b", false),
                ("trunk carrier-c", false),
            ]
        );
        assert_eq!(changes[3].old.as_deref(), Some("300"));
        assert_eq!(changes[3].new.as_deref(), Some("500"));
        assert_eq!(diff(OLD, OLD).unwrap(), Vec::new());
        // [sip] is read at start, except the Retry-After of overflow 503s (admission's).
        let sip = |v: &str| format!("{OLD}[sip]\nt1 = \"{v}\"\noverflow_retry_after = \"{v}\"\n");
        let changes = diff(&sip("1s"), &sip("2s")).unwrap();
        let restart: Vec<(&str, bool)> = changes
            .iter()
            .map(|c| (c.key.as_str(), c.restart))
            .collect();
        assert_eq!(
            restart,
            vec![("sip.overflow_retry_after", false), ("sip.t1", true)]
        );
        assert!(diff(OLD, "[[trunk]\n").is_err());
    }
}
