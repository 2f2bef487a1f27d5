//! kuryr: a Docker (libnetwork) network and IPAM plugin backed by OpenStack Neutron.
//!
//! - [`protocol`]: libnetwork's wire types and request validation
//! - [`cni`]: the CNI front-end (the `kuryr-cni` plugin and the daemon's CNI API)
//! - [`neutron`]: the Neutron/Keystone client
//! - [`driver`]: the CNM-to-Neutron mapping (what each call does)
//! - [`host`]: host plumbing (netlink, binding by vif_type)
//! - [`server`]: the HTTP listener
//! - [`deadline`]: each call's time budget
//! - [`config`]: the kuryr.conf file
//! - [`metrics`]: Prometheus metrics
//! - [`docker`]: a small Docker API client for doctor and gc (never on the request path)
//! - [`commands`]: the CLI subcommands
//! - `testkit` (test builds only): in-memory Neutron, fake host plumbing, test driver,
//!   fuzz harness, kill points

pub mod activation;
pub mod cni;
pub mod commands;
pub mod config;
pub mod deadline;
pub mod docker;
pub mod driver;
pub mod host;
pub mod local_api;
pub mod metrics;
pub mod names;
pub mod netavark;
pub mod neutron;
pub mod protocol;
pub mod server;
pub mod service;
pub mod tls;
pub mod vif;
mod wire;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

/// A point inside a handler where a test build kills itself when `KURYR_TEST_KILL_AT`
/// names it (crash-safety tests); nothing at all in other builds.
#[macro_export]
macro_rules! kill_point {
    ($name:expr) => {
        #[cfg(feature = "testkit")]
        $crate::testkit::kill_point($name);
    };
}
