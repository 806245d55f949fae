//! `mlyexport exif`: wiring only (rayon pool over the downloaded JPEGs).

use crate::ExitStatus;
use crate::cli::ExifArgs;

pub fn run(_args: ExifArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`mlyexport exif` is not implemented yet")
}
