//! The plan stage of a fetch: the tiles it needs, counted against
//! `--tile-budget` (and kept, so that nothing is planned twice); one tiny
//! search and, when tiles will be read, one tile request before anything is
//! written; then how to list: verified (`--enumerate auto`), search alone,
//! or tiles. Network through `api` only; no files.

use super::audit::AuditPlan;
use super::error::FetchError;
use super::tiles::{self, PlannedTile, TilesError};
use crate::api::{ApiError, Client, SearchQuery};
use crate::config::FetchConfig;
use crate::model::{Bbox, Enumerate};
use crate::plan::Plan;

/// The tiles a fetch will read, counted before anything is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TileNeeds {
    /// Tiles of the listing itself (`--enumerate tiles` or a verified
    /// listing), else 0.
    pub listing: u64,
    /// Tiles of `--audit`, else 0.
    pub audit: u64,
    /// For a search listing: the tiles `--enumerate tiles` would read
    /// (`Err(upper bound)` when more than the budget).
    pub if_tiles: Option<Result<u64, u64>>,
}

/// How this run lists.
#[derive(Debug)]
pub(crate) enum How {
    /// Verified against these z14 tiles (`--enumerate auto`).
    Verified(Vec<PlannedTile>),
    /// Bbox searches alone, not verified; why.
    Search(String),
    /// Vector tiles then batched lookups (`--enumerate tiles`), not verified.
    Tiles(Vec<PlannedTile>),
}

impl How {
    /// The warning a listing that is not verified carries.
    pub(crate) fn warning(&self) -> Option<String> {
        match self {
            How::Verified(_) => None,
            How::Search(why) => Some(format!(
                "the listing was not verified against the vector tiles ({why}): every grid is only assumed complete"
            )),
            How::Tiles(_) => Some(
                "the listing was not verified (--enumerate tiles): images newer than the vector tiles are not seen; every grid is only assumed complete".into(),
            ),
        }
    }
}

/// What the plan stage decided.
#[derive(Debug)]
pub(crate) struct Strategy {
    pub how: How,
    pub needs: TileNeeds,
    /// The audit's boxes and their tiles, with `--audit`.
    pub audit: Option<AuditPlan>,
}

/// The plan stage: budget, preflights, then the way to list `plan`.
pub(crate) async fn choose(
    cfg: &FetchConfig,
    plan: &Plan,
    client: &Client,
) -> Result<Strategy, FetchError> {
    let Budgeted {
        mut needs,
        tiles,
        audit,
    } = check_budget(cfg, plan)?;
    preflight(client, plan).await?;
    if cfg.request.enumerate == Enumerate::Tiles || cfg.audit {
        tiles::preflight(client, &cfg.tiles, cfg.request.position).await?;
    }
    let how = match cfg.request.enumerate {
        Enumerate::Search => How::Search("--enumerate search was asked".into()),
        Enumerate::Tiles => How::Tiles(tiles),
        Enumerate::Auto => auto(cfg, plan, client, &mut needs).await?,
    };
    Ok(Strategy { how, needs, audit })
}

/// `auto` is verified unless the tiles cannot be used (over the budget, or
/// the tiles host fails), which falls back to search.
async fn auto(
    cfg: &FetchConfig,
    plan: &Plan,
    client: &Client,
    needs: &mut TileNeeds,
) -> Result<How, FetchError> {
    let budget = u64::from(cfg.tiles.budget).saturating_sub(needs.audit + 1);
    let planned = match tiles::plan_tiles(plan, cfg.aoi.as_deref(), budget) {
        Ok(p) => p,
        Err(upper) => {
            return Ok(How::Search(format!(
                "the area needs up to {upper} vector tiles, more than --tile-budget {} allows",
                cfg.tiles.budget
            )));
        }
    };
    match tiles::preflight(client, &cfg.tiles, cfg.request.position).await {
        Ok(()) => {
            needs.listing = planned.len() as u64;
            Ok(How::Verified(planned))
        }
        Err(TilesError::Preflight(e @ ApiError::Auth { .. })) => Err(FetchError::Api(e)),
        Err(e) => Ok(How::Search(format!(
            "the vector tiles could not be read ({e})"
        ))),
    }
}

/// The tiles counted before anything is asked, and those planned.
#[derive(Debug, Default)]
struct Budgeted {
    needs: TileNeeds,
    /// The listing's tiles (`--enumerate tiles` only).
    tiles: Vec<PlannedTile>,
    audit: Option<AuditPlan>,
}

/// Counts the tiles a fetch needs and refuses a fetch that needs more than
/// `--tile-budget` (pure).
fn check_budget(cfg: &FetchConfig, plan: &Plan) -> Result<Budgeted, TilesError> {
    let budget = cfg.tiles.budget;
    let aoi = cfg.aoi.as_deref();
    let mut b = Budgeted::default();
    match cfg.request.enumerate {
        Enumerate::Tiles => {
            b.tiles = tiles::budgeted_tiles(plan, aoi, budget, "--enumerate tiles")?;
            b.needs.listing = b.tiles.len() as u64;
        }
        Enumerate::Search | Enumerate::Auto if cfg.dry_run => {
            b.needs.if_tiles =
                Some(tiles::plan_tiles(plan, aoi, u64::from(budget)).map(|t| t.len() as u64));
        }
        Enumerate::Search | Enumerate::Auto => {}
    }
    if cfg.audit {
        let audit = AuditPlan::new(plan, aoi);
        b.needs.audit = audit.tiles();
        b.audit = Some(audit);
    }
    within_budget(&b.needs, cfg.audit, budget)?;
    Ok(b)
}

/// Refuses listing and audit tiles (and the preflight tile) over `budget`.
fn within_budget(needs: &TileNeeds, audit: bool, budget: u32) -> Result<(), TilesError> {
    if needs.listing == 0 && !audit {
        return Ok(());
    }
    // One more for the preflight tile.
    let total = needs.listing + needs.audit + 1;
    if total <= u64::from(budget) {
        return Ok(());
    }
    Err(TilesError::OverBudget {
        what: match (needs.listing > 0, audit) {
            (true, true) => "--enumerate tiles with --audit".into(),
            (true, false) => "--enumerate tiles".into(),
            _ => "--audit".into(),
        },
        needed: total.to_string(),
        budget,
    })
}

/// One tiny search before anything is written, so that a refused token or an
/// unreachable API ends the run with nothing on disk.
async fn preflight(client: &Client, plan: &Plan) -> Result<(), FetchError> {
    let q = SearchQuery {
        fields: "id".into(),
        limit: 1,
        ..Default::default()
    };
    let tiny = corner(&plan.area());
    match client.search(&tiny, &q).await {
        Ok(_) | Err(ApiError::TooMuchData { .. }) => Ok(()),
        Err(e) => Err(FetchError::Preflight(e)),
    }
}

/// A box of at most 0.0001 degrees a side in the south-west corner of `a`.
fn corner(a: &Bbox) -> Bbox {
    let side = 0.0001_f64.min(a.width()).min(a.height());
    Bbox::new(
        a.min_lon(),
        a.min_lat(),
        a.min_lon() + side,
        a.min_lat() + side,
    )
    .unwrap_or(*a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_the_preflight_tile_and_names_what_needs_it() {
        let needs = |listing, audit| TileNeeds {
            listing,
            audit,
            if_tiles: None,
        };
        assert!(within_budget(&needs(0, 0), false, 0).is_ok());
        assert!(within_budget(&needs(9, 0), false, 10).is_ok());
        let e = within_budget(&needs(10, 0), false, 10).unwrap_err();
        assert_eq!(
            e,
            TilesError::OverBudget {
                what: "--enumerate tiles".into(),
                needed: "11".into(),
                budget: 10
            }
        );
        let e = within_budget(&needs(5, 5), true, 10).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--enumerate tiles with --audit needs 11 "),
            "{e}"
        );
        let e = within_budget(&needs(0, 10), true, 10).unwrap_err();
        assert!(e.to_string().starts_with("--audit needs 11 "), "{e}");
    }

    #[test]
    fn the_preflight_box_is_a_corner_of_the_area() {
        let a: Bbox = "2.30,48.84,2.31,48.85".parse().unwrap();
        let c = corner(&a);
        assert_eq!((c.min_lon(), c.min_lat()), (a.min_lon(), a.min_lat()));
        assert!((c.width() - 0.0001).abs() < 1e-12);
        let thin: Bbox = "2.30,48.84,2.30005,48.85".parse().unwrap();
        assert!((corner(&thin).width() - 0.00005).abs() < 1e-12);
    }
}
