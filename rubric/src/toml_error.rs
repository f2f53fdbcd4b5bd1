//! Where a TOML error is: the line and the key a parse or type error points at, for the
//! messages of every TOML file Kaohe reads (the rubric here, the agent's config).

/// A TOML error located in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// 1-based; `None` when the error has no position.
    pub line: Option<usize>,
    /// The key named by the error or written on its line, if any.
    pub key: Option<String>,
    /// The error's own message, trimmed.
    pub message: String,
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Locates `e`, an error from parsing `text`. serde reports an error inside a table at
/// the table; when the message names a field, the line is that field's own line within
/// the table. Otherwise the key is the one written on the line the error points at (a
/// value of the wrong type).
pub fn locate(text: &str, e: &toml::de::Error) -> Located {
    let message = e.message().trim().to_string();
    let field = message
        .split_once("field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(f, _)| f.to_string());
    let Some(start) = e.span().map(|s| s.start.min(text.len())) else {
        return Located {
            line: None,
            key: field,
            message,
        };
    };
    if let Some(f) = &field {
        let mut offset = start;
        for line in text[start..].split_inclusive('\n') {
            let t = line.trim_start();
            if t.starts_with(f.as_str()) && t[f.len()..].trim_start().starts_with('=') {
                return Located {
                    line: Some(line_of(text, offset)),
                    key: field,
                    message,
                };
            }
            if t.starts_with('[') && offset > start {
                break;
            }
            offset += line.len();
        }
    }
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let key_on_line = text[line_start..]
        .lines()
        .next()
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('#') && !k.starts_with('['));
    Located {
        line: Some(line_of(text, start)),
        key: field.or(key_on_line),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        a: Table,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Table {
        n: u32,
    }

    fn located(text: &str) -> Located {
        locate(text, &toml::from_str::<File>(text).expect_err("an error"))
    }

    #[test]
    fn a_wrong_type_names_the_key_on_its_line() {
        let l = located("[a]\n\nn = \"three\"\n");
        assert_eq!((l.line, l.key.as_deref()), (Some(3), Some("n")));
    }

    #[test]
    fn an_unknown_field_names_its_own_line() {
        let l = located("[a]\nn = 1\n# note\nextra = 2\n");
        assert_eq!((l.line, l.key.as_deref()), (Some(4), Some("extra")));
        assert!(l.message.contains("extra"), "{}", l.message);
    }

    #[test]
    fn a_syntax_error_has_a_line_and_no_key() {
        let l = located("[a]\nn = = 1\n");
        assert_eq!(l.line, Some(2));
    }
}
