//! The rubric as data: sections, items, standard points and the default scoring rules
//! with their parameters, loaded from a TOML file and validated in one step.
//!
//! After [`Rubric::from_toml`] succeeds the rubric is known to be consistent: item
//! points add up to their section, sections add up to the total, ids are unique and
//! every automatically scored item carries a rule whose parameters are in range.

use std::collections::HashSet;
use std::fmt;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The rubric shipped with Kaohe (Ningxia, 2026), embedded at build time.
pub const DEFAULT_RUBRIC_TOML: &str = include_str!("../rubrics/ningxia-2026.toml");

/// Name used in error messages for the embedded rubric.
pub const DEFAULT_RUBRIC_NAME: &str = "rubric/rubrics/ningxia-2026.toml";

/// A validated rubric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rubric {
    pub id: String,
    pub version: u32,
    pub title_zh: String,
    pub title_en: String,
    pub total_points: u32,
    /// Time zone in which calendar days are counted, unless a unit names its own.
    #[serde(serialize_with = "ser_tz")]
    pub timezone: Tz,
    pub sections: Vec<Section>,
}

fn ser_tz<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    /// "一" … "六".
    pub id: String,
    pub title_zh: String,
    pub title_en: String,
    pub points: u32,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    /// e.g. "三.4".
    pub id: String,
    pub points: u32,
    pub text_zh: String,
    pub text_en: String,
    pub scoring: Scoring,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
}

impl Item {
    /// Points a reviewer must still enter for this item (all of a reviewer item,
    /// the reviewer part of a partial item, none of an automatic one).
    pub fn reviewer_points(&self) -> f64 {
        match (self.scoring, &self.rule) {
            (Scoring::Reviewer, _) => f64::from(self.points),
            (Scoring::Partial, Some(Rule::MachineRoom(p))) => p.reviewer_points,
            _ => 0.0,
        }
    }

    /// Points that Kaohe scores from evidence.
    pub fn auto_points(&self) -> f64 {
        f64::from(self.points) - self.reviewer_points()
    }
}

/// How an item is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    /// Entirely from agent evidence and the registry.
    Auto,
    /// Partly automatic, partly entered by a reviewer.
    Partial,
    /// Entered by a reviewer.
    Reviewer,
}

impl fmt::Display for Scoring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scoring::Auto => "auto",
            Scoring::Partial => "partial",
            Scoring::Reviewer => "reviewer",
        })
    }
}

/// A default scoring rule and its parameters. Each variant is implemented by one
/// module of [`crate::scoring`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    Registry(RegistryRule),
    DailyChecks(DailyChecksRule),
    MachineRoom(MachineRoomRule),
    Uptime(UptimeRule),
    Isolation(IsolationRule),
    Bridging(BridgingRule),
    OutageResponse(OutageResponseRule),
}

impl Rule {
    pub fn kind(&self) -> &'static str {
        match self {
            Rule::Registry(_) => "registry",
            Rule::DailyChecks(_) => "daily_checks",
            Rule::MachineRoom(_) => "machine_room",
            Rule::Uptime(_) => "uptime",
            Rule::Isolation(_) => "isolation",
            Rule::Bridging(_) => "bridging",
            Rule::OutageResponse(_) => "outage_response",
        }
    }
}

/// 二.1: share of observed devices matched to a complete registry entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryRule {
    pub require_user: bool,
    pub require_location: bool,
    pub missing_services_deduction: f64,
    pub stale_entry_deduction: f64,
}

/// 二.2: share of days with a complete daily check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyChecksRule {}

/// 三.1: maintainer on record, machine-room device availability, reviewer part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineRoomRule {
    pub maintainer_points: f64,
    pub availability_points: f64,
    pub availability_threshold: f64,
    pub reviewer_points: f64,
}

/// Whether the private network counts as up when any or all upstream targets answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamRule {
    Any,
    All,
}

/// 三.2: availability of the private-network upstream, linear between two thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UptimeRule {
    pub full_at: f64,
    pub zero_at: f64,
    pub upstream: UpstreamRule,
    pub sample_tolerance: f64,
}

/// 三.3: deduction per calendar day with a confirmed isolation breach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsolationRule {
    pub confirm_consecutive: u32,
    pub per_breach_day: f64,
}

/// 三.4: deductions per bridging host and per registered office device never seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgingRule {
    pub per_bridging_host: f64,
    pub per_unseen_office_device: f64,
}

/// 三.5: deductions per outage not restored in time and for a missing responder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageResponseRule {
    pub restore_within_hours: f64,
    pub per_slow_outage: f64,
    pub no_responder_deduction: f64,
}

/// A rubric file that cannot be used. The message names the file, the key and the line.
#[derive(Debug, thiserror::Error)]
pub enum RubricError {
    #[error("评分细则文件 {file} 语法错误 (rubric syntax error): {source}")]
    Syntax {
        file: String,
        /// Boxed: the parser's error is large, and every caller's `Result` would carry it.
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("评分细则文件 {file} 第 {line} 行, 键 `{key}`: {message}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
}

impl RubricError {
    /// The 1-based line the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            RubricError::Invalid { line, .. } => Some(*line),
            RubricError::Syntax { .. } => None,
        }
    }
}

// ---- raw (as written) form ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    rubric: Spanned<RawHeader>,
    sections: Spanned<Vec<Spanned<RawSection>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    id: Spanned<String>,
    version: u32,
    title_zh: String,
    title_en: String,
    total_points: Spanned<u32>,
    timezone: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    id: Spanned<String>,
    title_zh: Spanned<String>,
    title_en: String,
    points: Spanned<u32>,
    items: Vec<Spanned<RawItem>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    id: Spanned<String>,
    points: Spanned<u32>,
    scoring: Spanned<Scoring>,
    text_zh: Spanned<String>,
    text_en: Spanned<String>,
    rule: Option<Spanned<Rule>>,
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        crate::toml_error::line_of(self.text, offset)
    }

    fn err<T>(&self, span: std::ops::Range<usize>, key: &str, message: impl Into<String>) -> Result<T, RubricError> {
        Err(RubricError::Invalid {
            file: self.file.to_string(),
            line: self.line_of(span.start),
            key: key.to_string(),
            message: message.into(),
        })
    }
}

impl Rubric {
    /// The rubric shipped with Kaohe.
    pub fn default_rubric() -> Rubric {
        // The embedded file is validated by a test; failing here is a build defect.
        #[allow(clippy::expect_used)]
        Rubric::from_toml(DEFAULT_RUBRIC_TOML, DEFAULT_RUBRIC_NAME).expect("embedded rubric is valid")
    }

    /// Parses and validates a rubric. `file` names the source in error messages.
    pub fn from_toml(text: &str, file: &str) -> Result<Rubric, RubricError> {
        let ctx = Ctx { file, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let at = crate::toml_error::locate(text, &e);
            match at.line {
                Some(line) => RubricError::Invalid {
                    file: file.to_string(),
                    line,
                    key: at.key.unwrap_or_else(|| String::from("(语法 syntax)")),
                    message: at.message,
                },
                None => RubricError::Syntax {
                    file: file.to_string(),
                    source: Box::new(e),
                },
            }
        })?;
        let header = raw.rubric.into_inner();
        let id = header.id.get_ref().trim().to_string();
        if id.is_empty() {
            return ctx.err(header.id.span(), "rubric.id", "不能为空 (must not be empty)");
        }
        let timezone: Tz = match header.timezone.get_ref().parse() {
            Ok(tz) => tz,
            Err(_) => {
                return ctx.err(
                    header.timezone.span(),
                    "rubric.timezone",
                    format!(
                        "未知时区 `{}` (unknown IANA time zone, e.g. \"Asia/Shanghai\")",
                        header.timezone.get_ref()
                    ),
                );
            }
        };

        let mut section_ids = HashSet::new();
        let mut item_ids = HashSet::new();
        let mut sections = Vec::new();
        let mut total = 0u32;
        let sections_span = raw.sections.span();
        for (si, raw_section) in raw.sections.into_inner().into_iter().enumerate() {
            let section_span = raw_section.span();
            let rs = raw_section.into_inner();
            let sid = rs.id.get_ref().trim().to_string();
            let skey = format!("sections[{si}]");
            if sid.is_empty() || !section_ids.insert(sid.clone()) {
                return ctx.err(
                    rs.id.span(),
                    &format!("{skey}.id"),
                    format!("章节编号 `{sid}` 为空或重复 (section id empty or duplicated)"),
                );
            }
            if rs.title_zh.get_ref().trim().is_empty() {
                return ctx.err(
                    rs.title_zh.span(),
                    &format!("{skey}.title_zh"),
                    "不能为空 (must not be empty)",
                );
            }
            if rs.items.is_empty() {
                return ctx.err(
                    section_span,
                    &format!("{skey}.items"),
                    "章节没有任何细则 (section has no items)",
                );
            }
            let mut items = Vec::new();
            let mut sum = 0u32;
            for (ii, raw_item) in rs.items.into_iter().enumerate() {
                let ikey = format!("{skey}.items[{ii}]");
                let ri = raw_item.into_inner();
                let item = validate_item(&ctx, &ikey, &sid, ri, &mut item_ids)?;
                sum += item.points;
                items.push(item);
            }
            if sum != *rs.points.get_ref() {
                return ctx.err(
                    rs.points.span(),
                    &format!("{skey}.points"),
                    format!(
                        "章节 {sid} 标准分为 {} 分, 但各项之和为 {sum} 分 (section points {} != sum of items {sum})",
                        rs.points.get_ref(),
                        rs.points.get_ref()
                    ),
                );
            }
            total += sum;
            sections.push(Section {
                id: sid,
                title_zh: rs.title_zh.into_inner(),
                title_en: rs.title_en,
                points: sum,
                items,
            });
        }
        if sections.is_empty() {
            return ctx.err(sections_span, "sections", "没有任何章节 (no sections)");
        }
        if total != *header.total_points.get_ref() {
            return ctx.err(
                header.total_points.span(),
                "rubric.total_points",
                format!(
                    "总分为 {} 分, 但各章节之和为 {total} 分 (total_points {} != sum of sections {total})",
                    header.total_points.get_ref(),
                    header.total_points.get_ref()
                ),
            );
        }
        Ok(Rubric {
            id,
            version: header.version,
            title_zh: header.title_zh,
            title_en: header.title_en,
            total_points: total,
            timezone,
            sections,
        })
    }

    /// All items of all sections, in order.
    pub fn items(&self) -> impl Iterator<Item = (&Section, &Item)> {
        self.sections.iter().flat_map(|s| s.items.iter().map(move |i| (s, i)))
    }

    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items().map(|(_, i)| i).find(|i| i.id == id)
    }
}

fn validate_item(
    ctx: &Ctx<'_>,
    key: &str,
    section_id: &str,
    ri: RawItem,
    seen: &mut HashSet<String>,
) -> Result<Item, RubricError> {
    let id = ri.id.get_ref().trim().to_string();
    let expected_prefix = format!("{section_id}.");
    if !id.starts_with(&expected_prefix) || id.len() == expected_prefix.len() {
        return ctx.err(
            ri.id.span(),
            &format!("{key}.id"),
            format!("细则编号 `{id}` 应以 `{expected_prefix}` 开头 (item id must start with its section id)"),
        );
    }
    if !seen.insert(id.clone()) {
        return ctx.err(
            ri.id.span(),
            &format!("{key}.id"),
            format!("细则编号 `{id}` 重复 (duplicate item id)"),
        );
    }
    let points = *ri.points.get_ref();
    if points == 0 || points > 1000 {
        return ctx.err(
            ri.points.span(),
            &format!("{key}.points"),
            "标准分必须在 1 到 1000 之间 (points must be within 1..=1000)",
        );
    }
    for (field, text) in [("text_zh", &ri.text_zh), ("text_en", &ri.text_en)] {
        if text.get_ref().trim().is_empty() {
            return ctx.err(text.span(), &format!("{key}.{field}"), "不能为空 (must not be empty)");
        }
    }
    let scoring = *ri.scoring.get_ref();
    let rule = match (scoring, ri.rule) {
        (Scoring::Reviewer, None) => None,
        (Scoring::Reviewer, Some(rule)) => {
            return ctx.err(
                rule.span(),
                &format!("{key}.rule"),
                format!("细则 {id} 由评审人评分, 不应有自动评分规则 (a reviewer item has no rule)"),
            );
        }
        (_, None) => {
            return ctx.err(
                ri.scoring.span(),
                &format!("{key}.rule"),
                format!("细则 {id} 为 {scoring} 评分, 必须有 [rule] (every auto or partial item needs a rule)"),
            );
        }
        (_, Some(rule)) => {
            let span = rule.span();
            let rule = rule.into_inner();
            let rkey = format!("{key}.rule");
            if let Err(msg) = check_rule(&rule, points, scoring) {
                return ctx.err(span, &rkey, format!("细则 {id}: {msg}"));
            }
            Some(rule)
        }
    };
    Ok(Item {
        id,
        points,
        text_zh: ri.text_zh.into_inner(),
        text_en: ri.text_en.into_inner(),
        scoring,
        rule,
    })
}

/// What is wrong with a rule's parameters (a sentence, Chinese first).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
struct RuleProblem(String);

impl From<&str> for RuleProblem {
    fn from(s: &str) -> RuleProblem {
        RuleProblem(s.to_string())
    }
}

impl From<String> for RuleProblem {
    fn from(s: String) -> RuleProblem {
        RuleProblem(s)
    }
}

fn non_negative(name: &str, v: f64) -> Result<(), RuleProblem> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("`{name}` 必须是不小于 0 的数 (must be a number >= 0), 实为 {v}").into())
    }
}

fn fraction(name: &str, v: f64) -> Result<(), RuleProblem> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("`{name}` 必须在 0 到 1 之间 (must be within 0..=1), 实为 {v}").into())
    }
}

fn check_rule(rule: &Rule, points: u32, scoring: Scoring) -> Result<(), RuleProblem> {
    let partial_ok = matches!(rule, Rule::MachineRoom(_));
    match (scoring, partial_ok) {
        (Scoring::Partial, false) => {
            return Err(format!(
                "规则 `{}` 不含评审部分, scoring 应为 auto (rule has no reviewer part; use scoring = \"auto\")",
                rule.kind()
            )
            .into());
        }
        (Scoring::Auto, true) => {
            return Err("规则 `machine_room` 含评审部分, scoring 应为 partial (use scoring = \"partial\")".into());
        }
        _ => {}
    }
    match rule {
        Rule::Registry(r) => {
            non_negative("missing_services_deduction", r.missing_services_deduction)?;
            non_negative("stale_entry_deduction", r.stale_entry_deduction)?;
        }
        Rule::DailyChecks(_) => {}
        Rule::MachineRoom(r) => {
            non_negative("maintainer_points", r.maintainer_points)?;
            non_negative("availability_points", r.availability_points)?;
            non_negative("reviewer_points", r.reviewer_points)?;
            fraction("availability_threshold", r.availability_threshold)?;
            let sum = r.maintainer_points + r.availability_points + r.reviewer_points;
            if (sum - f64::from(points)).abs() > 1e-9 {
                return Err(format!(
                    "maintainer_points + availability_points + reviewer_points = {sum}, 应等于标准分 {points} (must equal the item's points)"
                ).into());
            }
        }
        Rule::Uptime(r) => {
            fraction("full_at", r.full_at)?;
            fraction("zero_at", r.zero_at)?;
            if r.zero_at >= r.full_at {
                return Err(format!(
                    "`zero_at` ({}) 必须小于 `full_at` ({}) (zero_at must be below full_at)",
                    r.zero_at, r.full_at
                )
                .into());
            }
            if !(r.sample_tolerance.is_finite() && r.sample_tolerance >= 1.0) {
                return Err(format!(
                    "`sample_tolerance` 必须不小于 1 (must be >= 1), 实为 {}",
                    r.sample_tolerance
                )
                .into());
            }
        }
        Rule::Isolation(r) => {
            if r.confirm_consecutive == 0 {
                return Err("`confirm_consecutive` 必须不小于 1 (must be >= 1)".into());
            }
            non_negative("per_breach_day", r.per_breach_day)?;
        }
        Rule::Bridging(r) => {
            non_negative("per_bridging_host", r.per_bridging_host)?;
            non_negative("per_unseen_office_device", r.per_unseen_office_device)?;
        }
        Rule::OutageResponse(r) => {
            non_negative("per_slow_outage", r.per_slow_outage)?;
            non_negative("no_responder_deduction", r.no_responder_deduction)?;
            if !(r.restore_within_hours.is_finite() && r.restore_within_hours > 0.0) {
                return Err(format!(
                    "`restore_within_hours` 必须大于 0 (must be > 0), 实为 {}",
                    r.restore_within_hours
                )
                .into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_rubric_has_six_sections_worth_100_points() {
        let r = Rubric::default_rubric();
        let points: Vec<u32> = r.sections.iter().map(|s| s.points).collect();
        assert_eq!(points, vec![10, 6, 21, 35, 20, 8]);
        assert_eq!(r.total_points, 100);
        assert_eq!(r.items().count(), 3 + 2 + 5 + 7 + 5 + 2);
        let auto: f64 = r.items().map(|(_, i)| i.auto_points()).sum();
        assert_eq!(auto, 26.0, "26 of the 27 points in 二 and 三 are automatic");
    }

    #[test]
    fn shipped_texts_are_verbatim_from_the_seed() {
        // The web copy glued page number 6 into 四.6; everything else must match exactly.
        let seed = include_str!("../rubrics/ningxia-2026.seed.txt").replace("风6险", "风险");
        let r = Rubric::default_rubric();
        for (s, i) in r.items() {
            assert!(seed.contains(&s.title_zh), "section {} title not in seed", s.id);
            assert!(seed.contains(&i.text_zh), "item {} text not verbatim in seed", i.id);
        }
    }

    fn broken(from: &str, to: &str) -> RubricError {
        let text = DEFAULT_RUBRIC_TOML.replacen(from, to, 1);
        assert_ne!(text, DEFAULT_RUBRIC_TOML, "replacement `{from}` did not apply");
        Rubric::from_toml(&text, "test.toml").expect_err("must be rejected")
    }

    fn line_of(needle: &str) -> usize {
        let at = DEFAULT_RUBRIC_TOML.find(needle).expect("needle present");
        DEFAULT_RUBRIC_TOML[..at].matches('\n').count() + 1
    }

    #[test]
    fn wrong_item_points_are_rejected_naming_the_section_and_line() {
        let e = broken("id = \"二.2\"\npoints = 3", "id = \"二.2\"\npoints = 4");
        let msg = e.to_string();
        assert!(msg.contains("sections[1].points"), "{msg}");
        assert_eq!(e.line(), Some(line_of("points = 6")), "{msg}");
    }

    #[test]
    fn duplicate_item_id_is_rejected() {
        let e = broken("id = \"三.5\"", "id = \"三.4\"");
        assert!(e.to_string().contains("重复"), "{e}");
        assert!(e.to_string().contains("items[4].id"), "{e}");
    }

    #[test]
    fn auto_item_without_rule_is_rejected() {
        let text = DEFAULT_RUBRIC_TOML.replacen(
            "[sections.items.rule]\n# A day counts",
            "[sections.items.nothing]\n# A day counts",
            1,
        );
        let e = Rubric::from_toml(&text, "t.toml").expect_err("rejected");
        // deny_unknown_fields catches the stray table first, naming its line.
        assert!(e.line().is_some(), "{e}");
        let text = DEFAULT_RUBRIC_TOML.replacen("[sections.items.rule]\n# A day counts", "# A day counts", 1);
        let text = text.replacen("kind = \"daily_checks\"\n", "\n", 1);
        let e = Rubric::from_toml(&text, "t.toml").expect_err("rejected");
        assert!(e.to_string().contains("必须有 [rule]"), "{e}");
        assert!(e.to_string().contains("二.2"), "{e}");
    }

    #[test]
    fn unknown_rule_parameter_and_out_of_range_values_are_rejected() {
        let e = broken("full_at = 0.995", "full_at = 0.995\nful_at = 1");
        assert!(e.to_string().contains("ful_at"), "{e}");
        assert_eq!(e.line(), Some(line_of("kind = \"uptime\"") + 2), "{e}");
        let e = broken("zero_at = 0.95", "zero_at = 0.999");
        assert!(e.to_string().contains("zero_at"), "{e}");
        let e = broken("per_breach_day = 1.0", "per_breach_day = -1.0");
        assert!(e.to_string().contains("per_breach_day"), "{e}");
        let e = broken("reviewer_points = 1.0", "reviewer_points = 2.0");
        assert!(e.to_string().contains("应等于标准分"), "{e}");
    }

    #[test]
    fn total_and_timezone_are_checked() {
        let e = broken("total_points = 100", "total_points = 99");
        assert!(e.to_string().contains("rubric.total_points"), "{e}");
        assert_eq!(e.line(), Some(line_of("total_points = 100")));
        let e = broken("timezone = \"Asia/Shanghai\"", "timezone = \"Mars/Olympus\"");
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
    }

    #[test]
    fn unknown_scoring_kind_names_the_key_and_line() {
        let e = broken(
            "id = \"二.1\"\npoints = 3\nscoring = \"auto\"",
            "id = \"二.1\"\npoints = 3\nscoring = \"automatic\"",
        );
        let msg = e.to_string();
        assert!(msg.contains("`scoring`") && msg.contains("automatic"), "{msg}");
        assert_eq!(e.line(), Some(line_of("id = \"二.1\"") + 2), "{msg}");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let e = broken("title_zh = \"门户网站\"", "title_zh = \"门户网站");
        assert!(e.line().is_some(), "{e}");
    }
}
