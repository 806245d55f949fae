//! `mlyexport layers`: wiring only (rayon pool, readers, writers, EXIF pass).

use crate::ExitStatus;
use crate::cli::LayersArgs;

pub fn run(_args: LayersArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`mlyexport layers` is not implemented yet")
}
