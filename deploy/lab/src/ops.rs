//! Using a lab that is up: commands and probes inside its hosts, links and switch
//! ports down and up, loss, forwarding, the flapping uplink, and the listeners' logs.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::cleanup::read_jsonl;
use crate::net::Mac;
use crate::{Contact, FlapEvent, Lab, LabError, LinkState, Probe, ProbeOutcome, sys};

impl Lab {
    /// Runs a command inside a host's (or switch's) namespace and waits for it.
    /// Bound its run time yourself (`-c`, `-W`, `timeout`).
    pub fn exec(&self, host: &str, args: &[&str]) -> Result<Output, LabError> {
        let ns = self.namespace(host)?;
        let (program, rest) = args
            .split_first()
            .ok_or_else(|| LabError::Usage("exec: no command".into()))?;
        let mut cmd = sys::in_netns(&ns, program);
        cmd.args(rest).stdin(Stdio::null());
        cmd.output()
            .map_err(|e| LabError::io(format!("running {program} in {ns}"), e))
    }

    fn probe_command(&self, host: &str, probe: &Probe) -> Result<Command, LabError> {
        let ns = self.namespace(host)?;
        let mut cmd = sys::in_netns(&ns, &self.helper);
        cmd.arg("probe")
            .args(probe.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(cmd)
    }

    fn outcome(out: &Output) -> ProbeOutcome {
        let mut detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.trim().is_empty() {
            detail = format!("{detail} {}", err.trim());
        }
        ProbeOutcome {
            ok: out.status.success(),
            detail,
        }
    }

    /// Probes from inside a host: did it reach the address?
    pub fn probe(&self, host: &str, probe: &Probe) -> Result<ProbeOutcome, LabError> {
        let mut cmd = self.probe_command(host, probe)?;
        let out = cmd
            .output()
            .map_err(|e| LabError::io(format!("probing from {host}"), e))?;
        Ok(Lab::outcome(&out))
    }

    /// Many probes at once, each from its host; results in the same order.
    pub fn probe_many(&self, probes: &[(&str, Probe)]) -> Result<Vec<ProbeOutcome>, LabError> {
        let mut running = Vec::new();
        for (host, probe) in probes {
            let mut cmd = self.probe_command(host, probe)?;
            running.push(
                cmd.spawn()
                    .map_err(|e| LabError::io(format!("probing from {host}"), e))?,
            );
        }
        running
            .into_iter()
            .map(|c| {
                c.wait_with_output()
                    .map(|o| Lab::outcome(&o))
                    .map_err(|e| LabError::io("waiting for a probe", e))
            })
            .collect()
    }

    /// Takes a host's interface down or up. Bringing it up restores the routes the
    /// kernel dropped with it.
    pub fn set_link(&self, host: &str, dev: &str, up: bool) -> Result<(), LabError> {
        let i = self.host(host)?;
        let ns = self.namespace_of_host(i);
        let mut lines = vec![format!("link set dev {dev} {}", if up { "up" } else { "down" })];
        if up {
            lines.extend(self.route_lines(i, "replace", Some(dev)));
        }
        sys::ip_batch(Some(&ns), &lines)
    }

    /// Takes the switch port facing a host on a segment down or up: a carrier outage,
    /// which keeps the host's routes (this is how the uplink flaps).
    pub fn set_port(&self, segment: &str, host: &str, up: bool) -> Result<(), LabError> {
        let s = self
            .desc
            .segment_index(segment)
            .ok_or_else(|| LabError::Usage(format!("no segment {segment:?} in the lab")))?;
        let i = self.host(host)?;
        if self.desc.hosts[i].nic_on(s).is_none() {
            return Err(LabError::Usage(format!("host {host:?} has no port on {segment:?}")));
        }
        let line = format!("link set dev {host} {}", if up { "up" } else { "down" });
        sys::ip_batch(Some(&self.switch_namespace(s)), &[line])
    }

    /// The state of a host's interface.
    pub fn link_state(&self, host: &str, dev: &str) -> Result<LinkState, LabError> {
        let ns = self.namespace(host)?;
        let out = sys::run(Command::new("ip").args(["-n", &ns, "-o", "link", "show", "dev", dev]))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let flags = text
            .split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .map(|(f, _)| f)
            .unwrap_or("");
        let flags: Vec<&str> = flags.split(',').collect();
        Ok(LinkState {
            admin_up: flags.contains(&"UP"),
            carrier: flags.contains(&"LOWER_UP"),
        })
    }

    /// Adds netem to a host's interface (`&["loss", "20%"]`), or with `None` removes
    /// it. Where the kernel has no netem (these machines' kernel has none), a plain
    /// `loss P%` is emulated: a classic-BPF filter on the interface's egress draws a
    /// random number per packet and sends the unlucky ones to a veth that is down
    /// (`lossy0`), which drops them. Other netem specs need netem.
    pub fn netem(&self, host: &str, dev: &str, spec: Option<&[&str]>) -> Result<(), LabError> {
        let i = self.host(host)?;
        let ns = self.namespace_of_host(i);
        let tc = |args: &[&str]| {
            let mut cmd = Command::new("tc");
            cmd.args(["-n", &ns]).args(args);
            sys::run(&mut cmd)
        };
        let Some(spec) = spec else {
            let _ = tc(&["qdisc", "del", "dev", dev, "root"]);
            let _ = tc(&["qdisc", "del", "dev", dev, "clsact"]);
            // Back to the state the lab built: "root" may now be the default qdisc.
            return Ok(());
        };
        let mut args = vec!["qdisc", "replace", "dev", dev, "root", "netem"];
        args.extend(spec);
        match tc(&args) {
            Ok(_) => Ok(()),
            Err(LabError::Command { stderr, .. }) if stderr.contains("qdisc kind is unknown") => {
                let percent = match spec {
                    ["loss", p] => p
                        .trim_end_matches('%')
                        .parse::<f64>()
                        .ok()
                        .filter(|p| (0.0..=100.0).contains(p)),
                    _ => None,
                };
                let Some(percent) = percent else {
                    return Err(LabError::State(format!(
                        "this kernel has no netem (sch_netem); only \"loss P%\" can be emulated, not {spec:?}"
                    )));
                };
                self.emulate_loss(i, dev, percent)
            }
            Err(e) => Err(e),
        }
    }

    fn emulate_loss(&self, host: usize, dev: &str, percent: f64) -> Result<(), LabError> {
        let ns = self.namespace_of_host(host);
        let sink = "lossy0";
        if sys::run(Command::new("ip").args(["-n", &ns, "link", "show", "dev", sink])).is_err() {
            let hi = u8::try_from(host + 1).unwrap_or(u8::MAX);
            let line = format!(
                "link add name {sink} address {} type veth peer name lossy1 address {}",
                Mac::lab(6, hi, 0),
                Mac::lab(6, hi, 1)
            );
            sys::ip_batch(Some(&ns), &[line])?;
        }
        // ld rand; jge #T, keep; ret -1 (match: drop); keep: ret 0.
        let threshold = (percent / 100.0 * 4_294_967_296.0).round();
        let bytecode = if threshold >= 4_294_967_295.0 {
            "1,6 0 0 4294967295".to_string()
        } else {
            format!(
                "4,32 0 0 4294963256,53 1 0 {},6 0 0 4294967295,6 0 0 0",
                threshold as u64
            )
        };
        let tc = |args: &[&str]| {
            let mut cmd = Command::new("tc");
            cmd.args(["-n", &ns]).args(args);
            sys::run(&mut cmd)
        };
        let _ = tc(&["qdisc", "del", "dev", dev, "clsact"]);
        tc(&["qdisc", "add", "dev", dev, "clsact"])?;
        let filter = [
            "filter", "add", "dev", dev, "egress", "pref", "1", "bpf", "bytecode", &bytecode,
        ];
        let action = ["action", "mirred", "egress", "redirect", "dev", sink];
        tc(&[&filter[..], &action[..]].concat())?;
        Ok(())
    }

    /// Turns a host's IP forwarding on or off.
    pub fn set_forwarding(&self, host: &str, on: bool) -> Result<(), LabError> {
        let ns = self.namespace_of_host(self.host(host)?);
        let mut cmd = sys::in_netns(&ns, "sysctl");
        cmd.args(["-q", "-w", &format!("net.ipv4.ip_forward={}", u8::from(on))]);
        sys::run(&mut cmd).map(|_| ())
    }

    fn flap_log(&self) -> PathBuf {
        self.run_dir().join("flap.jsonl")
    }

    /// Starts flapping the uplink of `[flap]`: up for `period - down`, then down for
    /// `down`, repeated. Restarts it if it runs already.
    pub fn flap_start(&mut self, period: Duration, down: Duration) -> Result<(), LabError> {
        if down.is_zero() || down >= period {
            return Err(LabError::Usage("flap: need 0 < down < period".into()));
        }
        self.flap_stop()?;
        let flap = self.desc.flap.clone();
        let ns = self.switch_namespace(flap.segment);
        let args = vec![
            "flap-run".to_string(),
            "--netns".into(),
            ns.clone(),
            "--port".into(),
            self.desc.hosts[flap.host].name.clone(),
            "--period-ms".into(),
            period.as_millis().to_string(),
            "--down-ms".into(),
            down.as_millis().to_string(),
            "--log".into(),
            self.flap_log().display().to_string(),
        ];
        fs::create_dir_all(self.run_dir()).map_err(|e| LabError::io("creating the run dir", e))?;
        let pid = self.spawn_helper(&ns, &args, "flap.log")?;
        let pid_path = self.run_dir().join("flap.pid");
        fs::write(&pid_path, format!("{pid}\n")).map_err(|e| LabError::io(format!("writing {}", pid_path.display()), e))
    }

    /// Stops flapping and leaves the uplink up.
    pub fn flap_stop(&mut self) -> Result<(), LabError> {
        let flap = self.desc.flap.clone();
        let ns = self.switch_namespace(flap.segment);
        let pids = sys::netns_pids(&ns);
        sys::kill_pids(&pids, Duration::from_secs(1));
        self.children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        let _ = fs::remove_file(self.run_dir().join("flap.pid"));
        let port = self.desc.hosts[flap.host].name.clone();
        let segment = self.desc.segments[flap.segment].name.clone();
        self.set_port(&segment, &port, true)
    }

    /// Whether the flapper runs.
    pub fn flapping(&self) -> bool {
        !sys::netns_pids(&self.switch_namespace(self.desc.flap.segment)).is_empty()
    }

    /// What the flapper did, in order.
    pub fn flap_events(&self) -> Vec<FlapEvent> {
        read_jsonl(&self.flap_log())
    }

    /// Who reached the canaries (and the leak listener), from the listeners' logs.
    pub fn contacts(&self) -> Vec<Contact> {
        let mut all = Vec::new();
        if let Ok(dir) = fs::read_dir(self.run_dir()) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("contacts-") && name.ends_with(".jsonl") {
                    all.extend(read_jsonl::<Contact>(&e.path()));
                }
            }
        }
        all.sort_by_key(|c| c.t_unix_ms);
        all
    }
}
