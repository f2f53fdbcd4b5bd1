//! Human-readable output: the score sheet as a Chinese-first table for a terminal.

use std::fmt::Write;

use kaohe_rubric::rubric::Rubric;
use kaohe_rubric::scoring::{Sheet, Status};

/// Evidence lines shown under one deduction before "… N more".
const MAX_EVIDENCE_LINES: usize = 5;

fn fmt_points(x: f64) -> String {
    format!("{x:.2}")
}

fn shorten(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max_chars).collect();
        out.push('…');
        out
    }
}

/// The sheet as text. Sections scored automatically are shown item by item with every
/// deduction and its evidence; reviewer sections are summarised.
pub fn sheet_text(sheet: &Sheet, rubric: &Rubric) -> String {
    let mut o = String::new();
    let p = &sheet.period;
    let zone = tz(&p.timezone);
    let _ = writeln!(o, "考核评分表 (Kaohe score sheet)");
    let _ = writeln!(o, "单位 Unit:    {} ({})", sheet.unit.name, sheet.unit.id);
    let _ = writeln!(
        o,
        "期间 Period:  {}  评分窗口 {} 至 {} ({}), 共 {} 天, 代理报告 {} 份",
        p.label,
        p.window_start.with_timezone(&tz(&p.timezone)).format("%Y-%m-%d %H:%M"),
        p.window_end.with_timezone(&tz(&p.timezone)).format("%Y-%m-%d %H:%M"),
        p.timezone,
        p.days,
        sheet.reports
    );
    let _ = writeln!(o, "细则 Rubric:  {} {}", sheet.rubric, rubric.title_zh);
    let _ = writeln!(o);
    let _ = writeln!(o, "{:<6} {:>6} {:>7}  {:<8} 内容", "项目", "标准分", "得分", "状态");
    let rule = "─".repeat(78);
    let _ = writeln!(o, "{rule}");
    let mut reviewer_sections = Vec::new();
    for section in &rubric.sections {
        let items: Vec<_> = sheet.items.iter().filter(|i| i.section == section.id).collect();
        if items.iter().all(|i| i.score.is_none()) {
            reviewer_sections.push(section);
            continue;
        }
        let _ = writeln!(o, "{}、{} ({} 分)", section.id, section.title_zh, section.points);
        for item in items {
            let score = item.score.map_or_else(|| "-".to_string(), fmt_points);
            let status = match item.status {
                Status::Auto => "自动".to_string(),
                Status::Manual => "人工".to_string(),
                Status::Pending if item.score.is_some() => format!("待评审 {} 分", item.pending_points),
                Status::Pending => "待评审".to_string(),
            };
            let _ = writeln!(
                o,
                "{:<7} {:>6} {:>8}  {:<8} {}",
                item.id,
                item.points,
                score,
                status,
                shorten(&item.text_zh, 26)
            );
            for d in &item.deductions {
                let _ = writeln!(o, "{:>23}  {}", format!("−{}", fmt_points(d.points)), d.reason_zh);
                for e in d.evidence.iter().take(MAX_EVIDENCE_LINES) {
                    let _ = writeln!(o, "{:>23}  · {}", "", e.summary_zh(zone));
                }
                if d.evidence.len() > MAX_EVIDENCE_LINES {
                    let _ = writeln!(
                        o,
                        "{:>23}  · … 另有 {} 条 (用 --json 查看全部)",
                        "",
                        d.evidence.len() - MAX_EVIDENCE_LINES
                    );
                }
            }
            for w in &item.warnings {
                let _ = writeln!(o, "{:>23}  提示: {}", "", w.reason_zh);
                for e in w.evidence.iter().take(MAX_EVIDENCE_LINES) {
                    let _ = writeln!(o, "{:>23}  · {}", "", e.summary_zh(zone));
                }
            }
        }
    }
    let _ = writeln!(o, "{rule}");
    if !reviewer_sections.is_empty() {
        let names: Vec<String> = reviewer_sections
            .iter()
            .map(|s| format!("{}、{} ({} 分)", s.id, s.title_zh, s.points))
            .collect();
        let _ = writeln!(o, "由评审人评分, 待评审 (reviewer sections, pending):");
        for n in names {
            let _ = writeln!(o, "  {n}");
        }
    }
    let _ = writeln!(
        o,
        "自动评分合计 (二、三): {} / {} 分    待评审: {} 分",
        fmt_points(sheet.auto_points),
        fmt_points(sheet.auto_max),
        sheet.pending_points
    );
    o
}

fn tz(name: &str) -> chrono_tz::Tz {
    name.parse().unwrap_or(chrono_tz::Tz::UTC)
}

/// The rubric as text: sections, items, points and how each is scored.
pub fn rubric_text(rubric: &Rubric) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} ({}, 第 {} 版) 共 {} 分",
        rubric.title_zh, rubric.id, rubric.version, rubric.total_points
    );
    for s in &rubric.sections {
        let _ = writeln!(o, "\n{}、{} ({} 分) — {}", s.id, s.title_zh, s.points, s.title_en);
        for i in &s.items {
            let how = match i.scoring {
                kaohe_rubric::rubric::Scoring::Auto => "自动",
                kaohe_rubric::rubric::Scoring::Partial => "部分自动",
                kaohe_rubric::rubric::Scoring::Reviewer => "评审",
            };
            let rule = i.rule.as_ref().map(|r| format!(" [{}]", r.kind())).unwrap_or_default();
            let _ = writeln!(o, "  {:<5} {:>2} 分  {}{}  {}", i.id, i.points, how, rule, i.text_zh);
        }
    }
    o
}
