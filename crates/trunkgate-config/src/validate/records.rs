//! `[records]`: the call-record store — `enabled`, `path`, `keep`, `max_size`.

use super::Check;
use crate::RecordsSettings;
use crate::raw::{Field, RawRecords, Value};
use crate::values::Problem;
use std::time::Duration;
use toml::Spanned;

pub(crate) const KEEP: &str = "400d";
pub(crate) const MAX_SIZE: u64 = 2 * 1024 * 1024 * 1024;
/// The smallest `max_size`: a store below a mebibyte would delete records as it writes them.
const MIN_SIZE: u64 = 1024 * 1024;

/// `"500MB"`, `"2GiB"`, `"750k"` (k/M/G/T: powers of 1000 with `B` or alone, of 1024 with
/// `iB`), or a bare number of bytes.
pub(crate) fn size(text: &str) -> Result<u64, Problem> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let hint = "write e.g. \"2GiB\", \"500MB\" or a number of bytes";
    let n: u64 = num
        .parse()
        .map_err(|_| Problem::new(format!("`{text}` is not a size")).hint(hint))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1000,
        "KiB" => 1024,
        "M" | "MB" => 1000 * 1000,
        "MiB" => 1024 * 1024,
        "G" | "GB" => 1000 * 1000 * 1000,
        "GiB" => 1024 * 1024 * 1024,
        "T" | "TB" => 1000 * 1000 * 1000 * 1000,
        "TiB" => 1024 * 1024 * 1024 * 1024,
        other => {
            return Err(Problem::new(format!("`{other}` is not a size unit")).hint(hint));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| Problem::new(format!("`{text}` is too large")).hint(hint))
}

impl Check<'_, '_> {
    pub(super) fn records(&mut self, raw: Option<&Spanned<RawRecords>>) -> RecordsSettings {
        let empty = RawRecords::default();
        let t = raw.map_or(&empty, Spanned::get_ref);
        let enabled = t
            .enabled
            .as_ref()
            .and_then(|f| self.boolean(f, "records.enabled"))
            .unwrap_or(true);
        let path = t.path.as_ref().and_then(|f| {
            self.parsed(f, "records.path", |s| {
                if s.trim().is_empty() {
                    Err(Problem::new("the path is empty".to_owned()).hint(
                        "write the SQLite file's path, e.g. \"/var/lib/trunkgate/records.sqlite\", \
                         or leave the key out for the default",
                    ))
                } else {
                    Ok(std::path::PathBuf::from(s))
                }
            })
        });
        let (keep, at) = self.duration(t.keep.as_ref(), "records.keep", KEEP);
        if let (true, Some(at)) = (keep < Duration::from_secs(3600), at) {
            self.report.error(
                &at,
                format!("records.keep ({keep:?}) is shorter than an hour"),
                Some("busy hours need at least a day of records: write e.g. \"90d\"".into()),
            );
        }
        let max_size = t
            .max_size
            .as_ref()
            .and_then(|f| self.max_size(f))
            .unwrap_or(MAX_SIZE);
        RecordsSettings {
            enabled,
            path,
            keep,
            max_size,
        }
    }

    fn max_size(&mut self, f: &Field) -> Option<u64> {
        let what = "records.max_size";
        let n = match &f.value {
            Value::Int(n) => u64::try_from(*n).ok().or_else(|| {
                self.report.error(
                    &f.at,
                    format!("{what} = {n} is negative"),
                    Some("write e.g. \"2GiB\"".into()),
                );
                None
            })?,
            _ => self.parsed(f, what, size)?,
        };
        if n < MIN_SIZE {
            self.report.error(
                &f.at,
                format!("{what} ({n} bytes) is below 1 MiB"),
                Some("write e.g. \"2GiB\" or \"500MB\"".into()),
            );
            return None;
        }
        Some(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::size;
    use crate::Policy;
    use crate::tests::{BASE, assert_refused};

    #[test]
    fn records_defaults_values_and_errors_with_positions() {
        let p = Policy::from_toml(BASE, "t.toml").unwrap();
        assert!(p.records.enabled);
        assert_eq!(p.records.path, None);
        assert_eq!(p.records.keep, std::time::Duration::from_secs(400 * 86_400));
        assert_eq!(p.records.max_size, 2 * 1024 * 1024 * 1024);
        let src = format!(
            "{BASE}\n[records]\npath = \"/var/lib/tg/r.sqlite\"\nkeep = \"90d\"\nmax_size = \"500MB\"\n"
        );
        let p = Policy::from_toml(&src, "t.toml").unwrap();
        assert_eq!(
            p.records.path.as_deref(),
            Some(std::path::Path::new("/var/lib/tg/r.sqlite"))
        );
        assert_eq!(p.records.keep, std::time::Duration::from_secs(90 * 86_400));
        assert_eq!(p.records.max_size, 500_000_000);
        let lines = BASE.lines().count();
        assert_refused(
            &format!("{BASE}\n[records]\nkeep = \"10m\"\n"),
            lines + 3,
            8,
            "shorter than an hour",
        );
        assert_refused(
            &format!("{BASE}\n[records]\nmax_size = \"12 parsecs\"\n"),
            lines + 3,
            12,
            "not a size unit",
        );
        assert_refused(
            &format!("{BASE}\n[records]\nmax_size = 1000\n"),
            lines + 3,
            12,
            "below 1 MiB",
        );
        let errors = assert_refused(
            &format!("{BASE}\n[records]\nkep = \"1d\"\n"),
            lines + 3,
            1,
            "kep",
        );
        assert!(
            errors.to_string().contains("did you mean `keep`?"),
            "{errors}"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(size("2GiB").ok(), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(size("500MB").ok(), Some(500_000_000));
        assert_eq!(size("1048576").ok(), Some(1_048_576));
        assert!(size("12 parsecs").is_err());
        assert!(size("GiB").is_err());
        assert!(size("99999999999999TiB").is_err());
    }
}
