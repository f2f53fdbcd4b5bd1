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

/// Terminal columns a string takes: CJK and full-width characters count two.
pub fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let u = c as u32;
            let wide = matches!(u,
                0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
                | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60
                | 0xFFE0..=0xFFE6 | 0x20000..=0x3FFFD);
            if wide { 2 } else { 1 }
        })
        .sum()
}

/// Pads to `width` columns on the right (left-aligned).
fn pad(s: &str, width: usize) -> String {
    let w = display_width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

/// Pads to `width` columns on the left (right-aligned).
fn rpad(s: &str, width: usize) -> String {
    let w = display_width(s);
    format!("{}{s}", " ".repeat(width.saturating_sub(w)))
}

/// Points as shown: up to two decimals, no trailing zeros ("3", "2.5", "0.33").
pub fn pts(x: f64) -> String {
    let s = format!("{x:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// The full 100-point sheet (automatic scores with reviewers' entries) as text: every
/// item with its score, status, deductions with evidence, and the entries in force.
pub fn full_sheet_text(sheet: &crate::scores::FullSheet, rubric: &Rubric) -> String {
    let mut o = String::new();
    let p = &sheet.auto.period;
    let zone = tz(&p.timezone);
    let _ = writeln!(o, "考核评分表 (Kaohe score sheet, full)");
    let _ = writeln!(o, "单位 Unit:    {} ({})", sheet.auto.unit.name, sheet.auto.unit.id);
    let _ = writeln!(
        o,
        "期间 Period:  {}  评分窗口 {} 至 {} ({}), 共 {} 天, 代理报告 {} 份",
        p.label,
        p.window_start.with_timezone(&zone).format("%Y-%m-%d %H:%M"),
        p.window_end.with_timezone(&zone).format("%Y-%m-%d %H:%M"),
        p.timezone,
        p.days,
        sheet.auto.reports
    );
    let _ = writeln!(o, "细则 Rubric:  {} {}", sheet.auto.rubric, rubric.title_zh);
    let _ = writeln!(
        o,
        "总分 Total:   {} / {} 分    待评审 (pending): {} 分",
        pts(sheet.total),
        sheet.total_max,
        pts(sheet.pending_points)
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{} {} {}  {} 内容",
        pad("项目", 7),
        rpad("标准分", 6),
        rpad("得分", 7),
        pad("状态", 10)
    );
    let rule = "─".repeat(78);
    let _ = writeln!(o, "{rule}");
    let indent = " ".repeat(23);
    for section in &sheet.sections {
        let _ = writeln!(
            o,
            "{}、{} ({} 分)  得分 {}{}",
            section.id,
            section.title_zh,
            section.points,
            pts(section.score),
            if section.pending_points > 0.0 {
                format!(", 待评审 {}", pts(section.pending_points))
            } else {
                String::new()
            }
        );
        for item in sheet.items.iter().filter(|i| i.section == section.id) {
            let _ = writeln!(
                o,
                "{} {} {}  {} {}",
                pad(&item.id, 7),
                rpad(&item.points.to_string(), 6),
                rpad(&pts(item.score), 7),
                pad(item.status.label_zh(), 10),
                shorten(&item.text_zh, 26)
            );
            if let Some(a) = item.auto_score
                && matches!(
                    item.status,
                    crate::scores::FinalStatus::Overridden | crate::scores::FinalStatus::Waived
                )
            {
                let _ = writeln!(o, "{indent}自动评分 {} / {}", pts(a), pts(item.auto_max));
            }
            for d in &item.deductions {
                let _ = writeln!(o, "{indent}−{} {}", pts(d.points), d.reason_zh);
                for e in d.evidence.iter().take(MAX_EVIDENCE_LINES) {
                    let _ = writeln!(o, "{indent}  · {}", e.summary_zh(zone));
                }
                if d.evidence.len() > MAX_EVIDENCE_LINES {
                    let _ = writeln!(
                        o,
                        "{indent}  · … 另有 {} 条 (用 --json 查看全部)",
                        d.evidence.len() - MAX_EVIDENCE_LINES
                    );
                }
            }
            for w in &item.warnings {
                let _ = writeln!(o, "{indent}提示: {}", w.reason_zh);
            }
            let entry = |e: &crate::review::ManualEntry| {
                let mut t = format!("[{}]", e.kind.label_zh());
                if let Some(s) = e.score {
                    t += &format!(" {}", pts(s));
                }
                t += &format!(" 评审人 {}: {}", e.reviewer, e.note);
                if let Some(x) = e.expires_at {
                    t += &format!(" (到期 {})", x.with_timezone(&zone).format("%Y-%m-%d %H:%M"));
                }
                t + &format!("  #{}", e.id)
            };
            for e in &item.entries {
                let _ = writeln!(o, "{indent}{}", entry(e));
            }
            for e in &item.expired {
                let _ = writeln!(o, "{indent}已过期 (expired) {}", entry(e));
            }
        }
    }
    let _ = writeln!(o, "{rule}");
    let _ = writeln!(
        o,
        "合计 (total): {} / {} 分    自动部分 (二、三): {} / {} 分    待评审: {} 分",
        pts(sheet.total),
        sheet.total_max,
        pts(sheet.section("二") + sheet.section("三")),
        rubric
            .sections
            .iter()
            .filter(|s| s.id == "二" || s.id == "三")
            .map(|s| s.points)
            .sum::<u32>(),
        pts(sheet.pending_points)
    );
    o
}

/// The ranking as an aligned table with Chinese headers, then the city and county
/// roll-ups.
pub fn ranking_text(r: &crate::scores::Ranking, rubric: &Rubric) -> String {
    let points = |id: &str| rubric.sections.iter().find(|s| s.id == id).map_or(0, |s| s.points);
    let (p2, p3) = (points("二"), points("三"));
    let mut o = String::new();
    let _ = writeln!(o, "考核排名 (ranking)  期间 {}  共 {} 个单位", r.period, r.rows.len());
    let name_w = r
        .rows
        .iter()
        .map(|row| display_width(&row.unit.name))
        .max()
        .unwrap_or(0)
        .max(8);
    let header = [
        rpad("排名", 4),
        pad("单位", name_w),
        rpad(&format!("二({p2})"), 7),
        rpad(&format!("三({p3})"), 7),
        rpad(&format!("自动合计({})", p2 + p3), 13),
        rpad(&format!("总分({})", rubric.total_points), 10),
        rpad("待评审", 7),
        pad("  最后上报", 18),
        "单位路径".to_string(),
    ];
    let _ = writeln!(o, "{}", header.join(" "));
    let _ = writeln!(o, "{}", "─".repeat(name_w + 90));
    let tz = rubric.timezone;
    for row in &r.rows {
        let seen = row
            .last_seen
            .map(|ms| {
                crate::store::from_millis(ms)
                    .with_timezone(&tz)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_else(|| "从未上报".into());
        let cols = [
            rpad(&row.rank.to_string(), 4),
            pad(&row.unit.name, name_w),
            rpad(&pts(row.section2), 7),
            rpad(&pts(row.section3), 7),
            rpad(&pts(row.auto_total), 13),
            rpad(&pts(row.total), 10),
            rpad(&pts(row.pending_points), 7),
            pad(&format!("  {seen}"), 18),
            row.unit.id.clone(),
        ];
        let _ = writeln!(o, "{}", cols.join(" "));
    }
    if !r.rollups.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "市、县汇总 (city and county roll-ups, mean of their units)");
        let w = r
            .rollups
            .iter()
            .map(|x| display_width(&x.unit.name))
            .max()
            .unwrap_or(0)
            .max(8);
        let _ = writeln!(
            o,
            "{} {} {} {} 单位路径",
            pad("单位", w),
            rpad("单位数", 6),
            rpad("自动合计平均", 13),
            rpad("总分平均", 10)
        );
        for x in &r.rollups {
            let _ = writeln!(
                o,
                "{} {} {} {} {}",
                pad(&x.unit.name, w),
                rpad(&x.units.to_string(), 6),
                rpad(&pts(x.mean_auto_total), 13),
                rpad(&pts(x.mean_total), 10),
                x.unit.id
            );
        }
    }
    o
}
