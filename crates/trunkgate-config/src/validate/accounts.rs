//! Session and call-rate limits (shared by `[[trunk]]` and `[[account]]`), and provider
//! accounts: names, their trunks (each trunk in at most one account) and their limits.

use super::{Check, span_of};
use crate::Account;
use crate::error::At;
use crate::raw::{Field, RawAccount, Value};
use crate::values;
use std::collections::HashMap;
use toml::Spanned;

/// The limit keys a trunk and an account both have, as written.
pub(super) struct LimitFields<'f> {
    pub max_sessions: Option<&'f Field>,
    pub max_inbound: Option<&'f Field>,
    pub max_outbound: Option<&'f Field>,
    pub max_cps: Option<&'f Field>,
    pub cps_burst: Option<&'f Field>,
}

/// The limits, checked (`None` = no limit).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct CallLimits {
    pub max_sessions: Option<u32>,
    pub max_inbound: Option<u32>,
    pub max_outbound: Option<u32>,
    pub max_cps: Option<u32>,
    /// `Some(max_cps)` when not written; `None` without `max_cps`.
    pub cps_burst: Option<u32>,
}

impl Check<'_, '_> {
    /// Check `f`; `owner` (`trunk "carrier-a"`, `account "acme"`) starts every message.
    pub(super) fn call_limits(&mut self, f: &LimitFields<'_>, owner: &str) -> CallLimits {
        let limit = |c: &mut Self, f: Option<&Field>, key: &str| {
            f.and_then(|f| c.integer(f, &format!("{owner} {key}"), 1..=i64::from(u32::MAX)))
                .and_then(|n| u32::try_from(n).ok())
        };
        let max_sessions = limit(self, f.max_sessions, "max_sessions");
        let max_cps = limit(self, f.max_cps, "max_cps");
        let within_sessions = |c: &mut Self, field: Option<&Field>, key: &str| {
            let n = limit(c, field, key)?;
            match (max_sessions, field) {
                (Some(total), Some(field)) if n > total => {
                    let hint = format!(
                        "{key} is a share of max_sessions: lower it to at most {total}, or raise max_sessions"
                    );
                    c.report.error(
                        &field.at,
                        format!("{owner} {key} = {n} is more than max_sessions = {total}"),
                        Some(hint),
                    );
                    None
                }
                _ => Some(n),
            }
        };
        let max_inbound = within_sessions(self, f.max_inbound, "max_inbound");
        let max_outbound = within_sessions(self, f.max_outbound, "max_outbound");
        let burst = limit(self, f.cps_burst, "cps_burst");
        let cps_burst = match (f.cps_burst, max_cps) {
            (Some(field), None) => {
                let hint =
                    "cps_burst is the bucket size of max_cps: set max_cps too, or remove cps_burst";
                self.report.error(
                    &field.at,
                    format!("{owner} has cps_burst but no max_cps"),
                    Some(hint.into()),
                );
                None
            }
            // One second's worth of calls unless written.
            (Some(_), Some(cps)) => burst.or(Some(cps)),
            (None, cps) => cps,
        };
        CallLimits {
            max_sessions,
            max_inbound,
            max_outbound,
            max_cps,
            cps_burst,
        }
    }

    pub(super) fn accounts(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<RawAccount>>>>,
        trunks: &HashMap<String, usize>,
    ) -> Vec<Account> {
        let mut out = Vec::new();
        let mut names: HashMap<String, At> = HashMap::new();
        // Trunk index → the account that named it first, and where.
        let mut owners: HashMap<usize, (String, At)> = HashMap::new();
        let list = raw.map(|r| r.into_inner()).unwrap_or_default();
        for (i, spanned) in list.into_iter().enumerate() {
            let at = span_of(&spanned);
            let a = spanned.into_inner();
            let name = self.account_name(&a, &at, i, &mut names);
            let mut account_trunks = Vec::new();
            match &a.trunks {
                None => {
                    let hint = "add trunks = [\"carrier-a\", \"carrier-b\"], the [[trunk]]s that share this account's limits";
                    self.report.error(
                        &at,
                        format!("account \"{name}\" has no trunks"),
                        Some(hint.into()),
                    );
                }
                Some(f) => {
                    let what = format!("account \"{name}\" trunks");
                    let list = self.strings(f, &what).unwrap_or_default();
                    if matches!(&f.value, Value::Array(items) if items.is_empty()) {
                        self.report.error(
                            &f.at,
                            format!("{what} is empty"),
                            Some("name the [[trunk]]s that share this account's limits".into()),
                        );
                    }
                    for (t, t_at) in list {
                        let Some(&index) = trunks.get(t) else {
                            let mut known: Vec<&str> = trunks.keys().map(String::as_str).collect();
                            known.sort_unstable();
                            let hint = match crate::raw::closest(t, &known) {
                                Some(c) => format!(
                                    "did you mean \"{c}\"? defined trunks: {}",
                                    known.join(", ")
                                ),
                                None => format!("defined trunks: {}", known.join(", ")),
                            };
                            self.report.error(
                                t_at,
                                format!("account \"{name}\" names undefined trunk \"{t}\""),
                                Some(hint),
                            );
                            continue;
                        };
                        if let Some((first, first_at)) = owners.get(&index) {
                            let (message, hint) = if *first == name {
                                (
                                    format!("account \"{name}\" names trunk \"{t}\" twice"),
                                    format!(
                                        "each trunk may appear once in an account; the first is at {}",
                                        self.report.describe(first_at)
                                    ),
                                )
                            } else {
                                (
                                    format!(
                                        "trunk \"{t}\" is in account \"{first}\" and in account \"{name}\""
                                    ),
                                    format!(
                                        "a trunk belongs to at most one account (its provider's); account \"{first}\" names it at {}: remove it from one of them",
                                        self.report.describe(first_at)
                                    ),
                                )
                            };
                            self.report.error(t_at, message, Some(hint));
                            continue;
                        }
                        owners.insert(index, (name.clone(), t_at.clone()));
                        account_trunks.push(index);
                    }
                }
            }
            let limits = self.call_limits(
                &LimitFields {
                    max_sessions: a.max_sessions.as_ref(),
                    max_inbound: a.max_inbound.as_ref(),
                    max_outbound: a.max_outbound.as_ref(),
                    max_cps: a.max_cps.as_ref(),
                    cps_burst: a.cps_burst.as_ref(),
                },
                &format!("account \"{name}\""),
            );
            out.push(Account {
                name,
                trunks: account_trunks,
                max_sessions: limits.max_sessions,
                max_inbound: limits.max_inbound,
                max_outbound: limits.max_outbound,
                max_cps: limits.max_cps,
                cps_burst: limits.cps_burst,
            });
        }
        out
    }

    /// The account's name (checked, unique), or `#N` when it has none usable.
    fn account_name(
        &mut self,
        a: &RawAccount,
        at: &At,
        i: usize,
        names: &mut HashMap<String, At>,
    ) -> String {
        let Some(f) = &a.name else {
            self.report.error(
                at,
                format!("[[account]] #{} has no name", i + 1),
                Some("add name = \"acme\", the provider account's name".into()),
            );
            return format!("#{}", i + 1);
        };
        let Some(name) = self.string(f, "account name").map(str::to_owned) else {
            return format!("#{}", i + 1);
        };
        if let Err(p) = values::name(&name) {
            self.problem(&f.at, "account name", p);
        }
        if let Some(first) = names.get(&name) {
            let hint = format!(
                "account names must be unique; the first is at {}",
                self.report.describe(first)
            );
            self.report.error(
                &f.at,
                format!("account \"{name}\" is defined twice"),
                Some(hint),
            );
        } else {
            names.insert(name.clone(), f.at.clone());
        }
        name
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use crate::Policy;
    use crate::tests::{BASE, assert_refused};

    /// BASE (carrier-a on lines 8–10) plus carrier-b and carrier-c (lines 12–18), then `tail`
    /// from line 19 on.
    fn three_trunks(tail: &str) -> String {
        format!(
            "{BASE}\n[[trunk]]\nname = \"carrier-b\"\naddress = \"127.0.0.4:5060\"\n\n[[trunk]]\nname = \"carrier-c\"\naddress = \"127.0.0.5:5060\"\n{tail}"
        )
    }

    fn ok(src: &str) -> Policy {
        Policy::from_toml(src, "t.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_account_key_parses() {
        let p = ok(&three_trunks(
            "[[account]]\nname = \"acme\"\ntrunks = [\"carrier-b\", \"carrier-a\"]\nmax_sessions = 10\nmax_inbound = 4\nmax_outbound = 10\nmax_cps = 5\ncps_burst = 8\n\n[[account]]\nname = \"other\"\ntrunks = [\"carrier-c\"]\nmax_cps = 3\n",
        ));
        assert_eq!(p.accounts.len(), 2);
        let a = &p.accounts[0];
        assert_eq!(a.name, "acme");
        assert_eq!(a.trunks, vec![1, 0], "indices of policy.trunks, as written");
        assert_eq!(
            (a.max_sessions, a.max_inbound, a.max_outbound),
            (Some(10), Some(4), Some(10))
        );
        assert_eq!((a.max_cps, a.cps_burst), (Some(5), Some(8)));
        let b = &p.accounts[1];
        assert_eq!(b.trunks, vec![2]);
        assert_eq!(b.max_sessions, None);
        assert_eq!(
            (b.max_cps, b.cps_burst),
            (Some(3), Some(3)),
            "burst defaults to max_cps"
        );
        assert!(ok(BASE).accounts.is_empty(), "accounts are optional");
    }

    #[test]
    fn a_trunk_belongs_to_at_most_one_account() {
        let src = three_trunks(
            "[[account]]\nname = \"acme\"\ntrunks = [\"carrier-a\", \"carrier-b\"]\n\n[[account]]\nname = \"other\"\ntrunks = [\"carrier-c\", \"carrier-b\"]\n",
        );
        let e = assert_refused(
            &src,
            25,
            24,
            "trunk \"carrier-b\" is in account \"acme\" and in account \"other\"",
        );
        assert_eq!(e.len(), 1, "{e}");
        let hint = e.0[0].hint.as_deref().unwrap();
        assert!(
            hint.contains("at most one account") && hint.contains("line 21"),
            "{hint}"
        );
        assert_refused(
            &three_trunks(
                "[[account]]\nname = \"acme\"\ntrunks = [\"carrier-a\", \"carrier-a\"]\n",
            ),
            21,
            24,
            "account \"acme\" names trunk \"carrier-a\" twice",
        );
    }

    #[test]
    fn account_references_and_names_are_checked() {
        let e = assert_refused(
            &three_trunks("[[account]]\nname = \"acme\"\ntrunks = [\"carrier-x\"]\n"),
            21,
            11,
            "account \"acme\" names undefined trunk \"carrier-x\"",
        );
        assert!(e.0[0].hint.as_deref().unwrap().contains("did you mean"));
        assert_refused(
            &three_trunks("[[account]]\nname = \"acme\"\ntrunks = []\n"),
            21,
            10,
            "account \"acme\" trunks is empty",
        );
        assert_refused(
            &three_trunks("[[account]]\nname = \"acme\"\n"),
            19,
            1,
            "account \"acme\" has no trunks",
        );
        assert_refused(
            &three_trunks("[[account]]\ntrunks = [\"carrier-a\"]\n"),
            19,
            1,
            "[[account]] #1 has no name",
        );
        assert_refused(
            &three_trunks(
                "[[account]]\nname = \"acme\"\ntrunks = [\"carrier-a\"]\n[[account]]\nname = \"acme\"\ntrunks = [\"carrier-b\"]\n",
            ),
            23,
            8,
            "account \"acme\" is defined twice",
        );
        assert_refused(
            &three_trunks("[[account]]\nname = \"Acme Inc\"\ntrunks = [\"carrier-a\"]\n"),
            20,
            8,
            "account name",
        );
    }

    #[test]
    fn account_limits_follow_the_trunk_rules() {
        let limits = |lines: &str| {
            three_trunks(&format!(
                "[[account]]\nname = \"acme\"\ntrunks = [\"carrier-a\"]\n{lines}\n"
            ))
        };
        let e = assert_refused(
            &limits("max_sessions = 10\nmax_outbound = 11"),
            23,
            16,
            "account \"acme\" max_outbound = 11 is more than max_sessions = 10",
        );
        assert!(e.0[0].hint.as_deref().unwrap().contains("at most 10"));
        assert_refused(
            &limits("cps_burst = 4"),
            22,
            13,
            "account \"acme\" has cps_burst but no max_cps",
        );
        assert_refused(
            &limits("max_sessions = 0"),
            22,
            16,
            "account \"acme\" max_sessions = 0 is out of range",
        );
        assert_refused(
            &limits("max_cps = \"5\""),
            22,
            11,
            "account \"acme\" max_cps must be an integer",
        );
        let e = assert_refused(
            &limits("max_session = 10"),
            22,
            1,
            "unknown key `max_session` in [[account]]",
        );
        assert!(
            e.0[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("did you mean `max_sessions`?")
        );
    }
}
