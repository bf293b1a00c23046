//! Parsing TOML files into typed values with errors that point at the file, line, column and field.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A position in a text file, 1-based, as editors show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number in characters, starting at 1.
    pub column: usize,
}

impl Location {
    /// The line and column of a byte offset in `text`.
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..text.floor_char_boundary_compat(offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self { line, column }
    }
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, index: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut index: usize) -> usize {
        while index > 0 && !self.is_char_boundary(index) {
            index -= 1;
        }
        index
    }
}

/// An error in a config or recipe file: which file, where in it, which field, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file was read but its content is wrong.
    #[error("{}", render_invalid(.path, .location, .field, .message))]
    Invalid {
        /// The file that holds the mistake.
        path: PathBuf,
        /// Where in the file, when known.
        location: Option<Location>,
        /// The dotted path of the field, such as `source[1].url`, when known.
        field: Option<String>,
        /// What is wrong and, where possible, what to do.
        message: String,
    },
}

fn render_invalid(
    path: &Path,
    location: &Option<Location>,
    field: &Option<String>,
    message: &str,
) -> String {
    let mut out = path.display().to_string();
    if let Some(loc) = location {
        out.push_str(&format!(":{}:{}", loc.line, loc.column));
    }
    out.push_str(": ");
    if let Some(field) = field {
        out.push_str(&format!("field `{field}`: "));
    }
    out.push_str(message);
    out
}

impl ConfigError {
    /// An error about a field whose span in the source text is known.
    pub fn at_span(
        path: &Path,
        text: &str,
        span: std::ops::Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            location: Some(Location::of_offset(text, span.start)),
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// An error about `key` in the `index`th table of an array of tables (`[[stream]]`), found by
    /// searching the text: used for checks across tables, where not every table sets the key.
    pub fn in_table(
        path: &Path,
        text: &str,
        (header, index): (&str, usize),
        key: &str,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            location: find_key_in_table(text, header, index, key),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    /// An error about a field whose position is found by searching for its key in the text: used for
    /// checks that run after parsing, when serde no longer has a span.
    pub fn at_key(
        path: &Path,
        text: &str,
        key: &str,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        // A field such as `stream[2].gate` is most likely the third assignment of `gate` in the file.
        let occurrence = field
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(0);
        Self::Invalid {
            path: path.to_path_buf(),
            location: find_key(text, key, occurrence).or_else(|| find_key(text, key, 0)),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }
}

impl ConfigError {
    /// An error about the `occurrence`th (0-based) assignment of `key` in the file, for fields of nested
    /// arrays of tables whose place the field path alone does not give.
    pub fn at_occurrence(
        path: &Path,
        text: &str,
        key: &str,
        occurrence: usize,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            location: find_key(text, key, occurrence).or_else(|| find_key(text, key, 0)),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }
}

/// The location of the line that assigns `key` inside the `index`th table of an array of tables whose
/// header is `header` (such as `[[stream]]`), before the next header of any table.
fn find_key_in_table(text: &str, header: &str, index: usize, key: &str) -> Option<Location> {
    let mut offset = 0;
    let mut tables_seen = 0;
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with('[') {
            inside = false;
            if trimmed.starts_with(header) {
                tables_seen += 1;
                inside = tables_seen == index + 1;
            }
        } else if inside {
            if let Some(rest) = trimmed.strip_prefix(key) {
                if rest.trim_start().starts_with('=') {
                    return Some(Location::of_offset(text, offset + indent));
                }
            }
        }
        offset += line.len();
    }
    None
}

/// The location of the first line that assigns `key` (`key = ...`), ignoring comments.
fn find_key(text: &str, key: &str, occurrence: usize) -> Option<Location> {
    let mut offset = 0;
    let mut seen = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(rest) = trimmed.strip_prefix(key) {
            let rest = rest.trim_start();
            if rest.starts_with('=') {
                if seen == occurrence {
                    return Some(Location::of_offset(text, offset + indent));
                }
                seen += 1;
            }
        }
        offset += line.len();
    }
    None
}

/// Reads and parses a TOML file into `T`, naming file, line, column and field on error.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let value = parse_toml(path, &text)?;
    Ok((value, text))
}

/// Parses TOML text that came from `path` into `T`.
pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        let location = inner
            .span()
            .map(|span| Location::of_offset(text, span.start));
        ConfigError::Invalid {
            path: path.to_path_buf(),
            location,
            field: (field != "." && !field.is_empty()).then_some(field),
            message: inner.message().trim().to_string(),
        }
    })
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_columns() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(
            Location::of_offset(text, 0),
            Location { line: 1, column: 1 }
        );
        assert_eq!(
            Location::of_offset(text, 6),
            Location { line: 2, column: 1 }
        );
        assert_eq!(
            Location::of_offset(text, 8),
            Location { line: 2, column: 3 }
        );
    }

    #[test]
    fn finds_a_key_inside_the_nth_table_of_an_array() {
        let text = "[[s]]\nname = 1\n[[s]]\nname = 2\n[x]\nkey = 0\n[[s]]\n  key = 3\n";
        assert_eq!(
            find_key_in_table(text, "[[s]]", 2, "key"),
            Some(Location { line: 8, column: 3 })
        );
        assert_eq!(find_key_in_table(text, "[[s]]", 1, "key"), None);
        assert_eq!(
            find_key_in_table(text, "[[s]]", 1, "name"),
            Some(Location { line: 4, column: 1 })
        );
    }

    #[test]
    fn finds_the_line_that_assigns_a_key() {
        let text = "# hostname = no\n[system]\n  hostname = \"x\"\n";
        assert_eq!(
            find_key(text, "hostname", 0),
            Some(Location { line: 3, column: 3 })
        );
        let text = "[[s]]\nname = 1\n[[s]]\nname = 2\n";
        assert_eq!(
            find_key(text, "name", 1),
            Some(Location { line: 4, column: 1 })
        );
    }
}
