//! Small helpers for hand-written HTML: escaping, the language, the page frame.
//! Every string that comes from data goes through [`esc`].

use std::fmt::Write;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path or query component (unit ids keep their slashes in paths).
pub fn url_part(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'/' if keep_slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The dashboard's language: Chinese unless English is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    /// Picks one of two texts.
    pub fn t<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }
}

/// A time in the rubric's zone, to the minute.
pub fn when(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// A time in the rubric's zone, to the second: for outages, which may last seconds.
pub fn when_secs(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

pub use crate::render::pts;

const CSS: &str = r#"
body{font-family:"Noto Sans CJK SC","Microsoft YaHei","PingFang SC",sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
header{background:#1f3a5f;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none}header .who{margin-left:auto;font-size:.9em}
header form{display:inline}header button{background:none;border:1px solid #fff;color:#fff;border-radius:3px;cursor:pointer}
main{padding:1em 1.5em;max-width:1300px}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:2px solid #1f3a5f;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;background:#fff;margin:.5em 0}th,td{border:1px solid #ccd3da;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#e6ebf0}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.st{white-space:nowrap}table.sheet td.ent{min-width:16em}table.sheet td.ded{min-width:22em}
.ok{color:#1b7a2e}.bad{color:#b3261e;font-weight:bold}.warn{color:#a15c00}.muted{color:#6b7785}
tr.unreg td{background:#fff1e0}tr.bridge td{background:#fde2e0}
.pending{color:#a15c00}.badge{display:inline-block;padding:0 .4em;border-radius:3px;background:#e6ebf0;font-size:.85em}
.badge.Pending{background:#fff1e0}.badge.Overridden,.badge.Waived{background:#e0e8ff}
ul.ev{margin:.2em 0 .2em 1em;padding:0}ul.ev li{font-size:.9em}
.err{background:#fde2e0;border:1px solid #b3261e;padding:.5em 1em;margin:.5em 0}
.box{background:#fff;border:1px solid #ccd3da;padding:1em;margin:.5em 0}
form.entry label{display:block;margin:.3em 0}form.entry input,form.entry select,form.entry textarea{min-width:18em}
.login{max-width:22em;margin:4em auto;background:#fff;padding:1.5em;border:1px solid #ccd3da}
.login input{width:100%;margin:.3em 0 .8em;padding:.3em}
svg text{font-family:inherit}
@media print{header,form{display:none}}
"#;

/// The page frame: header with navigation and the user, then `body`.
pub fn page(lang: Lang, title: &str, nav: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · {}</title><style>{CSS}</style></head>\n<body>{nav}<main>{body}</main></body></html>\n",
        if lang == Lang::Zh { "zh-CN" } else { "en" },
        esc(title),
        lang.t("考核管理平台", "Kaohe dashboard"),
    )
}
