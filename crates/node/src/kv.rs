//! The `KEY=value` line format of the files tweedd leaves for the plugin:
//! `subnet.env` and the segments' block files.
//!
//! One pair per line. Reading trims each line, key and value, skips blank
//! lines, `#` comments and lines without `=`, and lets the last of
//! repeated keys win (as a shell sourcing the file would). Writing puts
//! each value on one line and replaces the file atomically (temporary file
//! + rename), so a reader never sees half a file.

use std::fmt::Display;
use std::fs;
use std::io;
use std::path::Path;

/// The pairs of one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pairs<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Pairs<'a> {
    /// Reads `KEY=value` lines.
    pub fn parse(text: &'a str) -> Pairs<'a> {
        Pairs(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect(),
        )
    }

    /// The value of `key` (its last line, when repeated).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    /// Whether any line sets `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| *k == key)
    }

    /// Every pair, in file order (repeated keys included).
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.0.iter().copied()
    }
}

/// Collects `KEY=value` lines; a value's line breaks become spaces, so
/// each pair stays one line.
#[derive(Debug, Clone, Default)]
pub struct Writer(String);

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Appends `key=value`.
    pub fn line(&mut self, key: &str, value: impl Display) -> &mut Writer {
        let value = value.to_string().replace('\n', " ");
        self.0.push_str(key);
        self.0.push('=');
        self.0.push_str(&value);
        self.0.push('\n');
        self
    }

    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.0)
    }
}

/// Replaces `path` with `text` atomically: the text goes to a temporary
/// file beside it (`x.env` → `x.env.tmp`; the directory is created if
/// missing), which is then renamed over `path`.
pub fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("env.tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pairs_trimmed_and_the_last_repeat_wins() {
        let p = Pairs::parse("# comment\n  A = 1 \n\nnot a pair\nB=x=y\nA=2\n");
        assert_eq!(p.get("A"), Some("2"));
        assert_eq!(p.get("B"), Some("x=y"));
        assert_eq!(p.get("C"), None);
        assert!(p.contains("B"));
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            [("A", "1"), ("B", "x=y"), ("A", "2")]
        );
    }

    #[test]
    fn writes_one_line_per_pair_and_replaces_the_file() {
        let text = Writer::new()
            .line("A", 1)
            .line("WHY", "two\nlines")
            .finish();
        assert_eq!(text, "A=1\nWHY=two lines\n");
        let dir = std::env::temp_dir().join(format!("tweed-kv-{}", std::process::id()));
        let file = dir.join("sub/x.env");
        write_atomic(&file, &text).unwrap();
        write_atomic(&file, "A=2\n").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "A=2\n");
        assert!(!file.with_extension("env.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
