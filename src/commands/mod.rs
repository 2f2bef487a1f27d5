//! One module per subcommand; `main` only parses arguments and dispatches.

pub mod doctor;
pub mod gc;
pub mod inspect;
pub mod serve;
