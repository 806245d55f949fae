//! The one integration-test binary: each module runs the real `mlyexport`
//! binary, most against the in-process Mapillary simulator (`mlysim`).

mod adopt; // the old tool's folders: layers reads them, adopt converts them
mod aoi; // polygon study areas and thinning
mod cli; // bad inputs: clear errors, exit 2, nothing written
mod common; // TestEnv: temp folders, the simulator, the binary with a clean environment
mod exif; // GPS EXIF embedding
mod faults; // each fault kind of the simulator
mod fetch; // listing completeness, downloads, layout, schemas, token secrecy
mod fixtures; // fixtures/ are what fixtures/README.md says (and the JPEGs' generator)
mod hostile; // hostile or broken input: no panic, bounded reads, data never markup, redirects
mod hostile_sim; // the simulator's hostile mode: tile bombs, huge bodies, formulas and escapes
mod integrity; // open readers during the EXIF pass, folder locks, temp files of live runs, hostile JPEGs
mod layers; // GeoPackage/GeoJSON/CSV outputs, coverage, QGIS
mod postgis; // layers --format postgis against a real PostgreSQL + PostGIS, QGIS, swaps, secrets
mod report; // report.html: structure, size bound, headless Chromium
mod resume; // SIGKILL at random moments, Ctrl-C, re-runs
mod shards; // fetch --shard K/N and array jobs' indexes, status, merged layers
mod snapshots; // insta snapshots of --help, summaries, coverage and layer schemas
mod tiles; // --enumerate tiles and --audit against the simulator's vector tiles
mod verified; // the default listing against every unconfirmed API behaviour
