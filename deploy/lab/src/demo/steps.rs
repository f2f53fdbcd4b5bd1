//! The demo's steps, in order: the lab, the collector's units and users, the collector,
//! the agents, the wait, the table, the teardown.

use std::fs;
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use kaohe_collector::store::Store;

use super::process::{
    Binaries, Running, Stop, check_children, collector_cli, exited, log_tail, random_password, spawn_in, teardown,
};
use super::text::{LEAK_PROBES, deduction_line, mmss, quicken};
use super::{DemoError, DemoFailure, DemoOptions, interrupted};
use crate::{Description, FlapMode, Lab, Options, RootLink, sys};

/// Province and city above the lab's bureaus (the lab has only bureaus).
const PROVINCE: (&str, &str) = ("lab", "实验省司法厅");
const CITY: (&str, &str) = ("lab-city", "实验市司法局");

/// The demo while it runs. Field order is drop order: the services stop before the
/// lab is torn down.
pub(super) struct Demo {
    running: Running,
    pub(super) lab: Lab,
    pub(super) desc: Description,
    bins: Binaries,
    root: RootLink,
    stop: Stop,
    /// STATE/demo: everything the demo writes (the collector's data and config, the
    /// agents' configs), removed on the way out; the lab removes the rest.
    dir: PathBuf,
    /// STATE/demo/collector, the collector's data.
    pub(super) data: PathBuf,
    /// STATE/demo/collector.toml.
    config: PathBuf,
    /// STATE/run: the services' logs.
    run_dir: PathBuf,
    /// The collector's database, read for the progress lines, and since when.
    store: Option<(Store, Instant)>,
}

/// Logins the demo created, printed with the dashboard's URL.
pub(super) struct Logins {
    pub(super) admin_pw: String,
    staff: String,
    staff_unit: String,
    staff_pw: String,
}

fn io_failure(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> DemoError {
    let context = format!("{what} {}", path.display());
    move |e| DemoError::new(DemoFailure::Internal, format!("{context}: {e}"))
}

impl Demo {
    /// 1. The lab.
    pub(super) fn up(opts: &DemoOptions, bins: Binaries, stop: Stop) -> Result<Demo, DemoError> {
        println!("① 搭建实验网络 (building the lab, prefix {})…", opts.prefix);
        let mut lab_opts = Options::new(&opts.prefix, &bins.helper);
        lab_opts.verbose = false;
        lab_opts.flap = if opts.flap {
            FlapMode::Description
        } else {
            FlapMode::Off
        };
        let lab = Lab::up(lab_opts)?;
        let dir = lab.state_dir().join("demo");
        let running = Running {
            agents: Vec::new(),
            collector: None,
            dir: dir.clone(),
        };
        stop.check()?;
        let desc = lab.description().clone();
        let took = lab.timings().last().map_or(0, |(_, d)| d.as_millis());
        println!(
            "   {} 个命名空间, 用时 {took} ms; 三个司法局: {}",
            lab.facts().hosts.len() + desc.segments.len(),
            desc.bureaus
                .iter()
                .map(|b| format!("{} ({})", b.name, b.unit_id))
                .collect::<Vec<_>>()
                .join("、")
        );
        if lab.flapping() {
            println!(
                "   实验三区上行链路每 {} 秒中断 {} 秒 (bureau 3's uplink flaps)",
                desc.flap.period.as_secs(),
                desc.flap.down.as_secs()
            );
        }
        let root = lab.root_link().cloned().ok_or_else(|| {
            DemoError::new(
                DemoFailure::Internal,
                "实验网络没有到采集中心的链路 (the lab has no root link)",
            )
        })?;
        let run_dir = lab.state_dir().join("run");
        Ok(Demo {
            running,
            desc,
            bins,
            root,
            stop,
            data: dir.join("collector"),
            config: dir.join("collector.toml"),
            dir,
            run_dir,
            lab,
            store: None,
        })
    }

    fn cli(&self, args: &[&str]) -> Result<String, DemoError> {
        collector_cli(&self.bins, &self.config, args, &[])
    }

    /// 2. The collector's config, units, registries and users.
    pub(super) fn add_units_and_users(&mut self) -> Result<Logins, DemoError> {
        println!("② 启动采集中心 (starting the collector, SQLite)…");
        let _ = fs::remove_dir_all(&self.dir);
        fs::create_dir_all(&self.data).map_err(io_failure("无法创建 (cannot create)", &self.data))?;
        let desc = &self.desc;
        let config_text = format!(
            "# kaohe-lab demo\ndata_dir = {:?}\nlisten = \"0.0.0.0:{}\"\npublic_url = {:?}\ntls_names = [\"{}\"]\n",
            self.data.display().to_string(),
            desc.collector.port,
            desc.collector_url(),
            self.root.lab_addr
        );
        fs::write(&self.config, config_text).map_err(io_failure("无法写入 (cannot write)", &self.config))?;
        self.cli(&["unit", "add", PROVINCE.0, "--name", PROVINCE.1, "--kind", "province"])?;
        self.cli(&[
            "unit", "add", CITY.0, "--name", CITY.1, "--kind", "city", "--parent", PROVINCE.0,
        ])?;
        for b in &desc.bureaus {
            self.cli(&[
                "unit", "add", &b.unit_id, "--name", &b.name, "--kind", "county", "--parent", CITY.0,
            ])?;
            let registry = self.lab.registry_path(b.id);
            self.cli(&[
                "registry",
                "import",
                "--unit",
                &b.unit_id,
                registry.to_str().unwrap_or_default(),
            ])?;
            // The machine room's keeper (the agent host's registered user) maintains it and
            // answers for the private network.
            let keeper = desc.hosts[b.agent]
                .registry
                .as_ref()
                .map_or_else(|| "值班员".to_string(), |r| r.user.clone());
            self.cli(&[
                "unit",
                "set",
                &b.unit_id,
                "--maintainer",
                &keeper,
                "--responder",
                &keeper,
            ])?;
        }
        let admin_pw = random_password()?;
        collector_cli(
            &self.bins,
            &self.config,
            &[
                "user",
                "add",
                "admin",
                "--role",
                "province",
                "--display-name",
                "省厅管理员",
            ],
            &[("KAOHE_PASSWORD", &admin_pw)],
        )?;
        let first = desc
            .bureaus
            .first()
            .ok_or_else(|| DemoError::new(DemoFailure::Internal, "实验网络没有司法局 (the lab has no bureau)"))?;
        let staff = format!("b{}-staff", first.id);
        let staff_pw = random_password()?;
        collector_cli(
            &self.bins,
            &self.config,
            &[
                "user",
                "add",
                &staff,
                "--role",
                "unit",
                "--unit",
                &first.unit_id,
                "--display-name",
                &format!("{}人员", first.name),
            ],
            &[("KAOHE_PASSWORD", &staff_pw)],
        )?;
        self.stop.check()?;
        Ok(Logins {
            admin_pw,
            staff,
            staff_unit: first.name.clone(),
            staff_pw,
        })
    }

    /// The collector's server, ready when it answers on the root link (as the browser
    /// will reach it). Returns that address.
    pub(super) fn start_collector(&mut self) -> Result<SocketAddr, DemoError> {
        let coll_ns = self.lab.namespace(&self.desc.hosts[self.desc.collector.host].name)?;
        let coll_log = self.run_dir.join("collector.log");
        let config_arg = self.config.display().to_string();
        self.running.collector = Some(spawn_in(
            &coll_ns,
            &self.bins.collector,
            &["serve", "--config", &config_arg],
            &coll_log,
        )?);
        let upstream = SocketAddr::V4(SocketAddrV4::new(self.root.lab_addr, self.desc.collector.port));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.stop.check()?;
            if let Some(status) = self.running.collector.as_mut().and_then(exited) {
                return Err(DemoError::new(
                    DemoFailure::Unavailable,
                    format!(
                        "采集中心启动失败 (the collector exited, {status}); {}:\n{}",
                        coll_log.display(),
                        log_tail(&coll_log, 20)
                    ),
                ));
            }
            if self.data.join("tls/ca.pem").exists()
                && TcpStream::connect_timeout(&upstream, Duration::from_millis(500)).is_ok()
            {
                return Ok(upstream);
            }
            if Instant::now() > deadline {
                return Err(DemoError::new(
                    DemoFailure::Unavailable,
                    format!(
                        "采集中心 30 秒内未就绪 (the collector did not answer within 30 s); {}:\n{}",
                        coll_log.display(),
                        log_tail(&coll_log, 20)
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// 3. Agents: a one-time token each, enrolled, then the daemon on the quick schedule.
    pub(super) fn start_agents(&mut self) -> Result<(), DemoError> {
        println!("③ 注册并启动代理, 加快的日程 (enrolling the agents; quickened schedule)…");
        for b in &self.desc.bureaus {
            self.stop.check()?;
            let token = self
                .cli(&["token", "create", "--unit", &b.unit_id, "--hours", "1"])?
                .trim()
                .to_string();
            let generated = fs::read_to_string(self.lab.agent_config_path(b.id)).map_err(|e| {
                DemoError::new(
                    DemoFailure::Internal,
                    format!("代理配置 (agent config) of bureau {}: {e}", b.id),
                )
            })?;
            let agent_config = self.dir.join(format!("b{}-agent.toml", b.id));
            fs::write(&agent_config, quicken(&generated)? + LEAK_PROBES)
                .map_err(|e| DemoError::new(DemoFailure::Internal, format!("{}: {e}", agent_config.display())))?;
            let ns = self.lab.namespace(&self.desc.hosts[b.agent].name)?;
            let out = sys::in_netns(&ns, &self.bins.agent)
                .args(["enroll", &token, "--config"])
                .arg(&agent_config)
                .stdin(Stdio::null())
                .process_group(0)
                .output()
                .map_err(|e| DemoError::new(DemoFailure::Unavailable, format!("kaohe-agent enroll: {e}")))?;
            if !out.status.success() {
                return Err(DemoError::new(
                    DemoFailure::Unavailable,
                    format!(
                        "{} 的代理注册失败 (enrolment failed, {}): {}",
                        b.name,
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                ));
            }
            let log = self.run_dir.join(format!("agent-b{}.log", b.id));
            let cfg = agent_config.display().to_string();
            self.running
                .agents
                .push(spawn_in(&ns, &self.bins.agent, &["run", "--config", &cfg], &log)?);
            println!("   {} ({}): {ns}", b.name, b.unit_id);
        }
        Ok(())
    }

    pub(super) fn print_logins(&self, url: &str, logins: &Logins, fingerprint: &str) {
        println!();
        println!("管理平台 (dashboard): {url}  用户 admin  密码 {}", logins.admin_pw);
        println!(
            "  单位人员 (unit staff of {}): 用户 {}  密码 {}",
            logins.staff_unit, logins.staff, logins.staff_pw
        );
        println!("  CA 指纹 (fingerprint): {fingerprint}");
        println!(
            "  证书由采集中心的私有 CA 签发, 浏览器会提示不受信任: 核对指纹后继续, 或导入 {}",
            self.data.join("tls/ca.pem").display()
        );
        println!(
            "  (the certificate comes from the collector's private CA: check the fingerprint, or trust that file)"
        );
        println!(
            "  也可直接访问 (also on the lab's root link): {}/",
            self.root.collector_url
        );
        println!();
    }

    /// Reports received so far, per bureau, on one line.
    fn progress(&mut self, rt: &tokio::runtime::Runtime) -> Result<(), DemoError> {
        check_children(&mut self.running, &self.run_dir)?;
        let Some((store, since)) = &self.store else {
            return Ok(());
        };
        let mut parts = Vec::new();
        for b in &self.desc.bureaus {
            let n = rt.block_on(store.report_count(&b.unit_id)).unwrap_or(-1);
            parts.push(format!("{} {n}", b.name));
        }
        println!(
            "   [{}] 已收到报告 (reports received): {}",
            mmss(since.elapsed()),
            parts.join(" · ")
        );
        Ok(())
    }

    /// 5. Wait, showing progress.
    pub(super) fn wait_for_reports(
        &mut self,
        rt: &tokio::runtime::Runtime,
        opts: &DemoOptions,
    ) -> Result<(), DemoError> {
        let store_url = format!("sqlite://{}", self.data.join("kaohe.db").display());
        let store = rt
            .block_on(Store::open(&store_url))
            .map_err(|e| DemoError::new(DemoFailure::Unavailable, format!("数据库 (database) {store_url}: {e}")))?;
        let wait_start = Instant::now();
        self.store = Some((store, wait_start));
        println!(
            "④ 等待代理上报 {} (waiting for reports; the score table follows)…",
            mmss(opts.wait)
        );
        let tick = Duration::from_secs(10);
        while wait_start.elapsed() < opts.wait {
            let left = opts.wait.saturating_sub(wait_start.elapsed());
            if !self.stop.sleep(left.min(tick)) {
                return Err(interrupted());
            }
            self.progress(rt)?;
        }
        Ok(())
    }

    /// 6. The table.
    pub(super) fn print_table(&self) -> Result<(), DemoError> {
        println!();
        println!("⑤ 全省评分表 (province score table):");
        println!();
        print!("{}", self.cli(&["rank"])?);
        println!();
        println!("各单位扣分 (deductions, sections 二 and 三):");
        for b in &self.desc.bureaus {
            let json = self.cli(&["score", "--db-unit", &b.unit_id, "--json"])?;
            println!("  {}", deduction_line(&b.name, &b.unit_id, &json));
        }
        Ok(())
    }

    pub(super) fn keep_running(&mut self, rt: &tokio::runtime::Runtime) -> Result<(), DemoError> {
        println!("演示继续运行: 代理持续上报, 管理平台保持可用。按 Ctrl-C 结束并清理。");
        println!("(still running: agents keep reporting, the dashboard stays up; Ctrl-C tears everything down)");
        let mut last = Instant::now();
        while self.stop.sleep(Duration::from_secs(1)) {
            check_children(&mut self.running, &self.run_dir)?;
            if last.elapsed() >= Duration::from_secs(60) {
                last = Instant::now();
                self.progress(rt)?;
            }
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Result<(), DemoError> {
        println!("正在清理 (tearing down)…");
        let t = Instant::now();
        let left = teardown(self.running, self.lab)?;
        if left.is_empty() {
            println!(
                "已清理, 无残留 (torn down in {} ms: no namespace, link or process left)",
                t.elapsed().as_millis()
            );
            Ok(())
        } else {
            Err(DemoError::new(
                DemoFailure::Internal,
                format!("清理后仍有残留 (still there after teardown): {}", left.join(", ")),
            ))
        }
    }
}
