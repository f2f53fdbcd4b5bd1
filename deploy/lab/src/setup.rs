//! Building a lab, step by step (each timed by [`Lab::up`]): the root link's slot,
//! namespaces, sysctls, veths, switches, host addresses and routes, the listeners,
//! and the generated files.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::cleanup::claim_slot;
use crate::lab::unix_ms;
use crate::net::Mac;
use crate::{Lab, LabError, ROOT_LINK_LAB_DEV, RootLink, RunInfo, generate, model, sys};

impl Lab {
    pub(crate) fn claim_root_link(&mut self) -> Result<(), LabError> {
        let pool = self.desc.root_pool;
        let slot = claim_slot(&self.prefix, pool)?;
        let net = pool
            .subnets(30)
            .ok()
            .and_then(|mut all| all.nth(slot as usize))
            .ok_or_else(|| LabError::State(format!("slot {slot} is outside {pool}")))?;
        let (Some(root_addr), Some(lab_addr)) = (net.hosts().next(), net.hosts().nth(1)) else {
            return Err(LabError::State(format!("{net} has no host addresses")));
        };
        let c = &self.desc.collector;
        let collector_url = if c.host == self.desc.root_host {
            format!("{}://{lab_addr}:{}", c.scheme, c.port)
        } else {
            String::new()
        };
        self.root_link = Some(RootLink {
            slot,
            net: net.to_string(),
            root_dev: format!("{}-coll", self.prefix),
            root_addr,
            lab_dev: ROOT_LINK_LAB_DEV.into(),
            lab_addr,
            collector_url,
        });
        Ok(())
    }

    pub(crate) fn all_namespaces(&self) -> Vec<String> {
        let hosts = (0..self.desc.hosts.len()).map(|i| self.namespace_of_host(i));
        hosts
            .chain((0..self.desc.segments.len()).map(|s| self.switch_namespace(s)))
            .collect()
    }

    pub(crate) fn add_namespaces(&mut self) -> Result<(), LabError> {
        let lines: Vec<String> = self.all_namespaces().iter().map(|n| format!("netns add {n}")).collect();
        sys::ip_batch(None, &lines)
    }

    pub(crate) fn set_sysctls(&mut self) -> Result<(), LabError> {
        // Set before any interface exists, so that every interface inherits the
        // defaults (a new namespace copies IPv4 settings from the root namespace).
        let ipv6 = Path::new("/proc/sys/net/ipv6").exists();
        let mut cmds = Vec::new();
        let forwarding = self
            .desc
            .hosts
            .iter()
            .map(|h| h.forwarding)
            .chain(self.desc.segments.iter().map(|_| false));
        for (ns, fwd) in self.all_namespaces().into_iter().zip(forwarding) {
            let mut cmd = sys::in_netns(&ns, "sysctl");
            cmd.args([
                "-q",
                "-w",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ]);
            cmd.arg(format!("net.ipv4.ip_forward={}", u8::from(fwd)));
            if ipv6 {
                // IPv4 only: no router solicitations or DAD chatter in the lab.
                cmd.args([
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ]);
            }
            cmds.push(cmd);
        }
        sys::run_parallel(cmds)
    }

    pub(crate) fn add_links(&mut self) -> Result<(), LabError> {
        let mut lines = Vec::new();
        for (i, h) in self.desc.hosts.iter().enumerate() {
            for n in &h.nics {
                lines.push(format!(
                    "link add name {} address {} netns {} type veth peer name {} address {} netns {}",
                    n.dev,
                    n.mac,
                    self.namespace_of_host(i),
                    h.name,
                    n.port_mac,
                    self.switch_namespace(n.segment)
                ));
            }
        }
        if let Some(r) = &self.root_link {
            let slot = u8::try_from(r.slot).unwrap_or(u8::MAX);
            lines.push(format!(
                "link add name {} address {} type veth peer name {} address {} netns {}",
                r.root_dev,
                Mac::lab(5, slot, 1),
                r.lab_dev,
                Mac::lab(5, slot, 2),
                self.namespace_of_host(self.desc.root_host)
            ));
        }
        sys::ip_batch(None, &lines)
    }

    pub(crate) fn configure_switches(&mut self) -> Result<(), LabError> {
        let mut batches = Vec::new();
        for (s, seg) in self.desc.segments.iter().enumerate() {
            let mut lines = vec![
                format!("link add br0 address {} type bridge", seg.bridge_mac),
                "link set br0 up".into(),
            ];
            for (i, _) in self.desc.attached(s) {
                let port = &self.desc.hosts[i].name;
                lines.push(format!("link set {port} master br0"));
                lines.push(format!("link set {port} up"));
            }
            batches.push((self.switch_namespace(s), lines));
        }
        sys::ip_batches_parallel(&batches)
    }

    /// The `ip route` lines of a host (added, or replaced after a link came back).
    pub(crate) fn route_lines(&self, host: usize, verb: &str, only_dev: Option<&str>) -> Vec<String> {
        let h = &self.desc.hosts[host];
        let dev_of = |via: Ipv4Addr| h.nics.iter().find(|n| n.ip.contains(&via)).map(|n| n.dev.as_str());
        let wanted = |via: Ipv4Addr| only_dev.is_none() || dev_of(via) == only_dev;
        let mut lines: Vec<String> = h
            .routes
            .iter()
            .filter(|r| wanted(r.via))
            .map(|r| format!("route {verb} {} via {}", r.dst, r.via))
            .collect();
        if let Some(gw) = h.gateway.filter(|gw| wanted(*gw)) {
            lines.push(format!("route {verb} default via {gw}"));
        }
        lines
    }

    pub(crate) fn configure_hosts(&mut self) -> Result<(), LabError> {
        let mut batches = Vec::new();
        for (i, h) in self.desc.hosts.iter().enumerate() {
            let mut lines = vec!["link set lo up".to_string()];
            lines.extend(h.canary_ips.iter().map(|ip| format!("addr add {ip}/32 dev lo")));
            for v in &h.virtuals {
                match v.kind {
                    model::VirtualKind::Bridge => {
                        let mac = v.mac.map(|m| format!(" address {m}")).unwrap_or_default();
                        lines.push(format!("link add {}{mac} type bridge", v.dev));
                    }
                    model::VirtualKind::Tun => lines.push(format!("tuntap add dev {} mode tun", v.dev)),
                }
                lines.push(format!("addr add {} dev {}", v.ip, v.dev));
                lines.push(format!("link set {} up", v.dev));
            }
            for n in &h.nics {
                lines.push(format!("addr add {} dev {}", n.ip, n.dev));
                lines.push(format!("link set {} up", n.dev));
            }
            if let Some(r) = self.root_link.as_ref().filter(|_| i == self.desc.root_host) {
                lines.push(format!("addr add {}/30 dev {}", r.lab_addr, r.lab_dev));
                lines.push(format!("link set {} up", r.lab_dev));
            }
            lines.extend(self.route_lines(i, "add", None));
            batches.push((self.namespace_of_host(i), lines));
        }
        sys::ip_batches_parallel(&batches)?;
        if let Some(r) = &self.root_link {
            // No IPv6 link-local address: the root end says nothing but IPv4.
            let lines = vec![
                format!("link set dev {} addrgenmode none", r.root_dev),
                format!("addr add {}/30 dev {}", r.root_addr, r.root_dev),
                format!("link set {} up", r.root_dev),
            ];
            sys::ip_batch(None, &lines)?;
        }
        Ok(())
    }

    pub(crate) fn spawn_helper(&mut self, ns: &str, args: &[String], log_name: &str) -> Result<u32, LabError> {
        let run = self.run_dir();
        let log_path = run.join(log_name);
        let log =
            fs::File::create(&log_path).map_err(|e| LabError::io(format!("creating {}", log_path.display()), e))?;
        let err = log
            .try_clone()
            .map_err(|e| LabError::io("duplicating a log file handle", e))?;
        let mut cmd = sys::in_netns(ns, &self.helper);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| LabError::io(format!("starting {} in {ns}", self.helper.display()), e))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    pub(crate) fn start_listeners(&mut self) -> Result<(), LabError> {
        let run = self.run_dir();
        fs::create_dir_all(&run).map_err(|e| LabError::io(format!("creating {}", run.display()), e))?;
        let mut ready_files = Vec::new();
        for i in 0..self.desc.hosts.len() {
            let h = &self.desc.hosts[i];
            let mut listen = Vec::new();
            for c in self.desc.canaries.iter().filter(|c| c.host == i) {
                for p in &c.protocols {
                    match p {
                        model::CanaryProtocol::Icmp => {}
                        model::CanaryProtocol::Tcp443 => listen.extend(["--tcp".to_string(), format!("{}:443", c.ip)]),
                        model::CanaryProtocol::Dns => listen.extend(["--dns".to_string(), format!("{}:53", c.ip)]),
                    }
                }
            }
            for port in &h.http_ports {
                for n in &h.nics {
                    listen.extend(["--http".to_string(), format!("{}:{port}", n.ip.addr())]);
                }
            }
            if listen.is_empty() {
                continue;
            }
            let ns = self.namespace_of_host(i);
            let ready = run.join(format!("ready-{}", h.name));
            let mut args = vec![
                "serve".to_string(),
                "--netns".into(),
                ns.clone(),
                "--log".into(),
                run.join(format!("contacts-{}.jsonl", h.name)).display().to_string(),
                "--ready".into(),
                ready.display().to_string(),
            ];
            args.extend(listen);
            let log = format!("serve-{}.log", h.name);
            self.spawn_helper(&ns, &args, &log)?;
            ready_files.push((ready, run.join(log)));
        }
        for (ready, log) in ready_files {
            if !sys::wait_until(Duration::from_secs(5), || ready.exists()) {
                let said = fs::read_to_string(&log).unwrap_or_default();
                return Err(LabError::State(format!(
                    "a listener did not start within 5 s; {}: {said}",
                    log.display()
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn run_info(&self) -> Option<RunInfo> {
        let root_link = self.root_link.clone()?;
        Some(RunInfo {
            prefix: self.prefix.clone(),
            description: self.description_path.clone(),
            state_dir: self.state_dir.clone(),
            root_link,
            namespaces: (0..self.desc.hosts.len())
                .map(|i| (self.desc.hosts[i].name.clone(), self.namespace_of_host(i)))
                .collect(),
            switches: (0..self.desc.segments.len())
                .map(|s| (self.desc.segments[s].name.clone(), self.switch_namespace(s)))
                .collect(),
            created_unix_ms: unix_ms(),
        })
    }

    pub(crate) fn write_files(&mut self) -> Result<(), LabError> {
        generate::write_all(&self.desc, &self.facts, &self.state_dir)?;
        if let Some(info) = self.run_info() {
            let path = self.state_dir.join("lab.json");
            let json = serde_json::to_string_pretty(&info).map_err(|source| LabError::Json {
                context: "lab.json".into(),
                source,
            })?;
            fs::write(&path, json + "\n").map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }
}
