//! mlysim: a Mapillary API v4 simulator on loopback (see sim/README.md).

pub mod hostile;
pub mod lag;
pub mod mvt;
mod server;
pub mod thumbs;
pub mod tiles;
pub mod world;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use hostile::{BadEntity, EmptyTile, Hostile};
pub use tiles::TileDrift;
pub use world::{
    BboxPosition, Creator, Hotspot, SimImage, TruthFilter, UnknownImage, World, WorldSpec,
};

/// A fake client token of the real shape; the default `SimConfig` accepts it.
pub const DEMO_TOKEN: &str = "MLY|4242|0123456789abcdef0123456789abcdef";

/// Fault probabilities (0..1), each rolled independently per request.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Graph, CDN and tiles: HTTP 500 (Graph and tiles: code 2 "Service temporarily
    /// unavailable").
    pub http500: f64,
    /// Graph: HTTP 400 code -2 "Query Timeout".
    pub timeout400: f64,
    /// Graph, CDN and tiles: the connection is closed without a complete response.
    pub reset: f64,
    /// CDN: full Content-Length announced, about half of the body sent, then the connection closes.
    pub truncated_body: f64,
    /// Graph, CDN and tiles: wait `stall_for` before answering normally.
    pub stall: f64,
    pub stall_for: Duration,
    /// Graph and tiles: the "Application request limit reached" answer.
    pub rate_limit: f64,
    /// CDN: 403 "URL signature expired" on a valid URL.
    pub thumb_403: f64,
    /// CDN: 200 with an HTML page instead of the JPEG.
    pub not_jpeg: f64,
    /// Graph `/images` search: 200 with the body `{}` (no `data`), as a broken proxy might send.
    pub empty_200: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            http500: 0.0,
            timeout400: 0.0,
            reset: 0.0,
            truncated_body: 0.0,
            stall: 0.0,
            stall_for: Duration::from_secs(30),
            rate_limit: 0.0,
            thumb_403: 0.0,
            not_jpeg: 0.0,
            empty_200: 0.0,
        }
    }
}

/// The order of bbox search results; truncation keeps the first `effective cap` in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ResultOrder {
    /// Nearest a bbox edge first (distance to the closest edge, ties by id).
    #[default]
    EdgeFirst,
    /// A shuffle fixed by the world seed and the bbox text.
    Random,
    /// Newest first (`captured_at` descending, ties by id).
    ByTime,
    /// The images the tiles leave out (`tiles_missing`) last, the rest by
    /// id: an API ordering by upload puts the newest uploads, which the
    /// tiles lag behind, at the end, where a cap cuts them and leaves every
    /// image the tiles know in the answer.
    UntiledLast,
}

/// Everything a simulator instance needs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub world: WorldSpec,
    /// Maximum and default `limit` of a search.
    pub cap: usize,
    /// Truncate a bbox search at a per-bbox value in [cap * (1 - cap_fuzz), cap].
    pub fuzzy_cap: bool,
    /// A bbox answer cut by the cap carries `paging.next` (the record leaves
    /// open whether bbox searches ever page; other searches do).
    pub bbox_paging: bool,
    /// How far below `cap` a fuzzy cap may go, as a fraction of `cap` (0..=1).
    pub cap_fuzz: f64,
    /// Which position a bbox search filters, clips and orders on.
    pub bbox_position: BboxPosition,
    /// The order of bbox search results (and so what truncation keeps).
    pub result_order: ResultOrder,
    /// This many images (every k-th positioned image by id) are absent from both tilesets.
    pub tiles_missing: usize,
    /// This many deleted images (unknown to the Graph) appear in the z14 `image` layer.
    pub tiles_stale: usize,
    /// Schema drift of the z14 tiles.
    pub tile_drift: Option<TileDrift>,
    /// Hostile answers (all off by default).
    pub hostile: Hostile,
    /// Images moved before serving: `(id, [lon, lat])` replaces `geometry` (the computed
    /// position keeps its offset). `Sim::world()` is the moved world.
    pub moves: Vec<(u64, [f64; 2])>,
    /// Images served without any position (no `geometry`, no `computed_geometry`, absent
    /// from the tiles) that bbox searches still find at `[lon, lat]`: the API's own spot for
    /// them, which no answer shows. Applied after `moves`.
    pub hide: Vec<(u64, [f64; 2])>,
    /// Added to every response of the three servers.
    pub latency: Duration,
    pub faults: Faults,
    pub search_per_min: u32,
    pub entity_per_min: u32,
    /// 429 or 403.
    pub rate_limit_status: u16,
    /// The Graph error code of a rate-limit answer: 4 (Mapillary's, with
    /// `is_transient`), or Meta's 17, 32 or 613 (their messages, without it).
    pub rate_limit_code: u32,
    pub thumb_ttl: Duration,
    pub tokens: Vec<String>,
    pub max_area_deg2: f64,
    /// Refuse (HTTP 500, code 1) a bbox holding more than this many images.
    pub dense_refusal: Option<usize>,
    /// Width served for `thumb_original_url`.
    pub original_width: u32,
    /// Tile requests per token per day (a fixed one-day window since start).
    pub tiles_per_day: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            world: WorldSpec::demo(),
            cap: 2000,
            fuzzy_cap: false,
            bbox_paging: false,
            cap_fuzz: 0.06,
            bbox_position: BboxPosition::Original,
            result_order: ResultOrder::EdgeFirst,
            tiles_missing: 0,
            tiles_stale: 0,
            tile_drift: None,
            hostile: Hostile::default(),
            moves: Vec::new(),
            hide: Vec::new(),
            latency: Duration::ZERO,
            faults: Faults::default(),
            search_per_min: 10_000,
            entity_per_min: 60_000,
            rate_limit_status: 429,
            rate_limit_code: 4,
            thumb_ttl: Duration::from_secs(30 * 24 * 3600),
            tokens: vec![DEMO_TOKEN.to_string()],
            max_area_deg2: 0.01,
            dense_refusal: None,
            original_width: 1600,
            tiles_per_day: 50_000,
        }
    }
}

/// Counters since start (or since `reset_stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests to `/images` (every request, whatever the answer).
    pub search_calls: u64,
    /// Requests to `/{id}`.
    pub entity_calls: u64,
    /// Requests to `/image_ids`.
    pub image_ids_calls: u64,
    /// Complete JPEG answers of the CDN.
    pub thumbs_served: u64,
    /// Bytes of those complete JPEG answers.
    pub thumb_bytes: u64,
    /// Error answers and injected faults, by kind (see README).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// CDN requests carrying an Authorization header or an access_token parameter.
    pub auth_header_on_cdn: u64,
    /// Graph requests that passed the token as `access_token=`.
    pub token_in_query: u64,
    /// Requests to `/maps/vtp/...` on the tiles host (every request, whatever the answer).
    #[serde(default)]
    pub tile_calls: u64,
    /// Tile answers with status 200 (empty tiles included).
    #[serde(default)]
    pub tiles_served: u64,
    /// Body bytes of those answers as sent (after gzip when it applied).
    #[serde(default)]
    pub tile_bytes: u64,
}

/// Ports to bind on 127.0.0.1 (0 = any free port).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ports {
    pub graph: u16,
    pub cdn: u16,
    pub tiles: u16,
}

/// A running simulator: a Graph server, a CDN server and a tiles server on 127.0.0.1.
/// Dropping it stops all three.
pub struct Sim {
    shared: Arc<server::Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Sim {
    /// Starts the three servers on free ports and returns once they accept connections.
    pub fn spawn(config: SimConfig) -> anyhow::Result<Sim> {
        Sim::spawn_on(config, 0, 0)
    }

    /// Like `spawn`, on the given Graph and CDN ports (0 = any free port; tiles on any port).
    pub fn spawn_on(config: SimConfig, graph_port: u16, cdn_port: u16) -> anyhow::Result<Sim> {
        Sim::spawn_on_ports(
            config,
            Ports {
                graph: graph_port,
                cdn: cdn_port,
                tiles: 0,
            },
        )
    }

    /// Like `spawn`, on the given ports.
    pub fn spawn_on_ports(config: SimConfig, ports: Ports) -> anyhow::Result<Sim> {
        let world = Arc::new(World::generate(&config.world));
        Sim::spawn_with_world_on(config, world, ports)
    }

    /// Serves an already generated world (the `world` spec in `config` is then ignored); the
    /// tiles server takes any free port.
    pub fn spawn_with_world(
        config: SimConfig,
        world: Arc<World>,
        graph_port: u16,
        cdn_port: u16,
    ) -> anyhow::Result<Sim> {
        Sim::spawn_with_world_on(
            config,
            world,
            Ports {
                graph: graph_port,
                cdn: cdn_port,
                tiles: 0,
            },
        )
    }

    /// Serves an already generated world on the given ports (with `config.moves`,
    /// `config.hide` and `hostile.formula_text` applied to a copy of it).
    pub fn spawn_with_world_on(
        config: SimConfig,
        world: Arc<World>,
        ports: Ports,
    ) -> anyhow::Result<Sim> {
        let world = served_world(&config, world)?;
        let bind = |port: u16| -> anyhow::Result<TcpListener> {
            let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
            l.set_nonblocking(true)?;
            Ok(l)
        };
        let graph = bind(ports.graph)?;
        let cdn = bind(ports.cdn)?;
        let tiles = bind(ports.tiles)?;
        let graph_url = format!("http://{}", graph.local_addr()?);
        let cdn_url = format!("http://{}", cdn.local_addr()?);
        let tiles_url = format!("http://{}", tiles.local_addr()?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mlysim")
            .enable_all()
            .build()?;
        let shared = Arc::new(server::Shared::new(
            config, world, graph_url, cdn_url, tiles_url,
        ));
        for (listener, app) in [
            (graph, server::graph_router(shared.clone())),
            (cdn, server::cdn_router(shared.clone())),
            (tiles, server::tiles_router(shared.clone())),
        ] {
            runtime.spawn(async move {
                if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                    let _ = axum::serve(l, app).await;
                }
            });
        }
        Ok(Sim {
            shared,
            runtime: Some(runtime),
        })
    }

    pub fn graph_url(&self) -> String {
        self.shared.graph_url.clone()
    }

    pub fn cdn_url(&self) -> String {
        self.shared.cdn_url.clone()
    }

    /// Base URL of the tiles host (like `https://tiles.mapillary.com`).
    pub fn tiles_url(&self) -> String {
        self.shared.tiles_url.clone()
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    pub fn world(&self) -> &World {
        &self.shared.world
    }

    /// Sorted ids of the images the Graph serves but the tiles leave out (`tiles_missing`).
    pub fn tiles_missing_ids(&self) -> Vec<u64> {
        self.shared.lag.missing_ids().to_vec()
    }

    /// Sorted ids of the deleted images the z14 `image` layer still shows (`tiles_stale`).
    pub fn tiles_stale_ids(&self) -> Vec<u64> {
        self.shared.lag.stale_ids().to_vec()
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats_snapshot()
    }

    pub fn reset_stats(&self) {
        self.shared.reset_stats();
    }

    /// Revokes a token: later requests with it are answered like an unknown token
    /// (401 "Error validating application").
    pub fn revoke_token(&self, token: &str) {
        self.shared.revoke_token(token);
    }

    /// Replaces the fault probabilities; applies to requests that arrive afterwards.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }
}

/// The world as served: moved images, hidden positions, then hostile text.
fn served_world(config: &SimConfig, world: Arc<World>) -> anyhow::Result<Arc<World>> {
    let mut world = world;
    if !config.moves.is_empty() {
        world = Arc::new(world.with_moves(&config.moves)?);
    }
    if !config.hide.is_empty() {
        world = Arc::new(world.with_hidden(&config.hide)?);
    }
    if config.hostile.formula_text {
        world = Arc::new(hostile::formula_world(&world));
    }
    Ok(world)
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
