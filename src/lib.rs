//! mlyexport: list, download and post-process Mapillary street-level imagery.
//!
//! The binary is a thin wrapper over [`run`]. A pipeline can call the library
//! directly: [`fetch::images_in_bbox`] lists every image in a bbox (verified
//! against the vector tiles) and [`fetch::download_image`] downloads one
//! image into a folder.
//!
//! The library's public surface is deliberate: [`fetch`] (the engine and the
//! bbox functions), [`api::Client`], [`config`] (flags and environment to one
//! validated config), [`model`] and [`record`] (value types), [`runrecord`]
//! (the run record's format), [`downloads`] (reading a downloads folder),
//! [`layers::run()`] (the `layers` command as a function), [`aoi`], [`lock`]
//! and [`shard`] (which shard of an array job a fetch is). Everything else is
//! crate-private.

#![warn(unreachable_pub, missing_docs)]

mod adopt; // the old tool's folder converted in place
pub mod aoi; // polygon study areas (GDAL read, geo tests)
pub mod api; // Graph API client: requests, retries, rate limits (network only)
pub mod cli; // clap flags and help text
mod commands; // wiring of each subcommand: runtime or pool set-up, no domain logic
pub mod config; // flags + environment -> one validated Config
mod coverage; // per-grid coverage figures (pure)
pub mod downloads; // a downloads folder read: its images (one scan), records, run record, listing
mod exif; // GPS EXIF bytes for a JPEG (pure)
pub mod fetch; // listing beyond the cap and concurrent downloads (tokio)
mod input; // opening input files: regular files only, non-blocking, bounded
pub mod layers; // layer rows and writers (GeoPackage, GeoJSON, CSV)
mod legacy; // the old Python tool's folders and JSON, mapped (pure)
pub mod lock; // one run per output folder: an exclusive flock naming its holder
pub mod model; // domain value types
mod pgconn; // the --pg connection string, checked; messages redacted (pure)
mod plan; // grids, cells, ownership and subdivision (pure)
pub mod record; // the per-image record, parsed defensively
mod report; // the only owner of the terminal
mod rows; // the rows and columns every output is made of (pure)
pub mod runrecord; // the run record's data types
pub mod shard; // fetch shards for array jobs: which shard, and which cells each lists (pure)
mod store; // output folder layout and atomic writes
mod thin; // spatial thinning along sequences (pure)
mod tiles; // XYZ tile maths and MVT `image` layer decoding (pure)

use std::process::ExitCode;

/// How a command ended, and its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything asked for was done: exit 0.
    Success,
    /// Done, but some images or cells failed or were truncated: exit 1.
    Partial,
    /// An error stopped the command (bad input, auth, I/O): exit 2.
    Failure,
    /// Stopped by Ctrl-C; state saved: exit 130.
    Interrupted,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        ExitCode::from(match s {
            ExitStatus::Success => 0,
            ExitStatus::Partial => 1,
            ExitStatus::Failure => 2,
            ExitStatus::Interrupted => 130,
        })
    }
}

/// Runs a parsed command line; errors are printed by the `report` module and become exit 2.
pub fn run(cli: cli::Cli) -> ExitStatus {
    let result = match cli.command {
        cli::Command::Fetch(args) => commands::fetch::run(*args),
        cli::Command::Layers(args) => commands::layers::run(args),
        cli::Command::Exif(args) => commands::exif::run(args),
        cli::Command::Adopt(args) => commands::adopt::run(args),
        cli::Command::Status(args) => commands::status::run(&args),
    };
    match result {
        Ok(status) => status,
        Err(err) => {
            report::print_error(&err);
            ExitStatus::Failure
        }
    }
}
