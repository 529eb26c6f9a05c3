//! The server's log: text or JSON lines on stderr, through a filter that a SIGHUP can change.
//!
//! No log line carries a secret: requests are logged by operation, never with their
//! passwords, digests or hashes; Redis URLs are logged with their password redacted;
//! credentials are named by file, never shown.

use std::path::{Path, PathBuf};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: `time LEVEL target: message key=value…`.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`.
    Json,
}

/// The filter the settings ask for: `filter` if given, else `verbose`'s.
pub fn filter_for(verbose: bool, filter: Option<&str>) -> String {
    match filter {
        Some(filter) => filter.to_string(),
        None if verbose => "idserver=debug,info".to_string(),
        None => "info".to_string(),
    }
}

/// Where a SIGHUP finds the filter again.
#[derive(Debug, Clone)]
pub enum FilterSource {
    /// A flag or the environment set it: it stays.
    Fixed,
    /// The `--config` file's `log-filter` and `verbose` (their defaults if absent).
    File(PathBuf),
    /// Nothing set it and there is no file: it stays.
    Default,
}

/// The installed log, whose filter can be changed.
pub struct Logs {
    handle: reload::Handle<EnvFilter, Registry>,
    source: FilterSource,
}

impl std::fmt::Debug for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logs")
            .field("source", &self.source)
            .finish()
    }
}

/// Installs the log (once per process) with `filter`, in `format`.
pub fn init(format: LogFormat, filter: &str, source: FilterSource) -> Result<Logs, String> {
    let parsed = parse(filter)?;
    let (filter_layer, handle) = reload::Layer::new(parsed);
    let output = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter_layer)
        .with(output)
        .try_init()
        .map_err(|e| format!("failed to install the log: {e}"))?;
    Ok(Logs { handle, source })
}

fn parse(filter: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder()
        .parse(filter)
        .map_err(|e| format!("--log-filter {filter:?}: {e}"))
}

impl Logs {
    /// SIGHUP: reads the filter from the config file again, if it came from there (or was
    /// left at its default while a file is used), and logs what it did. On an error the
    /// filter in use stays.
    pub fn reload(&self) {
        let path = match &self.source {
            FilterSource::File(path) => path,
            FilterSource::Fixed => {
                tracing::info!("SIGHUP: log filter unchanged (set by a flag or the environment)");
                return;
            }
            FilterSource::Default => {
                tracing::info!("SIGHUP: log filter unchanged (no --config file to read it from)");
                return;
            }
        };
        match filter_in_file(path).and_then(|filter| {
            self.handle
                .reload(parse(&filter)?)
                .map_err(|e| e.to_string())
                .map(|()| filter)
        }) {
            Ok(filter) => tracing::info!(%filter, "SIGHUP: log filter reloaded"),
            Err(err) => {
                tracing::error!(error = %err, "SIGHUP: failed to reload the log filter; the one in use stays")
            }
        }
    }
}

/// The filter a config file sets (`log-filter`, else `verbose`, else the default).
pub fn filter_in_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    let filter = match table.get("log-filter") {
        None => None,
        Some(toml::Value::String(filter)) => Some(filter.as_str()),
        Some(_) => return Err(format!("{}: `log-filter` takes a string", path.display())),
    };
    let verbose = match table.get("verbose") {
        None => false,
        Some(toml::Value::Boolean(on)) => *on,
        Some(_) => return Err(format!("{}: `verbose` takes true or false", path.display())),
    };
    Ok(filter_for(verbose, filter))
}
