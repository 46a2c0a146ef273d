//! `caucus check FILE`: everything `run` would refuse at start-up, found without
//! starting (the file's syntax, types, ranges, rules, prompts and music), plus
//! warnings about settings that start but will likely not do what was meant.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;

/// Check `file`: exit 0 (with any warnings on stderr), or 78 (EX_CONFIG, as
/// `run` does) with `FILE:LINE:COL: reason`.
pub fn run(file: &Path) -> ExitCode {
    let cfg = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(crate::config::EX_CONFIG);
        }
    };
    if let Err(e) = cfg.prompts() {
        eprintln!("{}: sounds_dir: {e}", file.display());
        return ExitCode::from(crate::config::EX_CONFIG);
    }
    for w in warnings(&cfg) {
        eprintln!("{}: warning: {w}", file.display());
    }
    println!("{}: ok ({} rooms)", file.display(), cfg.rooms.len());
    ExitCode::SUCCESS
}

/// Settings that start but will likely not do what was meant.
pub fn warnings(_cfg: &Config) -> Vec<String> {
    Vec::new()
}
