use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kuryr::commands::cli::{Cli, Command};

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
