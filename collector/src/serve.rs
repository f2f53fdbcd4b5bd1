//! `kaohe-collector serve`: TLS only, on the configured address, until SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use crate::config::CollectorConfig;
use crate::ingest::{AppState, router};
use crate::store::Store;
use crate::tls::{self, TlsFiles};

/// Prepares the data directory: TLS material (created on first start) and the database.
/// Returns the store and the CA fingerprint.
pub async fn prepare(config: &CollectorConfig) -> Result<(Store, String), String> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "无法创建数据目录 {} (cannot create the data directory): {e}",
            config.data_dir.display()
        )
    })?;
    let made = tls::ensure(&config.tls_dir(), &config.certificate_names())?;
    let fingerprint = tls::ca_fingerprint(&TlsFiles::in_dir(&config.tls_dir()))?;
    match made {
        tls::Made::Everything => eprintln!(
            "已生成采集中心私有 CA 与服务器证书 (created a private CA and server certificate) in {}\nCA 指纹 (fingerprint): {fingerprint}",
            config.tls_dir().display()
        ),
        tls::Made::ServerCertificate => eprintln!(
            "已用原 CA 为新地址重新签发服务器证书 (re-issued the server certificate for new names): {}",
            config.certificate_names().join(", ")
        ),
        tls::Made::Nothing => {}
    }
    let rubric = crate::offline::load_rubric(config.rubric.as_deref()).map_err(|e| e.to_string())?;
    let store = Store::open_with(&config.database_url(), rubric.timezone)
        .await
        .map_err(|e| e.to_string())?;
    Ok((store, fingerprint))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    config: CollectorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (store, fingerprint) = prepare(&config).await?;
    let files = TlsFiles::in_dir(&config.tls_dir());
    let ca_pem = std::fs::read_to_string(&files.ca_cert).map_err(|e| format!("{}: {e}", files.ca_cert.display()))?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_chain_file(&files.chain, &files.key)
        .await
        .map_err(|e| format!("无法加载证书 (cannot load the certificate): {e}"))?;
    tokio::spawn(crate::rollup::month_builder(store.clone()));
    if let Some(url) = config.webhook_url.clone() {
        tokio::spawn(crate::alerts::webhook_loop(store.clone(), url));
    }
    // The dashboard and its JSON API beside the agents' API.
    let rubric = crate::offline::load_rubric(config.rubric.as_deref()).map_err(|e| e.to_string())?;
    let web = crate::web::router(store.clone(), rubric, &config);
    let state = Arc::new(AppState::new(store, ca_pem, config.agent_reports_per_minute));
    let app = router(state, config.max_body_kib * 1024).merge(web);
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    println!(
        "采集中心已启动 (collector listening): https://{}  对外地址 (public URL): {}  CA 指纹: {fingerprint}",
        config.listen,
        config.public_url()
    );
    axum_server::bind_rustls(config.listen, tls)
        .handle(handle)
        .serve(app.into_make_service())
        .await
        .map_err(|e| format!("无法在 {} 上监听 (cannot listen): {e}", config.listen))
}
