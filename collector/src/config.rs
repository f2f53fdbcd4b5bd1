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
    /// Connections open at once (agents and browsers); kept below the file-descriptor
    /// limit. Default 4096.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// TLS handshakes in progress at once. Default 256.
    #[serde(default = "default_max_tls_handshakes")]
    pub max_tls_handshakes: usize,
    /// Seconds a client has to finish its TLS handshake. Default 10.
    #[serde(default = "default_ten")]
    pub tls_handshake_timeout_secs: u64,
    /// Seconds a client has to send a request's headers, counted from when the connection
    /// is ready for them; also how long an idle keep-alive connection stays open. Default 10.
    #[serde(default = "default_ten")]
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a whole request body. Default 30.
    #[serde(default = "default_thirty")]
    pub body_timeout_secs: u64,
    /// Seconds a response write may make no progress (a client that stops reading).
    /// Default 30.
    #[serde(default = "default_thirty")]
    pub write_timeout_secs: u64,
    /// MiB of request bodies held at once, over all connections. Default 64.
    #[serde(default = "default_inflight")]
    pub max_inflight_body_mib: usize,
    /// Bearer token `GET /metrics` requires. Default: none, and then `/metrics` answers only
    /// requests from the collector's own host (loopback).
    #[serde(default)]
    pub metrics_token: Option<String>,
}

fn default_max_connections() -> usize {
    4096
}

fn default_max_tls_handshakes() -> usize {
    256
}

fn default_ten() -> u64 {
    10
}

fn default_thirty() -> u64 {
    30
}

fn default_inflight() -> usize {
    64
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
            max_connections: default_max_connections(),
            max_tls_handshakes: default_max_tls_handshakes(),
            tls_handshake_timeout_secs: default_ten(),
            header_timeout_secs: default_ten(),
            body_timeout_secs: default_thirty(),
            write_timeout_secs: default_thirty(),
            max_inflight_body_mib: default_inflight(),
            metrics_token: None,
        }
    }
}

impl CollectorConfig {
    /// Reads a config file; a missing default file means defaults.
    pub fn load(path: Option<&Path>) -> Result<CollectorConfig, ConfigError> {
        let Some(path) = path else {
            return Ok(CollectorConfig::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: CollectorConfig = toml::from_str(&text).map_err(|e| {
            // The same locator as the rubric's and the agent's config files.
            let at = kaohe_rubric::toml_error::locate(&text, &e);
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line: at.line,
                message: at.message,
            }
        })?;
        config.check().map_err(|source| ConfigError::InFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        Ok(config)
    }

    /// Checks the ranges of the numeric options (also after command-line overrides).
    pub fn check(&self) -> Result<(), ConfigError> {
        let range = |key: &'static str, value: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange { key, value, lo, hi })
            }
        };
        range("max_body_kib", self.max_body_kib as u64, 1, 65_536)?;
        range(
            "agent_reports_per_minute",
            u64::from(self.agent_reports_per_minute),
            1,
            u64::from(u32::MAX),
        )?;
        range("session_hours", u64::from(self.session_hours), 1, 168)?;
        range("max_connections", self.max_connections as u64, 16, 1_000_000)?;
        range("max_tls_handshakes", self.max_tls_handshakes as u64, 1, 100_000)?;
        range("tls_handshake_timeout_secs", self.tls_handshake_timeout_secs, 1, 300)?;
        range("header_timeout_secs", self.header_timeout_secs, 1, 300)?;
        range("body_timeout_secs", self.body_timeout_secs, 1, 3600)?;
        range("write_timeout_secs", self.write_timeout_secs, 1, 3600)?;
        range("max_inflight_body_mib", self.max_inflight_body_mib as u64, 1, 65_536)?;
        if self.max_inflight_body_mib * 1024 < self.max_body_kib {
            return Err(ConfigError::BudgetBelowBody {
                inflight_mib: self.max_inflight_body_mib,
                body_kib: self.max_body_kib,
            });
        }
        if let Some(u) = &self.webhook_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(ConfigError::WebhookUrl);
        }
        if let Some(t) = &self.metrics_token
            && t.trim().len() < 16
        {
            return Err(ConfigError::MetricsToken);
        }
        Ok(())
    }

    /// The connection limits of the listener.
    pub fn limits(&self) -> crate::conns::Limits {
        use std::time::Duration;
        crate::conns::Limits {
            max_connections: self.max_connections,
            max_handshakes: self.max_tls_handshakes,
            handshake_timeout: Duration::from_secs(self.tls_handshake_timeout_secs),
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            write_timeout: Duration::from_secs(self.write_timeout_secs),
        }
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

/// Why a configuration cannot be used: the file, the line and the option.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("无法读取配置 {} (cannot read): {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("配置文件 {}{}: {message}", path.display(), line_text(*line))]
    Syntax {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("配置文件 {}: {source}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<ConfigError>,
    },
    #[error("{key} = {value} 超出范围, 应在 {lo} 到 {hi} 之间 ({key} must be {lo}..={hi})")]
    OutOfRange {
        key: &'static str,
        value: u64,
        lo: u64,
        hi: u64,
    },
    #[error(
        "max_inflight_body_mib ({inflight_mib} MiB) 小于单个报告上限 max_body_kib ({body_kib} KiB) (must hold at least one largest body)"
    )]
    BudgetBelowBody { inflight_mib: usize, body_kib: usize },
    #[error("webhook_url 应以 https:// 或 http:// 开头 (webhook_url must be an http(s) URL)")]
    WebhookUrl,
    #[error("metrics_token 至少 16 个字符 (metrics_token: at least 16 characters)")]
    MetricsToken,
}

fn line_text(line: Option<usize>) -> String {
    line.map(|l| format!(" 第 {l} 行 (line {l})")).unwrap_or_default()
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
        let e = CollectorConfig::load(Some(&path)).expect_err("unknown key").to_string();
        assert!(e.contains("第 2 行") && e.contains("webhook"), "{e}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_body_limit_of_zero_is_refused_naming_the_option() {
        let path = std::env::temp_dir().join(format!("kaohe-config-zero-{}.toml", std::process::id()));
        std::fs::write(&path, "max_body_kib = 0\n").expect("write");
        let e = CollectorConfig::load(Some(&path)).expect_err("zero").to_string();
        assert!(e.contains("max_body_kib") && e.contains("1..=65536"), "{e}");
        std::fs::write(&path, "max_body_kib = 8192\nmax_inflight_body_mib = 4\n").expect("write");
        let e = CollectorConfig::load(Some(&path))
            .expect_err("budget below one body")
            .to_string();
        assert!(e.contains("max_inflight_body_mib"), "{e}");
        let _ = std::fs::remove_file(&path);
    }
}
