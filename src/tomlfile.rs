//! The TOML files isobench reads (scenarios, bounds): read safely, parsed
//! with the key path of any error, and every error pointed at its line and
//! column with the line itself and a caret under the spot.

use serde::de::DeserializeOwned;
use std::ops::Range;
use std::path::Path;

/// Reads a TOML file: a regular file (never a FIFO, which would hang, or a
/// device such as `/dev/zero`, which never ends) of at most `limit`
/// bytes. `what` names the kind of file in the message (`a scenario file
/// (TOML), such as scenarios/quick.toml`).
pub fn read(path: &Path, limit: u64, what: &str) -> Result<String, std::io::Error> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other(format!(
            "not a regular file; give {what}"
        )));
    }
    let mut file = crate::record::open_run_file(path, limit)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text)?;
    Ok(text)
}

/// Where a TOML error is, and what it says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {key}: {message}{snippet}")]
pub struct Located {
    /// `file:line:column`, or the file alone when no position is known.
    pub location: String,
    /// The key path (`workload[1].reps`), or `(document)`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// The line with a caret under the column, or empty.
    pub snippet: String,
}

/// Points at `span` of `text` (a file named `origin`).
pub fn locate(
    text: &str,
    origin: &str,
    span: Option<Range<usize>>,
    key: &str,
    message: String,
) -> Located {
    let (location, snippet) = match span {
        Some(span) => {
            let start = span.start.min(text.len());
            let start = (0..=start)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            let line_no = text[..start].matches('\n').count() + 1;
            let column = text[line_start..start].chars().count() + 1;
            let snippet = format!(
                "\n{line_no:>5} | {}\n      | {}^",
                &text[line_start..line_end],
                " ".repeat(column - 1)
            );
            (format!("{origin}:{line_no}:{column}"), snippet)
        }
        None => (origin.to_string(), String::new()),
    };
    Located {
        location,
        key: if key.is_empty() || key == "." {
            "(document)".into()
        } else {
            key.into()
        },
        message,
        snippet,
    }
}

/// Parses `text` (a file named `origin`) into `T`; an error names the key
/// path, the line and the column.
pub fn parse<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, Located> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| {
        locate(
            text,
            origin,
            e.span(),
            "(document)",
            e.message().to_string(),
        )
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        // `toml::Spanned` shows up in the path as a private field: drop it.
        let key = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "");
        let inner = e.into_inner();
        locate(
            text,
            origin,
            inner.span(),
            &key,
            inner.message().to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_point_at_line_column_and_key() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let err = parse::<T>("\na = \"x\"\n", "f.toml").unwrap_err();
        assert_eq!(err.location, "f.toml:2:5");
        assert_eq!(err.key, "a");
        assert!(
            err.snippet.contains("    2 | a = \"x\"\n      |     ^"),
            "{err:?}"
        );
        // Offsets inside a multi-byte character do not panic.
        let l = locate("é = 1", "f", Some(1..2), "", "m".into());
        assert_eq!(
            (l.location.as_str(), l.key.as_str()),
            ("f:1:1", "(document)")
        );
    }
}
