//! `kuryr serve`: load the config, reach Neutron, listen for Docker.

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use super::gc;
use crate::activation::Inherited;
use crate::config::{parse_listen_uri, Config};
use crate::driver::{Driver, DriverError};
use crate::neutron::Neutron;
use crate::server;
use crate::tls;
use std::path::PathBuf;

pub fn init_logging(format: &str, debug: bool) {
    let default = if debug { "kuryr=debug,info" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

pub fn run(config_file: &Path, discovery_dir: Option<&Path>, log_format: &str) -> Result<()> {
    // First: the variables go before anything else could read them or start a child.
    let inherited = crate::activation::Inherited::take();
    let loaded = Config::load_with_env(config_file)?;
    init_logging(log_format, loaded.config.debug);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let mut cfg = loaded.config;
    let source = super::resolve_host(&mut cfg);
    tracing::info!(host = %cfg.host, from = ?source, "binding host");
    let cfg = Arc::new(cfg);
    // Certificate problems are configuration errors: fail before touching Neutron.
    let tls = if cfg.enable_ssl {
        if !cfg.tcp_configured {
            bail!(
                "{}: enable_ssl needs kuryr_uri (TLS is for the TCP listener)",
                config_file.display()
            );
        }
        Some(
            tls::server_config(&cfg.ssl_cert_file, &cfg.ssl_key_file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", config_file.display()))?,
        )
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(
        cfg,
        tls,
        discovery_dir.map(Path::to_path_buf),
        inherited,
    ))
}

/// Connects to Neutron until it answers (it may be starting too, e.g. at boot after
/// dockerd), then hands the driver to `service`; meanwhile calls that need Neutron get
/// an `Err` saying why. Other errors (a configuration Neutron cannot serve) end kuryr.
async fn connect(cfg: Arc<Config>, service: Arc<server::Service>) -> Result<Arc<Driver>> {
    let neutron = Neutron::new(&cfg.neutron)?;
    let mut delay = Duration::from_millis(250);
    loop {
        match Driver::on_host(cfg.clone(), neutron.clone()).await {
            Ok(d) => {
                let d = Arc::new(d);
                // Looked for before the first call is served (one request), finished in
                // the background.
                let interrupted = d.interrupted_deletes().await;
                service.set_driver(d.clone());
                if !interrupted.is_empty() {
                    let d = d.clone();
                    tokio::spawn(async move { d.finish_deletes(interrupted).await });
                }
                tracing::info!(
                    host = %cfg.host,
                    extensions = d.extensions().aliases().len(),
                    "connected to Neutron"
                );
                return Ok(d);
            }
            Err(DriverError::Neutron(e)) => {
                tracing::warn!(error = %e, "Neutron not ready; retrying");
                service.set_waiting(format!("Neutron: {e}"));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
            Err(e) => return Err(e).context("connecting to Neutron"),
        }
    }
}

/// What `serve` listens on, and the files it removes when it stops.
struct Listeners {
    tasks: tokio::task::JoinSet<std::io::Result<()>>,
    guards: Vec<server::SocketGuard>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Listeners {
    fn spawn<L>(&mut self, l: L, app: axum::Router)
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        spawn_serve(&mut self.tasks, l, app, self.stop.clone());
    }
}

async fn serve(
    cfg: Arc<Config>,
    tls: Option<Arc<rustls::ServerConfig>>,
    discovery_dir: Option<PathBuf>,
    mut inherited: Inherited,
) -> Result<()> {
    // Before the first listener: a SIGTERM the moment kuryr answers (a service manager
    // stopping it right after start) must stop it cleanly, not kill it.
    let signals = Signals {
        term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
        int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
    };
    let service = Arc::new(server::Service::connecting(cfg.clone()));
    let app = server::router_for(service.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut ls = Listeners {
        tasks: tokio::task::JoinSet::new(),
        guards: Vec::new(),
        stop: stop_rx,
    };
    if let Some(path) = &cfg.unix_socket {
        let l = match inherited.listener_for(path) {
            // The service manager's socket: its file stays when kuryr stops.
            Some(l) => tokio::net::UnixListener::from_std(l?)?,
            None => {
                let l = server::bind_unix(path)
                    .with_context(|| format!("listening on {}", path.display()))?;
                ls.guards.push(server::SocketGuard(path.clone()));
                l
            }
        };
        tracing::info!(socket = %path.display(), "listening");
        ls.spawn(l, app.clone());
    }
    if let Some(path) = &cfg.cni_socket {
        let watch = cfg
            .netavark_network_dir
            .clone()
            .map(crate::netavark::watch::StoreWatch::new);
        let passed = inherited.listener_for(path).transpose()?;
        if listen_cni(path, passed, &service, watch.clone(), &mut ls)? {
            if let Some(w) = watch {
                w.spawn(service.clone());
            }
        }
    }
    if cfg.tcp_configured {
        listen_tcp_api(&cfg, tls, discovery_dir.as_deref(), app, &mut ls).await?;
    } else if discovery_dir.is_some() {
        tracing::info!(
            "no TCP listener: Docker finds the unix socket by itself, no discovery file written"
        );
    }
    for path in inherited.unused() {
        tracing::warn!(socket = %path.display(), "socket activation passed a socket kuryr.conf does not name (unix_socket, cni_socket): not served");
    }
    if inherited.ignored > 0 {
        tracing::warn!(
            count = inherited.ignored,
            "socket activation passed fds that are not unix sockets: not served"
        );
    }
    if ls.tasks.is_empty() {
        bail!("nothing to listen on: unix_socket is empty and kuryr_uri is not set");
    }
    if let Some(addr) = cfg.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("metrics_listen {addr}"))?;
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
        ls.spawn(l, server::ops_router(service.clone()));
    }
    // Listening already: Docker's plugin lookup and Plugin.Activate never wait for Neutron.
    let reconcile_on_start = cfg.reconcile_on_start;
    let connecting = tokio::spawn({
        let (cfg, service) = (cfg.clone(), service.clone());
        async move {
            let d = connect(cfg.clone(), service).await?;
            if reconcile_on_start {
                // In the background: Docker may already be calling us.
                tokio::spawn(reconcile(cfg, d));
            }
            Ok::<(), anyhow::Error>(())
        }
    });
    wait_for_stop(signals, &mut ls.tasks, connecting).await?;
    let _ = stop_tx.send(true);
    while let Some(r) = ls.tasks.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "listener stopped with an error");
        }
    }
    if let Some(d) = service.driver() {
        d.flush().await;
    }
    drop(ls.guards);
    tracing::info!("stopped");
    Ok(())
}

/// The CNI API on its own socket, root's only; none when another kuryr serves it.
/// The plugin socket (CNI and netavark); false when another kuryr serves it.
fn listen_cni(
    path: &Path,
    passed: Option<std::os::unix::net::UnixListener>,
    service: &server::App,
    watch: Option<Arc<crate::netavark::watch::StoreWatch>>,
    ls: &mut Listeners,
) -> Result<bool> {
    let app = || {
        crate::cni::daemon::router(service.clone()).merge(crate::netavark::daemon::router(
            service.clone(),
            watch.clone(),
        ))
    };
    if let Some(l) = passed {
        // The service manager's socket (its unit sets the mode); its file stays.
        tracing::info!(socket = %path.display(), "CNI and netavark API listening (socket activation)");
        ls.spawn(tokio::net::UnixListener::from_std(l)?, app());
        return Ok(true);
    }
    match server::bind_unix(path) {
        Ok(l) => {
            // Only root runs CNI plugins.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("permissions of {}", path.display()))?;
            ls.guards.push(server::SocketGuard(path.to_path_buf()));
            tracing::info!(socket = %path.display(), "CNI and netavark API listening");
            ls.spawn(l, app());
            Ok(true)
        }
        // Another kuryr serves CNI here: this one serves Docker alone.
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(socket = %path.display(), "another kuryr serves the CNI socket; no CNI API here (set cni_socket)");
            Ok(false)
        }
        Err(e) => Err(e).with_context(|| format!("listening on {}", path.display())),
    }
}

/// The plugin API on `kuryr_uri` (TLS when configured), and Docker's discovery file.
async fn listen_tcp_api(
    cfg: &Config,
    tls: Option<Arc<rustls::ServerConfig>>,
    discovery_dir: Option<&Path>,
    app: axum::Router,
    ls: &mut Listeners,
) -> Result<()> {
    let l = listen_tcp(cfg).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let addr = format!(
        "{scheme}://{}",
        l.local_addr().map(|a| a.to_string()).unwrap_or_default()
    );
    tracing::info!(address = %addr, "listening on TCP");
    if let Some(dir) = discovery_dir {
        let path = write_discovery_file(dir, &addr, tls.is_some(), cfg)?;
        tracing::info!(file = %path.display(), "wrote Docker discovery file");
        ls.guards.push(server::SocketGuard(path));
    }
    match tls {
        Some(t) => ls.spawn(tls::TlsListener::new(l, t), app),
        None => ls.spawn(l, app),
    }
    Ok(())
}

/// The TCP listener of `kuryr_uri`, with a loud warning off loopback.
async fn listen_tcp(cfg: &Config) -> Result<tokio::net::TcpListener> {
    let (host, port) =
        parse_listen_uri(&cfg.kuryr_uri).with_context(|| format!("kuryr_uri {}", cfg.kuryr_uri))?;
    let ip: std::net::IpAddr = host
        .parse()
        .with_context(|| format!("kuryr_uri host {host} is not an IP address"))?;
    if !ip.is_loopback() {
        tracing::warn!(%ip, port, "listening on a non-loopback address: anyone who reaches it can create and delete Neutron ports with kuryr's credentials");
    }
    tokio::net::TcpListener::bind((ip, port))
        .await
        .with_context(|| format!("listening on {ip}:{port}"))
}

/// `reconcile_on_start`: `gc --apply` for this host, once.
async fn reconcile(cfg: Arc<Config>, driver: Arc<Driver>) {
    let opts = gc::Options {
        docker_socket: crate::docker::socket_from_env(),
        grace: cfg.reconcile_grace,
    };
    let live = match gc::Live::from_docker(&opts.docker_socket).await {
        Ok(l) => l,
        Err(e) => return tracing::warn!(error = %e, "reconcile skipped: Docker"),
    };
    let (neutron, host) = (driver.neutron(), driver.plumbing());
    match gc::find(&cfg, neutron, host, &live, &opts).await {
        Ok(leaks) if leaks.is_empty() => tracing::info!("reconcile: nothing leaked"),
        Ok(leaks) => {
            for l in &leaks {
                tracing::info!(leak = %l, "reconcile: removing");
            }
            for e in gc::apply(neutron, host, &leaks).await {
                tracing::warn!(error = %e, "reconcile: could not remove");
            }
        }
        Err(e) => tracing::warn!(error = %e, "reconcile skipped"),
    }
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

/// Until SIGTERM or SIGINT, a listener fails, or connecting to Neutron fails for good.
async fn wait_for_stop(
    Signals { mut term, mut int }: Signals,
    tasks: &mut tokio::task::JoinSet<std::io::Result<()>>,
    connecting: tokio::task::JoinHandle<Result<()>>,
) -> Result<()> {
    let connected = async {
        match connecting.await {
            Ok(Ok(())) => std::future::pending().await,
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("connecting to Neutron: {e}")),
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing calls in flight"),
        _ = int.recv() => tracing::info!("SIGINT: finishing calls in flight"),
        r = tasks.join_next() => {
            if let Some(Ok(Err(e))) = r { bail!("listener failed: {e}"); }
        }
        r = connected => return r,
    }
    Ok(())
}

/// `kuryr.spec` (plain TCP) or `kuryr.json` (TLS) for Docker's plugin discovery.
fn write_discovery_file(dir: &Path, addr: &str, tls: bool, cfg: &Config) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (path, text) = if tls {
        let tls_config = match &cfg.ssl_ca_file {
            Some(ca) => serde_json::json!({"InsecureSkipVerify": false, "CAFile": ca}),
            None => {
                tracing::warn!("no ssl_ca_file: Docker will not verify kuryr's certificate");
                serde_json::json!({"InsecureSkipVerify": true})
            }
        };
        let v = serde_json::json!({"Name": "kuryr", "Addr": addr, "TLSConfig": tls_config});
        (dir.join("kuryr.json"), format!("{v}\n"))
    } else {
        (dir.join("kuryr.spec"), format!("{addr}\n"))
    };
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The plugin name Docker knows kuryr by: the unix socket's file name, else `kuryr`.
pub fn plugin_name(cfg: &Config) -> String {
    cfg.unix_socket
        .as_ref()
        .and_then(|p| p.file_stem())
        .and_then(|s| s.to_str())
        .unwrap_or("kuryr")
        .to_string()
}

/// Serves `app` on `l` until `stop` turns true, letting calls in flight finish.
fn spawn_serve<L>(
    tasks: &mut tokio::task::JoinSet<std::io::Result<()>>,
    l: L,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tasks.spawn(async move {
        axum::serve(l, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    });
}
