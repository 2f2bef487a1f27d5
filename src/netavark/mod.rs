//! The netavark front-end's protocol: Podman 5 and 6 run network plugins through
//! netavark, an executable per driver with `create`, `setup`, `teardown` and `info`.
//!
//! - [`spec`]: the plugin API's wire types; pure data

pub mod spec;
