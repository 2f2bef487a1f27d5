//! One module per subcommand; `main` only parses arguments and dispatches.

pub mod serve;
