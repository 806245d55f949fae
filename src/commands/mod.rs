//! Wiring of each subcommand: builds the config, the runtime or pool, and calls
//! the library. No domain logic lives here.

pub(crate) mod adopt;
pub(crate) mod exif;
pub(crate) mod fetch;
pub(crate) mod layers;
pub(crate) mod status;
