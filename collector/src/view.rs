//! What a unit's page shows beside its sheet: daily availability (the uptime chart),
//! outages, the inventory against the registry, and the network map. Built from the
//! same daily roll-ups the scores come from.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use kaohe_rubric::evidence::{InterfaceKind, ProbeRole, Report};
use kaohe_rubric::period::Period;
use kaohe_rubric::registry::{EntryKind, Registry};
use kaohe_rubric::rubric::Rubric;
use serde::Serialize;

use crate::store::{Agent, Store, StoreError};

/// The private network's availability on one local day (None: no probe data that day).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayUptime {
    pub day: NaiveDate,
    pub ratio: Option<f64>,
}

/// One outage of a probe target, as the agent reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutageRow {
    pub target: String,
    pub role: &'static str,
    pub start: DateTime<Utc>,
    /// None while it lasts (or the agent never saw it end).
    pub end: Option<DateTime<Utc>>,
    pub duration_secs: i64,
}

/// A device the agents saw, matched against the registry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InventoryRow {
    pub ip: String,
    pub mac: Option<String>,
    pub vendor: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The registry entry's name when registered.
    pub registered_as: Option<String>,
    /// Found bridging the private network and the internet (self-check or leak probe).
    pub bridging: bool,
}

/// A registered device no agent saw in the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnseenEntry {
    pub line: usize,
    pub name: String,
    pub ip: Option<String>,
    pub mac: Option<String>,
}

/// An interface of an agent's host, for the map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapInterface {
    pub name: String,
    /// "ethernet", "wireless", "cellular", "virtual", … as reported.
    pub kind: String,
    pub up: bool,
    pub addresses: Vec<String>,
}

/// One agent's host on the map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapHost {
    pub hostname: String,
    pub interfaces: Vec<MapInterface>,
    /// Self-check findings' codes (e.g. "default_route_not_private").
    pub findings: Vec<String>,
}

/// A probe target and whether its last probe answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapTarget {
    pub target: String,
    pub role: &'static str,
    pub last_ok: bool,
    pub last_at: DateTime<Utc>,
}

/// The unit's network as the agents see it: the private upstream, the agent hosts,
/// the LAN devices (registered or not), canaries that answered.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct NetworkMap {
    pub upstream: Vec<MapTarget>,
    pub hosts: Vec<MapHost>,
    pub devices: Vec<InventoryRow>,
    /// Internet canaries the LAN reached (isolation breaches), with the last time.
    pub breaches: Vec<(String, DateTime<Utc>)>,
}

/// Everything of a unit's page that is not the sheet.
#[derive(Debug, Clone, Serialize)]
pub struct UnitView {
    pub days: Vec<DayUptime>,
    pub outages: Vec<OutageRow>,
    pub inventory: Vec<InventoryRow>,
    pub unseen: Vec<UnseenEntry>,
    pub map: NetworkMap,
    pub agents: Vec<Agent>,
}

/// Builds the page data of one unit for `period` as of `now`.
pub async fn unit_view(
    store: &Store,
    rubric: &Rubric,
    unit_id: &str,
    period: Period,
    now: DateTime<Utc>,
) -> Result<UnitView, StoreError> {
    let tz = rubric.timezone;
    let (start, end) = period.bounds(tz);
    let end = end.min(now).max(start);
    let reports = crate::rollup::digests(store, rubric, unit_id, start, end).await?;
    let registry = store.registry(unit_id).await?;
    let agents = store.agents(Some(unit_id)).await?;
    Ok(build(rubric, &reports, &registry, agents, start, end))
}

/// Outages as a reader wants them: per target, those that overlap or touch merged into one
/// (an open one absorbs everything after its start), none of zero length, in the order
/// they began (then by target).
fn merge_outages(
    reported: BTreeMap<(String, DateTime<Utc>), Option<DateTime<Utc>>>,
    window_end: DateTime<Utc>,
) -> Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> {
    let mut merged: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> = Vec::new();
    // The map is ordered by target, then start: each target's outages come together, in order.
    for ((target, start), end) in reported {
        if let Some(last) = merged.last_mut().filter(|l| l.0 == target) {
            match last.2 {
                None => continue,
                Some(e) if start <= e => {
                    last.2 = end.map(|n| n.max(e));
                    continue;
                }
                Some(_) => {}
            }
        }
        merged.push((target, start, end));
    }
    merged.retain(|(_, s, e)| e.unwrap_or(window_end) > *s);
    merged.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    merged
}

/// The pure part of [`unit_view`].
pub fn build(
    rubric: &Rubric,
    reports: &[Report],
    registry: &Registry,
    agents: Vec<Agent>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> UnitView {
    let tz = rubric.timezone;
    let days = kaohe_rubric::scoring::daily_availability(rubric, reports, tz, start, end)
        .into_iter()
        .map(|(day, ratio)| DayUptime { day, ratio })
        .collect();
    let roles: BTreeMap<&str, ProbeRole> = reports
        .iter()
        .flat_map(|r| r.probes.samples.iter())
        .map(|s| (s.target.as_str(), s.role))
        .collect();
    let mut outages: BTreeMap<(String, DateTime<Utc>), Option<DateTime<Utc>>> = BTreeMap::new();
    for o in reports.iter().flat_map(|r| r.outages.iter()) {
        if o.end.is_some_and(|e| e < start) || o.start >= end {
            continue;
        }
        let slot = outages.entry((o.target.clone(), o.start)).or_insert(o.end);
        if o.end.is_some() {
            *slot = o.end.max(*slot);
        }
    }
    let outages = merge_outages(outages, end)
        .into_iter()
        .map(|(target, s, e)| OutageRow {
            role: role_name(roles.get(target.as_str()).copied()),
            duration_secs: (e.unwrap_or(end) - s).num_seconds().max(0),
            target,
            start: s,
            end: e,
        })
        .collect();
    let bridging: Vec<String> = reports
        .iter()
        .flat_map(|r| r.leaks.iter().map(|l| l.ip.clone()))
        .collect();
    let mut seen: BTreeMap<(String, Option<String>), InventoryRow> = BTreeMap::new();
    for o in reports.iter().flat_map(|r| r.inventory.iter()) {
        let key = (o.ip.clone(), o.mac.as_ref().map(|m| m.to_ascii_lowercase()));
        let row = seen.entry(key).or_insert_with(|| InventoryRow {
            ip: o.ip.clone(),
            mac: o.mac.clone(),
            vendor: o.vendor.clone(),
            first_seen: o.first_seen,
            last_seen: o.last_seen,
            registered_as: None,
            bridging: bridging.contains(&o.ip),
        });
        row.first_seen = row.first_seen.min(o.first_seen);
        row.last_seen = row.last_seen.max(o.last_seen);
        if row.vendor.is_none() {
            row.vendor.clone_from(&o.vendor);
        }
    }
    let devices: Vec<_> = registry
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Device)
        .collect();
    let mut inventory: Vec<InventoryRow> = seen.into_values().collect();
    for row in &mut inventory {
        row.registered_as = devices
            .iter()
            .find(|e| {
                let mac_match = matches!((&e.mac, &row.mac), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b));
                mac_match || e.ip.is_some_and(|ip| ip.to_string() == row.ip)
            })
            .map(|e| e.name.clone());
    }
    inventory.sort_by_key(|a| ip_key(&a.ip));
    let unseen = devices
        .iter()
        .filter(|e| {
            !inventory.iter().any(|r| {
                matches!((&e.mac, &r.mac), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
                    || e.ip.is_some_and(|ip| ip.to_string() == r.ip)
            })
        })
        .map(|e| UnseenEntry {
            line: e.line,
            name: e.name.clone(),
            ip: e.ip.map(|i| i.to_string()),
            mac: e.mac.clone(),
        })
        .collect();
    let map = network_map(reports, &inventory);
    UnitView {
        days,
        outages,
        inventory,
        unseen,
        map,
        agents,
    }
}

fn network_map(reports: &[Report], inventory: &[InventoryRow]) -> NetworkMap {
    let mut last: BTreeMap<&str, (ProbeRole, bool, DateTime<Utc>)> = BTreeMap::new();
    for s in reports.iter().flat_map(|r| r.probes.samples.iter()) {
        let at = s.last_at();
        let slot = last.entry(s.target.as_str()).or_insert((s.role, s.ok, at));
        if at >= slot.2 {
            *slot = (s.role, s.ok, at);
        }
    }
    let upstream = last
        .into_iter()
        .map(|(t, (role, ok, at))| MapTarget {
            target: t.to_string(),
            role: role_name(Some(role)),
            last_ok: ok,
            last_at: at,
        })
        .collect();
    let mut hosts: BTreeMap<String, (DateTime<Utc>, MapHost)> = BTreeMap::new();
    for r in reports {
        if let Some(sc) = &r.self_check {
            let host = MapHost {
                hostname: r.host.hostname.clone(),
                interfaces: sc
                    .interfaces
                    .iter()
                    .map(|i| MapInterface {
                        name: i.name.clone(),
                        kind: interface_kind(i.kind),
                        up: i.up,
                        addresses: i.addresses.clone(),
                    })
                    .collect(),
                findings: sc.findings.iter().map(|f| f.code.clone()).collect(),
            };
            let slot = hosts.entry(r.host.hostname.clone()).or_insert((sc.at, host.clone()));
            if sc.at >= slot.0 {
                *slot = (sc.at, host);
            }
        }
    }
    let mut breaches: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for i in reports.iter().flat_map(|r| r.isolation.iter()).filter(|i| i.reached) {
        let at = breaches.entry(i.canary.clone()).or_insert(i.at);
        *at = (*at).max(i.at);
    }
    NetworkMap {
        upstream,
        hosts: hosts.into_values().map(|(_, h)| h).collect(),
        devices: inventory.to_vec(),
        breaches: breaches.into_iter().collect(),
    }
}

fn interface_kind(k: InterfaceKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "other".into())
}

fn role_name(r: Option<ProbeRole>) -> &'static str {
    match r {
        Some(ProbeRole::Upstream) => "upstream",
        Some(ProbeRole::Device) => "device",
        None => "unknown",
    }
}

/// Sorts IPv4 numerically, anything else after.
fn ip_key(ip: &str) -> (u8, u128, String) {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v)) => (0, u128::from(u32::from(v)), String::new()),
        Ok(std::net::IpAddr::V6(v)) => (1, u128::from(v), String::new()),
        Err(_) => (2, 0, ip.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn outages_are_merged_when_they_touch_never_zero_long_and_in_the_order_they_began() {
        let end = at("2026-11-02T00:00:00Z");
        let mut reported = BTreeMap::new();
        // Target b: two outages that touch (one ends as the next starts), one that overlaps.
        reported.insert(
            ("b".to_string(), at("2026-11-01T10:00:00Z")),
            Some(at("2026-11-01T10:00:20Z")),
        );
        reported.insert(
            ("b".to_string(), at("2026-11-01T10:00:20Z")),
            Some(at("2026-11-01T10:01:00Z")),
        );
        reported.insert(
            ("b".to_string(), at("2026-11-01T10:00:50Z")),
            Some(at("2026-11-01T10:02:00Z")),
        );
        // Target a: a zero-length one (dropped), a later real one, then one still open.
        reported.insert(
            ("a".to_string(), at("2026-11-01T09:00:00Z")),
            Some(at("2026-11-01T09:00:00Z")),
        );
        reported.insert(
            ("a".to_string(), at("2026-11-01T11:00:00Z")),
            Some(at("2026-11-01T11:00:07Z")),
        );
        reported.insert(("a".to_string(), at("2026-11-01T12:00:00Z")), None);
        reported.insert(
            ("a".to_string(), at("2026-11-01T12:30:00Z")),
            Some(at("2026-11-01T12:40:00Z")),
        );
        let got = merge_outages(reported, end);
        assert_eq!(
            got,
            vec![
                (
                    "b".to_string(),
                    at("2026-11-01T10:00:00Z"),
                    Some(at("2026-11-01T10:02:00Z"))
                ),
                (
                    "a".to_string(),
                    at("2026-11-01T11:00:00Z"),
                    Some(at("2026-11-01T11:00:07Z"))
                ),
                ("a".to_string(), at("2026-11-01T12:00:00Z"), None),
            ]
        );
    }
}
