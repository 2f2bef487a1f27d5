//! The `kuryr` command line: its definition only (clap), apart from `main`'s dispatch, so
//! the man pages and shell completions are generated from it (tests/man_pages.rs).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Docker network and IPAM plugin backed by OpenStack Neutron.
#[derive(Parser)]
#[command(name = "kuryr", version, about)]
pub struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text", env = "KURYR_LOG_FORMAT")]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

/// `--config-file`, which every command takes.
#[derive(clap::Args)]
pub struct ConfigArg {
    /// kuryr.conf (the reference implementation's INI file).
    #[arg(
        long,
        default_value = "/etc/kuryr/kuryr.conf",
        env = "KURYR_CONFIG_FILE"
    )]
    pub config_file: PathBuf,
}

/// `--docker-socket`, for the commands that ask dockerd.
#[derive(clap::Args)]
pub struct DockerArg {
    /// Docker's API socket (a path or unix://path); DOCKER_HOST as for the docker CLI.
    #[arg(long, env = "DOCKER_HOST", default_value = crate::docker::DEFAULT_SOCKET, value_parser = crate::docker::parse_socket)]
    pub docker_socket: PathBuf,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the plugin protocol to Docker.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Write the Docker discovery file for the TCP listener here (`kuryr.spec`, or
        /// `kuryr.json` with TLS), e.g. /etc/docker/plugins; removed at exit.
        #[arg(long)]
        discovery_dir: Option<PathBuf>,
    },
    /// Check the set-up (config, Neutron, extensions, agent, Docker, firewall) and say
    /// how to fix what is wrong; exits non-zero when a check fails.
    Doctor {
        #[command(flatten)]
        config: ConfigArg,
        /// Plugin name Docker uses (default: from unix_socket, else kuryr).
        #[arg(long)]
        plugin: Option<String>,
        #[command(flatten)]
        docker: DockerArg,
    },
    /// Find what kuryr left behind on this host and in Neutron; --apply removes it.
    Gc {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        docker: DockerArg,
        /// Leave reservations and pools younger than this many seconds alone.
        #[arg(long, default_value_t = 600)]
        grace_seconds: u64,
        /// Remove what was found.
        #[arg(long)]
        apply: bool,
    },
    /// Show what Neutron gives a container on each kuryr network: port, addresses,
    /// security groups, QoS policy, floating IPs (a Docker container by name or id, a
    /// CNI container by its id).
    Inspect {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        docker: DockerArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        container: String,
    },
}
