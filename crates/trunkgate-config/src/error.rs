//! Policy errors: where (`file:line:col` or the environment variable), what, and what to do.

use std::fmt;
use std::ops::Range;

/// One problem in a policy.
///
/// `line` and `col` are 1-based; both are `0` when the problem has no position in a file
/// (an environment override, where `origin` is the variable's name, or an unreadable file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file name (`config/x.toml`, `<embedded>`) or the environment variable.
    pub origin: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: error: {}", self.origin, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: error: {}",
                self.origin, self.line, self.col, self.message
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a policy, in file order (environment problems last).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    pub fn iter(&self) -> impl Iterator<Item = &PolicyError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl IntoIterator for PolicyErrors {
    type Item = PolicyError;
    type IntoIter = std::vec::IntoIter<PolicyError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum At {
    /// Byte range in the policy file.
    Span(Range<usize>),
    /// An environment override; the variable's name.
    Env(String),
    /// Nowhere in particular (a missing table): reported at the start of the file.
    Nowhere,
}

/// Turns byte offsets into 1-based line:col and collects errors.
pub(crate) struct Report<'a> {
    source: &'a str,
    origin: &'a str,
    line_starts: Vec<usize>,
    pub(crate) errors: Vec<PolicyError>,
}

impl<'a> Report<'a> {
    pub(crate) fn new(source: &'a str, origin: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Report {
            source,
            origin,
            line_starts,
            errors: Vec::new(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let col = self
            .source
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, col)
    }

    /// The line of a location, for hints like "the first is at line 4".
    pub(crate) fn describe(&self, at: &At) -> String {
        match at {
            At::Span(r) => format!("line {}", self.line_col(r.start).0),
            At::Env(var) => format!("environment variable {var}"),
            At::Nowhere => "the start of the file".to_owned(),
        }
    }

    pub(crate) fn error(&mut self, at: &At, message: impl Into<String>, hint: Option<String>) {
        let (origin, line, col) = match at {
            At::Span(r) => {
                let (l, c) = self.line_col(r.start);
                (self.origin.to_owned(), l, c)
            }
            At::Env(var) => (var.clone(), 0, 0),
            At::Nowhere => (self.origin.to_owned(), 1, 1),
        };
        self.errors.push(PolicyError {
            origin,
            line,
            col,
            message: message.into(),
            hint,
        });
    }

    pub(crate) fn finish(self) -> Result<(), PolicyErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.into_errors())
        }
    }

    /// The errors so far: file errors in file order, environment errors after them.
    pub(crate) fn into_errors(mut self) -> PolicyErrors {
        self.errors.sort_by_key(|e| (e.line == 0, e.line, e.col));
        PolicyErrors(self.errors)
    }
}
