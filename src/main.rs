//! The `switchyard` command line: `check` validates a config, `run` runs the balancer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use switchyard::app;
use switchyard::config::{Config, ConfigError};
use switchyard::lb::Snapshot;

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
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
    },
    /// Run the balancer until SIGINT/SIGTERM.
    Run {
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
        /// Write the final counters (total and per worker) as JSON to this file at exit.
        #[arg(long)]
        stats_json: Option<PathBuf>,
        /// Stop once no frame has arrived for this many milliseconds (pcap replay, tests).
        #[arg(long)]
        stop_after_idle_ms: Option<u64>,
    },
    /// Talk to a running balancer through its management API.
    Ctl {
        /// API address (host:port or http://host:port); default: from --config, else 127.0.0.1:9100.
        #[arg(long, global = true)]
        api: Option<String>,
        /// Take the API address from this configuration's [api] listen.
        #[arg(long, short, global = true, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
        /// Print JSON instead of tables.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: switchyard::ctl::CtlCmd,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Ctl {
            api,
            config,
            json,
            cmd,
        } => {
            let out = switchyard::ctl::api_base(api.as_deref(), config.as_ref())
                .and_then(|base| switchyard::ctl::run(&base, &cmd, json));
            match out {
                Ok(text) => {
                    // A closed pipe (`| head`) is not an error worth a panic.
                    use std::io::Write;
                    let _ = writeln!(std::io::stdout(), "{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchyard ctl: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Check { config } => match Config::load(&config).and_then(|c| {
            // What start-up builds from it, so that a config `check` passes is one that runs
            // (the ports' MACs are not known here and change nothing that could fail).
            Snapshot::build(&c, &vec![[0; 6]; c.interfaces.len()])
                .map_err(|e| ConfigError {
                    key: "config".into(),
                    problem: e.to_string(),
                })
                .map(|_| c)
        }) {
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
                Some(config.clone()),
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
