//! Passwords for trunks' digest challenges: read once at start from the file or environment
//! variable the policy names, and handed to the SIP core as [`Secret`]s (whose `Debug` is
//! `***`). Errors name the trunk and where the password should be, never its content.

use anyhow::{Context, bail};
use trunkgate_config::{PasswordSource, Policy};
use trunkgate_sip::TrunkId;
use trunkgate_sip::digest::{Credentials, Secret};

/// Read `source`: a file's first line (without its line end), or a variable's value.
pub fn read_password(source: &PasswordSource, owner: &str) -> anyhow::Result<Secret> {
    let value = match source {
        PasswordSource::File(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{owner}: reading password_file {}", path.display()))?;
            text.lines().next().unwrap_or_default().to_owned()
        }
        PasswordSource::Env(name) => std::env::var(name)
            .with_context(|| format!("{owner}: password_env {name} is not set (or not UTF-8)"))?,
    };
    if value.is_empty() {
        bail!("{owner}: the password in {} is empty", describe(source));
    }
    Ok(Secret::new(value))
}

fn describe(source: &PasswordSource) -> String {
    match source {
        PasswordSource::File(path) => format!("password_file {}", path.display()),
        PasswordSource::Env(name) => format!("password_env {name}"),
    }
}

/// Every trunk's `auth` credentials, by trunk id (policy order, as `build_routing` assigns
/// them on the first build).
pub fn trunk_credentials(policy: &Policy) -> anyhow::Result<Vec<(TrunkId, Credentials)>> {
    let mut out = Vec::new();
    for (index, trunk) in policy.trunks.iter().enumerate() {
        let Some(auth) = &trunk.auth else { continue };
        let owner = format!("trunk \"{}\" auth", trunk.name);
        let id = TrunkId::try_from(index).context("more trunks than trunk ids")?;
        out.push((
            id,
            Credentials {
                user: auth.user.clone(),
                password: read_password(&auth.password, &owner)?,
                realm: auth.realm.clone(),
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_password_file_gives_its_first_line_and_errors_never_show_it() {
        let dir = std::env::temp_dir().join(format!("tg-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("carrier-a.pw");
        std::fs::write(&file, "hunter2-file\nignored\n").unwrap();
        let secret = read_password(&PasswordSource::File(file.clone()), "t").unwrap();
        assert_eq!(secret.expose(), "hunter2-file");
        assert_eq!(format!("{secret:?}"), "***");
        std::fs::write(&file, "\n").unwrap();
        let err = read_password(&PasswordSource::File(file), "t").unwrap_err();
        assert!(format!("{err:#}").contains("empty"));
        let missing = read_password(&PasswordSource::File(dir.join("none")), "trunk \"a\" auth");
        assert!(format!("{:#}", missing.unwrap_err()).contains("trunk \"a\" auth"));
        let unset = read_password(&PasswordSource::Env("TG_TEST_SURELY_UNSET_PW".into()), "t");
        assert!(format!("{:#}", unset.unwrap_err()).contains("TG_TEST_SURELY_UNSET_PW"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
