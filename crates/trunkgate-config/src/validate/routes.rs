//! Routes: names, `match.to_prefix`, trunk references and strategies.

use super::{Check, span_of};
use crate::error::At;
use crate::raw::{RawRoute, Value};
use crate::values::{self, Problem};
use crate::{Route, Strategy};
use std::collections::HashMap;
use toml::Spanned;

impl Check<'_, '_> {
    pub(super) fn routes(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<RawRoute>>>>,
        trunks: &HashMap<String, usize>,
    ) -> Vec<Route> {
        let mut out = Vec::new();
        let mut names: HashMap<String, At> = HashMap::new();
        let list = raw.map(|r| r.into_inner()).unwrap_or_default();
        for (i, spanned) in list.into_iter().enumerate() {
            let at = span_of(&spanned);
            let r = spanned.into_inner();
            let name = match &r.name {
                None => {
                    self.report.error(
                        &at,
                        format!("[[route]] #{} has no name", i + 1),
                        Some("add name = \"default\"".into()),
                    );
                    format!("#{}", i + 1)
                }
                Some(f) => {
                    let name = self.string(f, "route name").map(str::to_owned);
                    if let Some(n) = &name {
                        if let Err(p) = values::name(n) {
                            self.problem(&f.at, "route name", p);
                        }
                        if let Some(first) = names.get(n) {
                            let hint = format!(
                                "route names must be unique; the first is at {}",
                                self.report.describe(first)
                            );
                            self.report.error(
                                &f.at,
                                format!("route \"{n}\" is defined twice"),
                                Some(hint),
                            );
                        } else {
                            names.insert(n.clone(), f.at.clone());
                        }
                    }
                    name.unwrap_or_else(|| format!("#{}", i + 1))
                }
            };
            let to_prefix = self.prefixes(&r, &name);
            let mut route_trunks = Vec::new();
            match &r.trunks {
                None => {
                    let hint = "add trunks = [\"carrier-a\"], naming [[trunk]] entries in the order to try";
                    self.report.error(
                        &at,
                        format!("route \"{name}\" has no trunks"),
                        Some(hint.into()),
                    );
                }
                Some(f) => {
                    let what = format!("route \"{name}\" trunks");
                    let list = self.strings(f, &what).unwrap_or_default();
                    if matches!(&f.value, Value::Array(a) if a.is_empty()) {
                        self.report.error(
                            &f.at,
                            format!("{what} is empty"),
                            Some("name at least one [[trunk]]".into()),
                        );
                    }
                    let mut seen: HashMap<&str, &At> = HashMap::new();
                    for (t, t_at) in list {
                        if let Some(first) = seen.get(t) {
                            let hint = format!(
                                "each trunk may appear once in a route; the first is at {}",
                                self.report.describe(first)
                            );
                            self.report.error(
                                t_at,
                                format!("route \"{name}\" names trunk \"{t}\" twice"),
                                Some(hint),
                            );
                            continue;
                        }
                        seen.insert(t, t_at);
                        match trunks.get(t) {
                            Some(&idx) => route_trunks.push(idx),
                            None => {
                                let mut known: Vec<&str> =
                                    trunks.keys().map(String::as_str).collect();
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
                                    format!("route \"{name}\" names undefined trunk \"{t}\""),
                                    Some(hint),
                                );
                            }
                        }
                    }
                }
            }
            let strategy = r
                .strategy
                .as_ref()
                .and_then(|f| {
                    self.parsed(f, &format!("route \"{name}\" strategy"), |s| match s {
                        "priority" => Ok(Strategy::Priority),
                        "weighted" => Ok(Strategy::Weighted),
                        "round-robin" => Ok(Strategy::RoundRobin),
                        "least-utilized" => Ok(Strategy::LeastUtilized),
                        _ => Err(Problem::new(format!("unknown strategy `{s}`"))
                            .hint("one of: priority, weighted, round-robin, least-utilized")),
                    })
                })
                .unwrap_or(Strategy::Priority);
            let failover = self.failover(
                &super::failover::FailoverFields::of_route(&r),
                &format!("route \"{name}\""),
            );
            out.push(Route {
                failover_on: failover.failover_on,
                try_timeout: failover.try_timeout,
                max_attempts: failover.max_attempts,
                setup_timeout: failover.setup_timeout,
                name,
                to_prefix,
                trunks: route_trunks,
                strategy,
            });
        }
        out
    }

    fn prefixes(&mut self, r: &RawRoute, name: &str) -> Vec<String> {
        let Some(f) = r
            .match_
            .as_ref()
            .and_then(|m| m.get_ref().to_prefix.as_ref())
        else {
            return vec![String::new()];
        };
        let what = format!("route \"{name}\" match.to_prefix");
        let list = self.strings(f, &what).unwrap_or_default();
        if matches!(&f.value, Value::Array(a) if a.is_empty()) {
            self.report.error(
                &f.at,
                format!("{what} is empty"),
                Some("write [\"\"] to match every number".into()),
            );
        }
        let mut out = Vec::with_capacity(list.len());
        for (p, at) in list {
            match values::to_prefix(p) {
                Ok(()) => out.push(p.to_owned()),
                Err(e) => self.problem(at, &what, e),
            }
        }
        out
    }
}
