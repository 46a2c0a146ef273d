//! The `caucus` command: run the bridge, check a configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use caucus::config::Config;

/// caucus: a SIP audio conference bridge.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Ctl(args) => {
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
        Command::Check { file } => match Config::load(&file) {
            Ok(cfg) => match cfg.prompts() {
                Ok(_) => {
                    println!("{}: ok ({} rooms)", file.display(), cfg.rooms.len());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: sounds_dir: {e}", file.display());
                    ExitCode::from(2)
                }
            },
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let cfg = match &config {
                Some(path) => match Config::load(path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                },
                None => Config::default_config(),
            };
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            match rt.block_on(caucus::driver::run(cfg, config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
