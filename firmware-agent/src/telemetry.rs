//! Logging through `tracing`: readable text on a terminal, JSON for log
//! shippers, the journal under systemd. The filter can be changed while the
//! agent runs (SIGHUP with a new `log.filter`).

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::{LogConfig, LogFormat};

/// Changes the live log filter.
#[derive(Clone)]
pub struct FilterHandle(reload::Handle<EnvFilter, Registry>);

/// Why the log filter was not changed.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(transparent)]
    Invalid(#[from] tracing_subscriber::filter::ParseError),
    #[error(transparent)]
    NotApplied(#[from] reload::Error),
}

impl FilterHandle {
    pub fn set(&self, directives: &str) -> Result<(), FilterError> {
        let filter = EnvFilter::builder().parse(directives)?;
        Ok(self.0.reload(filter)?)
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.filter`.
pub fn init(config: &LogConfig) -> FilterHandle {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| config.filter.clone());
    let filter = EnvFilter::builder()
        .parse(&directives)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let output = match resolve(config.format) {
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => layer.boxed(),
            Err(_) => text_layer(),
        },
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text | LogFormat::Auto => text_layer(),
    };
    // A second init (tests calling in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init();
    FilterHandle(handle)
}

fn text_layer<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .boxed()
}

/// `auto` means the journal when systemd connected our output to it.
fn resolve(format: LogFormat) -> LogFormat {
    match format {
        LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Text,
        other => other,
    }
}
