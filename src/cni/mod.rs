//! The CNI front-end: `kuryr-cni`, a CNI plugin binary that container runtimes (Podman,
//! containerd, Nomad, ...) run per container, forwards each command over the kuryr
//! daemon's CNI socket; the daemon does the work on the same core as the Docker
//! front-end (Neutron client, caches, binding, gc).
//!
//! - [`spec`]: the CNI protocol (config, `CNI_ARGS`, results, errors); pure data
//! - [`daemon`]: the daemon's side: `POST /v1/cni` on its own unix socket
//! - [`plugin`]: the binary's side: environment and stdin in, JSON and exit code out

pub mod daemon;
pub mod plugin;
pub mod spec;
#[cfg(test)]
mod tests;
