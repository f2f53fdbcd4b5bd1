//! Inline SVG: the daily uptime chart and the generated network map. No scripts; every
//! label is escaped.

use std::fmt::Write;

use crate::view::{DayUptime, InventoryRow, MapHost, MapTarget, NetworkMap};

use super::html::{Lang, esc};

/// The goal line of the uptime chart.
pub const UPTIME_GOAL: f64 = 0.995;

/// One bar per day, its height the day's availability; grey for a day without data; a
/// dashed line at 99.5%.
pub fn uptime_chart(days: &[DayUptime], lang: Lang) -> String {
    let (w, h, left, top, bottom) = (960.0_f64, 160.0_f64, 44.0_f64, 10.0_f64, 22.0_f64);
    let plot_h = h - top - bottom;
    let n = days.len().max(1) as f64;
    let step = (w - left - 4.0) / n;
    let bar = (step * 0.8).max(1.0);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"uptime\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
        esc(lang.t("每日专网可用率", "daily private-network availability"))
    );
    let _ = write!(
        s,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{}\" height=\"{plot_h}\" fill=\"#fff\" stroke=\"#ccd3da\"/>",
        w - left - 4.0
    );
    for (label, ratio) in [("100%", 1.0), ("50%", 0.5), ("0%", 0.0)] {
        let y = top + plot_h * (1.0 - ratio);
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#6b7785\">{label}</text>",
            left - 4.0,
            y + 3.0
        );
    }
    for (i, d) in days.iter().enumerate() {
        let x = left + 2.0 + i as f64 * step;
        let (bh, fill, text) = match d.ratio {
            Some(r) => {
                let r = r.clamp(0.0, 1.0);
                let fill = if r >= UPTIME_GOAL { "#2e9d4a" } else { "#d0453a" };
                (plot_h * r, fill, format!("{} {:.2}%", d.day, r * 100.0))
            }
            None => (plot_h, "#d5d9de", format!("{} {}", d.day, lang.t("无数据", "no data"))),
        };
        let _ = write!(
            s,
            "<rect class=\"day\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{fill}\"><title>{}</title></rect>",
            top + plot_h - bh,
            esc(&text)
        );
    }
    let goal_y = top + plot_h * (1.0 - UPTIME_GOAL);
    let _ = write!(
        s,
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{goal_y:.1}\" y2=\"{goal_y:.1}\" stroke=\"#1f3a5f\" stroke-dasharray=\"4 3\"/>\
         <text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#1f3a5f\">99.5%</text>",
        w - 4.0,
        w - 6.0,
        goal_y + 12.0
    );
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        let _ = write!(
            s,
            "<text x=\"{left}\" y=\"{}\" font-size=\"11\" fill=\"#6b7785\">{}</text>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#6b7785\">{}</text>",
            h - 6.0,
            first.day,
            w - 4.0,
            h - 6.0,
            last.day
        );
    }
    s.push_str("</svg>");
    s
}

/// Devices drawn on the map before "… N more".
const MAX_DEVICES: usize = 48;

/// Upstream targets at the top, the agent hosts with their interfaces in the middle, LAN
/// devices below; bridging hosts, unanswered targets and breached canaries in red.
pub fn network_map(map: &NetworkMap, lang: Lang, tz: chrono_tz::Tz) -> String {
    let devices: Vec<_> = map.devices.iter().take(MAX_DEVICES).collect();
    // The top row: targets beyond the LAN (probed LAN devices are drawn below).
    let upstream: Vec<_> = map.upstream.iter().filter(|t| t.role != "device").collect();
    let l = Layout::new(map, upstream.len(), devices.len());
    let (w, h, gap) = (l.w, l.h, l.gap);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"netmap\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\" aria-label=\"{}\">",
        esc(lang.t("网络拓扑", "network map"))
    );
    let _ = write!(
        s,
        "<text x=\"{gap}\" y=\"14\" font-size=\"12\" fill=\"#6b7785\">{}</text>",
        esc(lang.t(
            "上游 (专网目标) 与互联网探测点",
            "upstream (private-network targets) and internet canaries"
        ))
    );
    // Lines first, boxes over them.
    links(&mut s, &l, &upstream, map.breaches.len(), &devices);
    for (i, t) in upstream.iter().enumerate() {
        let (x, y) = l.pos(i, l.y_top);
        let (fill, stroke) = if t.last_ok {
            ("#e6f4ea", "#2e9d4a")
        } else {
            ("#fde2e0", "#d0453a")
        };
        let state = if t.last_ok {
            lang.t("可达", "reachable")
        } else {
            lang.t("不可达", "unreachable")
        };
        node(
            &mut s,
            x,
            y,
            l.box_w,
            fill,
            stroke,
            &[&t.target, &format!("{} · {state}", t.role)],
        );
    }
    for (i, (canary, at)) in map.breaches.iter().enumerate() {
        let (x, y) = l.pos(upstream.len() + i, l.y_top);
        let line2 = format!(
            "{} {}",
            lang.t("已突破", "breached"),
            at.with_timezone(&tz).format("%m-%d %H:%M")
        );
        node(&mut s, x, y, l.box_w, "#fde2e0", "#b3261e", &[canary, &line2]);
    }
    for (i, host) in map.hosts.iter().enumerate() {
        host_node(&mut s, &l, l.host_x(i), host, lang);
    }
    for (i, d) in devices.iter().enumerate() {
        let (x, y) = l.pos(i, l.y_dev);
        let (fill, stroke) = if d.bridging {
            ("#fde2e0", "#b3261e")
        } else if d.registered_as.is_none() {
            ("#fff1e0", "#a15c00")
        } else {
            ("#ffffff", "#8aa0b8")
        };
        let second = match (&d.registered_as, d.bridging) {
            (_, true) => lang.t("跨网桥接", "bridging").to_string(),
            (Some(n), false) => n.clone(),
            (None, false) => lang.t("未备案", "unregistered").to_string(),
        };
        node(&mut s, x, y, l.box_w, fill, stroke, &[&d.ip, &second]);
    }
    if map.devices.len() > devices.len() {
        let _ = write!(
            s,
            "<text x=\"{gap}\" y=\"{:.1}\" font-size=\"11\" fill=\"#6b7785\">… {} {}</text>",
            h - 10.0,
            map.devices.len() - devices.len(),
            esc(lang.t("台设备未画出, 见下表", "more devices, see the table"))
        );
    }
    s.push_str("</svg>");
    s
}

/// Where the map's boxes go: a top row of upstream targets and breached canaries, the
/// agents' hosts below, the devices found at the bottom, `per_row` boxes to a row.
struct Layout {
    per_row: usize,
    box_w: f64,
    gap: f64,
    w: f64,
    h: f64,
    host_h: f64,
    y_top: f64,
    y_host: f64,
    y_dev: f64,
    /// Where the lines meet: the first host's box, or the middle.
    centre: (f64, f64),
}

impl Layout {
    fn new(map: &NetworkMap, upstream: usize, devices: usize) -> Layout {
        let per_row = 8usize;
        let box_w = 150.0_f64;
        let gap = 12.0_f64;
        let top_nodes = upstream + map.breaches.len();
        let cols = per_row.max(top_nodes.min(per_row)).max(map.hosts.len());
        let w = (cols as f64) * (box_w + gap) + gap;
        let host_h = map
            .hosts
            .iter()
            .map(|h| 34.0 + 14.0 * h.interfaces.len() as f64)
            .fold(48.0, f64::max);
        let top_rows = top_nodes.div_ceil(per_row).max(1) as f64;
        let dev_rows = devices.div_ceil(per_row).max(1) as f64;
        let y_top = 24.0;
        let y_host = y_top + top_rows * 50.0 + 40.0;
        let y_dev = y_host + host_h + 50.0;
        let h = y_dev + dev_rows * 50.0 + 30.0;
        let centre = if map.hosts.is_empty() {
            (w / 2.0, y_host)
        } else {
            (gap + box_w / 2.0, y_host)
        };
        Layout {
            per_row,
            box_w,
            gap,
            w,
            h,
            host_h,
            y_top,
            y_host,
            y_dev,
            centre,
        }
    }

    /// The top-left corner of box `i` of a band of rows starting at `y0`.
    fn pos(&self, i: usize, y0: f64) -> (f64, f64) {
        let col = i % self.per_row;
        let row = i / self.per_row;
        (self.gap + col as f64 * (self.box_w + self.gap), y0 + row as f64 * 50.0)
    }

    fn host_x(&self, i: usize) -> f64 {
        self.gap + i as f64 * (self.box_w + self.gap)
    }
}

/// The lines from every upstream target, breached canary and device to the hosts.
fn links(s: &mut String, l: &Layout, upstream: &[&MapTarget], breaches: usize, devices: &[&InventoryRow]) {
    let (box_w, centre) = (l.box_w, l.centre);
    for (i, t) in upstream.iter().enumerate() {
        let (x, y) = l.pos(i, l.y_top);
        let colour = if t.last_ok { "#8aa0b8" } else { "#d0453a" };
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\"/>",
            x + box_w / 2.0,
            y + 34.0,
            centre.0,
            centre.1
        );
    }
    for i in 0..breaches {
        let (x, y) = l.pos(upstream.len() + i, l.y_top);
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#d0453a\" stroke-width=\"2\" stroke-dasharray=\"5 3\"/>",
            x + box_w / 2.0,
            y + 34.0,
            centre.0,
            centre.1
        );
    }
    for (i, d) in devices.iter().enumerate() {
        let (x, y) = l.pos(i, l.y_dev);
        let colour = if d.bridging { "#d0453a" } else { "#b8c4d0" };
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\"/>",
            x + box_w / 2.0,
            centre.0,
            centre.1 + l.host_h
        );
    }
}

/// An agent's host: its name, its interfaces, and what bridges.
fn host_node(s: &mut String, l: &Layout, x: f64, host: &MapHost, lang: Lang) {
    let (box_w, y_host) = (l.box_w, l.y_host);
    let bridging = !host.findings.is_empty();
    let (fill, stroke) = if bridging {
        ("#fde2e0", "#b3261e")
    } else {
        ("#e0e8ff", "#1f3a5f")
    };
    let hh = 34.0 + 14.0 * host.interfaces.len() as f64;
    let _ = write!(
        s,
        "<g class=\"host\"><rect x=\"{x:.1}\" y=\"{y_host:.1}\" width=\"{box_w}\" height=\"{hh:.1}\" rx=\"5\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"2\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" font-weight=\"bold\">{}</text>",
        x + 6.0,
        y_host + 16.0,
        esc(&clip(&format!("{} {}", lang.t("代理", "agent"), host.hostname), 22))
    );
    for (k, iface) in host.interfaces.iter().enumerate() {
        let text = format!(
            "{} {} {}{}",
            iface.name,
            iface.kind,
            iface.addresses.first().map_or("", String::as_str),
            if iface.up { "" } else { " (down)" }
        );
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
            x + 8.0,
            y_host + 32.0 + 14.0 * k as f64,
            esc(&clip(&text, 26))
        );
    }
    if bridging {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#b3261e\">{}</text>",
            x + 6.0,
            y_host + hh - 4.0,
            esc(&clip(&host.findings.join(", "), 26))
        );
    }
    s.push_str("</g>");
}

fn node(s: &mut String, x: f64, y: f64, w: f64, fill: &str, stroke: &str, lines: &[&str]) {
    let _ = write!(
        s,
        "<g><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w}\" height=\"34\" rx=\"4\" fill=\"{fill}\" stroke=\"{stroke}\"/>"
    );
    for (k, line) in lines.iter().enumerate() {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
            x + 6.0,
            y + 14.0 + 13.0 * k as f64,
            esc(&clip(line, 24))
        );
    }
    s.push_str("</g>");
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}
