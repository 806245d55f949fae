//! The `mlysim` binary: runs the simulator on loopback until SIGTERM/SIGINT, or prints ground truth.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use mlysim::{
    BboxPosition, Faults, Hostile, Ports, ResultOrder, Sim, SimConfig, TileDrift, TruthFilter,
    World, WorldSpec,
};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum WorldKind {
    Demo,
    Dense,
    City,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PositionArg {
    Original,
    Computed,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OrderArg {
    Edge,
    Random,
    Time,
    UntiledLast,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DriftArg {
    BlankIds,
    NonNumericIds,
    NoImageLayer,
    WrongTypes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum HostileArg {
    TileBomb,
    HugeSearch,
    HugeThumb,
    Formula,
    /// Entity calls for unknown ids answer 200 `{"id": "https://..."}`.
    UrlAsId,
    /// Every tile answers 200 with an empty body.
    EmptyTiles,
}

#[derive(Clone, Copy, Debug)]
struct Bbox([f64; 4]);

fn parse_bbox(s: &str) -> Result<Bbox, String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let b: [f64; 4] = v
        .try_into()
        .map_err(|_| "expected min_lon,min_lat,max_lon,max_lat".to_string())?;
    Ok(Bbox(b))
}

/// A Mapillary API v4 simulator (Graph + CDN + vector tiles) on 127.0.0.1.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[arg(long, value_enum, default_value = "demo")]
    world: WorldKind,
    /// Number of images (dense default 20000, city default 50000; demo fixed unless given).
    #[arg(long)]
    images: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Graph port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// CDN port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    cdn_port: u16,
    /// Vector-tiles port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    tiles_port: u16,
    /// Tile requests allowed per token per day.
    #[arg(long, default_value_t = 50_000)]
    tiles_per_day: u32,
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, default_value_t = 2000)]
    cap: usize,
    #[arg(long)]
    fuzzy_cap: bool,
    /// A bbox answer cut by the cap carries `paging.next`.
    #[arg(long)]
    bbox_paging: bool,
    /// With --fuzzy-cap, the cap of a bbox varies in [cap * (1 - F), cap].
    #[arg(long, default_value_t = 0.06)]
    cap_fuzz: f64,
    /// Position a bbox search filters on.
    #[arg(long, value_enum, default_value = "original")]
    bbox_position: PositionArg,
    /// Order of bbox results (truncation keeps the first ones).
    #[arg(long, value_enum, default_value = "edge")]
    result_order: OrderArg,
    /// Images the Graph serves but the tiles leave out.
    #[arg(long, default_value_t = 0)]
    tiles_missing: usize,
    /// Deleted images the z14 image layer still shows.
    #[arg(long, default_value_t = 0)]
    tiles_stale: usize,
    /// Largest distance (m) of computed_geometry from geometry.
    #[arg(long)]
    computed_offset_m: Option<f64>,
    /// Schema drift of z14 tiles.
    #[arg(long, value_enum)]
    tile_drift: Option<DriftArg>,
    /// Hostile answers, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    hostile: Vec<HostileArg>,
    /// Answer every thumbnail with 302 to this origin (same path and query).
    #[arg(long)]
    redirect_thumbs_to: Option<String>,
    #[arg(long, default_value_t = 0.0)]
    http500: f64,
    #[arg(long, default_value_t = 0.0)]
    timeout400: f64,
    #[arg(long, default_value_t = 0.0)]
    reset: f64,
    #[arg(long, default_value_t = 0.0)]
    truncated: f64,
    #[arg(long, default_value_t = 0.0)]
    stall: f64,
    /// How long a stalled request waits.
    #[arg(long, default_value_t = 30_000)]
    stall_ms: u64,
    #[arg(long, default_value_t = 0.0)]
    rate_limit: f64,
    #[arg(long = "thumb-403", default_value_t = 0.0)]
    thumb_403: f64,
    #[arg(long, default_value_t = 0.0)]
    not_jpeg: f64,
    /// Refuse (HTTP 500) a bbox holding more than N images.
    #[arg(long)]
    dense_refusal: Option<usize>,
    /// Status of rate-limit answers (429 or 403).
    #[arg(long, default_value_t = 429)]
    rate_limit_status: u16,
    /// Graph error code of a rate-limit answer (4, or Meta's 17, 32, 613).
    #[arg(long, default_value_t = 4)]
    rate_limit_code: u32,
    /// Thumbnail URL lifetime in seconds.
    #[arg(long, default_value_t = 30 * 24 * 3600)]
    thumb_ttl_s: u64,
    /// Print the sorted ids whose original geometry is in BBOX (min_lon,min_lat,max_lon,max_lat), then exit.
    #[arg(long, value_parser = parse_bbox, allow_hyphen_values = true)]
    ground_truth: Option<Bbox>,
}

/// The world the flags describe.
fn world_spec(args: &Args) -> anyhow::Result<WorldSpec> {
    let mut spec = match args.world {
        WorldKind::Demo => WorldSpec::demo(),
        WorldKind::Dense => WorldSpec::dense(args.images.unwrap_or(20_000)),
        WorldKind::City => WorldSpec::city(args.images.unwrap_or(50_000)),
    };
    if let Some(n) = args.images {
        spec.images = n;
    }
    if let Some(s) = args.seed {
        spec.seed = s;
    }
    if let Some(m) = args.computed_offset_m {
        if !(m.is_finite() && m >= 0.0) {
            bail!("--computed-offset-m must be a distance in metres of 0 or more, not {m}");
        }
        spec.computed_offset_m = m;
    }
    Ok(spec)
}

/// Refuses flag values the simulator cannot use, naming the flag and the valid range.
fn check_args(args: &Args) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.cap_fuzz) {
        bail!(
            "--cap-fuzz must be a fraction between 0 and 1 (0.06 = up to 6% below the cap), not {}",
            args.cap_fuzz
        );
    }
    if args.cap == 0 {
        bail!("--cap must be at least 1");
    }
    for (name, p) in [
        ("http500", args.http500),
        ("timeout400", args.timeout400),
        ("reset", args.reset),
        ("truncated", args.truncated),
        ("stall", args.stall),
        ("rate-limit", args.rate_limit),
        ("thumb-403", args.thumb_403),
        ("not-jpeg", args.not_jpeg),
    ] {
        if !(0.0..=1.0).contains(&p) {
            bail!("--{name} must be a probability between 0 and 1, not {p}");
        }
    }
    Ok(())
}

/// The behaviours of the real API that the flags choose.
fn behaviours(args: &Args, config: SimConfig) -> SimConfig {
    SimConfig {
        cap_fuzz: args.cap_fuzz,
        bbox_position: match args.bbox_position {
            PositionArg::Original => BboxPosition::Original,
            PositionArg::Computed => BboxPosition::Computed,
        },
        result_order: match args.result_order {
            OrderArg::Edge => ResultOrder::EdgeFirst,
            OrderArg::Random => ResultOrder::Random,
            OrderArg::Time => ResultOrder::ByTime,
            OrderArg::UntiledLast => ResultOrder::UntiledLast,
        },
        tiles_missing: args.tiles_missing,
        tiles_stale: args.tiles_stale,
        tile_drift: args.tile_drift.map(|d| match d {
            DriftArg::BlankIds => TileDrift::BlankIds,
            DriftArg::NonNumericIds => TileDrift::NonNumericIds,
            DriftArg::NoImageLayer => TileDrift::NoImageLayer,
            DriftArg::WrongTypes => TileDrift::WrongTypes,
        }),
        hostile: Hostile {
            tile_bomb: args.hostile.contains(&HostileArg::TileBomb),
            huge_search_body: args.hostile.contains(&HostileArg::HugeSearch),
            huge_thumbnail: args.hostile.contains(&HostileArg::HugeThumb),
            formula_text: args.hostile.contains(&HostileArg::Formula),
            redirect_thumbs_to: args.redirect_thumbs_to.clone(),
            unknown_entity: args
                .hostile
                .contains(&HostileArg::UrlAsId)
                .then_some(mlysim::BadEntity::UrlAsId),
            empty_tiles: args
                .hostile
                .contains(&HostileArg::EmptyTiles)
                .then_some(mlysim::EmptyTile::Body),
        },
        ..config
    }
}

/// The simulator configuration the flags describe.
fn sim_config(args: &Args, spec: WorldSpec) -> SimConfig {
    let config = SimConfig {
        world: spec,
        cap: args.cap,
        fuzzy_cap: args.fuzzy_cap,
        bbox_paging: args.bbox_paging,
        latency: Duration::from_millis(args.latency_ms),
        faults: Faults {
            http500: args.http500,
            timeout400: args.timeout400,
            reset: args.reset,
            truncated_body: args.truncated,
            stall: args.stall,
            stall_for: Duration::from_millis(args.stall_ms),
            rate_limit: args.rate_limit,
            thumb_403: args.thumb_403,
            not_jpeg: args.not_jpeg,
            ..Faults::default()
        },
        rate_limit_status: args.rate_limit_status,
        rate_limit_code: args.rate_limit_code,
        thumb_ttl: Duration::from_secs(args.thumb_ttl_s),
        dense_refusal: args.dense_refusal,
        tiles_per_day: args.tiles_per_day,
        ..SimConfig::default()
    };
    behaviours(args, config)
}

/// Prints the three URLs, then serves until SIGTERM or SIGINT.
fn serve(config: SimConfig, ports: Ports) -> anyhow::Result<()> {
    let sim = Sim::spawn_on_ports(config, ports).context("starting the simulator")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "graph_url={}", sim.graph_url())?;
    writeln!(out, "cdn_url={}", sim.cdn_url())?;
    writeln!(out, "tiles_url={}", sim.tiles_url())?;
    out.flush()?;
    drop(out);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    drop(sim);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let spec = world_spec(&args)?;
    check_args(&args)?;
    if let Some(Bbox(b)) = args.ground_truth {
        let world = World::generate(&spec);
        let mut out = std::io::stdout().lock();
        for id in world.ground_truth(b, &TruthFilter::default()) {
            writeln!(out, "{id}")?;
        }
        out.flush()?;
        return Ok(());
    }
    let ports = Ports {
        graph: args.port,
        cdn: args.cdn_port,
        tiles: args.tiles_port,
    };
    serve(sim_config(&args, spec), ports)
}
