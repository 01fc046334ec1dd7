//! The text log's field formatter: `name=value` as tracing-subscriber writes
//! it, except that no value can forge log lines or fields.
//!
//! Clients choose much of what the gateway logs (a `model` echoed in an
//! error, a path, a workspace id). tracing-subscriber's default formatter
//! writes a `%display` value and the message raw, so a `\n` in a model name
//! starts a forged line at column 0, a `\r` or a terminal escape (`ESC[31m`)
//! rewrites what an operator sees, and `nope key="admin"` adds a field. This
//! formatter fixes that once, for every field of every event and span:
//!
//! - **Escaped**: control characters (C0 with `\n`, `\r`, `\t`, ESC; DEL;
//!   C1, U+0080–U+009F), the Unicode line and paragraph separators (U+2028,
//!   U+2029, which some viewers break lines at) and the bidirectional controls
//!   (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069, which reorder
//!   what a terminal shows) are written as Rust escapes (`\n`, `\u{1b}`), in
//!   the message too. With ANSI colours on, the formatter's own colour codes
//!   are the only escapes in the output.
//! - **Quoted, logfmt style**: a value that is empty or holds a space, `"`,
//!   `=`, `\` or an escaped character is written as a quoted string (`\"` and
//!   `\\` inside), so one value always reads as one field: escaping alone
//!   would leave `model=nope key="admin"` looking like two fields to a grep or
//!   a logfmt parser. Plain values (`model=demo`, `status=200`) stay bare, and
//!   a value that is already one well-formed quoted string (what `Debug` of a
//!   string gives; string fields are written so) is not quoted twice. The
//!   message is only escaped, not quoted: it is prose, and the gateway puts
//!   what clients send in fields, not in messages.
//!
//! Everything else is byte for byte what `DefaultFields` writes (the tests
//! compare the two). A value is formatted into a 256-byte stack buffer to
//! decide how to write it; only a longer one allocates.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;

/// The field formatter for the text log (`fmt().fmt_fields(SafeFields)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SafeFields;

impl<'a> MakeVisitor<Writer<'a>> for SafeFields {
    type Visitor = SafeVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> SafeVisitor<'a> {
        SafeVisitor { writer: target, first: true, result: Ok(()) }
    }
}

/// Writes one event's (or span's) fields; see the module doc.
pub struct SafeVisitor<'a> {
    writer: Writer<'a>,
    first: bool,
    result: fmt::Result,
}

/// Values up to this size are formatted without allocating.
const INLINE_VALUE: usize = 256;

impl SafeVisitor<'_> {
    /// The separating space and `name=` (italic and dimmed with ANSI on, as
    /// tracing-subscriber writes them). False for fields not to be written.
    fn name(&mut self, name: &str, suffix: &str) -> bool {
        if self.result.is_err() || name.starts_with("log.") {
            // `log.*` fields are the `log` crate's metadata, already shown.
            return false;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        let w = &mut self.writer;
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = if w.has_ansi_escapes() {
            write!(w, "{sep}\x1b[3m{name}{suffix}\x1b[0m\x1b[2m=\x1b[0m")
        } else {
            write!(w, "{sep}{name}{suffix}=")
        };
        self.result.is_ok()
    }

    /// The message: escaped, not quoted.
    fn message(&mut self, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if !self.first {
            self.result = self.writer.write_char(' ');
        }
        self.first = false;
        if self.result.is_ok() {
            self.result = write!(Escaping(&mut self.writer), "{value:?}");
        }
    }

    /// A value: bare, or quoted and escaped (see [`write_value`]).
    fn value(&mut self, name: &str, suffix: &str, value: &dyn fmt::Debug) {
        if !self.name(name, suffix) {
            return;
        }
        let mut inline = InlineStr::default();
        self.result = if write!(inline, "{value:?}").is_ok() {
            write_value(&mut self.writer, inline.as_str())
        } else {
            let mut long = String::new();
            // A value whose own formatting fails is logged as far as it got.
            let _ = write!(long, "{value:?}");
            write_value(&mut self.writer, &long)
        };
    }
}

impl Visit for SafeVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message(&format_args!("{value}"));
        } else if self.name(field.name(), "") {
            // As tracing-subscriber does: `Debug`, so always quoted and escaped.
            self.result = write!(self.writer, "{value:?}");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message(value);
        } else {
            self.value(field.name(), "", value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.value(field.name(), "", &format_args!("{value}"));
        if let Some(source) = value.source() {
            self.value(field.name(), ".sources", &Sources(source));
        }
    }
}

impl VisitOutput<fmt::Result> for SafeVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for SafeVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// An error's sources as `[a, b]`, as tracing-subscriber lists them.
struct Sources<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Debug for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut next = Some(self.0);
        while let Some(e) = next {
            list.entry(&format_args!("{e}"));
            next = e.source();
        }
        list.finish()
    }
}

/// Characters never written raw: see the module doc.
pub fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// True when `s` has no character [`must_escape`] matches: a byte test for
/// the common case, since every such character is ASCII or starts with one
/// of three UTF-8 lead bytes (0xC2: C1; 0xD8: U+061C; 0xE2: the U+20xx ones).
fn plainly_safe(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && !matches!(b, 0x7f | 0xc2 | 0xd8 | 0xe2))
}

/// A `fmt::Write` that escapes what [`must_escape`] matches and passes the
/// rest through in runs, without allocating.
pub struct Escaping<W>(pub W);

impl<W: fmt::Write> fmt::Write for Escaping<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if plainly_safe(s) {
            return self.0.write_str(s);
        }
        let mut run = 0;
        for (i, c) in s.char_indices() {
            if must_escape(c) {
                self.0.write_str(&s[run..i])?;
                write!(self.0, "{}", c.escape_debug())?;
                run = i + c.len_utf8();
            }
        }
        self.0.write_str(&s[run..])
    }
}

/// Writes a formatted value bare when it reads as one plain token, as is when
/// it is one well-formed quoted string already, and quoted (`Debug` of a
/// string: `"` and `\` escaped, [`must_escape`] characters too) otherwise.
pub fn write_value(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let bare = !s.is_empty() && s.chars().all(|c| !matches!(c, ' ' | '"' | '=' | '\\') && !must_escape(c));
    if bare || is_quoted_string(s) {
        w.write_str(s)
    } else {
        write!(w, "{s:?}")
    }
}

/// `"..."` with every inner `"` and `\` escaped and nothing to escape raw.
fn is_quoted_string(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return false;
    };
    // After an odd run of backslashes, the next character is escaped.
    let mut escaped = false;
    for c in inner.chars() {
        if must_escape(c) || (c == '"' && !escaped) {
            return false;
        }
        escaped = c == '\\' && !escaped;
    }
    !escaped
}

/// A string buffer on the stack: formatting into it fails instead of growing.
struct InlineStr {
    buf: [u8; INLINE_VALUE],
    len: usize,
}

impl Default for InlineStr {
    fn default() -> Self {
        InlineStr { buf: [0; INLINE_VALUE], len: 0 }
    }
}

impl InlineStr {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are appended, so this never fails.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for InlineStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::format::DefaultFields;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        Escaping(&mut out).write_str(s).unwrap();
        out
    }

    fn value(s: &str) -> String {
        let mut out = String::new();
        write_value(&mut out, s).unwrap();
        out
    }

    #[test]
    fn the_escaping_writer_escapes_line_breaks_terminal_escapes_and_bidi_controls() {
        assert_eq!(escaped("plain text, unchanged: é ü 日本 — €"), "plain text, unchanged: é ü 日本 — €");
        assert_eq!(escaped("a\nb\rc\td"), r"a\nb\rc\td");
        assert_eq!(escaped("\u{1b}[31mred\u{1b}[0m"), r"\u{1b}[31mred\u{1b}[0m");
        assert_eq!(escaped("\0\u{7}\u{7f}"), r"\0\u{7}\u{7f}");
        assert_eq!(escaped("c1 \u{85} \u{9b}31m"), r"c1 \u{85} \u{9b}31m");
        assert_eq!(escaped("ls \u{2028} ps \u{2029}"), r"ls \u{2028} ps \u{2029}");
        assert_eq!(escaped("\u{202e}evil\u{2066}\u{061c}\u{200f}"), r"\u{202e}evil\u{2066}\u{61c}\u{200f}");
        // Neighbours of the escaped ranges under the same lead bytes pass.
        assert_eq!(escaped("\u{a0}\u{a9}\u{2014}\u{2030}\u{0627}"), "\u{a0}\u{a9}\u{2014}\u{2030}\u{0627}");
        // Quotes, backslashes and `=` are the quoting's business, not this writer's.
        assert_eq!(escaped(r#"say "x=\y""#), r#"say "x=\y""#);
    }

    #[test]
    fn values_are_bare_when_plain_and_quoted_when_they_could_read_as_more() {
        assert_eq!(value("demo"), "demo");
        assert_eq!(value("req_0123"), "req_0123");
        assert_eq!(value("Some(200)"), "Some(200)");
        assert_eq!(value("日本"), "日本");
        assert_eq!(value(""), r#""""#);
        assert_eq!(value("nope key=\"admin\""), r#""nope key=\"admin\"""#);
        assert_eq!(value("a=b"), r#""a=b""#);
        assert_eq!(value(r"C:\x"), r#""C:\\x""#);
        assert_eq!(value("nope\n2026-12-01T20:20:00Z  INFO x"), r#""nope\n2026-12-01T20:20:00Z  INFO x""#);
        assert_eq!(value("\u{1b}[31m"), r#""\u{1b}[31m""#);
        // Already one quoted string (Debug of a string): as is.
        assert_eq!(value(r#""acme""#), r#""acme""#);
        assert_eq!(value(r#""say \"hi\"\n""#), r#""say \"hi\"\n""#);
        // Not one quoted string: quoted as a whole.
        assert_eq!(value(r#""a" key="b""#), r#""\"a\" key=\"b\"""#);
        assert_eq!(value(r#""a\""#), r#""\"a\\\"""#);
        assert_eq!(value("\"a\nb\""), r#""\"a\nb\"""#);
        assert_eq!(value(r#"["acme", "beta"]"#), r#""[\"acme\", \"beta\"]""#);
    }

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    /// The text a subscriber with `fields` and `ansi` writes for `emit`.
    fn log<N>(fields: N, ansi: bool, emit: impl FnOnce()) -> String
    where
        N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_ansi(ansi)
            .without_time()
            .with_target(false)
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn benign() {
        let model = "demo";
        tracing::info!(
            request_id = %"req_1",
            key = "ci",
            model = %model,
            status = 200u16,
            streamed = false,
            ms = 3u64,
            ratio = 0.5f64,
            seeded = ?Some(2),
            r#type = "x",
            "model request"
        );
        tracing::warn!("no fields, {} interpolated", "one");
    }

    #[test]
    fn benign_lines_are_what_the_default_formatter_writes_with_ansi_on_and_off() {
        for ansi in [false, true] {
            let ours = log(SafeFields, ansi, benign);
            let default = log(DefaultFields::new(), ansi, benign);
            assert_eq!(ours, default, "ansi {ansi}");
            assert_eq!(ours.lines().count(), 2, "{ours}");
        }
    }

    fn hostile() {
        let model = "nope\n2026-12-01T20:20:00.000000Z  INFO model request key=\"admin\" model=demo";
        let red = "\u{1b}[31mred\r\u{1b}[0m";
        tracing::info!(model = %model, path = red, error = %format!("The model `{red}` does not exist"), "refused");
        tracing::info!("message with {model} and {red}");
    }

    #[test]
    fn hostile_values_cannot_forge_lines_fields_or_escapes_with_ansi_on_and_off() {
        for ansi in [false, true] {
            let out = log(SafeFields, ansi, hostile);
            assert_eq!(out.matches('\n').count(), 2, "one line per event: {out}");
            assert!(!out.contains('\r'), "{out:?}");
            // Only the formatter's own colour codes: ESC followed by `[` and
            // a digit list the formatter writes, never the client's `[31m`.
            let client_escapes = out.match_indices('\u{1b}').filter(|(i, _)| out[i + 1..].starts_with("[31m")).count();
            assert_eq!(client_escapes, 0, "{out:?}");
            assert!(!ansi || out.contains('\u{1b}'), "ANSI on still colours: {out:?}");
            assert!(out.contains(r#"nope\n2026-12-01T20:20:00.000000Z  INFO model request key=\"admin\" model=demo""#));
            let fields = out.lines().next().unwrap();
            assert!(!fields.contains(r#" key="admin""#), "no forged field: {fields}");
            assert!(out.contains(r"\u{1b}[31mred\r\u{1b}[0m"), "{out}");
            assert!(out.contains(r"message with nope\n2026"), "the message is escaped, not quoted: {out}");
        }
        let plain = log(SafeFields, false, hostile);
        let first = plain.lines().next().unwrap();
        assert!(
            first.starts_with(r#" INFO refused model="nope\n2026-12-01T20:20:00.000000Z  INFO model request key=\"admin\" model=demo" path="\u{1b}[31mred\r\u{1b}[0m" error="The model `\u{1b}[31mred\r\u{1b}[0m` does not exist""#),
            "{first}"
        );
    }

    #[test]
    fn long_values_are_quoted_and_escaped_too() {
        let long = format!("{}\n{}", "x".repeat(300), "y ".repeat(200));
        let out = log(SafeFields, false, || tracing::info!(long = %long, "m"));
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains(&format!(r#"long="{}\n{}""#, "x".repeat(300), "y ".repeat(200))), "{out}");
    }

    #[test]
    fn errors_and_their_sources_are_quoted() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer\nforged")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::other("inner"));
        let out = log(SafeFields, false, || tracing::info!(error = &error as &dyn std::error::Error, "failed"));
        assert_eq!(out, " INFO failed error=\"outer\\nforged\" error.sources=[inner]\n");
    }
}
