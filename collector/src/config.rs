//! The collector's configuration (`collector.toml`). Every option has a default, so a
//! collector runs with `--data-dir` alone; `deploy/collector.example.toml` documents them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Database, TLS material, state. Default `./kaohe-data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where to listen (TLS only). Default `0.0.0.0:8443`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The URL agents use to reach this collector; goes into enrolment tokens.
    /// Default `https://127.0.0.1:PORT`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// `sqlite://PATH` or `postgres://…`. Default: SQLite in the data directory.
    #[serde(default)]
    pub database_url: Option<String>,
    /// Extra names (DNS or IP) for the generated server certificate.
    #[serde(default)]
    pub tls_names: Vec<String>,
    /// Largest report body accepted, KiB. Default 4096.
    #[serde(default = "default_max_body_kib")]
    pub max_body_kib: usize,
    /// Reports one agent may send per minute before it gets 429. Default 600.
    #[serde(default = "default_rate")]
    pub agent_reports_per_minute: u32,
    /// The rubric file to score by. Default: the embedded rubric (ningxia-2026).
    #[serde(default)]
    pub rubric: Option<PathBuf>,
    /// Alerts (bridging hosts, isolation breaches) are POSTed as JSON to this URL when
    /// first seen. Default: none.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// How long a dashboard login lasts without activity, hours. Default 12.
    #[serde(default = "default_session_hours")]
    pub session_hours: u32,
}

fn default_session_hours() -> u32 {
    12
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("kaohe-data")
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}

fn default_max_body_kib() -> usize {
    4096
}

fn default_rate() -> u32 {
    600
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            data_dir: default_data_dir(),
            listen: default_listen(),
            public_url: None,
            database_url: None,
            tls_names: Vec::new(),
            max_body_kib: default_max_body_kib(),
            agent_reports_per_minute: default_rate(),
            rubric: None,
            webhook_url: None,
            session_hours: default_session_hours(),
        }
    }
}

impl CollectorConfig {
    /// Reads a config file; a missing default file means defaults.
    pub fn load(path: Option<&Path>) -> Result<CollectorConfig, String> {
        let Some(path) = path else {
            return Ok(CollectorConfig::default());
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("无法读取配置 {} (cannot read): {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            format!(
                "配置文件 {}{}: {}",
                path.display(),
                line.map(|l| format!(" 第 {l} 行 (line {l})")).unwrap_or_default(),
                e.message().trim()
            )
        })
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("kaohe.db").display()))
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("https://127.0.0.1:{}", self.listen.port()))
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.data_dir.join("tls")
    }

    /// Names for the generated certificate: the public URL's host and `tls_names`.
    pub fn certificate_names(&self) -> Vec<String> {
        let mut names = self.tls_names.clone();
        let url = self.public_url();
        let host = url
            .trim_start_matches("https://")
            .split(['/', '?'])
            .next()
            .unwrap_or("")
            .to_string();
        let host = match host.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h.trim_matches(['[', ']']).to_string(),
            _ => host,
        };
        if !host.is_empty() && !names.contains(&host) {
            names.push(host);
        }
        names
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_documented_example_config_loads_and_shows_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/collector.example.toml");
        let example = CollectorConfig::load(Some(&path)).expect("the example parses");
        assert_eq!(example, CollectorConfig::default());
    }

    #[test]
    fn an_unknown_option_is_named_with_its_line() {
        let path = std::env::temp_dir().join(format!("kaohe-config-{}.toml", std::process::id()));
        std::fs::write(&path, "listen = \"127.0.0.1:8443\"\nwebhook = \"x\"\n").expect("write");
        let e = CollectorConfig::load(Some(&path)).expect_err("unknown key");
        assert!(e.contains("第 2 行") && e.contains("webhook"), "{e}");
        let _ = std::fs::remove_file(&path);
    }
}
