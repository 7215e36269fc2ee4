//! Where each key of the configuration came from: a line and column of the
//! file, or a `WB__*` environment variable. Every [`ConfigError`] is placed
//! with it, so the message names the culprit every time, whatever stage
//! (TOML syntax, types, validation) found the fault.
//!
//! Keys are paths as the errors write them: `policy.slippage_bps`,
//! `chains.devnet.tokens[1].address`.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::{ConfigError, Location};

/// The file's keys (with their line and column) and the variables that
/// overrode keys.
#[derive(Debug, Default)]
pub(super) struct Origins {
    /// The file's name as the operator gave it (`<config>` for text).
    file: String,
    /// `path -> (line, column)` of every key and array element in the file.
    spans: BTreeMap<String, (usize, usize)>,
    /// `path -> variable` of every override.
    env: BTreeMap<String, String>,
}

/// 1-based line and column of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, column)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Every key path of `table` with the byte range of its key (array
/// elements: of the element).
fn walk(
    table: &DeTable<'_>,
    prefix: &str,
    out: &mut Vec<(String, std::ops::Range<usize>, std::ops::Range<usize>)>,
) {
    for (key, value) in table {
        let path = join(prefix, key.get_ref());
        out.push((path.clone(), key.span(), value.span()));
        walk_value(value.get_ref(), &path, out);
    }
}

fn walk_value(
    value: &DeValue<'_>,
    path: &str,
    out: &mut Vec<(String, std::ops::Range<usize>, std::ops::Range<usize>)>,
) {
    match value {
        DeValue::Table(t) => walk(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push((p.clone(), item.span(), item.span()));
                walk_value(item.get_ref(), &p, out);
            }
        }
        _ => {}
    }
}

/// Key paths of a TOML text with their key and value byte ranges.
fn paths(text: &str) -> Vec<(String, std::ops::Range<usize>, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    if let Ok(table) = DeTable::parse(text) {
        walk(table.get_ref(), "", &mut out);
    }
    out
}

/// The parent of a path: `a.b[1].c` -> `a.b[1]` -> `a.b` -> `a` -> none.
fn parent(path: &str) -> Option<&str> {
    if let Some(stripped) = path.strip_suffix(']') {
        return stripped
            .rfind('[')
            .map(|i| &path[..i])
            .filter(|_| !stripped.is_empty());
    }
    path.rfind('.').map(|i| &path[..i])
}

impl Origins {
    /// The origins of `text`, read from `file`.
    pub(super) fn of_file(file: &str, text: &str) -> Origins {
        let spans = paths(text)
            .into_iter()
            .map(|(path, key, _)| (path, line_col(text, key.start)))
            .collect();
        Origins {
            file: file.to_string(),
            spans,
            env: BTreeMap::new(),
        }
    }

    /// `path` was set by `var`.
    pub(super) fn overridden(&mut self, path: String, var: String) {
        self.env.insert(path, var);
    }

    /// Where `path` (or the nearest enclosing key) was written.
    pub(super) fn locate(&self, path: &str) -> Location {
        let mut p = Some(path);
        while let Some(cur) = p {
            if let Some(var) = self.env.get(cur) {
                return Location::Env(var.clone());
            }
            p = parent(cur);
        }
        let mut p = Some(path);
        while let Some(cur) = p {
            if let Some(&(line, column)) = self.spans.get(cur) {
                return Location::File {
                    file: self.file.clone(),
                    line: Some((line, column)),
                };
            }
            p = parent(cur);
        }
        Location::File {
            file: self.file.clone(),
            line: None,
        }
    }

    /// Places an error that names its key.
    pub(super) fn place(&self, mut e: ConfigError) -> ConfigError {
        if e.location.is_none() {
            e.location = Some(self.locate(&e.key));
        }
        e
    }
}

/// `table` (whose keys sit at `prefix`) as a `T`; a type error names the
/// key it is about. Deserialized from its TOML text, whose spans say which
/// key the error is at (a deserializer from a value has no spans).
pub(super) fn typed<T: DeserializeOwned>(
    table: &toml::Table,
    prefix: &str,
) -> Result<T, ConfigError> {
    let text = toml::to_string(table).map_err(|e| ConfigError::new(prefix, e))?;
    toml::from_str::<T>(&text).map_err(|e| {
        let msg = e.message().to_string();
        let at = e.span().and_then(|span| {
            // The innermost key whose key or value holds the error.
            paths(&text)
                .into_iter()
                .filter(|(_, key, value)| {
                    key.contains(&span.start)
                        || (value.start <= span.start && span.end <= value.end)
                })
                .max_by_key(|(path, _, _)| path.len())
                .map(|(path, _, _)| path)
        });
        // Unknown and missing fields are named by the message, at the
        // table that has (or lacks) them.
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| msg.strip_prefix(p))
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string);
        let local = match (at, named) {
            (Some(at), Some(field)) if !at.ends_with(&field) => join(&at, &field),
            (Some(at), _) => at,
            (None, Some(field)) => field,
            (None, None) => String::new(),
        };
        let key = match (prefix.is_empty(), local.is_empty()) {
            (_, true) => prefix.to_string(),
            (true, false) => local,
            (false, false) => join(prefix, &local),
        };
        ConfigError::new(
            if key.is_empty() {
                "<config>".into()
            } else {
                key
            },
            msg,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let t = "a = 1\n  b = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 8), (2, 3));
    }

    #[test]
    fn parents_climb_keys_and_indices() {
        assert_eq!(parent("a.b[1].c"), Some("a.b[1]"));
        assert_eq!(parent("a.b[1]"), Some("a.b"));
        assert_eq!(parent("a.b"), Some("a"));
        assert_eq!(parent("a"), None);
    }

    #[test]
    fn every_key_and_element_is_located() {
        let text = "[policy]\nslippage_bps = 5\n\n[[chains.x.tokens]]\nsymbol = \"A\"\n[[chains.x.tokens]]\nsymbol = \"B\"\n";
        let o = Origins::of_file("c.toml", text);
        let at = |p: &str| match o.locate(p) {
            Location::File { line, .. } => line,
            other => panic!("{other:?}"),
        };
        assert_eq!(at("policy.slippage_bps"), Some((2, 1)));
        assert_eq!(at("chains.x.tokens[1].symbol"), Some((7, 1)));
        // Not in the file: the nearest enclosing key.
        assert_eq!(at("policy.buffer_usd"), Some((1, 2)));
        assert_eq!(at("journal.path"), None);
    }
}
