//! The `caucus` command: run the bridge, check a configuration, control a running
//! bridge. Logging is set up here: the format (`--log-format`, else `[log] format`),
//! the level (`--log-level`, else `RUST_LOG`, else info), colour only on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use caucus::config::{Config, EX_CONFIG, LogFormat};

/// caucus: a SIP audio conference bridge.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log level or filter (error, warn, info, debug, trace, or RUST_LOG syntax);
    /// when given it wins over RUST_LOG. Default: RUST_LOG, else info.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log format; default: [log] format of the configuration, else text.
    #[arg(long, global = true, value_enum)]
    log_format: Option<Format>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// one line of text per event
    Text,
    /// one JSON object per line
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge (without --config: the embedded default, conf/caucus.toml).
    Run {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file; prints FILE:LINE:COL: reason on error.
    Check {
        /// Configuration file.
        file: PathBuf,
    },
    /// Control a running bridge through its HTTP API.
    Ctl(caucus::ctl::CtlArgs),
}

/// Install the log subscriber; false when the level is not a valid filter.
fn init_logging(level: Option<&str>, format: LogFormat) -> bool {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => match EnvFilter::try_new(l) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("--log-level {l}: {e}");
                return false;
            }
        },
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // escape sequences only for a person at a terminal: never into a file or the
    // journal (NO_COLOR turns them off there too)
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    true
}

/// The single-threaded runtime the driver (and ctl) runs on; media has its own threads.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            None
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format.map(|f| match f {
        Format::Text => LogFormat::Text,
        Format::Json => LogFormat::Json,
    });
    let level = cli.log_level.as_deref();
    match cli.command {
        Command::Ctl(args) => {
            if !init_logging(level, format.unwrap_or_default()) {
                return ExitCode::from(2);
            }
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            match rt.block_on(caucus::ctl::run(args)) {
                Ok(out) => {
                    println!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("caucus ctl: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { file } => {
            if !init_logging(level, format.unwrap_or_default()) {
                return ExitCode::from(2);
            }
            caucus::check::run(&file)
        }
        Command::Run { config } => {
            let cfg = match &config {
                Some(path) => match Config::load(path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(EX_CONFIG);
                    }
                },
                None => Config::default_config(),
            };
            if !init_logging(level, format.unwrap_or(cfg.log.format)) {
                return ExitCode::from(EX_CONFIG);
            }
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            match rt.block_on(caucus::driver::run(cfg, config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    tracing::error!(error = %e, "start-up failed");
                    ExitCode::from(if e.is_config() { EX_CONFIG } else { 1 })
                }
            }
        }
    }
}
