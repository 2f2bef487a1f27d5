//! kuryr: a Docker (libnetwork) network and IPAM plugin backed by OpenStack Neutron.
//!
//! - [`protocol`]: libnetwork's wire types and request validation
//! - [`neutron`]: the Neutron/Keystone client
//! - [`driver`]: the CNM-to-Neutron mapping (what each call does)
//! - [`host`]: host plumbing (netlink, binding by vif_type)
//! - [`server`]: the HTTP listener
//! - [`config`]: the kuryr.conf file
//! - [`metrics`]: Prometheus metrics
//! - [`docker`]: a small Docker API client for doctor and gc (never on the request path)
//! - [`commands`]: the CLI subcommands
//! - [`fuzzing`]: the request-handling harness (in-memory Neutron) for fuzzing and replay tests

pub mod commands;
pub mod config;
pub mod docker;
pub mod driver;
pub mod fuzzing;
pub mod host;
pub mod metrics;
pub mod names;
pub mod neutron;
pub mod protocol;
pub mod server;
pub mod tls;
