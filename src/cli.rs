//! Command-line flags (clap derive) and help text only: no validation beyond
//! parsing, no file, environment or network access (that is `config`'s job).

use std::path::PathBuf;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::{Bbox, Enumerate, PanoFilter, PositionSource, ThumbSize};
use crate::shard::ShardFlag;

#[derive(Debug, Parser)]
#[command(
    name = "mlyexport",
    version,
    about = "Turn Mapillary street-level imagery into GIS-ready research data",
    long_about = None,
    after_help = "Exit codes: 0 everything done, 1 partial (some images or cells failed or were \
truncated), 2 error (nothing or not all could be done; see the message), 130 interrupted \
(Ctrl-C; state saved, re-run to resume).

Examples:
  mlyexport fetch --bbox 8.52,47.36,8.54,47.38 --size 1024
  mlyexport layers --format gpkg,geojson,csv,html
  mlyexport exif --input downloads --position original
  mlyexport adopt --input old-downloads --dry-run"
)]
#[allow(missing_docs)] // clap turns doc comments into help text; the flags' help is the documentation
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(missing_docs)] // clap turns doc comments into help text; the flags' help is the documentation
pub enum Command {
    /// List every image in a study area and download it, resumably.
    Fetch(Box<FetchArgs>),
    /// Write GeoPackage/GeoJSON/CSV layers, embed GPS EXIF and a coverage summary.
    Layers(LayersArgs),
    /// Embed GPS EXIF tags into every downloaded JPEG (also done by `layers`).
    Exif(ExifArgs),
    /// Convert the old tool's (mapillary-download) folder into mlyexport's, in place.
    Adopt(AdoptArgs),
    /// Which shards of a sharded fetch have finished, failed or not started, and what is missing.
    Status(StatusArgs),
}

/// Parses `--shard K/N` or `--shard none`.
fn parse_shard_flag(s: &str) -> Result<ShardFlag, String> {
    s.parse::<ShardFlag>().map_err(|e| e.to_string())
}

/// Parses a bbox flag value (allows a leading minus).
fn parse_bbox(s: &str) -> Result<Bbox, String> {
    s.parse::<Bbox>().map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
#[command(
    after_help = "Grid cells cut from a bbox are numbered 1..N in reading order: row by row from the
north-west corner, west to east, then north to south. An image on an edge shared by
two cells belongs to exactly one: cells are half-open [min, max) in lon and lat, and
the outer north and east edges of the area are included.

Examples:
  mlyexport fetch --bbox=-73.99,40.70,-73.97,40.72 --grid 4x4 --size 1024
  mlyexport fetch --bbox 2.33,48.85,2.36,48.87 --cell-size 500m --since 2022-01-01 --pano exclude
  mlyexport fetch --grid-file fixtures/grid/segments.csv --token-file ~/.mapillary-token --dry-run
  mlyexport fetch --aoi fixtures/aoi/zurich-lv95.geojson --min-spacing 10m --size 2048"
)]
#[allow(missing_docs)] // clap turns doc comments into help text; the flags' help is the documentation
pub struct FetchArgs {
    /// Study area: min_lon,min_lat,max_lon,max_lat in degrees (WGS 84).
    #[arg(long, value_parser = parse_bbox, allow_hyphen_values = true, value_name = "BBOX",
          conflicts_with = "grid_file", required_unless_present_any = ["grid_file", "aoi"])]
    pub bbox: Option<Bbox>,

    /// File of grid segments: `ID,min_lon,min_lat,max_lon,max_lat` per line
    /// (a header line, blank lines and `#` comments allowed).
    #[arg(long, value_name = "PATH")]
    pub grid_file: Option<PathBuf>,

    /// Cut the bbox into COLSxROWS cells, e.g. `4x3`.
    #[arg(long, value_name = "COLSxROWS", conflicts_with_all = ["cell_size", "grid_file"])]
    pub grid: Option<String>,

    /// Cut the bbox into square cells of about this size, e.g. `500m` or `2km`.
    #[arg(long, value_name = "SIZE", conflicts_with = "grid_file")]
    pub cell_size: Option<String>,

    /// Mapillary access token (prefer MAPILLARY_TOKEN, a .env file or --token-file:
    /// a flag value can show in the process list).
    #[arg(long, value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Read the access token from this file.
    #[arg(long, value_name = "PATH", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,

    /// Graph API root. Plain http is accepted only for loopback addresses.
    #[arg(
        long,
        env = "MLYEXPORT_API_URL",
        value_name = "URL",
        default_value = "https://graph.mapillary.com"
    )]
    pub api_url: String,

    /// Keep images captured at or after this date or UTC datetime
    /// (`2021-06-01` or `2021-06-01T12:00:00Z`).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,

    /// Keep images captured before this date or UTC datetime (a date means its
    /// end: `--until 2021-12-31` keeps the whole of that day).
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,

    /// Panoramas: include them, keep only them, or exclude them.
    #[arg(long, value_enum, default_value_t = PanoFilter::Include)]
    pub pano: PanoFilter,

    /// Keep only images uploaded by this Mapillary username.
    #[arg(long, value_name = "USERNAME")]
    pub creator: Option<String>,

    /// Keep only images of this organization id.
    #[arg(long, value_name = "ID")]
    pub organization: Option<String>,

    /// Download at most N images (the first N in grid order, then capture time).
    #[arg(long, value_name = "N")]
    pub max_images: Option<u64>,

    /// Thumbnail width to download.
    #[arg(long, value_enum, default_value_t = ThumbSize::Original)]
    pub size: ThumbSize,

    /// Output folder; images go to `<DIR>/<grid id>/<image id>.jpg`.
    #[arg(long, short, value_name = "DIR", default_value = "downloads")]
    pub output: PathBuf,

    /// Downloads in flight at once.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub concurrency: usize,

    /// List only: report counts and estimated bytes, write the listing,
    /// download nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,

    /// Search requests per minute at most (the API allows 10,000) [default:
    /// 9000; a shard of N takes 9000/N unless this is given].
    #[arg(long, value_name = "N")]
    pub search_rate: Option<u32>,

    /// Entity requests per minute at most (the API allows 60,000) [default:
    /// 50000; a shard of N takes 50000/N unless this is given].
    #[arg(long, value_name = "N")]
    pub entity_rate: Option<u32>,

    /// Largest number of results the API returns for one search (its cap).
    /// A search-only box answered with half of this or more is split in four.
    #[arg(long, value_name = "N", default_value_t = 2000, hide = true)]
    pub search_cap: u32,

    /// Seconds to wait for a connection; reads time out after 4x this.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub timeout: u64,

    /// Attempts per request before an image or box is recorded as failed.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub retries: u32,

    /// How to enumerate the images: `auto` (verified: z14 vector tiles give
    /// every id, searches planned from their counts, whatever the tiles list
    /// and no search returned is looked up by id), `search` (bbox searches
    /// alone, not verified) or `tiles` (tiles then batched lookups, not
    /// verified). `auto` falls back to `search` when the tiles cannot be used.
    #[arg(long, value_enum, default_value_t = Enumerate::Auto)]
    pub enumerate: Enumerate,

    /// Verified listings: the most images (as the vector tiles count them)
    /// one search box is planned to hold; well under any cap reported.
    #[arg(long, value_name = "N", default_value_t = 1500)]
    pub box_target: u32,

    /// Vector tiles root. Plain http is accepted only for loopback addresses.
    #[arg(
        long,
        env = "MLYEXPORT_TILES_URL",
        value_name = "URL",
        default_value = "https://tiles.mapillary.com"
    )]
    pub tiles_url: String,

    /// Vector tiles this run may ask for at most (the API allows 50,000 a
    /// day) [default: 50000; a shard of N takes 50000/N unless this is given].
    #[arg(long, value_name = "N")]
    pub tile_budget: Option<u32>,

    /// Fetch only shard K of N (K counts from 0: 0/4 to 3/4): N processes,
    /// on one or several machines, list and download disjoint parts of the
    /// area into the same --output folder. Default: from an array job's
    /// index (SLURM_ARRAY_TASK_ID, or JOB_COMPLETION_INDEX /
    /// AWS_BATCH_JOB_ARRAY_INDEX with --shards N); `none` ignores them.
    #[arg(long, value_name = "K/N", value_parser = parse_shard_flag)]
    pub shard: Option<ShardFlag>,

    /// The number of shards N, for an array job whose environment gives only
    /// this task's index (Kubernetes Indexed Jobs, AWS Batch arrays).
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,

    /// Also list a sample of search boxes the other way (search vs tiles)
    /// and report images one way found and the other missed.
    #[arg(long)]
    pub audit: bool,

    /// Study area polygon: a Polygon or MultiPolygon layer in GeoJSON,
    /// GeoPackage or Shapefile (any CRS; all features unless --aoi-where).
    #[arg(long, value_name = "PATH")]
    pub aoi: Option<PathBuf>,

    /// An OGR SQL attribute filter selecting the AOI features, e.g. `name = 'Mitte'`.
    #[arg(long, value_name = "WHERE", requires = "aoi")]
    pub aoi_where: Option<String>,

    /// Keep along each sequence, in capture order, the first image and then
    /// each image at least this far from the last kept one, e.g. `10m`.
    #[arg(long, value_name = "DISTANCE")]
    pub min_spacing: Option<String>,

    /// Which position places an image in the area and its grid: the
    /// camera's GPS (`original`, what the API's bbox filter uses) or the
    /// SfM-computed one (then the computed tiles are read).
    #[arg(long, value_enum, default_value_t = PositionSource::Original)]
    pub position: PositionSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(missing_docs)] // clap turns doc comments into help text; the flags' help is the documentation
pub enum LayerFormat {
    Gpkg,
    Geojson,
    Csv,
    /// `report.html`: an offline page with the coverage map, charts and table.
    Html,
    /// Tables in a PostGIS schema (needs `--pg`); a re-run replaces them at once.
    Postgis,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  mlyexport layers
  mlyexport layers --input downloads --format gpkg,geojson,csv,html --as-of 2026-01-01
  mlyexport layers --input downloads --output study-layers --position original --no-exif
  mlyexport layers --input old-python-output --format gpkg,csv
  PGPASSWORD=... mlyexport layers --format gpkg,postgis --pg \"PG:host=db.example.org dbname=gis schema=mapillary\"")]
#[allow(missing_docs)] // clap turns doc comments into help text; the flags' help is the documentation
pub struct LayersArgs {
    /// Folder written by `mlyexport fetch` (or by the old Python tool).
    #[arg(long, short, value_name = "DIR", default_value = "downloads")]
    pub input: PathBuf,

    /// Output formats, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "gpkg,html")]
    pub format: Vec<LayerFormat>,

    /// PostgreSQL target of `--format postgis`: libpq `keyword=value` pairs
    /// after `PG:`, plus `schema=NAME` (default `public`). No password here
    /// (the process list shows it): use PGPASSWORD, ~/.pgpass or a service
    /// file (`service=NAME`).
    #[arg(long, value_name = "PG:...")]
    pub pg: Option<String>,

    /// Output folder (default `<input>/layers`).
    #[arg(long, short, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Do not embed GPS EXIF tags into the JPEGs.
    #[arg(long)]
    pub no_exif: bool,

    /// Position and direction to use: SfM-computed (falling back to the
    /// camera's GPS) or the camera's original GPS.
    #[arg(long, value_enum, default_value_t = PositionSource::Computed)]
    pub position: PositionSource,

    /// Reference time of the coverage's "months since the newest capture"
    /// (`2024-06-01` or `2024-06-01T12:00:00Z`). Default: when the last fetch
    /// run finished, or today (UTC midnight) without a run record.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,

    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "`exiftool -n -a -G1 fixtures/jpeg/mlyexport-gps.jpg` shows the tags a JPEG gets.

Examples:
  mlyexport exif
  mlyexport exif --input downloads --position original
  mlyexport exif --input old-python-output --quiet"
)]
#[allow(missing_docs)] // clap turns doc comments into help text; the flags' help is the documentation
pub struct ExifArgs {
    /// Folder written by `mlyexport fetch`.
    #[arg(long, short, value_name = "DIR", default_value = "downloads")]
    pub input: PathBuf,

    /// Position and direction to use.
    #[arg(long, value_enum, default_value_t = PositionSource::Computed)]
    pub position: PositionSource,

    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Moves each good image of the old tool's `<segment>/images/` into `<segment>/<id>.jpg` with an
`<id>.json` in mlyexport's format; the old JSONs go to `.mlyexport-adopted/`. Nothing is
deleted; broken images and files not understood stay where they are, named in
`adopt-report.json`. A killed run is finished by running it again.

Examples:
  cp -r fixtures/old-tool /tmp/old && mlyexport adopt --input /tmp/old --dry-run
  mlyexport adopt --input downloads --dry-run
  mlyexport adopt --input downloads
  mlyexport fetch --grid-file downloads/study_area_segments.txt --output downloads"
)]
#[allow(missing_docs)] // clap turns doc comments into help text; the flags' help is the documentation
pub struct AdoptArgs {
    /// The old tool's downloads folder (with `study_area_segments.txt` and one folder per segment).
    #[arg(long, short, value_name = "DIR", default_value = "downloads")]
    pub input: PathBuf,

    /// Show what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

// The command-line names and help of the core's closed choices. The core
// types know nothing of clap; these impls are the only place they meet.

impl ValueEnum for ThumbSize {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::S256, Self::S1024, Self::S2048, Self::Original]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}

impl ValueEnum for PanoFilter {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Include, Self::Only, Self::Exclude]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Self::Include => "include",
            Self::Only => "only",
            Self::Exclude => "exclude",
        }))
    }
}

impl ValueEnum for PositionSource {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Computed, Self::Original]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Self::Computed => PossibleValue::new("computed")
                .help("`computed_geometry`, falling back to `geometry` when absent"),
            Self::Original => PossibleValue::new("original")
                .help("`geometry` (the camera's GPS), falling back to `computed_geometry`"),
        })
    }
}

impl ValueEnum for Enumerate {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Auto, Self::Search, Self::Tiles]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Self::Auto => {
                PossibleValue::new("auto").help("Verified against the vector tiles (the default)")
            }
            Self::Search => PossibleValue::new("search").help("Bbox searches alone (not verified)"),
            Self::Tiles => {
                PossibleValue::new("tiles").help("Vector tiles then batched lookups (not verified)")
            }
        })
    }
}

/// `mlyexport status`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  mlyexport status --input /shared/berlin
  mlyexport status --input /shared/berlin --json | jq '.shards[] | select(.state != \"complete\")'

A shard whose record says running is checked against its lock: `running` (a fetch holds it),
`killed` (none does, and it was taken where this process sees its locks: this machine, this
mount, this boot), or `unverified` (taken on another node, through another mount or before a
reboot, or it could not be tested).

Exit codes: 0 every shard finished with nothing missing, 1 not yet (a shard has not started,
is running, was killed, failed or left images or cells to fetch: re-run those shards), 2 error.")]
pub struct StatusArgs {
    /// The output folder of the fetch (all its shards).
    #[arg(long, short, value_name = "DIR", default_value = "downloads")]
    pub input: PathBuf,

    /// Print the status as one JSON object (for scripts).
    #[arg(long)]
    pub json: bool,
}
