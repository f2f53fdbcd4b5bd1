//! `kaohe-collector serve`: TLS only, on the configured address, until SIGTERM or Ctrl-C.
//!
//! Agents and the dashboard share one listener (one address, one certificate, one CA that
//! agents pin and browsers are told to trust, one firewall rule per bureau): the limits of
//! [`crate::conns`] and [`crate::bodies`] bound both alike, and the agents' API checks a
//! credential before it reads a body, so dashboard traffic and agent traffic cannot starve
//! each other of more than a connection slot each.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::CollectorConfig;
use crate::ingest::{AppState, router};
use crate::store::Store;
use crate::tls::{self, TlsFiles};

/// Why the collector could not prepare its data directory or start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("无法创建或保护目录 {} (cannot create the directory or make it private): {source}", path.display())]
    PrivateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Acceptor(#[from] tls::AcceptorError),
    #[error("{0}")]
    Rubric(#[from] crate::offline::InputError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("无法在 {addr} 上监听 (cannot listen): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Prepares the data directory: TLS material (created on first start) and the database.
/// Returns the store and the CA fingerprint. The data directory is made private (0700)
/// and an SQLite database file (0600): they hold password hashes and the CA key.
pub async fn prepare(config: &CollectorConfig) -> Result<(Store, String), ServeError> {
    prepare_with(config, false).await
}

/// As [`prepare`]; with `log`, what it made goes to the log instead of standard error.
async fn prepare_with(config: &CollectorConfig, log: bool) -> Result<(Store, String), ServeError> {
    let say = |m: String| {
        if log {
            tracing::info!("{m}");
        } else {
            eprintln!("{m}");
        }
    };
    create_private_dir(&config.data_dir)?;
    let made = tls::ensure(&config.tls_dir(), &config.certificate_names())?;
    // The CA key is in it.
    create_private_dir(&config.tls_dir())?;
    let fingerprint = tls::ca_fingerprint(&TlsFiles::in_dir(&config.tls_dir()))?;
    match made {
        tls::Made::Everything => say(format!(
            "已生成采集中心私有 CA 与服务器证书 (created a private CA and server certificate) in {}; CA 指纹 (fingerprint): {fingerprint}",
            config.tls_dir().display()
        )),
        tls::Made::ServerCertificate => say(format!(
            "已用原 CA 为新地址重新签发服务器证书 (re-issued the server certificate for new names): {}",
            config.certificate_names().join(", ")
        )),
        tls::Made::Nothing => {}
    }
    let rubric = crate::offline::load_rubric(config.rubric.as_deref())?;
    let url = config.database_url();
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let path = path.split('?').next().unwrap_or(path);
        private_file(Path::new(path))?;
    }
    let store = Store::open_with(&url, rubric.timezone).await?;
    Ok((store, fingerprint))
}

/// Creates `dir` if needed and sets it to 0700 (the data directory, and its `tls/`).
fn create_private_dir(dir: &Path) -> Result<(), ServeError> {
    let fail = |source| ServeError::PrivateDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    Ok(())
}

/// Creates the SQLite file empty with mode 0600 if it does not exist (SQLite gives its
/// `-wal` and `-shm` files the same mode), and sets an existing one and those to 0600.
fn private_file(path: &Path) -> Result<(), ServeError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let fail = |source| ServeError::File {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(fail)?;
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
            }
        }
    }
    Ok(())
}

/// Serves until `shutdown` resolves.
///
/// It logs what it listens on, its database kind and CA fingerprint; `banner` also prints
/// one line to standard output for a person starting it by hand.
pub async fn serve(
    config: CollectorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with(config, shutdown, true).await
}

/// As [`serve`], with or without the line on standard output.
pub async fn serve_with(
    config: CollectorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    banner: bool,
) -> Result<(), ServeError> {
    config.check()?;
    // The one crypto provider of the build, for the webhook's HTTPS client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (store, fingerprint) = prepare_with(&config, true).await?;
    let files = TlsFiles::in_dir(&config.tls_dir());
    let ca_pem = std::fs::read_to_string(&files.ca_cert).map_err(|source| ServeError::File {
        path: files.ca_cert.clone(),
        source,
    })?;
    let acceptor = tls::tls_acceptor(&files.chain, &files.key)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let (max_connections, nofile) = crate::conns::effective_max_connections(config.max_connections);
    if max_connections < config.max_connections {
        tracing::warn!(
            configured = config.max_connections,
            max_connections,
            nofile,
            "文件描述符上限较低, 已降低最大连接数 (the file-descriptor limit lowers max_connections)"
        );
    }
    let limits = crate::conns::Limits {
        max_connections,
        ..config.limits()
    };
    let tracker = crate::conns::Tracker::new(limits);
    tokio::spawn(crate::rollup::month_builder(store.clone()));
    if let Some(url) = config.webhook_url.clone() {
        tokio::spawn(crate::alerts::webhook_loop(store.clone(), url));
    }
    let budgets = crate::bodies::Budgets::new(
        config.max_inflight_body_mib,
        Duration::from_secs(config.body_timeout_secs),
    );
    // The dashboard and its JSON API beside the agents' API.
    let rubric = crate::offline::load_rubric(config.rubric.as_deref())?;
    let web = crate::web::router(store.clone(), rubric, &config, budgets.clone());
    let backend = store.backend();
    let state = Arc::new(AppState::new(store, ca_pem, &config, budgets, tracker.clone()));
    let app = harden(router(state).merge(web));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("正在停止 (shutting down): requests under way get up to 10 s");
        let _ = stop.send(true);
    });
    tracing::info!(
        listen = %config.listen,
        public_url = %config.public_url(),
        database = ?backend,
        ca_fingerprint = %fingerprint,
        max_connections,
        max_tls_handshakes = limits.max_handshakes,
        max_body_kib = config.max_body_kib,
        max_inflight_body_mib = config.max_inflight_body_mib,
        "采集中心已启动 (collector listening)"
    );
    if banner {
        println!(
            "采集中心已启动 (collector listening): https://{}  对外地址 (public URL): {}  CA 指纹: {fingerprint}",
            config.listen,
            config.public_url()
        );
    }
    crate::conns::serve(listener, acceptor, app, tracker, stopped).await;
    Ok(())
}

/// What every response gets: HSTS (the collector is TLS only), and on the JSON APIs an error
/// body in JSON whatever produced the error (a body limit, a bad form, an unknown path).
pub fn harden(app: Router) -> Router {
    app.layer(axum::middleware::from_fn(harden_response))
}

async fn harden_response(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let path = req.uri().path().to_string();
    let peer = crate::conns::peer(req.extensions());
    let had_body = crate::bodies::declared_length(req.headers()).is_some_and(|n| n > 0)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let mut resp = next.run(req).await;
    // A refused request's body may be unread: close, so the client does not send its next
    // request on a connection the server is about to drop.
    if had_body && (resp.status().is_client_error() || resp.status().is_server_error()) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(f) = resp.extensions().get::<crate::web::Failure>() {
        tracing::error!(
            %path,
            peer = %peer.map_or_else(|| "-".into(), |p| p.to_string()),
            user = f.user.as_deref().unwrap_or("-"),
            status = resp.status().as_u16(),
            error = %f.error,
            "管理平台请求失败 (dashboard request failed)"
        );
    }
    resp.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if api && (status.is_client_error() || status.is_server_error()) && !is_json {
        let text = axum::body::to_bytes(std::mem::take(resp.body_mut()), 64 * 1024)
            .await
            .unwrap_or_default();
        let detail = String::from_utf8_lossy(&text).trim().to_string();
        let zh = match status.as_u16() {
            404 => "没有这个地址",
            405 => "不支持该请求方法",
            413 => "请求体过大",
            415 => "请求格式不支持",
            400 | 422 => "请求内容错误",
            _ => "请求失败",
        };
        let en = if detail.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            detail
        };
        let body = serde_json::json!({ "error": format!("{zh} ({en})") }).to_string();
        let mut json = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        for (k, v) in resp.headers() {
            if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
                json.headers_mut().insert(k.clone(), v.clone());
            }
        }
        return json;
    }
    resp
}
