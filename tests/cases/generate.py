#!/usr/bin/env python3
"""Generates the evidence of the scoring cases (tests/cases/*/) and of the shipped
example unit (deploy/example/), so that each case differs from the perfect unit by the
one fault it is about. The files it writes are committed; run it again after changing a
scenario here:

    python3 tests/cases/generate.py

Expected sheets are not generated here: `expected.json` files are snapshots the test
writes with KAOHE_UPDATE_EXPECT=1, and `case.toml` holds the hand-checked scores.

Every address is a lab or documentation address (shared/docs/lab.md): the unit LAN is
10.1.0.0/24 as in the lab's bureau 1, the hub 10.0.0.0/24, canaries 198.51.100.0/24.
"""

import copy
import json
import os
from datetime import date, datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TZ = timezone(timedelta(hours=8))  # Asia/Shanghai has no DST

HEADER = "类型,名称,IP地址,MAC地址,使用者,使用地点,机房,网址\n"
DEVICES = [
    # name, ip, mac, user, location, machine room
    ("机房服务器(考核代理)", "10.1.0.10", "02:6b:68:01:00:0a", "王工", "信息机房", "是"),
    ("核心交换机", "10.1.0.2", "02:6b:68:01:00:02", "王工", "信息机房", "是"),
    ("办公电脑-办公室", "10.1.0.21", "02:6b:68:01:00:15", "张三", "办公室", "否"),
    ("办公电脑-调解科", "10.1.0.22", "02:6b:68:01:00:16", "李四", "人民调解科", "否"),
    ("网络打印机", "10.1.0.30", "02:6b:68:01:00:1e", "办公室公用", "办公室", "否"),
]
SERVICES = [
    ("应用系统", "app", "综合管理平台", "https://oa.lab.example/"),
    ("门户网站", "portal", "司法局门户网站", "https://www.lab.example/"),
]
UPSTREAM = [("10.0.0.1", "icmp"), ("10.0.0.10:8443", "tcp")]
CANARIES = [("198.51.100.10", "icmp"), ("198.51.100.10:443", "tcp"), ("198.51.100.53", "dns")]


def registry_csv(devices=DEVICES, services=SERVICES, extra=""):
    rows = [HEADER]
    for name, ip, mac, user, loc, room in devices:
        rows.append(f"设备,{name},{ip},{mac},{user},{loc},{room},\n")
    for zh, _, name, url in services:
        rows.append(f"{zh},{name},,,,,,{url}\n")
    return "".join(rows) + extra


def unit_toml(unit_id, name, enrolled="2026-01-05", maintainer="王工", responder="王工"):
    lines = [
        "# 单位资料 (unit profile)",
        f'id = "{unit_id}"',
        f'name = "{name}"',
        'parent = "lab/city"',
    ]
    if maintainer:
        lines.append(f'maintainer = "{maintainer}"')
    if responder:
        lines.append(f'responder = "{responder}"')
    lines.append(f"enrolled = {enrolled}")
    return "\n".join(lines) + "\n"


def z(t):
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Scenario:
    """A unit's week (or days) of agent reports: one report every 6 hours, hourly samples."""

    def __init__(self, unit_id, first_day, days):
        self.unit_id = unit_id
        self.first = datetime(first_day.year, first_day.month, first_day.day, tzinfo=TZ)
        self.days = days
        self.seen = [d for d in DEVICES]  # devices on the LAN: (name, ip, mac, ...)
        self.extra_seen = []  # (ip, mac, vendor) not in the registry
        self.upstream_down = []  # (start, end) local datetimes: both upstream targets fail
        self.device_down = {}  # ip -> list of (start, end)
        self.breach_rounds = set()  # local datetimes of isolation rounds that reach a canary
        self.violation_at = None  # local datetime from which the self-check finds a bridge
        self.leaks = []  # (local datetime, ip, mac, method, protocol)
        self.no_daily = set()  # dates without a daily check
        self.daily_without = {}  # date -> categories left out
        self.outages = []  # (target, start, end or None)
        self.seq = 0

    def down(self, spans, t):
        return any(a <= t < b for a, b in spans)

    def report(self, start, end):
        self.seq += 1
        n = self.seq
        r = {
            "schema_version": 1,
            "report_id": f"00000000-0000-4000-8000-{sum(self.unit_id.encode()) % 10**6:06d}{n:06d}",
            "agent_id": "agent-" + self.unit_id.split("/")[-1],
            "unit_id": self.unit_id,
            "sequence": n,
            "created_at": z(end),
            "host": {
                "hostname": "jf-server",
                "os": "Debian GNU/Linux 12",
                "boot_time": z(self.first - timedelta(days=30)),
                "agent_version": "0.1.0",
            },
            "checks": {
                "reachability": "ran",
                "isolation": "ran",
                "self_check": "ran",
                "inventory": "ran",
                "services": "ran",
                "daily": "ran",
                "leak_detection": "not_configured",
            },
            "probes": {"interval_secs": 3600, "samples": []},
            "outages": [],
            "isolation": [],
            "inventory": [],
            "services": [],
            "daily_checks": [],
            "leaks": [],
        }
        t = start
        while t < end:
            for target, kind in UPSTREAM:
                ok = not self.down(self.upstream_down, t)
                s = {"target": target, "kind": kind, "role": "upstream", "at": z(t), "ok": ok}
                s.update({"rtt_ms": 1.2} if ok else {"error": "timeout"})
                r["probes"]["samples"].append(s)
            for name, ip, mac, user, loc, room in DEVICES:
                if room == "是":
                    ok = not self.down(self.device_down.get(ip, []), t)
                    s = {"target": ip, "kind": "icmp", "role": "device", "at": z(t), "ok": ok}
                    s.update({"rtt_ms": 0.4} if ok else {"error": "timeout"})
                    r["probes"]["samples"].append(s)
            rt = t + timedelta(minutes=30)
            breach = rt in self.breach_rounds
            for target, proto in CANARIES:
                res = {"at": z(rt), "canary": target, "protocol": proto, "reached": breach and proto != "dns"}
                if res["reached"]:
                    res.update({"via_interface": "eth0", "next_hop": "10.1.0.254"})
                else:
                    res["error"] = "timeout"
                r["isolation"].append(res)
            t += timedelta(hours=1)
        sc_at = end - timedelta(minutes=1)
        findings = []
        if self.violation_at is not None and sc_at >= self.violation_at:
            findings.append({
                "code": "default_route_not_private",
                "severity": "violation",
                "interface": "wwan0",
                "detail": "default route via wwan0 (4G) while eth0 is on the private LAN",
                "why_zh": "本机同时连接专网与互联网, 专网流量可经 4G 网卡外泄",
                "why_en": "the host is on the private LAN and the internet at once",
            })
        r["self_check"] = {
            "at": z(sc_at),
            "interfaces": [
                {"name": "lo", "kind": "loopback", "up": True, "addresses": ["127.0.0.1/8"]},
                {"name": "eth0", "kind": "ethernet", "up": True, "mac": "02:6b:68:01:00:0a",
                 "addresses": ["10.1.0.10/24"]},
            ],
            "routes": [{"destination": "default", "gateway": "10.1.0.1", "interface": "eth0"}],
            "ip_forwarding": False,
            "findings": findings,
        }
        for name, ip, mac, *_ in self.seen:
            r["inventory"].append({"ip": ip, "mac": mac, "first_seen": z(start), "last_seen": z(end - timedelta(minutes=2)),
                                   "how": ["arp_sweep", "neighbour_table"]})
        for ip, mac, vendor in self.extra_seen:
            r["inventory"].append({"ip": ip, "mac": mac, "vendor": vendor, "first_seen": z(start),
                                   "last_seen": z(end - timedelta(minutes=2)), "how": ["arp_sweep"]})
        for _, kind, name, url in SERVICES:
            r["services"].append({"kind": kind, "name": name, "url": url, "at": z(end - timedelta(minutes=5)),
                                  "ok": True, "status": 200, "latency_ms": 35.0})
        for when, ip, mac, method, proto in self.leaks:
            if start <= when < end:
                r["leaks"].append({"at": z(when), "ip": ip, "mac": mac, "method": method, "protocol": proto,
                                   "detail": "reply reached the leak listener 203.0.113.99"})
        # The daily check runs at 11:00 local time.
        daily_at = start.replace(hour=11, minute=0)
        if start <= daily_at < end and daily_at.date() not in self.no_daily:
            left_out = self.daily_without.get(daily_at.date(), set())
            d = {"at": z(daily_at), "network": {"checked": 2, "failed": 0}}
            if "devices" not in left_out:
                d["devices"] = {"checked": len(DEVICES), "failed": 0}
            if "apps" not in left_out:
                d["apps"] = {"checked": 1, "failed": 0}
            if "portals" not in left_out:
                d["portals"] = {"checked": 1, "failed": 0}
            r["daily_checks"].append(d)
        # Outages follow from the probes: both upstream targets down while upstream_down says so.
        derived = [(t, a, b) for (a, b) in self.upstream_down for (t, _) in UPSTREAM]
        for target, a, b in self.outages + derived:
            if a < end:
                o = {"target": target, "start": z(a)}
                if b is not None and b < end:
                    o["end"] = z(b)
                if b is None or b >= start:
                    r["outages"].append(o)
        return r

    def reports(self):
        out = []
        t = self.first
        for _ in range(self.days * 4):
            out.append(self.report(t, t + timedelta(hours=6)))
            t += timedelta(hours=6)
        return out


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def dump(reports):
    """A JSON array with one report per line: compact, and diffs stay readable."""
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in reports]
    return "[\n" + ",\n".join(lines) + "\n]\n"


def local(y, m, d, h=0, mi=0):
    return datetime(y, m, d, h, mi, tzinfo=TZ)


def case(name, description, scores, mutate=None, period="2026-11-01..2026-11-02", registry=None, unit=None,
         as_of=None, no_reports=False, expect_error=None, reasons=None):
    s = Scenario("lab/case", date(2026, 11, 1), 2)
    if mutate:
        mutate(s)
    d = os.path.join(HERE, name)
    write(os.path.join(d, "registry.csv"), registry if registry is not None else registry_csv())
    write(os.path.join(d, "unit.toml"), unit if unit is not None else unit_toml("lab/case", "示例司法所"))
    own = os.path.join(d, "evidence.json")
    if os.path.exists(own):
        os.remove(own)
    lines = [f'description = "{description}"', f'period = "{period}"']
    if no_reports:
        lines.append("evidence = []")
    elif mutate is None and name != "perfect":
        # Same evidence as the perfect unit: refer to it instead of copying it.
        lines.append('evidence = ["../perfect/evidence.json"]')
    else:
        write(own, dump(s.reports()))
    if as_of:
        lines.append(f'as_of = "{as_of}"')
    if expect_error:
        lines.append(f"expect_error = {json.dumps(expect_error, ensure_ascii=False)}")
    lines.append("")
    lines.append("# Hand-checked: the score each item must get (the snapshot expected.json holds the rest).")
    lines.append("[scores]")
    for k, v in scores.items():
        lines.append(f'"{k}" = {v}')
    if reasons:
        lines.append("")
        lines.append("# Words some deduction of the item must give as its reason (English).")
        lines.append("[reasons]")
        for k, v in reasons.items():
            lines.append(f'"{k}" = "{v}"')
    write(os.path.join(d, "case.toml"), "\n".join(lines) + "\n")


PERFECT = {"二.1": 3.0, "二.2": 3.0, "三.1": 2.0, "三.2": 5.0, "三.3": 5.0, "三.4": 5.0, "三.5": 3.0}


def with_(**kw):
    s = dict(PERFECT)
    s.update({k.replace("_", "."): v for k, v in kw.items()})
    return s


def main():
    case("perfect", "every automatic point: 26 of 27, the reviewer part of 三.1 pending", PERFECT)

    case("no-evidence", "no agent reports at all: 0 on every evidence item, reason no evidence",
         {"二.1": 0.0, "二.2": 0.0, "三.1": 1.0, "三.2": 0.0, "三.3": 0.0, "三.4": 0.0, "三.5": 0.0},
         no_reports=True,
         reasons={k: "no evidence" for k in ["二.1", "二.2", "三.2", "三.3", "三.4", "三.5"]})

    def unregistered(s):
        s.extra_seen.append(("10.1.0.99", "f4:f2:6d:01:00:63", "TP-LINK TECHNOLOGIES CO.,LTD."))
    # 6 devices seen, 5 registered and complete: 3 × 5/6 = 2.5
    case("rule-registry-unregistered-device", "二.1: one live device is not registered",
         with_(二_1=2.5), unregistered, reasons={"二.1": "not in the registry"})

    devices = list(DEVICES)
    devices[3] = ("办公电脑-调解科", "10.1.0.22", "02:6b:68:01:00:16", "李四", "", "否")
    # 5 seen, 4 complete: 3 × 4/5 = 2.4; the portal is checked but not registered: −1 → 1.4
    case("rule-registry-incomplete-and-unregistered-portal",
         "二.1: an entry without location, and a checked portal missing from the registry",
         with_(二_1=1.4), registry=registry_csv(devices=devices, services=SERVICES[:1]))

    def stale(s):
        s.seen = [d for d in DEVICES if d[1] != "10.1.0.22"]
    # 4 seen, all registered: 二.1 full with a stale warning; 三.4 −0.5 for the unseen office PC
    case("rule-bridging-unseen-office-device",
         "三.4: a registered office PC is never seen on the private network (二.1 only warns)",
         with_(三_4=4.5), stale)

    def daily(s):
        s.no_daily.add(date(2026, 11, 2))
    # 1 of 2 days without a daily check: 3 × 1/2 = 1.5
    case("rule-daily-checks-missing-day", "二.2: no daily check on the second day", with_(二_2=1.5), daily)

    def daily_partial(s):
        s.daily_without[date(2026, 11, 1)] = {"portals"}
    case("rule-daily-checks-category-missing", "二.2: the first day's check leaves out the portal",
         with_(二_2=1.5), daily_partial)

    def room(s):
        s.device_down["10.1.0.2"] = [(local(2026, 11, 1, 8), local(2026, 11, 1, 10))]
    # 96 checks of machine-room devices, 2 failed: 97.9% < 99% → −1 → 1
    case("rule-machine-room-device-down", "三.1: the core switch missed 2 of 48 checks",
         with_(三_1=1.0), room)

    case("rule-machine-room-no-maintainer", "三.1: no maintainer on record",
         with_(三_1=1.0), unit=unit_toml("lab/case", "示例司法所", maintainer=None))

    def uptime(s):
        s.upstream_down = [(local(2026, 11, 1, 9), local(2026, 11, 1, 10))]
    # down 1 of 48 h: A = 97.9167%; 5 × (0.979167 − 0.95)/(0.995 − 0.95) = 3.24
    case("rule-uptime-one-hour-down", "三.2: the private network is down for one hour",
         with_(三_2=3.24), uptime)

    def breach(s):
        s.breach_rounds |= {local(2026, 11, 1, 14, 30), local(2026, 11, 1, 15, 30), local(2026, 11, 2, 9, 30)}
    # day 1: two consecutive rounds → confirmed, −1; day 2: a single round → warning only
    case("rule-isolation-confirmed-breach", "三.3: a breach confirmed on day 1, unconfirmed on day 2",
         with_(三_3=4.0), breach, reasons={"三.3": "2026-11-01: the private LAN reached the internet"})

    def bridge(s):
        s.violation_at = local(2026, 11, 2, 0)
    case("rule-bridging-dual-homed-agent-host", "三.4: the agent host gets a 4G default route on day 2",
         with_(三_4=3.0), bridge, reasons={"三.4": "host jf-server bridges"})

    def outage(s):
        s.upstream_down = [(local(2026, 11, 1, 9), local(2026, 11, 1, 15)),
                           (local(2026, 11, 2, 9), local(2026, 11, 2, 10))]
        # The collector alone is down for 6 hours: no incident of the unit's network.
        s.outages.append(("10.0.0.10:8443", local(2026, 11, 2, 12), local(2026, 11, 2, 18)))
    # The network is down 6 h (> 4 h: −1) and 1 h (fine); 三.2 loses everything at 85% availability
    case("rule-outage-not-restored-in-time",
         "三.5: the network is down 6 hours once and 1 hour once; a collector-only outage is no incident",
         with_(三_5=2.0, 三_2=0.0), outage, reasons={"三.5": "not restored within 4 h"})

    case("rule-outage-no-responder", "三.5: no responder on record",
         with_(三_5=2.0), unit=unit_toml("lab/case", "示例司法所", responder=None))

    def floors(s):
        s.violation_at = local(2026, 11, 1, 0)
        s.leaks += [(local(2026, 11, 1, 12), "10.1.0.21", "02:6b:68:01:00:15", "spoofed_source", "icmp"),
                    (local(2026, 11, 1, 12), "10.1.0.22", "02:6b:68:01:00:16", "forwarding", "icmp")]
        s.upstream_down = [(local(2026, 11, 1, h), local(2026, 11, 1, h + 5)) for h in range(0, 24, 6)]
        s.breach_rounds |= {local(2026, 11, 1, h, 30) for h in range(24)}
        s.breach_rounds |= {local(2026, 11, 2, h, 30) for h in range(24)}
    # 三.4: 3 bridging hosts × 2 = 6 > 5 → 0; 三.5: 4 slow outages → 0; 三.3: 2 breach days → 3;
    # 三.2: 20 of 48 hours down → 0
    case("floors", "扣完为止: deductions beyond an item's points stop at 0",
         with_(三_2=0.0, 三_3=3.0, 三_4=0.0, 三_5=0.0), floors, reasons={"三.4": "capped", "三.5": "already at 0"})

    # Period 2026-10-30..2026-11-02, enrolled 2026-11-01: the days before enrolment do not count.
    case("enrolled-mid-period", "enrolment in the middle of the period: scored from the enrolment day",
         PERFECT, period="2026-10-30..2026-11-02",
         unit=unit_toml("lab/case", "示例司法所", enrolled="2026-11-01"))

    # The same evidence without the enrolment date: two days of the four have no data.
    case("before-enrolment-counts-without-date", "without an enrolment date the whole period counts",
         with_(二_2=1.5, 三_2=0.0), period="2026-10-30..2026-11-02",
         unit=unit_toml("lab/case", "示例司法所", enrolled="2026-01-05"))

    # A month under way, scored on 2026-11-03 00:00 local time: only the days so far count.
    case("period-under-way", "a period still under way is scored up to the evaluation time",
         PERFECT, period="2026-11", as_of="2026-11-02T16:00:00Z", unit=unit_toml("lab/case", "示例司法所"))

    bad = registry_csv() + "设备,来历不明的电脑,10.1.0.300,,,,否,\n"
    case("registry-bad-row", "a registry with a bad row is rejected by line and column; nothing is scored",
         {}, registry=bad, expect_error="第 9 行 (line 9), 列 “IP地址”")

    # ---- the shipped example unit: one week with a few realistic faults ----
    ex = Scenario("ningxia/example/demo-station", date(2026, 11, 16), 7)
    ex.extra_seen.append(("10.1.0.99", "f4:f2:6d:01:00:63", "TP-LINK TECHNOLOGIES CO.,LTD."))
    ex.upstream_down = [(local(2026, 11, 18, 13), local(2026, 11, 18, 19))]
    ex.no_daily.add(date(2026, 11, 21))
    ex.breach_rounds |= {local(2026, 11, 20, 15, 30), local(2026, 11, 20, 16, 30)}
    exd = os.path.join(ROOT, "deploy", "example")
    write(os.path.join(exd, "registry.csv"), registry_csv())
    write(os.path.join(exd, "unit.toml"),
          unit_toml("ningxia/example/demo-station", "示例县司法局", enrolled="2026-11-16"))
    reports = ex.reports()
    for day in range(7):
        dd = date(2026, 11, 16) + timedelta(days=day)
        write(os.path.join(exd, "reports", f"{dd}.json"), dump(reports[day * 4:(day + 1) * 4]))


if __name__ == "__main__":
    main()
