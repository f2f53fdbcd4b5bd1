//! [`Lab`]: a lab that is up, built by [`Lab::up`] or found by [`Lab::attach`], its
//! lifecycle and what it knows about itself. Building it is in `setup.rs`, using it in
//! `ops.rs`, removing it in `cleanup.rs`.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{
    Description, Facts, FlapMode, LabError, Options, RootLink, check_prefix, cleanup, generate, is_root, read_run_info,
    sys,
};

/// A lab that is up. Dropping a lab that [`Lab::up`] built tears it down.
#[derive(Debug)]
pub struct Lab {
    pub(crate) desc: Description,
    pub(crate) facts: Facts,
    pub(crate) prefix: String,
    pub(crate) description_path: PathBuf,
    pub(crate) state_dir: PathBuf,
    pub(crate) helper: PathBuf,
    pub(crate) root_link: Option<RootLink>,
    pub(crate) timings: Vec<(String, Duration)>,
    pub(crate) children: Vec<Child>,
    pub(crate) verbose: bool,
    /// Tear down on drop.
    pub(crate) owned: bool,
}

pub(crate) fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

impl Lab {
    /// The lab `opts` describe, with nothing built or found yet.
    fn new(opts: &Options, root_link: Option<RootLink>, owned: bool) -> Result<Lab, LabError> {
        check_prefix(&opts.prefix)?;
        let desc = Description::load(&opts.description)?;
        Ok(Lab {
            facts: Facts::derive(&desc),
            desc,
            prefix: opts.prefix.clone(),
            description_path: opts.description.clone(),
            state_dir: opts.state_dir.clone(),
            helper: opts.helper.clone(),
            root_link,
            timings: Vec::new(),
            children: Vec::new(),
            verbose: opts.verbose,
            owned,
        })
    }

    /// Builds the lab (after removing a stale one with the same prefix).
    pub fn up(opts: Options) -> Result<Lab, LabError> {
        check_prefix(&opts.prefix)?;
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let mut lab = Lab::new(&opts, None, true)?;
        let start = Instant::now();
        lab.step("clean", |lab| cleanup(&lab.prefix, &lab.state_dir).map(|_| ()))?;
        lab.step("plan", Lab::claim_root_link)?;
        lab.step("namespaces", Lab::add_namespaces)?;
        lab.step("sysctl", Lab::set_sysctls)?;
        lab.step("links", Lab::add_links)?;
        lab.step("switches", Lab::configure_switches)?;
        lab.step("hosts", Lab::configure_hosts)?;
        lab.step("listeners", Lab::start_listeners)?;
        lab.step("files", Lab::write_files)?;
        let flap = match opts.flap {
            FlapMode::Off => None,
            FlapMode::Description => lab
                .desc
                .flap
                .autostart
                .then_some((lab.desc.flap.period, lab.desc.flap.down)),
            FlapMode::Schedule { period, down } => Some((period, down)),
        };
        if let Some((period, down)) = flap {
            lab.step("flap", |lab| lab.flap_start(period, down))?;
        }
        let total = start.elapsed();
        lab.timings.push(("total".into(), total));
        if lab.verbose {
            eprintln!("lab {}: up in {} ms", lab.prefix, total.as_millis());
        }
        Ok(lab)
    }

    /// A lab that is already up (built by another process, e.g. `lab up`). Dropping it
    /// leaves the lab running.
    pub fn attach(opts: Options) -> Result<Lab, LabError> {
        let info = read_run_info(&opts.state_dir).ok();
        let lab = Lab::new(&opts, info.map(|i| i.root_link), false)?;
        let first = lab.namespace_of_host(0);
        if !sys::netns_list()?.contains(&first) {
            return Err(LabError::State(format!(
                "no lab with prefix {:?} is up (no namespace {first})",
                lab.prefix
            )));
        }
        Ok(lab)
    }

    /// Leaves the lab running when this value is dropped (the CLI's `up`).
    pub fn detach(mut self) {
        self.owned = false;
        // The children go on without us; std does not kill them on drop.
        self.children.clear();
    }

    /// Tears the lab down: its processes, namespaces, root link, slot and state files.
    /// Returns how long it took.
    pub fn down(mut self) -> Result<Duration, LabError> {
        let start = Instant::now();
        self.owned = false;
        let result = cleanup(&self.prefix, &self.state_dir);
        self.reap();
        result.map(|_| start.elapsed())
    }

    pub(crate) fn reap(&mut self) {
        for mut c in self.children.drain(..) {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }

    pub(crate) fn step(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Lab) -> Result<(), LabError>,
    ) -> Result<(), LabError> {
        let start = Instant::now();
        f(self)?;
        let took = start.elapsed();
        if self.verbose {
            eprintln!(
                "lab {}: {name:<10} {:>6.1} ms",
                self.prefix,
                took.as_secs_f64() * 1000.0
            );
        }
        self.timings.push((name.to_string(), took));
        Ok(())
    }
}

impl Lab {
    // -------------------------------------------------------------- accessors

    pub fn description(&self) -> &Description {
        &self.desc
    }

    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Step name → time, in order, ending with "total" (for a lab built by `up`).
    pub fn timings(&self) -> &[(String, Duration)] {
        &self.timings
    }

    pub fn root_link(&self) -> Option<&RootLink> {
        self.root_link.as_ref()
    }

    pub(crate) fn namespace_of_host(&self, i: usize) -> String {
        format!("{}-{}", self.prefix, self.desc.hosts[i].name)
    }

    pub(crate) fn switch_namespace(&self, segment: usize) -> String {
        format!("{}-sw-{}", self.prefix, self.desc.segments[segment].name)
    }

    /// The namespace of a host (`b1-pc1`) or switch (`sw-b1-lan`).
    pub fn namespace(&self, host: &str) -> Result<String, LabError> {
        if let Some(i) = self.desc.host_index(host) {
            return Ok(self.namespace_of_host(i));
        }
        if let Some(s) = host.strip_prefix("sw-").and_then(|s| self.desc.segment_index(s)) {
            return Ok(self.switch_namespace(s));
        }
        Err(LabError::Usage(format!(
            "no host {host:?} in the lab (switches are sw-SEGMENT)"
        )))
    }

    pub(crate) fn host(&self, name: &str) -> Result<usize, LabError> {
        self.desc
            .host_index(name)
            .ok_or_else(|| LabError::Usage(format!("no host {name:?} in the lab")))
    }

    pub(crate) fn run_dir(&self) -> PathBuf {
        self.state_dir.join("run")
    }

    /// `STATE/bN/registry.csv`.
    pub fn registry_path(&self, bureau: u8) -> PathBuf {
        generate::bureau_dir(&self.state_dir, bureau).join("registry.csv")
    }

    /// `STATE/bN/agent.toml`.
    pub fn agent_config_path(&self, bureau: u8) -> PathBuf {
        generate::bureau_dir(&self.state_dir, bureau).join("agent.toml")
    }

    /// `STATE/expected.json`.
    pub fn expected_path(&self) -> PathBuf {
        self.state_dir.join("expected.json")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.owned {
            if let Err(e) = cleanup(&self.prefix, &self.state_dir) {
                eprintln!("lab {}: tearing down failed: {e}", self.prefix);
            }
            self.reap();
        }
    }
}
