//! Turns raw flags plus the environment into one validated config per
//! command: [`FetchConfig`], [`LayersConfig`], [`ExifConfig`]. All validation
//! happens here; nothing downstream sees raw strings. Dates of every flag are
//! parsed by `parse_date`. Reads
//! the environment, `.env` and token files; never touches the network and
//! never prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::aoi::{Aoi, AoiError};
use crate::api::{ApiConfig, RetryPolicy, TilesConfig};
use crate::cli::{ExifArgs, FetchArgs, LayerFormat, LayersArgs};
use crate::model::{AccessToken, Bbox, PositionSource, ThumbSize};
use crate::pgconn::PgTarget;
use crate::plan::{self, Plan, PlanError};
use crate::runrecord::{AoiRecord, Area, Filters, Request};
use crate::shard::{self, Shard, ShardError, ShardSource, Split};

/// Environment variables mlyexport reads.
pub(crate) struct EnvVars;
impl EnvVars {
    pub(crate) const TOKEN: &'static str = "MAPILLARY_TOKEN";
    /// Test knob: retry delays become a millisecond (never set it for real use).
    pub(crate) const TEST_NO_RETRY_DELAY: &'static str = "MLYEXPORT_TEST_NO_RETRY_DELAY";
}

/// A flag or environment value that is not acceptable.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
pub enum ConfigError {
    #[error(
        "no Mapillary access token: pass --token-file PATH, set MAPILLARY_TOKEN, or put MAPILLARY_TOKEN=... in a .env file here (get a token at https://www.mapillary.com/dashboard/developers)"
    )]
    NoToken,
    #[error("{0}")]
    Pg(String),
    #[error("the access token from {0} is empty or contains spaces or control characters")]
    BadToken(String),
    #[error("cannot read the token file `{path}`: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read `{path}`: {message}")]
    DotEnv { path: PathBuf, message: String },
    #[error("--api-url `{0}` is not a URL")]
    ApiUrl(String),
    #[error(
        "--api-url `{0}` uses plain http: only https is allowed, except for loopback addresses (127.0.0.1, ::1, localhost)"
    )]
    InsecureApiUrl(String),
    #[error("{flag} `{value}` is not a date (YYYY-MM-DD) or UTC datetime (YYYY-MM-DDTHH:MM:SSZ)")]
    Date { flag: &'static str, value: String },
    #[error(
        "input folder `{0}` does not exist or is not a folder; pass the folder `mlyexport fetch` wrote with --input"
    )]
    NoInput(PathBuf),
    #[error("--since {since} is after --until {until}: nothing can match")]
    DateOrder { since: String, until: String },
    #[error("--grid-file `{path}`: {source}")]
    GridFile { path: PathBuf, source: PlanError },
    #[error("cannot read --grid-file `{path}`: {source}")]
    GridFileRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("--grid and --cell-size need --bbox or --aoi")]
    GridNeedsBbox,
    #[error(transparent)]
    Aoi(#[from] AoiError),
    #[error(
        "no grid cell touches the polygon of --aoi `{aoi}`; check the bbox or the polygon's CRS"
    )]
    AoiOutside { aoi: String },
    #[error("{flag} `{value}` must be a distance such as `10m` or `0.5km`, at least {min} m")]
    Distance {
        flag: &'static str,
        value: String,
        min: f64,
    },
    #[error("--tiles-url `{0}` is not a URL")]
    TilesUrl(String),
    #[error(
        "--tiles-url `{0}` uses plain http: only https is allowed, except for loopback addresses (127.0.0.1, ::1, localhost)"
    )]
    InsecureTilesUrl(String),
    #[error("{flag} must be at least {min} (got {value})")]
    TooSmall {
        flag: &'static str,
        value: u64,
        min: u64,
    },
    #[error("{flag} must be at most {max} (got {value})")]
    TooLarge {
        flag: &'static str,
        value: u64,
        max: u64,
    },
    #[error("--creator `{0}` is not a plausible username")]
    Creator(String),
    #[error("--organization `{0}` must be a numeric id")]
    Organization(String),
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(
        "--max-images cannot be split among shards (each would keep its own first N; shard {shard}); fetch without --max-images, or without shards"
    )]
    ShardMaxImages { shard: Shard },
    #[error("output folder `{path}` is not writable: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Everything `fetch` needs, validated.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// The grid cells to list (after `--aoi`), with their ownership.
    pub plan: Plan,
    /// The study-area polygon, when `--aoi` was given.
    pub aoi: Option<std::sync::Arc<Aoi>>,
    /// Where the vector tiles are read, and the tile budget.
    pub tiles: TilesConfig,
    /// List a sample of boxes both ways and report the differences.
    pub audit: bool,
    /// Verified listings: most tile-counted images planned per search box.
    pub box_target: usize,
    /// What is asked for: area, filters and rendition (recorded in the run record).
    pub request: Request,
    /// The output folder.
    pub output: PathBuf,
    /// Downloads in flight at once.
    pub concurrency: usize,
    /// List only, download nothing (`--dry-run`).
    pub dry_run: bool,
    /// Print nothing but errors.
    pub quiet: bool,
    /// The Graph API client's settings.
    pub api: ApiConfig,
    /// The command line with any token value replaced by `****`.
    pub command_line: Vec<String>,
    /// When this run is one shard of a fetch split among several: which,
    /// and the whole split (`plan` is then this shard's part).
    pub(crate) shard: Option<ShardRun>,
}

/// One shard of a fetch split among several processes.
#[derive(Debug, Clone)]
pub(crate) struct ShardRun {
    pub(crate) shard: Shard,
    pub(crate) source: ShardSource,
    pub(crate) split: Split,
}

/// Default requests per minute and tiles per run of a whole fetch (a
/// shard takes 1/N of each unless its flag is given).
const DEFAULT_SEARCH_RATE: u32 = 9_000;
const DEFAULT_ENTITY_RATE: u32 = 50_000;
const DEFAULT_TILE_BUDGET: u32 = 50_000;

impl FetchConfig {
    /// Validates `args`; `env` looks up environment variables and `cwd` is
    /// where `.env` is looked for.
    pub fn from_args(
        args: FetchArgs,
        env: &dyn Fn(&str) -> Option<String>,
        cwd: &Path,
        argv: Vec<String>,
    ) -> Result<Self, ConfigError> {
        let aoi = args
            .aoi
            .as_deref()
            .map(|p| Aoi::read(p, args.aoi_where.as_deref()))
            .transpose()?;
        let (plan, area) = plan_from_args(&args, aoi.as_ref())?;
        let (plan, shard) = shard_from_args(&args, env, plan)?;
        let rates = Rates::of(&args, shard.as_ref().map_or(1, |s| s.shard.count()));
        let min_spacing_m = args
            .min_spacing
            .as_deref()
            .map(|s| parse_distance(s, "--min-spacing", 0.5))
            .transpose()?;
        let filters = filters_from_args(&args)?;
        check_fetch_ranges(&args, &rates)?;
        let (base_url, tiles) = urls_from_args(&args, rates.tiles)?;
        let token = load_token(&args, env, cwd)?;
        let retry = retry_policy(args.retries, env);
        check_output(&args.output)?;
        let request = Request {
            area,
            filters,
            size: args.size,
            enumerate: args.enumerate,
            position: args.position,
            min_spacing_m,
        };
        Ok(FetchConfig {
            plan,
            aoi: aoi.map(std::sync::Arc::new),
            tiles,
            audit: args.audit,
            box_target: (args.box_target.min(args.search_cap * 3 / 4).max(1)) as usize,
            request,
            output: args.output.clone(),
            concurrency: args.concurrency,
            dry_run: args.dry_run,
            quiet: args.quiet,
            api: ApiConfig {
                base_url,
                token,
                connect_timeout: Duration::from_secs(args.timeout),
                read_timeout: Duration::from_secs(args.timeout * 4),
                retry,
                search_per_min: rates.search,
                entity_per_min: rates.entity,
                search_cap: args.search_cap,
            },
            command_line: redact_argv(argv),
            shard,
        })
    }

    /// The run record's file name: one per shard when sharded.
    pub(crate) fn record_file(&self) -> String {
        self.shard.as_ref().map_or_else(
            || crate::runrecord::RUN_RECORD_FILE.to_string(),
            |s| s.shard.record_file(),
        )
    }

    /// The listing's file name: one per shard when sharded.
    pub(crate) fn listing_file(&self) -> String {
        self.shard.as_ref().map_or_else(
            || crate::store::LISTING_FILE.to_string(),
            |s| s.shard.listing_file(),
        )
    }

    /// The audit's file name: one per shard when sharded.
    pub(crate) fn audit_file(&self) -> String {
        self.shard.as_ref().map_or_else(
            || crate::store::AUDIT_FILE.to_string(),
            |s| s.shard.audit_file(),
        )
    }

    pub(crate) fn size(&self) -> ThumbSize {
        self.request.size
    }
}

/// The listing filters of `fetch`'s flags: dates (in order), creator,
/// organization, `--max-images`.
fn filters_from_args(args: &FetchArgs) -> Result<Filters, ConfigError> {
    let since = args
        .since
        .as_deref()
        .map(|s| parse_date(s, "--since", false))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| parse_date(s, "--until", true))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(ConfigError::DateOrder {
            since: args.since.clone().unwrap_or_default(),
            until: args.until.clone().unwrap_or_default(),
        });
    }
    if let Some(c) = &args.creator {
        let ok = !c.is_empty()
            && c.len() <= 100
            && c.chars()
                .all(|ch| ch.is_alphanumeric() || "-_.".contains(ch));
        if !ok {
            return Err(ConfigError::Creator(c.clone()));
        }
    }
    if let Some(o) = &args.organization
        && (o.is_empty() || o.len() > 20 || !o.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ConfigError::Organization(o.clone()));
    }
    if args.max_images == Some(0) {
        return Err(ConfigError::TooSmall {
            flag: "--max-images",
            value: 0,
            min: 1,
        });
    }
    Ok(Filters {
        since,
        until,
        pano: args.pano,
        creator: args.creator.clone(),
        organization: args.organization.clone(),
        max_images: args.max_images,
    })
}

/// The request rates and tile budget of one run: the flags when given,
/// else the defaults, divided among N shards.
struct Rates {
    search: u32,
    entity: u32,
    tiles: u32,
}

impl Rates {
    fn of(args: &FetchArgs, shards: u32) -> Rates {
        let or_share = |flag: Option<u32>, total| flag.unwrap_or(shard::share(total, shards));
        Rates {
            search: or_share(args.search_rate, DEFAULT_SEARCH_RATE),
            entity: or_share(args.entity_rate, DEFAULT_ENTITY_RATE),
            tiles: or_share(args.tile_budget, DEFAULT_TILE_BUDGET),
        }
    }
}

/// The numeric flags of `fetch` that must lie in a range.
fn check_fetch_ranges(args: &FetchArgs, rates: &Rates) -> Result<(), ConfigError> {
    check_range("--concurrency", args.concurrency as u64, 1, 256)?;
    check_range("--search-rate", u64::from(rates.search), 1, 10_000)?;
    check_range("--entity-rate", u64::from(rates.entity), 1, 60_000)?;
    check_range("--search-cap", u64::from(args.search_cap), 10, 2000)?;
    check_range("--timeout", args.timeout, 1, 600)?;
    check_range("--retries", u64::from(args.retries), 1, 20)
}

/// The Graph API root and the tiles host (with `--tile-budget`); also
/// checks `--box-target`.
fn urls_from_args(
    args: &FetchArgs,
    tile_budget: u32,
) -> Result<(reqwest::Url, TilesConfig), ConfigError> {
    let base_url = parse_api_url(&args.api_url)?;
    let tiles_url = parse_api_url(&args.tiles_url).map_err(|e| match e {
        ConfigError::InsecureApiUrl(u) => ConfigError::InsecureTilesUrl(u),
        ConfigError::ApiUrl(u) => ConfigError::TilesUrl(u),
        other => other,
    })?;
    check_range("--tile-budget", u64::from(tile_budget), 1, 1_000_000)?;
    check_range("--box-target", u64::from(args.box_target), 10, 2000)?;
    let tiles = TilesConfig {
        base_url: tiles_url,
        budget: tile_budget,
    };
    Ok((base_url, tiles))
}

/// `attempts` in all; a millisecond apart under the test knob.
fn retry_policy(attempts: u32, env: &dyn Fn(&str) -> Option<String>) -> RetryPolicy {
    let fast = env(EnvVars::TEST_NO_RETRY_DELAY).is_some_and(|v| v == "1");
    RetryPolicy {
        attempts,
        base: if fast {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(500)
        },
        max: if fast {
            Duration::from_millis(5)
        } else {
            Duration::from_secs(60)
        },
    }
}

/// A file `layers` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `mapillary.gpkg`.
    Gpkg,
    /// `images.geojson`, `sequences.geojson`, `grid_cells.geojson`.
    Geojson,
    /// `images.csv`.
    Csv,
    /// `report.html`.
    Html,
    /// Tables in a PostGIS schema (the target is [`LayersConfig`]'s `--pg`).
    Postgis,
}

impl From<LayerFormat> for OutputFormat {
    fn from(f: LayerFormat) -> Self {
        match f {
            LayerFormat::Gpkg => OutputFormat::Gpkg,
            LayerFormat::Geojson => OutputFormat::Geojson,
            LayerFormat::Csv => OutputFormat::Csv,
            LayerFormat::Html => OutputFormat::Html,
            LayerFormat::Postgis => OutputFormat::Postgis,
        }
    }
}

/// `mlyexport layers`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct LayersConfig {
    /// The downloads folder (an existing folder).
    pub input: PathBuf,
    /// Where the files go (`<input>/layers` unless told).
    pub output: PathBuf,
    /// Formats to write, each once, in the order asked.
    pub formats: Vec<OutputFormat>,
    /// Whether to embed GPS EXIF tags into the JPEGs first.
    pub exif: bool,
    /// The position (and direction) used.
    pub position: PositionSource,
    /// Reference time of the coverage; `None`: the last fetch run's end, else today.
    pub as_of: Option<DateTime<Utc>>,
    /// Print nothing but errors.
    pub quiet: bool,
    /// The PostGIS target of `--format postgis --pg ...` (no password in it).
    pub(crate) pg: Option<PgTarget>,
}

impl LayersConfig {
    /// Validates the flags of `layers`.
    pub fn from_args(args: &LayersArgs) -> Result<Self, ConfigError> {
        check_input(&args.input)?;
        let as_of = args
            .as_of
            .as_deref()
            .map(|s| parse_date(s, "--as-of", false))
            .transpose()?;
        let mut formats: Vec<OutputFormat> = Vec::new();
        for f in args.format.iter().map(|&f| OutputFormat::from(f)) {
            if !formats.contains(&f) {
                formats.push(f);
            }
        }
        let pg = pg_target(&formats, args.pg.as_deref())?;
        Ok(LayersConfig {
            input: args.input.clone(),
            output: args
                .output
                .clone()
                .unwrap_or_else(|| args.input.join("layers")),
            formats,
            exif: !args.no_exif,
            position: args.position,
            pg,
            as_of,
            quiet: args.quiet,
        })
    }
}

/// The PostGIS target of `--format postgis --pg ...`, checked; `None`
/// without `postgis` in the formats.
fn pg_target(formats: &[OutputFormat], pg: Option<&str>) -> Result<Option<PgTarget>, ConfigError> {
    match (formats.contains(&OutputFormat::Postgis), pg) {
        (false, None) => Ok(None),
        (true, Some(pg)) => PgTarget::parse(pg)
            .map(Some)
            .map_err(|e| ConfigError::Pg(e.to_string())),
        (true, None) => Err(ConfigError::Pg(
            "--format postgis needs --pg \"PG:host=... dbname=... schema=...\" (the password \
             comes from PGPASSWORD, ~/.pgpass or a service file)"
                .into(),
        )),
        (false, Some(_)) => Err(ConfigError::Pg(
            "--pg is given but --format has no `postgis`; add it, e.g. --format gpkg,postgis"
                .into(),
        )),
    }
}

/// `mlyexport exif`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExifConfig {
    /// The downloads folder (an existing folder).
    pub input: PathBuf,
    /// The position (and direction) written.
    pub position: PositionSource,
    /// Print nothing but errors.
    pub quiet: bool,
}

impl ExifConfig {
    /// Validates the flags of `exif`.
    pub fn from_args(args: &ExifArgs) -> Result<Self, ConfigError> {
        check_input(&args.input)?;
        Ok(ExifConfig {
            input: args.input.clone(),
            position: args.position,
            quiet: args.quiet,
        })
    }
}

fn check_input(dir: &Path) -> Result<(), ConfigError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(ConfigError::NoInput(dir.to_path_buf()))
    }
}

fn check_range(flag: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::TooSmall { flag, value, min });
    }
    if value > max {
        return Err(ConfigError::TooLarge { flag, value, max });
    }
    Ok(())
}

/// Which shard this run is (`--shard`, `--shards` or an array job's
/// environment) and its part of `plan`; the whole plan when not sharded.
fn shard_from_args(
    args: &FetchArgs,
    env: &dyn Fn(&str) -> Option<String>,
    plan: Plan,
) -> Result<(Plan, Option<ShardRun>), ConfigError> {
    let Some((shard, source)) = shard::resolve(args.shard, args.shards, env)? else {
        return Ok((plan, None));
    };
    if args.max_images.is_some() {
        return Err(ConfigError::ShardMaxImages { shard });
    }
    let split = Split::new(&plan, shard.count())?;
    let part = split
        .plan_of(&plan, shard.index())
        .ok_or(ConfigError::Shard(ShardError::TooFine {
            cells: plan.grids().len(),
            count: shard.count(),
        }))?;
    let run = ShardRun {
        shard,
        source,
        split,
    };
    Ok((part, Some(run)))
}

fn plan_from_args(args: &FetchArgs, aoi: Option<&Aoi>) -> Result<(Plan, Area), ConfigError> {
    let (plan, mut area) = plan_from_area_args(args, aoi.map(Aoi::bbox))?;
    let Some(aoi) = aoi else {
        return Ok((plan, area));
    };
    // Only cells that touch the polygon are kept; they keep their numbers.
    let kept: Vec<_> = plan
        .grids()
        .iter()
        .filter(|g| aoi.intersects_box(&g.bbox))
        .cloned()
        .collect();
    let plan = Plan::new(kept).ok_or_else(|| ConfigError::AoiOutside {
        aoi: aoi.source.clone(),
    })?;
    if args.bbox.is_none() && args.grid_file.is_none() {
        area.kind = if area.grid_spec.is_some() {
            "grid"
        } else {
            "aoi"
        }
        .into();
    }
    area.aoi = Some(AoiRecord {
        source: aoi.source.clone(),
        geometry: aoi.to_geojson(),
    });
    Ok((plan, area))
}

fn plan_from_area_args(
    args: &FetchArgs,
    aoi_bbox: Option<Bbox>,
) -> Result<(Plan, Area), ConfigError> {
    if let Some(path) = &args.grid_file {
        let text =
            crate::input::read_text_bounded(path, plan::MAX_GRID_FILE_BYTES).map_err(|source| {
                ConfigError::GridFileRead {
                    path: path.clone(),
                    source,
                }
            })?;
        let grid_err = |source| ConfigError::GridFile {
            path: path.clone(),
            source,
        };
        let grids = plan::parse_grid_file(&text).map_err(grid_err)?;
        let plan = Plan::new(grids).ok_or_else(|| grid_err(PlanError::EmptyGridFile))?;
        let area = Area {
            kind: "grid_file".into(),
            bbox: plan.area(),
            grid_file: Some(path.display().to_string()),
            grid_spec: None,
            aoi: None,
        };
        return Ok((plan, area));
    }
    let bbox: Bbox = args.bbox.or(aoi_bbox).ok_or(ConfigError::GridNeedsBbox)?;
    let (cols_rows, spec) = match (&args.grid, &args.cell_size) {
        (Some(g), _) => (Some(plan::parse_grid_spec(g)?), Some(format!("--grid {g}"))),
        (None, Some(s)) => {
            let m = plan::parse_cell_size(s)?;
            (
                Some(plan::grid_for_cell_size(&bbox, m)?),
                Some(format!("--cell-size {s}")),
            )
        }
        (None, None) => (None, None),
    };
    bbox.check_min_side().map_err(PlanError::from)?;
    let plan = match cols_rows {
        Some((c, r)) => Plan::new(plan::cut(&bbox, c, r)?).ok_or(PlanError::CellTooSmall {
            cols: c,
            rows: r,
            min: crate::model::MIN_AREA_SIDE_DEG,
        })?,
        None => Plan::single(bbox),
    };
    let area = Area {
        kind: if spec.is_some() { "grid" } else { "bbox" }.into(),
        bbox,
        grid_file: None,
        grid_spec: spec,
        aoi: None,
    };
    Ok((plan, area))
}

/// Parses a distance such as `10m` or `0.5km` into metres, at least `min`.
pub(crate) fn parse_distance(s: &str, flag: &'static str, min: f64) -> Result<f64, ConfigError> {
    plan::parse_length_m(s)
        .filter(|m| *m >= min)
        .ok_or_else(|| ConfigError::Distance {
            flag,
            value: s.to_string(),
            min,
        })
}

/// Parses the date of any flag (`--since`, `--until`, `--as-of`): a date
/// `YYYY-MM-DD`, an RFC 3339 time (`2024-06-01T12:00:00Z`,
/// `2024-06-01T14:00:00+02:00`), or a time without offset
/// (`2024-06-01T12:00:00`), taken as UTC. A bare date is its UTC midnight,
/// or as an upper bound (`end_of_day`) the last millisecond of that day.
pub(crate) fn parse_date(
    s: &str,
    flag: &'static str,
    end_of_day: bool,
) -> Result<DateTime<Utc>, ConfigError> {
    let err = || ConfigError::Date {
        flag,
        value: s.to_string(),
    };
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = if end_of_day {
            d.and_hms_milli_opt(23, 59, 59, 999)
        } else {
            d.and_hms_opt(0, 0, 0)
        }
        .ok_or_else(err)?;
        return Ok(t.and_utc());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .map(|t| t.and_utc())
        .map_err(|_| err())
}

/// Accepts https anywhere and http only on loopback.
pub(crate) fn parse_api_url(s: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(s).map_err(|_| ConfigError::ApiUrl(s.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            if !crate::api::is_loopback(&url) {
                return Err(ConfigError::InsecureApiUrl(s.to_string()));
            }
        }
        _ => return Err(ConfigError::ApiUrl(s.to_string())),
    }
    if url.host().is_none() || url.query().is_some() || !url.username().is_empty() {
        return Err(ConfigError::ApiUrl(s.to_string()));
    }
    Ok(url)
}

fn load_token(
    args: &FetchArgs,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<AccessToken, ConfigError> {
    let (raw, source) = if let Some(t) = &args.token {
        (t.clone(), "--token".to_string())
    } else if let Some(p) = &args.token_file {
        let t = crate::input::read_text_bounded(p, MAX_TOKEN_FILE_BYTES).map_err(|source| {
            ConfigError::TokenFile {
                path: p.clone(),
                source,
            }
        })?;
        (t, format!("--token-file `{}`", p.display()))
    } else if let Some(t) = env(EnvVars::TOKEN) {
        (t, EnvVars::TOKEN.to_string())
    } else if let Some(t) = token_from_dotenv(&cwd.join(".env"))? {
        (t, "`.env`".to_string())
    } else {
        return Err(ConfigError::NoToken);
    };
    let valid_chars = raw.trim().bytes().all(|b| (0x21..0x7f).contains(&b));
    match AccessToken::new(&raw) {
        Some(t) if valid_chars => Ok(t),
        _ => Err(ConfigError::BadToken(source)),
    }
}

/// Largest token file read, in bytes (a token is about 50).
const MAX_TOKEN_FILE_BYTES: u64 = 64 << 10;
/// Largest `.env` file read, in bytes.
const MAX_DOTENV_BYTES: u64 = 1 << 20;

fn token_from_dotenv(path: &Path) -> Result<Option<String>, ConfigError> {
    if !path.is_file() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    crate::input::read_bounded_into(path, MAX_DOTENV_BYTES, &mut bytes).map_err(|e| {
        ConfigError::DotEnv {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    let iter = dotenvy::from_read_iter(std::io::Cursor::new(bytes));
    for item in iter {
        // A malformed line is reported without its content (it may be a secret).
        let (k, v) = item.map_err(|_| ConfigError::DotEnv {
            path: path.to_path_buf(),
            message: "a line is not KEY=VALUE".into(),
        })?;
        if k == EnvVars::TOKEN {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

fn check_output(dir: &Path) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Output {
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(err(std::io::Error::other("it exists and is not a folder")));
    }
    // Probe the nearest existing ancestor without creating anything.
    let mut probe = dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p,
            _ => {
                probe = Path::new(".");
                break;
            }
        }
    }
    tempfile::Builder::new()
        .prefix(crate::store::TEMP_PREFIX)
        .tempfile_in(probe)
        .map(drop)
        .map_err(err)
}

/// Replaces the value of `--token` (either form) with `****`.
pub(crate) fn redact_argv(argv: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut hide_next = false;
    for a in argv {
        if hide_next {
            out.push("****".into());
            hide_next = false;
        } else if a == "--token" {
            out.push(a);
            hide_next = true;
        } else if a.starts_with("--token=") {
            out.push("--token=****".into());
        } else {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_rules() {
        assert!(parse_api_url("https://graph.mapillary.com").is_ok());
        assert!(parse_api_url("http://127.0.0.1:8080").is_ok());
        assert!(parse_api_url("http://localhost:1").is_ok());
        assert!(parse_api_url("http://[::1]:1").is_ok());
        assert!(matches!(
            parse_api_url("http://graph.mapillary.com"),
            Err(ConfigError::InsecureApiUrl(_))
        ));
        assert!(parse_api_url("ftp://x").is_err());
        assert!(parse_api_url("graph.mapillary.com").is_err());
    }

    #[test]
    fn dates() {
        let s = parse_date("2021-06-01", "--since", false).unwrap();
        assert_eq!(s.to_rfc3339(), "2021-06-01T00:00:00+00:00");
        let u = parse_date("2021-06-01", "--until", true).unwrap();
        assert_eq!(u.timestamp_millis() - s.timestamp_millis(), 86_399_999);
        assert!(parse_date("2021-06-01T12:00:00Z", "--since", false).is_ok());
        assert!(parse_date("June 1", "--since", false).is_err());
    }

    /// Every date flag takes the same three forms (`--as-of` took no time
    /// without offset before, `--since` and `--until` did).
    #[test]
    fn every_date_flag_takes_a_date_a_time_with_offset_and_one_without() {
        let noon = "2024-06-01T12:00:00Z";
        for flag in ["--since", "--until", "--as-of"] {
            let t = |s: &str| parse_date(s, flag, false).map(|t| t.to_rfc3339());
            assert_eq!(t("2024-06-01").unwrap(), "2024-06-01T00:00:00+00:00");
            assert_eq!(t(noon).unwrap(), "2024-06-01T12:00:00+00:00");
            assert_eq!(
                t("2024-06-01T14:00:00+02:00").unwrap(),
                "2024-06-01T12:00:00+00:00"
            );
            assert_eq!(
                t("2024-06-01T12:00:00").unwrap(),
                "2024-06-01T12:00:00+00:00"
            );
            let e = parse_date("2024-13-01", flag, false)
                .unwrap_err()
                .to_string();
            assert!(e.contains(flag) && e.contains("2024-13-01"), "{e}");
        }
    }

    #[test]
    fn layers_config_dedups_formats_and_parses_as_of() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().to_str().unwrap();
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "mlyexport",
            "layers",
            "--input",
            input,
            "--format",
            "csv,gpkg,csv",
            "--as-of",
            "2024-06-01T12:00:00",
        ])
        .unwrap();
        let crate::cli::Command::Layers(args) = cli.command else {
            panic!("not layers")
        };
        let c = LayersConfig::from_args(&args).unwrap();
        assert_eq!(c.formats, [OutputFormat::Csv, OutputFormat::Gpkg]);
        assert_eq!(c.output, dir.path().join("layers"));
        assert_eq!(c.as_of.unwrap().to_rfc3339(), "2024-06-01T12:00:00+00:00");
        assert!(c.exif);
    }

    #[test]
    fn redacts_tokens() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            redact_argv(v(&["mlyexport", "--token", "MLY|1|x", "--token=MLY|2|y"])),
            v(&["mlyexport", "--token", "****", "--token=****"])
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn dates_never_panic(s in "\\PC{0,40}", end in any::<bool>()) {
                let _ = parse_date(&s, "--since", end);
            }

            #[test]
            fn near_dates_never_panic(
                s in "[+-]?[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}(T[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?)?",
                end in any::<bool>(),
            ) {
                let _ = parse_date(&s, "--until", end);
            }

            #[test]
            fn valid_dates_parse(y in 1900i32..2100, m in 1u32..=12, d in 1u32..=28, end in any::<bool>()) {
                let s = format!("{y:04}-{m:02}-{d:02}");
                prop_assert!(parse_date(&s, "--since", end).is_ok());
                let t = format!("{s}T12:34:56Z");
                prop_assert!(parse_date(&t, "--since", end).is_ok());
            }

            #[test]
            fn distances_never_panic(s in "\\PC{0,20}") {
                if let Ok(m) = parse_distance(&s, "--min-spacing", 0.5) {
                    prop_assert!(m.is_finite() && m >= 0.5);
                }
            }
        }
    }
}
