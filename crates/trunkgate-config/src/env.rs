//! Environment overrides: `TRUNKGATE_<SECTION>__<KEY>=value` sets `key` of the single table
//! `[section]` (listen, sip, admin, pbx, security, flood, register, media, health, limits,
//! drill, dns, records, tls). The value is read as a TOML value if it is one
//! (`["udp:127.0.0.1:5060"]`, `65535`, `"quoted"`), otherwise as a plain string
//! (`127.0.0.1:9092`, `300ms`). Variables without `__` (e.g. `TRUNKGATE_LOG`) are not
//! overrides and are left to whoever reads them.

use crate::error::{At, Report};
use crate::raw::{ENV_SECTIONS, Field, RawPolicy, UnknownName, Value, closest};
use serde::Deserialize;

/// The prefix of every override variable.
pub const ENV_PREFIX: &str = "TRUNKGATE_";

/// The `TRUNKGATE_*` variables of this process, for [`crate::Policy::load`].
pub(crate) fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            k.starts_with(ENV_PREFIX)
                .then(|| (k, v.to_string_lossy().into_owned()))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped {
    v: Field,
}

/// Read an override's text as a TOML value, or as a string if it is not one.
fn value(var: &str, text: &str) -> Field {
    let at = At::Env(var.to_owned());
    match toml::from_str::<Wrapped>(&format!("v = {text}")) {
        Ok(Wrapped { mut v }) if v.value != Value::Other => {
            v.relocate(&at);
            v
        }
        _ => Field {
            value: Value::Str(text.to_owned()),
            at,
        },
    }
}

/// Apply every override in `env` to `raw`; unknown names go to `report`.
pub(crate) fn apply(raw: &mut RawPolicy, env: &[(String, String)], report: &mut Report<'_>) {
    for (var, text) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let at = At::Env(var.clone());
        let var_for =
            |s: &str, k: &str| format!("{ENV_PREFIX}{}__{}", s.to_uppercase(), k.to_uppercase());
        match raw.set(&section, &key, value(var, text)) {
            Ok(()) => {}
            Err(UnknownName::Section) => {
                let mut hint =
                    "overrides exist for the sections LISTEN, SIP, ADMIN, PBX, SECURITY, \
                                FLOOD, REGISTER, MEDIA, HEALTH, LIMITS, DRILL, DNS, RECORDS and TLS only; trunks and routes are set in the file"
                        .to_owned();
                if let Some(s) = closest(&section, ENV_SECTIONS) {
                    hint = format!("did you mean `{}`? {hint}", var_for(s, &key));
                }
                report.error(
                    &at,
                    format!("`{var}` names no policy section `{section}`"),
                    Some(hint),
                );
            }
            Err(UnknownName::Key(keys)) => {
                let valid: Vec<String> = keys.iter().map(|k| var_for(&section, k)).collect();
                let hint = match closest(&key, keys) {
                    Some(k) => format!(
                        "did you mean `{}`? valid: {}",
                        var_for(&section, k),
                        valid.join(", ")
                    ),
                    None => format!("valid: {}", valid.join(", ")),
                };
                report.error(
                    &at,
                    format!("`{var}` names no key `{key}` in [{section}]"),
                    Some(hint),
                );
            }
        }
    }
}
