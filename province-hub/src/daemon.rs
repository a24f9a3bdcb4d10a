//! `province-hub run`: checks the config, brings the database schema up to
//! date, starts one task per pulled room, the dial-in listener (one task per
//! link a room opens) and the HTTP server, and stops them all on SIGTERM or
//! SIGINT.
//!
//! # Design
//! One cancellation token ends everything: each room task stops at its next
//! wait (a batch being landed finishes its transaction first), the HTTP server
//! stops accepting, and the process exits once all are done or after
//! [`SHUTDOWN_GRACE`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::config::DialInConfig;
use crate::exit::Exit;
use crate::health::Board;
use crate::sync::content::Library;
use crate::sync::dial_in::{DialIn, DialInTls};
use crate::sync::lan_cert::LanCa;
use crate::sync::lease::Leases;
use crate::sync::room::{Shared, run_dialled_room, run_pulled_room};
use crate::{http, store, tls};

/// How long tasks have to finish after the stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub fn run(path: &Path) -> Exit {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return Exit::InvalidInput;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return Exit::Failure;
        }
    };
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> Exit {
    let tls = match tls::client_config(&config.tls) {
        Ok(tls) => tls,
        Err(err) => {
            eprintln!("{err}");
            return Exit::InvalidInput;
        }
    };
    let postgres_timeout = Duration::from_secs(*config.postgres.connect_timeout_seconds.get_ref());
    let pool = match store::pool(
        config.postgres.url.get_ref(),
        postgres_timeout,
        *config.postgres.max_connections.get_ref(),
    ) {
        Ok(pool) => pool,
        Err(err) => {
            eprintln!("{err}");
            return Exit::InvalidInput;
        }
    };
    let mut db = match pool.get().await {
        Ok(db) => db,
        Err(err) => {
            eprintln!(
                "cannot reach the database at postgres.url: {err}\n  hint: check that PostgreSQL runs and that postgres.url names its host, port, user and database"
            );
            return Exit::Failure;
        }
    };
    if let Err(err) = store::migrate(&mut db).await {
        eprintln!(
            "cannot bring the database schema up to date: {err}\n  hint: the user of postgres.url must be allowed to create tables in its database"
        );
        return Exit::Failure;
    }
    drop(db);
    let dial_in = match &config.dial_in {
        None => None,
        Some(dial_in) => match bind_dial_in(dial_in).await {
            Ok(listener) => Some((listener, *dial_in.max_links.get_ref())),
            Err(exit) => return exit,
        },
    };
    let lan_ca = match &config.lan_ca {
        Some(ca) => match LanCa::load(ca.cert.get_ref(), ca.key.get_ref()) {
            Ok(ca) => Some(ca),
            Err(err) => {
                eprintln!(
                    "lan_ca: {err}\n  hint: name the province's LAN CA files made by `firmware-agent tls init-ca`"
                );
                return Exit::InvalidInput;
            }
        },
        None => None,
    };
    let metrics = match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => handle,
        Err(err) => {
            eprintln!("cannot start the metrics recorder: {err}");
            return Exit::Failure;
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.http.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "cannot listen on http.listen = {}: {err}\n  hint: choose a free port, or stop what holds it",
                config.http.listen
            );
            return Exit::Failure;
        }
    };
    let board = Board::new(
        config
            .rooms
            .iter()
            .map(|room| (room.key(), room.address.get_ref().as_str())),
    );
    let content = config
        .content
        .clone()
        .map(|content| Arc::new(Library::new(content, board.clone())));
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let shared = Arc::new(Shared {
        pool,
        tls,
        sync: config.sync.clone(),
        board: board.clone(),
        leases: Leases::default(),
        lan_ca,
        content: content.clone(),
    });
    if let Some(library) = content {
        // The first listing hashes the directory before any room asks, and
        // shows on /healthz what cannot be sent.
        tasks.spawn(async move { library.current().await });
    }
    for room in config.rooms.iter().cloned() {
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        tasks.spawn(async move { run_pulled_room(room, &shared, shutdown).await });
    }
    let dial_in_address = dial_in.as_ref().map(|(listener, _)| listener.local_addr());
    if let Some((listener, max_links)) = dial_in {
        tasks.spawn(accept_rooms(
            listener,
            max_links,
            shared.clone(),
            shutdown.clone(),
            tasks.clone(),
        ));
    }
    let address = listener.local_addr().ok();
    tasks.spawn(http::serve(
        listener,
        *config.http.max_connections.get_ref(),
        Duration::from_secs(*config.http.connection_timeout_seconds.get_ref()),
        board,
        metrics,
        shutdown.clone(),
    ));
    tasks.close();
    tracing::info!(
        rooms = config.rooms.len(),
        http = ?address,
        dial_in = ?dial_in_address,
        "province hub ready"
    );
    wait_for_stop().await;
    tracing::info!("stopping");
    shutdown.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some room tasks did not stop within {SHUTDOWN_GRACE:?}");
    }
    Exit::Success
}

fn path(file: &Option<toml::Spanned<PathBuf>>) -> Option<&Path> {
    file.as_ref().map(|file| file.get_ref().as_path())
}

async fn bind_dial_in(config: &DialInConfig) -> Result<DialIn, Exit> {
    let tls = match (path(&config.cert), path(&config.key), path(&config.room_ca)) {
        (Some(certificate), Some(key), Some(room_ca)) => Some(DialInTls {
            certificate,
            key,
            room_ca,
        }),
        // check-config allows no files only with tls.plaintext = true
        _ => None,
    };
    let listen = *config.listen.get_ref();
    DialIn::bind(listen, tls).await.map_err(|err| {
        if err.kind() == std::io::ErrorKind::InvalidInput {
            eprintln!(
                "cannot use the dial-in TLS files: {err}\n  hint: dial_in.cert and dial_in.key must be the hub's PEM certificate and its key, dial_in.room_ca the PEM CA of the rooms' certificates"
            );
            Exit::InvalidInput
        } else {
            eprintln!(
                "cannot listen on dial_in.listen = {listen}: {err}\n  hint: choose a free port, or stop what holds it"
            );
            Exit::Failure
        }
    })
}

/// Accepts the links rooms open, at most `max_links` at once, each handshake
/// and link in a task of its own.
async fn accept_rooms(
    listener: DialIn,
    max_links: usize,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(max_links));
    loop {
        let incoming = tokio::select! {
            () = shutdown.cancelled() => return,
            incoming = listener.accept() => incoming,
        };
        let incoming = match incoming {
            Ok(incoming) => incoming,
            Err(err) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!("{err}");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(peer = %incoming.peer(), max_links, "dial_in.max_links links are open: a room's link is refused; it dials again later");
            continue;
        };
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        tasks.spawn(async move {
            let _permit = permit;
            match incoming.admit().await {
                Ok(link) => run_dialled_room(link, &shared, shutdown).await,
                Err(err) => tracing::warn!("a room's link was refused: {err}"),
            }
        });
    }
}

/// How long the dial-in listener waits after failing to accept a connection.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

async fn wait_for_stop() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM and SIGINT; stop the hub with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
