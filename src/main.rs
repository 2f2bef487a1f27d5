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

/// `--config-file`, which every command takes.
#[derive(clap::Args)]
struct ConfigArg {
    /// kuryr.conf (the reference implementation's INI file).
    #[arg(
        long,
        default_value = "/etc/kuryr/kuryr.conf",
        env = "KURYR_CONFIG_FILE"
    )]
    config_file: PathBuf,
}

/// `--docker-socket`, for the commands that ask dockerd.
#[derive(clap::Args)]
struct DockerArg {
    /// Docker's API socket (a path or unix://path); DOCKER_HOST as for the docker CLI.
    #[arg(long, env = "DOCKER_HOST", default_value = kuryr::docker::DEFAULT_SOCKET, value_parser = kuryr::docker::parse_socket)]
    docker_socket: PathBuf,
}

#[derive(Subcommand)]
enum Command {
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

fn doctor(
    config_file: PathBuf,
    plugin: Option<String>,
    docker_socket: PathBuf,
) -> anyhow::Result<bool> {
    let plugin = match plugin {
        Some(p) => p,
        None => kuryr::config::Config::load_with_env(&config_file)
            .map(|l| kuryr::commands::serve::plugin_name(&l.config))
            .unwrap_or_else(|_| "kuryr".into()),
    };
    kuryr::commands::doctor::run(kuryr::commands::doctor::Options {
        config_file,
        plugin,
        docker_socket,
    })
}

fn gc(
    config_file: PathBuf,
    docker_socket: PathBuf,
    grace_seconds: u64,
    apply: bool,
) -> anyhow::Result<bool> {
    let mut cfg = kuryr::config::Config::load_with_env(&config_file)?.config;
    kuryr::commands::resolve_host(&mut cfg);
    let opts = kuryr::commands::gc::Options {
        docker_socket,
        grace: std::time::Duration::from_secs(grace_seconds),
    };
    kuryr::commands::gc::run(&cfg, opts, apply)
}

fn inspect(config_file: PathBuf, opts: kuryr::commands::inspect::Options) -> anyhow::Result<bool> {
    let mut cfg = kuryr::config::Config::load_with_env(&config_file)?.config;
    kuryr::commands::resolve_host(&mut cfg);
    kuryr::commands::inspect::run(&cfg, opts)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config,
            discovery_dir,
        } => kuryr::commands::serve::run(
            &config.config_file,
            discovery_dir.as_deref(),
            &cli.log_format,
        )
        .map(|()| true),
        Command::Doctor {
            config,
            plugin,
            docker,
        } => doctor(config.config_file, plugin, docker.docker_socket),
        Command::Gc {
            config,
            docker,
            grace_seconds,
            apply,
        } => gc(
            config.config_file,
            docker.docker_socket,
            grace_seconds,
            apply,
        ),
        Command::Inspect {
            config,
            docker,
            json,
            container,
        } => inspect(
            config.config_file,
            kuryr::commands::inspect::Options {
                docker_socket: docker.docker_socket,
                container,
                json,
            },
        ),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kuryr: {e:#}");
            ExitCode::FAILURE
        }
    }
}
