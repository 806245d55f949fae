//! Wiring of each subcommand: builds the config, the runtime or pool, and calls
//! the library. No domain logic lives here.

pub mod adopt;
pub mod exif;
pub mod fetch;
pub mod layers;
