//! The `switchyard` command line: `check` validates a config, `run` runs the balancer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use switchyard::app;
use switchyard::config::Config;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "DPDK poll-mode L4 load balancer"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a configuration file and exit (non-zero with the offending key on error).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the balancer until SIGINT/SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Write the final counters (total and per worker) as JSON to this file at exit.
        #[arg(long)]
        stats_json: Option<PathBuf>,
        /// Stop once no frame has arrived for this many milliseconds (pcap replay, tests).
        #[arg(long)]
        stop_after_idle_ms: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: OK ({} interfaces, {} services, {} workers)",
                    config.display(),
                    c.interfaces.len(),
                    c.services.len(),
                    c.cores.workers.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: error: {e}", config.display());
                ExitCode::from(2)
            }
        },
        Cmd::Run {
            config,
            stats_json,
            stop_after_idle_ms,
        } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: error: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            app::init_logging(&cfg);
            match app::run(
                &cfg,
                stats_json,
                stop_after_idle_ms.map(Duration::from_millis),
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("switchyard: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
