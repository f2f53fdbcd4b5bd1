//! What the demo writes and prints: the quickened agent schedule, and each bureau's
//! deductions in one line.

use std::time::Duration;

use super::{DemoError, DemoFailure};

/// The quickened schedule: probes every second, a report every 2 s (as in the province
/// test), isolation every 2 s, the other checks every 10-20 s, and the daily check
/// record (二.2) right at the start, whatever the time of day.
/// Agentless leak detection, forwarding probes only (the lab's internet side has no
/// path to the collector for a listener's reports): every 20 s after an inventory sweep,
/// to the isolation canaries. Finds bureau 3's rogue router (三.4).
pub(super) const LEAK_PROBES: &str =
    "\n[leak]\nkey = \"lab-department-leak-key\"\nwait_ms = 1000\ninterval_secs = 20\n";

pub(super) fn quicken(generated: &str) -> Result<String, DemoError> {
    let from = "[schedule]\nprobe_interval_secs = ";
    let start = generated.find(from).ok_or_else(|| {
        DemoError::new(
            DemoFailure::Internal,
            "生成的代理配置中没有 [schedule] (the generated agent config has no [schedule])",
        )
    })?;
    let value_end = generated[start + from.len()..]
        .find('\n')
        .map_or(generated.len(), |i| start + from.len() + i);
    let quick = "[schedule]\nprobe_interval_secs = 1\nreport_interval_secs = 2\nisolation_interval_secs = 2\n\
                 self_check_interval_secs = 10\ninventory_interval_secs = 20\nservices_interval_secs = 20\n\
                 daily_check_at = \"00:00\"";
    Ok(format!("{}{quick}{}", &generated[..start], &generated[value_end..]))
}

pub(super) fn mmss(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

/// "实验二区司法局 (lab-b2) 二 12.5 三 9: 二.1 −1.5 发现未备案设备…；三.4 −0.5 …" from the
/// JSON of `kaohe-collector score --db-unit ID --json`.
pub(super) fn deduction_line(name: &str, unit: &str, json: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return format!("{name} ({unit}): 无法解析评分 (unreadable sheet)");
    };
    let items = v
        .pointer("/auto/items")
        .or_else(|| v.get("items"))
        .and_then(|i| i.as_array())
        .cloned()
        .unwrap_or_default();
    let mut parts = Vec::new();
    for item in &items {
        let id = item.get("id").and_then(|x| x.as_str()).unwrap_or("?");
        if !(id.starts_with('二') || id.starts_with('三')) {
            continue;
        }
        for d in item.get("deductions").and_then(|x| x.as_array()).into_iter().flatten() {
            let points = d.get("points").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
            let reason = d.get("reason_zh").and_then(|x| x.as_str()).unwrap_or("");
            parts.push(format!("{id} −{} {}", trim_points(points), shorten(reason, 48)));
        }
    }
    let sections: Vec<String> = v
        .get("sections")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let id = s.get("id")?.as_str()?;
            let score = s.get("score")?.as_f64()?;
            (id == "二" || id == "三").then(|| format!("{id} {}", trim_points(score)))
        })
        .collect();
    let head = if sections.is_empty() {
        format!("{name} ({unit})")
    } else {
        format!("{name} ({unit}) {}", sections.join(" "))
    };
    if parts.is_empty() {
        format!("{head}: 无扣分 (no deductions)")
    } else {
        format!("{head}: {}", parts.join("；"))
    }
}

fn trim_points(p: f64) -> String {
    let s = format!("{p:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn shorten(s: &str, max_chars: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max_chars).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_quickened_and_the_rest_kept() {
        let generated = "unit_id = \"lab-b1\"\n\n[schedule]\nprobe_interval_secs = 30\n\n[[reachability.targets]]\n";
        let q = quicken(generated).expect("quickened");
        assert!(q.contains("probe_interval_secs = 1\nreport_interval_secs = 2\n"), "{q}");
        assert!(!q.contains("= 30"), "{q}");
        assert!(
            q.ends_with("daily_check_at = \"00:00\"\n\n[[reachability.targets]]\n"),
            "{q}"
        );
    }

    #[test]
    fn a_deduction_line_lists_the_points_lost() {
        let json = r#"{"auto":{"items":[{"id":"二.1","deductions":[{"points":1.5,"reason_zh":"发现未备案设备 10.2.0.66"}]},
            {"id":"一.1","deductions":[{"points":2,"reason_zh":"x"}]}]},
            "sections":[{"id":"二","score":8.5},{"id":"三","score":17}]}"#;
        let line = deduction_line("实验二区司法局", "lab-b2", json);
        assert_eq!(
            line,
            "实验二区司法局 (lab-b2) 二 8.5 三 17: 二.1 −1.5 发现未备案设备 10.2.0.66"
        );
    }
}
