//! The netavark front-end: Podman 5 and 6 run network plugins through netavark, an
//! executable per driver with `create`, `setup`, `teardown` and `info`. `kuryr-netavark`
//! is that executable for the driver `kuryr`; the daemon does the work on the same core
//! as the CNI front-end.
//!
//! - [`spec`]: the plugin API's wire types; pure data
//! - [`store`]: what Podman's network store says exists
//! - [`watch`]: the daemon's watch on it (`podman network rm` calls no plugin)
//! - [`daemon`]: the daemon's side: `POST /v1/netavark` on the plugin socket
//! - [`plugin`]: the binary's side: argv and stdin in, JSON and exit code out

pub mod daemon;
pub mod plugin;
pub mod spec;
pub mod store;
#[cfg(test)]
mod tests;
pub mod watch;
