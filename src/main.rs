use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Docker network and IPAM plugin backed by OpenStack Neutron.
#[derive(Parser)]
#[command(name = "kuryr", version, about)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text", env = "KURYR_LOG_FORMAT")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the plugin protocol to Docker.
    Serve {
        /// kuryr.conf (the reference implementation's INI file).
        #[arg(
            long,
            default_value = "/etc/kuryr/kuryr.conf",
            env = "KURYR_CONFIG_FILE"
        )]
        config_file: PathBuf,
        /// Write the Docker discovery file for the TCP listener here (`kuryr.spec`, or
        /// `kuryr.json` with TLS), e.g. /etc/docker/plugins; removed at exit.
        #[arg(long)]
        discovery_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config_file,
            discovery_dir,
        } => kuryr::commands::serve::run(&config_file, discovery_dir.as_deref(), &cli.log_format),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kuryr: {e:#}");
            ExitCode::FAILURE
        }
    }
}
