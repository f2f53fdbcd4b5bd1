//! The dual-homed self-check of the agent's own host (三.4): does this machine bridge the
//! private network and the internet (or another network)?
//!
//! Pure analysis of [`HostNet`]: a path to the internet is a default route, or the route
//! to a canary, through an interface with no address in the private network. That is a
//! violation; IP forwarding on top of it means the host may route the LAN out. Virtual
//! bridges and tunnels without such a path (docker0, virbr0, a VPN tun) are reported as
//! info only, never as violations.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use kaohe_rubric::evidence::{self, InterfaceKind, SelfCheck, SelfCheckFinding, Severity};

use crate::platform::{HostNet, Iface, RouteEntry};

fn finding(
    code: &str,
    severity: Severity,
    iface: Option<&str>,
    detail: String,
    why_zh: &str,
    why_en: &str,
) -> SelfCheckFinding {
    SelfCheckFinding {
        code: code.to_string(),
        severity,
        interface: iface.map(str::to_string),
        detail,
        why_zh: why_zh.to_string(),
        why_en: why_en.to_string(),
    }
}

/// Whether an interface is on the private network: an address inside it, and not a
/// wireless, mobile or dial-up link (a 4G modem may well get a carrier 10.x address).
fn is_private_iface(iface: Option<&Iface>, private: &[IpNet]) -> bool {
    iface.is_some_and(|i| {
        !is_radio(i)
            && i.addresses
                .iter()
                .any(|a| private.iter().any(|p| p.contains(&a.addr())))
    })
}

fn is_radio(i: &Iface) -> bool {
    matches!(
        i.kind,
        InterfaceKind::Wireless | InterfaceKind::Mobile | InterfaceKind::Ppp
    )
}

/// The route the kernel would pick for `dst`: longest prefix, then lowest metric.
pub fn route_for(routes: &[RouteEntry], dst: IpAddr) -> Option<&RouteEntry> {
    routes.iter().filter(|r| r.destination.contains(&dst)).max_by(|a, b| {
        a.destination
            .prefix_len()
            .cmp(&b.destination.prefix_len())
            .then(b.metric.cmp(&a.metric))
    })
}

/// Analyses the host's network state. `private` is the private network's address space;
/// `canaries` are internet addresses the LAN must not reach.
pub fn analyse(net: &HostNet, private: &[IpNet], canaries: &[IpAddr], at: DateTime<Utc>) -> SelfCheck {
    let mut findings = Vec::new();
    let internet_ifaces = route_findings(net, private, canaries, &mut findings);
    forwarding_findings(net, &internet_ifaces, &mut findings);
    interface_findings(net, &internet_ifaces, &mut findings);
    SelfCheck {
        at,
        interfaces: net
            .interfaces
            .iter()
            .map(|i| evidence::Interface {
                name: i.name.clone(),
                kind: i.kind,
                up: i.up,
                mac: i.mac.map(|m| m.to_string()),
                addresses: i.addresses.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        routes: net
            .routes
            .iter()
            .map(|r| evidence::Route {
                destination: if r.is_default() {
                    "default".into()
                } else {
                    r.destination.to_string()
                },
                gateway: r.gateway.map(|g| g.to_string()),
                interface: r.interface.clone(),
                metric: Some(r.metric),
            })
            .collect(),
        ip_forwarding: net.forwarding_v4 || net.forwarding_v6,
        findings,
    }
}

/// Routes that leave outside the private network (by default or to a canary); returns
/// the interfaces they leave through.
fn route_findings(
    net: &HostNet,
    private: &[IpNet],
    canaries: &[IpAddr],
    findings: &mut Vec<SelfCheckFinding>,
) -> Vec<String> {
    let iface = |name: &str| net.interfaces.iter().find(|i| i.name == name);
    let mut internet_ifaces: Vec<String> = Vec::new();
    let defaults: Vec<&RouteEntry> = net.routes.iter().filter(|r| r.is_default()).collect();
    for r in &defaults {
        let radio = iface(&r.interface).is_some_and(is_radio);
        let gw_private = !radio && r.gateway.is_some_and(|g| private.iter().any(|p| p.contains(&g)));
        if !is_private_iface(iface(&r.interface), private) && !gw_private {
            internet_ifaces.push(r.interface.clone());
            findings.push(finding(
                "default_route_not_private",
                Severity::Violation,
                Some(&r.interface),
                format!(
                    "默认路由经 {} (网关 {}) 通往专网以外的网络",
                    r.interface,
                    r.gateway.map_or("-".into(), |g| g.to_string())
                ),
                "本机有一条不经专网的默认路由, 专网与互联网在本机串联",
                "a default route leaves through an interface outside the private network: this host bridges the private network and another network",
            ));
        }
    }
    let default_ifaces: std::collections::BTreeSet<&str> = defaults.iter().map(|r| r.interface.as_str()).collect();
    if default_ifaces.len() > 1 {
        let list = default_ifaces.iter().copied().collect::<Vec<_>>().join(", ");
        findings.push(finding(
            "multiple_default_routes",
            if internet_ifaces.is_empty() {
                Severity::Warning
            } else {
                Severity::Violation
            },
            None,
            format!("多个接口上有默认路由: {list}"),
            "多条默认路由说明本机连接了多个网络, 流量可能绕过专网",
            "default routes on several interfaces: the host is attached to more than one network",
        ));
    }
    for c in canaries {
        if let Some(r) = route_for(&net.routes, *c)
            && !r.is_default()
            && !is_private_iface(iface(&r.interface), private)
        {
            internet_ifaces.push(r.interface.clone());
            findings.push(finding(
                "canary_route_not_private",
                Severity::Violation,
                Some(&r.interface),
                format!("到互联网探针 {c} 的路由经 {} ({})", r.interface, r.destination),
                "本机有到互联网地址的专用路由, 绕过专网",
                "a specific route to an internet canary leaves outside the private network",
            ));
        }
    }
    internet_ifaces
}

/// IP forwarding, harmless alone, a bridge with an internet path.
fn forwarding_findings(net: &HostNet, internet_ifaces: &[String], findings: &mut Vec<SelfCheckFinding>) {
    if net.forwarding_v4 || net.forwarding_v6 {
        if internet_ifaces.is_empty() {
            findings.push(finding(
                "ip_forwarding_on",
                Severity::Info,
                None,
                "IP 转发已开启, 但没有通往专网以外的路由".into(),
                "开启转发本身不构成串联 (如容器主机); 若再接入互联网即成为串联路由器",
                "forwarding alone is not a bridge (e.g. a container host); with an internet path it would be",
            ));
        } else {
            findings.push(finding(
                "ip_forwarding_to_internet",
                Severity::Violation,
                internet_ifaces.first().map(String::as_str),
                format!("IP 转发已开启, 且有经 {} 的互联网路径", internet_ifaces.join(", ")),
                "本机会把专网局域网的流量转发到互联网, 是串联路由器",
                "the host forwards packets and has an internet path: it can route the private LAN out",
            ));
        }
    }
}

/// Radio and dial-up interfaces that are up, and virtual ones without an internet path.
fn interface_findings(net: &HostNet, internet_ifaces: &[String], findings: &mut Vec<SelfCheckFinding>) {
    for i in net.interfaces.iter().filter(|i| i.up) {
        let carries_internet = internet_ifaces.contains(&i.name);
        let has_route = net.routes.iter().any(|r| r.interface == i.name && r.is_default());
        match i.kind {
            InterfaceKind::Wireless | InterfaceKind::Mobile | InterfaceKind::Ppp if !carries_internet => {
                let what = match i.kind {
                    InterfaceKind::Wireless => "无线网卡",
                    InterfaceKind::Mobile => "4G/移动网卡",
                    _ => "拨号 (PPP) 接口",
                };
                findings.push(finding(
                    "radio_or_dialup_interface",
                    Severity::Warning,
                    Some(&i.name),
                    format!("{what} {} 已启用", i.name),
                    "专网计算机不应启用无线、4G 或拨号接口, 它们随时可能接入互联网",
                    "a wireless, mobile or dial-up interface is up; it can reach the internet at any time",
                ));
            }
            InterfaceKind::Bridge | InterfaceKind::Tun if !carries_internet && !has_route => {
                findings.push(finding(
                    "virtual_interface_without_internet",
                    Severity::Info,
                    Some(&i.name),
                    format!(
                        "虚拟接口 {} ({}) 没有通往互联网的路径",
                        i.name,
                        if i.kind == InterfaceKind::Bridge {
                            "网桥"
                        } else {
                            "隧道"
                        }
                    ),
                    "容器网桥或 VPN 隧道没有互联网出口时不构成串联",
                    "a container bridge or VPN tunnel without an internet path is not a violation",
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, kind: InterfaceKind, addrs: &[&str]) -> Iface {
        Iface {
            name: name.into(),
            kind,
            up: true,
            mac: None,
            addresses: addrs.iter().map(|a| a.parse().expect("cidr")).collect(),
        }
    }

    fn route(dst: &str, gw: Option<&str>, dev: &str, metric: u32) -> RouteEntry {
        RouteEntry {
            destination: dst.parse().expect("net"),
            gateway: gw.map(|g| g.parse().expect("ip")),
            interface: dev.into(),
            metric,
        }
    }

    fn private() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().expect("net")]
    }

    fn canaries() -> Vec<IpAddr> {
        vec!["198.51.100.10".parse().expect("ip")]
    }

    fn violations(sc: &SelfCheck) -> Vec<&str> {
        sc.findings
            .iter()
            .filter(|f| f.severity == Severity::Violation)
            .map(|f| f.code.as_str())
            .collect()
    }

    #[test]
    fn clean_private_host_has_no_finding() {
        let net = HostNet {
            interfaces: vec![
                iface("lo", InterfaceKind::Loopback, &["127.0.0.1/8"]),
                iface("eth0", InterfaceKind::Ethernet, &["10.1.0.10/24"]),
            ],
            routes: vec![
                route("0.0.0.0/0", Some("10.1.0.1"), "eth0", 0),
                route("10.1.0.0/24", None, "eth0", 0),
            ],
            ..HostNet::default()
        };
        assert!(analyse(&net, &private(), &canaries(), Utc::now()).findings.is_empty());
    }

    #[test]
    fn second_nic_with_internet_default_route_is_a_violation() {
        let net = HostNet {
            interfaces: vec![
                iface("eth0", InterfaceKind::Ethernet, &["10.1.0.10/24"]),
                iface("wwan0", InterfaceKind::Mobile, &["192.0.2.77/24"]),
            ],
            routes: vec![
                route("0.0.0.0/0", Some("192.0.2.1"), "wwan0", 50),
                route("0.0.0.0/0", Some("10.1.0.1"), "eth0", 100),
                route("10.1.0.0/24", None, "eth0", 0),
            ],
            ..HostNet::default()
        };
        let sc = analyse(&net, &private(), &canaries(), Utc::now());
        assert_eq!(
            violations(&sc),
            vec!["default_route_not_private", "multiple_default_routes"]
        );
        assert!(sc.findings.iter().all(|f| !f.why_zh.is_empty() && !f.why_en.is_empty()));
    }

    #[test]
    fn a_4g_modem_with_a_carrier_10_x_address_and_a_default_route_is_a_violation() {
        let net = HostNet {
            interfaces: vec![
                iface("eth0", InterfaceKind::Ethernet, &["10.1.0.10/24"]),
                iface("wwan0", InterfaceKind::Mobile, &["10.64.1.5/30"]),
            ],
            routes: vec![
                route("0.0.0.0/0", Some("10.64.1.6"), "wwan0", 50),
                route("0.0.0.0/0", Some("10.1.0.1"), "eth0", 100),
            ],
            ..HostNet::default()
        };
        let sc = analyse(&net, &private(), &canaries(), Utc::now());
        assert!(
            violations(&sc).contains(&"default_route_not_private"),
            "{:#?}",
            sc.findings
        );
    }

    #[test]
    fn forwarding_with_an_internet_path_is_a_rogue_router() {
        let net = HostNet {
            interfaces: vec![
                iface("eth0", InterfaceKind::Ethernet, &["10.3.0.50/24"]),
                iface("eth1", InterfaceKind::Ethernet, &["192.0.2.50/24"]),
            ],
            routes: vec![route("0.0.0.0/0", Some("192.0.2.1"), "eth1", 0)],
            forwarding_v4: true,
            ..HostNet::default()
        };
        let sc = analyse(&net, &private(), &canaries(), Utc::now());
        assert!(violations(&sc).contains(&"ip_forwarding_to_internet"), "{sc:?}");
    }

    #[test]
    fn docker_bridge_and_vpn_tun_without_internet_are_not_violations() {
        let net = HostNet {
            interfaces: vec![
                iface("eth0", InterfaceKind::Ethernet, &["10.1.0.60/24"]),
                iface("docker0", InterfaceKind::Bridge, &["172.17.0.1/16"]),
                iface("tun0", InterfaceKind::Tun, &["172.30.0.2/24"]),
            ],
            routes: vec![
                route("0.0.0.0/0", Some("10.1.0.1"), "eth0", 0),
                route("172.17.0.0/16", None, "docker0", 0),
                route("172.30.0.0/24", None, "tun0", 0),
            ],
            forwarding_v4: true,
            ..HostNet::default()
        };
        let sc = analyse(&net, &private(), &canaries(), Utc::now());
        assert!(violations(&sc).is_empty(), "{:#?}", sc.findings);
        assert_eq!(sc.findings.iter().filter(|f| f.severity == Severity::Info).count(), 3);
    }

    #[test]
    fn specific_route_to_a_canary_outside_the_private_network_is_a_violation() {
        let net = HostNet {
            interfaces: vec![
                iface("eth0", InterfaceKind::Ethernet, &["10.1.0.10/24"]),
                iface("eth1", InterfaceKind::Ethernet, &["192.0.2.5/24"]),
            ],
            routes: vec![
                route("0.0.0.0/0", Some("10.1.0.1"), "eth0", 0),
                route("198.51.100.0/24", Some("192.0.2.1"), "eth1", 0),
            ],
            ..HostNet::default()
        };
        let sc = analyse(&net, &private(), &canaries(), Utc::now());
        assert_eq!(violations(&sc), vec!["canary_route_not_private"]);
    }
}
