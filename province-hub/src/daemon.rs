//! `province-hub run`: checks the config, brings the database schema up to
//! date, starts one task per room and the HTTP server, and stops them all on
//! SIGTERM or SIGINT.
//!
//! # Design
//! One cancellation token ends everything: each room task stops at its next
//! wait (a batch being landed finishes its transaction first), the HTTP server
//! stops accepting, and the process exits once all are done or after
//! [`SHUTDOWN_GRACE`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::exit::Exit;
use crate::health::Board;
use crate::sync::lan_cert::LanCa;
use crate::sync::room::{Shared, run_pulled_room};
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
    let postgres_url = config.postgres.url.get_ref().clone();
    let postgres_timeout = Duration::from_secs(*config.postgres.connect_timeout_seconds.get_ref());
    let mut db = match store::connect(&postgres_url, postgres_timeout).await {
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
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let shared = Arc::new(Shared {
        postgres_url,
        postgres_timeout,
        tls,
        sync: config.sync.clone(),
        board: board.clone(),
        lan_ca,
    });
    for room in config.rooms.iter().cloned() {
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        tasks.spawn(async move { run_pulled_room(room, &shared, shutdown).await });
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
