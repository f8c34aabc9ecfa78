//! `[[test_call]]` (synthetic calls Trunkgate places itself) and `[validate]` (how a
//! validation run of them is placed).

use super::{Check, span_of};
use crate::error::At;
use crate::raw::{Field, RawTestCall, RawValidate, Value};
use crate::values::{self, Problem};
use crate::{TestCall, TestCodec, TestDirection, TestExpect, ValidateSettings};
use std::collections::HashMap;
use std::time::Duration;
use toml::Spanned;

/// The suite a test call belongs to when it names none.
pub(crate) const DEFAULT_SUITE: &str = "default";

/// `"08:00-18:00"` → minutes after midnight (start, end).
pub(crate) fn busy_hours(text: &str) -> Result<(u16, u16), Problem> {
    let hint = "write a daily window in UTC as \"HH:MM-HH:MM\", e.g. \"08:00-18:00\"";
    let bad = || Problem::new(format!("`{text}` is not a time window")).hint(hint);
    let (a, b) = text.trim().split_once('-').ok_or_else(bad)?;
    let minutes = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60 && m.to_string().len() <= 2).then_some(h * 60 + m)
    };
    let (start, end) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
    if start == end {
        return Err(Problem::new(format!("`{text}` is an empty window")).hint(hint));
    }
    Ok((start, end))
}

impl Check<'_, '_> {
    pub(super) fn validate_settings(
        &mut self,
        raw: Option<&Spanned<RawValidate>>,
        tests: &[TestCall],
    ) -> ValidateSettings {
        let empty = RawValidate::default();
        let t = raw.map_or(&empty, Spanned::get_ref);
        let concurrency = self.count(t.concurrency.as_ref(), "validate.concurrency", 1..=64, 4);
        let (start_interval, _) = self.duration(
            t.start_interval.as_ref(),
            "validate.start_interval",
            "200ms",
        );
        let (setup_timeout, at) =
            self.duration(t.setup_timeout.as_ref(), "validate.setup_timeout", "30s");
        if let (true, Some(at)) = (
            setup_timeout < Duration::from_secs(1) || setup_timeout > Duration::from_secs(300),
            at,
        ) {
            self.report.error(
                &at,
                format!("validate.setup_timeout ({setup_timeout:?}) is out of range"),
                Some("write between \"1s\" and \"300s\", e.g. \"30s\"".into()),
            );
        }
        let keep_runs = self.count(t.keep_runs.as_ref(), "validate.keep_runs", 1..=1000, 20);
        let busy = t
            .busy_hours
            .as_ref()
            .and_then(|f| self.parsed(f, "validate.busy_hours", busy_hours));
        let after_reload = t.after_reload.as_ref().and_then(|f| {
            let name = self.string(f, "validate.after_reload")?;
            let known = tests.iter().any(|c| c.suites.iter().any(|s| s == name));
            if !known {
                let mut suites: Vec<&str> = tests
                    .iter()
                    .flat_map(|c| c.suites.iter().map(String::as_str))
                    .collect();
                suites.sort_unstable();
                suites.dedup();
                let hint = if suites.is_empty() {
                    "define [[test_call]]s with suites = [\"NAME\"] first".to_owned()
                } else {
                    format!("suites defined by [[test_call]]s: {}", suites.join(", "))
                };
                self.report.error(
                    &f.at,
                    format!(
                        "validate.after_reload names suite \"{name}\", which no [[test_call]] is in"
                    ),
                    Some(hint),
                );
                return None;
            }
            Some(name.to_owned())
        });
        ValidateSettings {
            concurrency,
            start_interval,
            setup_timeout,
            after_reload,
            busy_hours: busy,
            keep_runs,
        }
    }

    pub(super) fn test_calls(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<RawTestCall>>>>,
        trunks: &HashMap<String, usize>,
    ) -> Vec<TestCall> {
        let mut out = Vec::new();
        let mut names: HashMap<String, At> = HashMap::new();
        let list = raw.map(|r| r.into_inner()).unwrap_or_default();
        for (i, spanned) in list.into_iter().enumerate() {
            let at = span_of(&spanned);
            let t = spanned.into_inner();
            if let Some(call) = self.test_call(&t, &at, i, trunks, &mut names) {
                out.push(call);
            }
        }
        out
    }

    fn test_call(
        &mut self,
        t: &RawTestCall,
        at: &At,
        i: usize,
        trunks: &HashMap<String, usize>,
        names: &mut HashMap<String, At>,
    ) -> Option<TestCall> {
        let name = match &t.name {
            None => {
                self.report.error(
                    at,
                    format!("[[test_call]] #{} has no name", i + 1),
                    Some(
                        "add name = \"carrier-a-out\", the name its results are reported under"
                            .into(),
                    ),
                );
                format!("#{}", i + 1)
            }
            Some(f) => {
                let name = self.string(f, "test_call name")?.to_owned();
                if let Err(p) = values::name(&name) {
                    self.problem(&f.at, "test_call name", p);
                }
                if let Some(first) = names.get(&name) {
                    let hint = format!(
                        "test call names must be unique; the first is at {}",
                        self.report.describe(first)
                    );
                    self.report.error(
                        &f.at,
                        format!("test call \"{name}\" is defined twice"),
                        Some(hint),
                    );
                } else {
                    names.insert(name.clone(), f.at.clone());
                }
                name
            }
        };
        let what = |key: &str| format!("test call \"{name}\" {key}");
        let direction = match &t.direction {
            None => TestDirection::Outbound,
            Some(f) => match self.string(f, &what("direction"))? {
                "outbound" => TestDirection::Outbound,
                "inbound" => TestDirection::Inbound,
                other => {
                    self.report.error(
                        &f.at,
                        format!("{} `{other}` is not a direction", what("direction")),
                        Some(
                            "write \"outbound\" (as the PBX, to a trunk) or \"inbound\" (as a trunk, to the PBX)"
                                .into(),
                        ),
                    );
                    return None;
                }
            },
        };
        let trunk = match &t.trunk {
            None if direction == TestDirection::Inbound => {
                self.report.error(
                    at,
                    format!("inbound test call \"{name}\" names no trunk"),
                    Some("add trunk = \"carrier-a\": the trunk the call comes in from".into()),
                );
                return None;
            }
            None => None,
            Some(f) => {
                let trunk = self.string(f, &what("trunk"))?;
                let Some(&index) = trunks.get(trunk) else {
                    let mut known: Vec<&str> = trunks.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    let hint = match crate::raw::closest(trunk, &known) {
                        Some(c) => {
                            format!("did you mean \"{c}\"? defined trunks: {}", known.join(", "))
                        }
                        None => format!("defined trunks: {}", known.join(", ")),
                    };
                    self.report.error(
                        &f.at,
                        format!("{} names undefined trunk \"{trunk}\"", what("trunk")),
                        Some(hint),
                    );
                    return None;
                };
                Some(index)
            }
        };
        let user = |c: &mut Self, f: &Field, key: &str| -> Option<String> {
            let s = c.string(f, &what(key))?;
            let ok = !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-_.*#".contains(&b));
            if !ok {
                c.report.error(
                    &f.at,
                    format!("{} `{s}` is not a number or user name", what(key)),
                    Some("write digits with an optional leading +, e.g. \"+441632960000\" (at most 64 of 0-9 a-z + - _ . * #)".into()),
                );
                return None;
            }
            Some(s.to_owned())
        };
        let to = match &t.to {
            None => {
                self.report.error(
                    at,
                    format!("test call \"{name}\" has no `to`"),
                    Some("add to = \"+441632960000\": the number called (an echo service or one of your own DIDs)".into()),
                );
                return None;
            }
            Some(f) => user(self, f, "to")?,
        };
        let from = t.from.as_ref().and_then(|f| user(self, f, "from"));
        let (duration, d_at) = self.duration(t.duration.as_ref(), &what("duration"), "10s");
        if let (true, Some(d_at)) = (
            duration < Duration::from_secs(1) || duration > Duration::from_secs(600),
            d_at,
        ) {
            self.report.error(
                &d_at,
                format!("{} ({duration:?}) is out of range", what("duration")),
                Some("write between \"1s\" and \"10m\"; long enough for the audio figures, e.g. \"10s\"".into()),
            );
        }
        let codec = match &t.codec {
            None => TestCodec::Pcmu,
            Some(f) => match self
                .string(f, &what("codec"))?
                .to_ascii_uppercase()
                .as_str()
            {
                "PCMU" | "G711U" => TestCodec::Pcmu,
                "PCMA" | "G711A" => TestCodec::Pcma,
                other => {
                    self.report.error(
                        &f.at,
                        format!(
                            "{} `{other}` is not a codec test calls speak",
                            what("codec")
                        ),
                        Some("write \"PCMU\" or \"PCMA\" (G.711)".into()),
                    );
                    return None;
                }
            },
        };
        let expect = match &t.expect {
            None => TestExpect::Answer,
            Some(f) => match &f.value {
                Value::Str(s) if s == "answer" => TestExpect::Answer,
                Value::Int(code) if (300..700).contains(code) => {
                    TestExpect::Code(u16::try_from(*code).unwrap_or(500))
                }
                _ => {
                    self.report.error(
                        &f.at,
                        format!("{} must be \"answer\" or a final code 300-699", what("expect")),
                        Some("write expect = \"answer\", or e.g. expect = 404 for a number that must be refused".into()),
                    );
                    return None;
                }
            },
        };
        let echo = t
            .echo
            .as_ref()
            .and_then(|f| self.boolean(f, &what("echo")))
            .unwrap_or(false);
        let max_pdd = t
            .max_pdd
            .as_ref()
            .map(|f| self.duration(Some(f), &what("max_pdd"), "5s").0);
        let min_mos = t.min_mos.as_ref().and_then(|f| {
            let v = match f.value {
                Value::Float(v) => v,
                Value::Int(n) => n as f64,
                _ => {
                    self.wrong_type(f, &what("min_mos"), "a number", Some("write e.g. 3.8"));
                    return None;
                }
            };
            if !(1.0..=4.5).contains(&v) {
                self.report.error(
                    &f.at,
                    format!("{} = {v} is out of range", what("min_mos")),
                    Some("a MOS is between 1.0 and 4.5; write e.g. 3.8".into()),
                );
                return None;
            }
            Some(v)
        });
        let suites = match &t.suites {
            None => vec![DEFAULT_SUITE.to_owned()],
            Some(f) => {
                let list = self.strings(f, &what("suites")).unwrap_or_default();
                let mut suites = Vec::new();
                for (s, s_at) in list {
                    match values::name(s) {
                        Ok(()) => suites.push(s.to_owned()),
                        Err(p) => self.problem(s_at, &what("suites"), p),
                    }
                }
                if suites.is_empty() {
                    self.report.error(
                        &f.at,
                        format!("{} is empty", what("suites")),
                        Some("name at least one suite, e.g. [\"smoke\"], or leave the key out for [\"default\"]".into()),
                    );
                }
                suites
            }
        };
        let every = match &t.every {
            None => None,
            Some(f) => {
                let (every, e_at) = self.duration(Some(f), &what("every"), "15m");
                if let (true, Some(e_at)) = (every < Duration::from_secs(60), e_at) {
                    self.report.error(
                        &e_at,
                        format!("{} ({every:?}) is shorter than a minute", what("every")),
                        Some("scheduled checks are a trickle: write e.g. \"15m\"".into()),
                    );
                }
                Some(every)
            }
        };
        let count_limits = t
            .count_limits
            .as_ref()
            .and_then(|f| self.boolean(f, &what("count_limits")))
            .unwrap_or(false);
        Some(TestCall {
            name,
            trunk,
            direction,
            to,
            from,
            duration,
            codec,
            expect,
            echo,
            max_pdd,
            min_mos,
            suites,
            every,
            count_limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::busy_hours;

    #[test]
    fn busy_hours_parse_and_refuse() {
        assert_eq!(busy_hours("08:00-18:00").ok(), Some((480, 1080)));
        assert_eq!(busy_hours("22:30-06:00").ok(), Some((1350, 360)));
        assert!(busy_hours("8-18").is_err());
        assert!(busy_hours("08:00-08:00").is_err());
        assert!(busy_hours("25:00-01:00").is_err());
    }
}
