//! A trunk's digest credentials: `auth = { user, password_file | password_env, realm }`.
//! The policy says where the password is (a file or an environment variable), never the
//! password itself, so a policy file, its `--diff` and `ctl` output carry no secret.

use super::{Check, span_of};
use crate::raw::{Field, RawAuth, RawTrunkRegister};
use crate::{Auth, PasswordSource, TrunkRegistration};
use std::time::Duration;
use toml::Spanned;

pub(crate) mod defaults {
    pub const REGISTER_EXPIRES: &str = "600s";
}

const MIN_EXPIRES: Duration = Duration::from_secs(10);
const MAX_EXPIRES: Duration = Duration::from_secs(86_400);

impl Check<'_, '_> {
    /// `register = { … }` of `owner`; `None` when absent or invalid (reported).
    pub(super) fn trunk_register(
        &mut self,
        raw: Option<&Spanned<RawTrunkRegister>>,
        owner: &str,
    ) -> Option<TrunkRegistration> {
        let spanned = raw?;
        let t = spanned.get_ref();
        let at = span_of(spanned);
        let as_auth = RawAuth {
            user: t.user.clone(),
            password_file: t.password_file.clone(),
            password_env: t.password_env.clone(),
            realm: t.realm.clone(),
        };
        let auth = self.credentials(&as_auth, &at, owner, "register");
        let what = format!("{owner} register.expires");
        let (expires, expires_at) =
            self.duration(t.expires.as_ref(), &what, defaults::REGISTER_EXPIRES);
        if let Some(at) = expires_at {
            if !(MIN_EXPIRES..=MAX_EXPIRES).contains(&expires) {
                self.report.error(
                    &at,
                    format!("{what} ({expires:?}) is outside 10s ..= 1 day"),
                    Some(
                        "registrars grant minutes to hours: write e.g. \"600s\" (at least \"10s\")"
                            .into(),
                    ),
                );
            }
        }
        let contact_user = match &t.contact_user {
            None => None,
            Some(f) => Some(self.non_empty(f, &format!("{owner} register.contact_user"))?),
        };
        let route_when_down = match &t.route_when_down {
            None => false,
            Some(f) => self.boolean(f, &format!("{owner} register.route_when_down"))?,
        };
        let auth = auth?;
        Some(TrunkRegistration {
            contact_user: contact_user.unwrap_or_else(|| auth.user.clone()),
            auth,
            expires,
            route_when_down,
        })
    }

    /// `auth = { … }` of `owner` (`trunk "a"`); `None` when absent or invalid (reported).
    pub(super) fn auth(&mut self, raw: Option<&Spanned<RawAuth>>, owner: &str) -> Option<Auth> {
        let spanned = raw?;
        self.credentials(spanned.get_ref(), &span_of(spanned), owner, "auth")
    }

    /// `user`, `password_file | password_env` and `realm` of table `table` of `owner`.
    fn credentials(
        &mut self,
        t: &RawAuth,
        at: &crate::error::At,
        owner: &str,
        table: &str,
    ) -> Option<Auth> {
        let at = at.clone();
        let what = |key: &str| format!("{owner} {table}.{key}");
        let user = match &t.user {
            None => {
                self.report.error(
                    &at,
                    format!("{owner} {table} has no user"),
                    Some("write the account the provider gave you, e.g. auth = { user = \"4930123456\", password_file = \"/etc/trunkgate/carrier-a.pw\" }".into()),
                );
                None
            }
            Some(f) => self.non_empty(f, &what("user")),
        };
        let password = match (&t.password_file, &t.password_env) {
            (Some(file), None) => self
                .non_empty(file, &what("password_file"))
                .map(|p| PasswordSource::File(p.into())),
            (None, Some(env)) => self.env_name(env, &what("password_env")),
            (Some(_), Some(env)) => {
                self.report.error(
                    &env.at,
                    format!("{owner} {table} has both password_file and password_env"),
                    Some("name one place for the password: keep password_file or password_env, not both".into()),
                );
                None
            }
            (None, None) => {
                self.report.error(
                    &at,
                    format!("{owner} {table} has no password_file or password_env"),
                    Some("the password is never written in the policy: add password_file = \"/path\" (first line) or password_env = \"VARIABLE\"".into()),
                );
                None
            }
        };
        let realm = match &t.realm {
            None => Some(None),
            Some(f) => self.non_empty(f, &what("realm")).map(Some),
        };
        Some(Auth {
            user: user?,
            password: password?,
            realm: realm?,
        })
    }

    fn non_empty(&mut self, f: &Field, what: &str) -> Option<String> {
        let s = self.string(f, what)?;
        if s.trim().is_empty() {
            self.report.error(
                &f.at,
                format!("{what} is empty"),
                Some("write a value, or leave the key out where it is optional".into()),
            );
            return None;
        }
        Some(s.to_owned())
    }

    fn env_name(&mut self, f: &Field, what: &str) -> Option<PasswordSource> {
        let s = self.non_empty(f, what)?;
        let valid = s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !s.as_bytes()[0].is_ascii_digit();
        if !valid {
            self.report.error(
                &f.at,
                format!("{what} \"{s}\" is not an environment variable name"),
                Some("write the variable's name (letters, digits, _), e.g. \"CARRIER_A_PASSWORD\", not its value".into()),
            );
            return None;
        }
        Some(PasswordSource::Env(s))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::{PasswordSource, Policy};

    const BASE: &str = r#"
[listen]
sip = ["udp:127.0.0.1:5060"]

[pbx]
address = "127.0.0.2:5060"
allow = ["127.0.0.2/32"]

[[trunk]]
name = "carrier-a"
address = "127.0.0.3:5060"
allow = ["127.0.0.3/32"]
"#;

    fn policy(auth: &str) -> Result<Policy, String> {
        let text = format!("{BASE}{auth}\n");
        Policy::from_toml_with_env(&text, "test.toml", &[]).map_err(|e| e.to_string())
    }

    #[test]
    fn auth_with_a_file_or_a_variable() {
        let p =
            policy(r#"auth = { user = "acct", password_file = "/run/pw", realm = "r" }"#).unwrap();
        let auth = p.trunks[0].auth.clone().unwrap();
        assert_eq!(auth.user, "acct");
        assert_eq!(auth.password, PasswordSource::File("/run/pw".into()));
        assert_eq!(auth.realm.as_deref(), Some("r"));
        let p = policy(r#"auth = { user = "acct", password_env = "CARRIER_A_PW" }"#).unwrap();
        let auth = p.trunks[0].auth.clone().unwrap();
        assert_eq!(auth.password, PasswordSource::Env("CARRIER_A_PW".into()));
        assert_eq!(auth.realm, None);
        assert!(policy("").unwrap().trunks[0].auth.is_none());
    }

    #[test]
    fn register_with_defaults_and_limits() {
        let p = policy(r#"register = { user = "acct", password_env = "PW", expires = "10s" }"#)
            .unwrap();
        let r = p.trunks[0].register.clone().unwrap();
        assert_eq!(r.expires, std::time::Duration::from_secs(10));
        assert_eq!(r.contact_user, "acct");
        assert!(!r.route_when_down);
        let p = policy(r#"register = { user = "a", password_env = "PW", contact_user = "tg", route_when_down = true }"#)
            .unwrap();
        let r = p.trunks[0].register.clone().unwrap();
        assert_eq!(r.expires, std::time::Duration::from_secs(600));
        assert_eq!((r.contact_user.as_str(), r.route_when_down), ("tg", true));
        for (text, expect) in [
            (
                r#"register = { user = "a", password_env = "PW", expires = "5s" }"#,
                "outside 10s",
            ),
            (
                r#"register = { user = "a", password_env = "PW", expires = 60 }"#,
                "bare number",
            ),
            (
                r#"register = { user = "a" }"#,
                "register has no password_file",
            ),
            (
                r#"register = { user = "a", password_env = "PW", refresh = "1s" }"#,
                "unknown key `refresh`",
            ),
        ] {
            let err = policy(text).unwrap_err();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }

    #[test]
    fn invalid_auth_is_refused_with_where_what_and_the_fix() {
        for (auth, expect) in [
            (r#"auth = { password_env = "X" }"#, "auth has no user"),
            (
                r#"auth = { user = "a" }"#,
                "no password_file or password_env",
            ),
            (
                r#"auth = { user = "a", password_file = "/p", password_env = "X" }"#,
                "both password_file and password_env",
            ),
            (
                r#"auth = { user = "", password_env = "X" }"#,
                "auth.user is empty",
            ),
            (
                r#"auth = { user = "a", password_env = "hunter 2" }"#,
                "not an environment variable name",
            ),
            (
                r#"auth = { user = "a", password = "x" }"#,
                "unknown key `password`",
            ),
            (
                r#"auth = { user = 5, password_env = "X" }"#,
                "must be a string",
            ),
        ] {
            let err = policy(auth).unwrap_err();
            assert!(err.contains(expect), "{auth}: {err}");
            assert!(
                err.contains("test.toml:"),
                "{auth}: names file:line:col: {err}"
            );
        }
    }
}
