//! Fetch shards for array jobs (Slurm, Kubernetes Indexed Jobs, AWS Batch):
//! which shard this process is (`--shard K/N`, or the job's environment), and
//! which grid cells, or parts of cells, each of the N shards lists and
//! downloads. Pure (the files a sharded folder holds are `folder`'s): the
//! environment comes in as a lookup function, and the split is a function of
//! the plan and N alone (never of what the API answers), so every shard
//! computes the same split, today and on a re-run.
//!
//! The split: with at least N cells, whole cells; with fewer (one large
//! grid), each cell is cut into k x k equal parts ("units", keeping their
//! cell's id) so that there are at least 4N of them. Units are dealt to the
//! shards in a fixed pseudo-random order, so that neighbouring (and equally
//! dense) units go to different shards and each shard gets the same number
//! of units, give or take one. Ownership of a position stays the whole
//! plan's (see `Plan::scoped`): an image on a border between two shards'
//! units belongs to exactly one of them.

pub(crate) mod claims;
pub(crate) mod folder;
mod merge;
pub(crate) mod status;
pub(crate) use merge::merge_shards;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::Bbox;
use crate::plan::{self, Grid, Plan};

/// Most shards one fetch may be split into.
pub const MAX_SHARDS: u32 = 10_000;
/// With fewer cells than shards, cells are cut until there are at least this
/// many units per shard (for balance).
const UNITS_PER_SHARD: usize = 4;

/// Environment variables naming the array job's index.
pub struct ShardEnv;
impl ShardEnv {
    /// Slurm: this task's index in the array.
    pub const SLURM_ID: &'static str = "SLURM_ARRAY_TASK_ID";
    /// Slurm: the array's first index.
    pub const SLURM_MIN: &'static str = "SLURM_ARRAY_TASK_MIN";
    /// Slurm: the array's last index.
    pub const SLURM_MAX: &'static str = "SLURM_ARRAY_TASK_MAX";
    /// Slurm: the number of tasks in the array.
    pub const SLURM_COUNT: &'static str = "SLURM_ARRAY_TASK_COUNT";
    /// Kubernetes Indexed Job: this pod's index.
    pub const KUBERNETES: &'static str = "JOB_COMPLETION_INDEX";
    /// AWS Batch array job: this child's index.
    pub const AWS_BATCH: &'static str = "AWS_BATCH_JOB_ARRAY_INDEX";
}

/// A shard choice that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // the fields are the values each message quotes
pub enum ShardError {
    /// `--shard` is not `K/N` or `none`.
    #[error(
        "--shard `{0}` must be K/N with 0 <= K < N, e.g. `0/4` (shards count from 0), or `none`"
    )]
    Syntax(String),
    /// K is not below N.
    #[error(
        "shard {index}/{count}: K counts from 0, so it must be below N; the last of {count} shards is {last}/{count}"
    )]
    IndexTooLarge { index: u32, count: u32, last: u32 },
    /// N is 0 or above [`MAX_SHARDS`].
    #[error("the number of shards must be between 1 and {max} (got {count})")]
    Count { count: u32, max: u32 },
    /// An array job's variable is not a number.
    #[error("{var}=`{value}` is not a whole number")]
    EnvValue { var: &'static str, value: String },
    /// An index without a count (Kubernetes, AWS Batch) and no `--shards`.
    #[error(
        "{var} is set (an array job) but --shards N is missing: pass the number of tasks, e.g. --shards 4, or --shard none to fetch everything in each task"
    )]
    NeedsCount { var: &'static str },
    /// `--shards` without an index.
    #[error(
        "--shards {count} needs this task's index: pass --shard K/{count}, or run it as an array job (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX)"
    )]
    NeedsIndex { count: u32 },
    /// `--shard` and the array job name different shards.
    #[error(
        "--shard {flag} disagrees with the array job ({found}); drop --shard to use the job's index"
    )]
    Disagrees { flag: Shard, found: String },
    /// `--shards` and the array job (or `--shard`) name different counts.
    #[error("--shards {flag} disagrees with {found}")]
    CountDisagrees { flag: u32, found: String },
    /// A Slurm array with a step or gaps: its index is not a shard index.
    #[error(
        "the Slurm array is not contiguous (SLURM_ARRAY_TASK_MIN={min}, SLURM_ARRAY_TASK_MAX={max}, SLURM_ARRAY_TASK_COUNT={count}); submit it as --array=0-{last}, or pass --shards N: then K is the task's ID"
    )]
    SlurmGaps {
        min: u32,
        max: u32,
        count: u32,
        last: u32,
    },
    /// `--shard none` (the whole area) with `--shards N` (a split).
    #[error(
        "--shard none fetches the whole area but --shards {count} splits it into {count} shards: drop --shards {count} to fetch everything in this task, or --shard none to fetch this task's shard"
    )]
    OffWithCount { count: u32 },
    /// A Slurm array variable whose value cannot be one.
    #[error("{var}={value} is out of range: {why}")]
    SlurmRange {
        var: &'static str,
        value: u32,
        why: String,
    },
    /// Slurm's array variables are incomplete.
    #[error("SLURM_ARRAY_TASK_ID is set but {missing} is not; is this Slurm 17.11 or newer?")]
    SlurmIncomplete { missing: &'static str },
    /// The area cannot be cut fine enough for N shards.
    #[error(
        "{cells} grid cells cannot be cut into enough parts for {count} shards (the parts would be under 0.1 m); use fewer shards"
    )]
    TooFine { cells: usize, count: u32 },
    /// A split (as read from a file) without any unit.
    #[error("the split has no cells or parts")]
    NoUnits,
    /// A split (as read from a file) giving a unit to a shard that is not one.
    #[error("unit {unit} (cell `{grid}`) goes to shard {shard}, but there are {count} shards")]
    UnitShard {
        unit: usize,
        grid: String,
        shard: u32,
        count: u32,
    },
}

/// Shard K of N (K counts from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Shard `index` of `count`; refused unless `index < count <= MAX_SHARDS`.
    pub fn new(index: u32, count: u32) -> Result<Self, ShardError> {
        check_count(count)?;
        if index >= count {
            return Err(ShardError::IndexTooLarge {
                index,
                count,
                last: count - 1,
            });
        }
        Ok(Shard { index, count })
    }

    /// K, from 0.
    pub fn index(self) -> u32 {
        self.index
    }

    /// N.
    pub fn count(self) -> u32 {
        self.count
    }

    /// `shard-K-of-N`, the part of this shard's file names.
    pub(crate) fn tag(self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    /// This shard's run record, `mlyexport-run.shard-K-of-N.json`.
    pub(crate) fn record_file(self) -> String {
        format!("mlyexport-run.{}.json", self.tag())
    }

    /// This shard's lock file, `.mlyexport.shard-K-of-N.lock`.
    pub(crate) fn lock_file(self) -> String {
        format!(".mlyexport.{}.lock", self.tag())
    }

    /// This shard's listing, `listing.shard-K-of-N.jsonl`.
    pub(crate) fn listing_file(self) -> String {
        format!("listing.{}.jsonl", self.tag())
    }

    /// This shard's audit, `audit.shard-K-of-N.json`.
    pub(crate) fn audit_file(self) -> String {
        format!("audit.{}.json", self.tag())
    }

    /// The shard whose record file is named `name`, if it is one.
    pub(crate) fn from_record_file(name: &str) -> Option<Shard> {
        let tag = name
            .strip_prefix("mlyexport-run.shard-")?
            .strip_suffix(".json")?;
        let (k, n) = tag.split_once("-of-")?;
        Shard::new(k.parse().ok()?, n.parse().ok()?).ok()
    }
}

fn check_count(count: u32) -> Result<(), ShardError> {
    if count == 0 || count > MAX_SHARDS {
        return Err(ShardError::Count {
            count,
            max: MAX_SHARDS,
        });
    }
    Ok(())
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, ShardError> {
        let syntax = || ShardError::Syntax(s.to_string());
        let (k, n) = s.trim().split_once('/').ok_or_else(syntax)?;
        let k: u32 = k.trim().parse().map_err(|_| syntax())?;
        let n: u32 = n.trim().parse().map_err(|_| syntax())?;
        Shard::new(k, n)
    }
}

impl Serialize for Shard {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Shard {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The `--shard` flag as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardFlag {
    /// `--shard K/N`.
    Given(Shard),
    /// `--shard none`: not sharded, whatever the environment says.
    Off,
}

impl FromStr for ShardFlag {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, ShardError> {
        if s.trim().eq_ignore_ascii_case("none") {
            return Ok(ShardFlag::Off);
        }
        s.parse().map(ShardFlag::Given)
    }
}

/// Where this process's shard came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardSource {
    /// `--shard K/N`.
    Flag,
    /// `SLURM_ARRAY_TASK_ID` - `SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`.
    Slurm,
    /// `JOB_COMPLETION_INDEX` of `--shards N`.
    Kubernetes,
    /// `AWS_BATCH_JOB_ARRAY_INDEX` of `--shards N`.
    AwsBatch,
}

impl ShardSource {
    /// How the source is named to people.
    pub fn describe(self) -> &'static str {
        match self {
            ShardSource::Flag => "--shard",
            ShardSource::Slurm => "SLURM_ARRAY_TASK_ID",
            ShardSource::Kubernetes => "JOB_COMPLETION_INDEX",
            ShardSource::AwsBatch => "AWS_BATCH_JOB_ARRAY_INDEX",
        }
    }
}

/// What the array job's environment says: an index, and a count when it
/// knows one (Slurm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FromEnv {
    source: ShardSource,
    index: u32,
    count: Option<u32>,
}

impl FromEnv {
    fn describe(self) -> String {
        match self.count {
            Some(n) => format!(
                "{} gives task {} of {n}",
                self.source.describe(),
                self.index
            ),
            None => format!("{}={}", self.source.describe(), self.index),
        }
    }
}

fn env_u32(
    env: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<Option<u32>, ShardError> {
    env(var)
        .map(|v| {
            v.trim().parse().map_err(|_| ShardError::EnvValue {
                var,
                value: v.chars().take(40).collect(),
            })
        })
        .transpose()
}

/// Slurm's array variables. With `--shards N` (`count`), K is the task's ID
/// itself, so that any array of IDs below N works (`--array=3,5` re-runs two
/// shards). Without it, K = ID - MIN and N = COUNT, refused when the array
/// has a step or gaps (then ID - MIN is not a shard index).
fn slurm(
    env: &dyn Fn(&str) -> Option<String>,
    count: Option<u32>,
) -> Result<Option<FromEnv>, ShardError> {
    let Some(id) = env_u32(env, ShardEnv::SLURM_ID)? else {
        return Ok(None);
    };
    let source = ShardSource::Slurm;
    if count.is_some() {
        return Ok(Some(FromEnv {
            source,
            index: id,
            count: None,
        }));
    }
    let need = |var: &'static str| -> Result<u32, ShardError> {
        env_u32(env, var)?.ok_or(ShardError::SlurmIncomplete { missing: var })
    };
    let (min, n) = (need(ShardEnv::SLURM_MIN)?, need(ShardEnv::SLURM_COUNT)?);
    let max = match env_u32(env, ShardEnv::SLURM_MAX)? {
        Some(max) => max,
        None => slurm_last(min, n)?,
    };
    let size = max.checked_sub(min).and_then(|d| d.checked_add(1));
    if size != Some(n) || id < min || id > max {
        let last = n.saturating_sub(1);
        return Err(ShardError::SlurmGaps {
            min,
            max,
            count: n,
            last,
        });
    }
    Ok(Some(FromEnv {
        source,
        index: id - min,
        count: Some(n),
    }))
}

/// The last index of a Slurm array of `count` tasks from `min`, when
/// `SLURM_ARRAY_TASK_MAX` is not set.
fn slurm_last(min: u32, count: u32) -> Result<u32, ShardError> {
    if count == 0 {
        return Err(ShardError::SlurmRange {
            var: ShardEnv::SLURM_COUNT,
            value: count,
            why: "an array has at least one task".into(),
        });
    }
    min.checked_add(count - 1)
        .ok_or_else(|| ShardError::SlurmRange {
            var: ShardEnv::SLURM_MIN,
            value: min,
            why: format!(
                "with {}={count} the last index would be above {}",
                ShardEnv::SLURM_COUNT,
                u32::MAX
            ),
        })
}

/// The array job's index, if this runs in one (Slurm first, then
/// Kubernetes, then AWS Batch).
fn from_env(
    env: &dyn Fn(&str) -> Option<String>,
    count: Option<u32>,
) -> Result<Option<FromEnv>, ShardError> {
    if let Some(s) = slurm(env, count)? {
        return Ok(Some(s));
    }
    for (var, source) in [
        (ShardEnv::KUBERNETES, ShardSource::Kubernetes),
        (ShardEnv::AWS_BATCH, ShardSource::AwsBatch),
    ] {
        if let Some(index) = env_u32(env, var)? {
            return Ok(Some(FromEnv {
                source,
                index,
                count: None,
            }));
        }
    }
    Ok(None)
}

/// Which shard this process is: from `--shard` (`flag`), else from the array
/// job's environment with `--shards` (`count`) where the job does not say N.
/// `None` when not sharded. The flag and the environment must agree when
/// both are there.
pub(crate) fn resolve(
    flag: Option<ShardFlag>,
    count: Option<u32>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(Shard, ShardSource)>, ShardError> {
    if flag == Some(ShardFlag::Off) {
        return match count {
            Some(count) => Err(ShardError::OffWithCount { count }),
            None => Ok(None),
        };
    }
    if let Some(n) = count {
        check_count(n)?;
    }
    let found = from_env(env, count)?;
    if let Some(ShardFlag::Given(s)) = flag {
        return agree(s, count, found).map(|s| Some((s, ShardSource::Flag)));
    }
    let Some(f) = found else {
        return match count {
            Some(count) => Err(ShardError::NeedsIndex { count }),
            None => Ok(None),
        };
    };
    let n = f.count.or(count).ok_or(ShardError::NeedsCount {
        var: env_var(f.source),
    })?;
    Shard::new(f.index, n).map(|s| Some((s, f.source)))
}

fn env_var(source: ShardSource) -> &'static str {
    match source {
        ShardSource::Kubernetes => ShardEnv::KUBERNETES,
        ShardSource::AwsBatch => ShardEnv::AWS_BATCH,
        ShardSource::Slurm | ShardSource::Flag => ShardEnv::SLURM_ID,
    }
}

/// `--shard` given: `--shards` and the environment, when present, must say
/// the same.
fn agree(s: Shard, count: Option<u32>, found: Option<FromEnv>) -> Result<Shard, ShardError> {
    if let Some(n) = count
        && n != s.count
    {
        return Err(ShardError::CountDisagrees {
            flag: n,
            found: format!("--shard {s}"),
        });
    }
    match found {
        Some(f) if f.index != s.index || f.count.is_some_and(|n| n != s.count) => {
            Err(ShardError::Disagrees {
                flag: s,
                found: f.describe(),
            })
        }
        _ => Ok(s),
    }
}

/// How the plan is split into listing units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SplitKind {
    /// Whole grid cells (at least N cells).
    Cells,
    /// Each cell cut into `k x k` equal parts.
    Parts,
}

/// One unit of the split: a cell or a part of one, and its shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Unit {
    /// The id of the cell it is (a part of).
    pub(crate) grid: String,
    pub(crate) bbox: Bbox,
    /// The shard's index K.
    pub(crate) shard: u32,
}

/// The whole split of a plan into N shards, the same in every shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Split {
    pub(crate) count: u32,
    pub(crate) kind: SplitKind,
    /// Parts per cell side (1 for whole cells).
    pub(crate) parts_per_side: u32,
    /// Every unit, in the plan's order (cells, and within a cell its parts
    /// in reading order): ownership of a position follows this order.
    pub(crate) units: Vec<Unit>,
}

impl Split {
    /// Splits `plan` among `count` shards (1 to [`MAX_SHARDS`]).
    pub(crate) fn new(plan: &Plan, count: u32) -> Result<Split, ShardError> {
        check_count(count)?;
        let cells = plan.grids().len();
        let k = parts_per_side(cells, count);
        let grids = units_of(plan, k).ok_or(ShardError::TooFine { cells, count })?;
        let shards = deal(grids.len(), count);
        let units = grids
            .into_iter()
            .zip(shards)
            .map(|(g, shard)| Unit {
                grid: g.id.to_string(),
                bbox: g.bbox,
                shard,
            })
            .collect();
        let kind = if k == 1 {
            SplitKind::Cells
        } else {
            SplitKind::Parts
        };
        Ok(Split {
            count,
            kind,
            parts_per_side: k,
            units,
        })
    }

    /// The plan shard `k` lists: its units (keeping their cells' ids), with
    /// ownership decided over every unit of the split.
    pub(crate) fn plan_of(&self, plan: &Plan, k: u32) -> Option<Plan> {
        let grids = units_of(plan, self.parts_per_side)?;
        let mine = self
            .units
            .iter()
            .enumerate()
            .filter(|(_, u)| u.shard == k)
            .map(|(i, _)| i)
            .collect::<Vec<_>>();
        Plan::scoped(grids, &mine)
    }

    /// Checks a split read from a file: N as `--shard` accepts it, at least
    /// one unit, and every unit's shard below N.
    pub(crate) fn check(&self) -> Result<(), ShardError> {
        check_count(self.count)?;
        if self.units.is_empty() {
            return Err(ShardError::NoUnits);
        }
        match self
            .units
            .iter()
            .enumerate()
            .find(|(_, u)| u.shard >= self.count)
        {
            Some((unit, u)) => Err(ShardError::UnitShard {
                unit,
                grid: u.grid.clone(),
                shard: u.shard,
                count: self.count,
            }),
            None => Ok(()),
        }
    }

    /// How many units shard `k` has.
    pub(crate) fn units_of_shard(&self, k: u32) -> usize {
        self.units.iter().filter(|u| u.shard == k).count()
    }
}

/// Parts per cell side: 1 with at least `count` cells, else the smallest k
/// giving `cells * k * k >= UNITS_PER_SHARD * count`.
fn parts_per_side(cells: usize, count: u32) -> u32 {
    let n = count as usize;
    if cells >= n {
        return 1;
    }
    let want = (UNITS_PER_SHARD * n).div_ceil(cells.max(1));
    let mut k = 1u32;
    while (k as usize) * (k as usize) < want {
        k += 1;
    }
    k
}

/// The units of `plan` cut `k x k` per cell, in order, keeping each cell's id.
fn units_of(plan: &Plan, k: u32) -> Option<Vec<Grid>> {
    if k == 1 {
        return Some(plan.grids().to_vec());
    }
    let mut out = Vec::with_capacity(plan.grids().len() * (k * k) as usize);
    for g in plan.grids() {
        let parts = plan::cut(&g.bbox, k, k).ok()?;
        out.extend(parts.into_iter().map(|p| Grid {
            id: g.id.clone(),
            bbox: p.bbox,
        }));
    }
    Some(out)
}

/// The shard of each of `units` units: dealt round-robin in a fixed
/// pseudo-random order of the units, so counts differ by at most one and
/// neighbours are spread.
fn deal(units: usize, count: u32) -> Vec<u32> {
    let mut order: Vec<usize> = (0..units).collect();
    order.sort_by_key(|&i| (mix(i as u64), i));
    let mut shard = vec![0u32; units];
    for (j, &i) in order.iter().enumerate() {
        shard[i] = (j % count as usize) as u32;
    }
    shard
}

/// SplitMix64's finaliser: a fixed, well-spread permutation key.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Divides a default rate or budget among `count` shards (at least 1 each).
pub(crate) fn share(total: u32, count: u32) -> u32 {
    (total / count.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LonLat;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn flag(s: &str) -> Option<ShardFlag> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_flag_parses_and_names_its_file() {
        let s: Shard = "2/8".parse().unwrap();
        assert_eq!((s.index(), s.count()), (2, 8));
        assert_eq!(s.record_file(), "mlyexport-run.shard-2-of-8.json");
        assert_eq!(s.lock_file(), ".mlyexport.shard-2-of-8.lock");
        assert_eq!(Shard::from_record_file(&s.record_file()), Some(s));
        assert_eq!(Shard::from_record_file("mlyexport-run.json"), None);
        assert_eq!("none".parse::<ShardFlag>(), Ok(ShardFlag::Off));
        for bad in ["", "2", "a/4", "2/", "-1/4", "1/0", "4/4", "0/10001"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let e = "4/4".parse::<Shard>().unwrap_err().to_string();
        assert!(e.contains("the last of 4 shards is 3/4"), "{e}");
    }

    #[test]
    fn slurm_gives_k_minus_min_of_count() {
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_MAX", "8"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        let got = resolve(None, None, &slurm).unwrap().unwrap();
        assert_eq!(got, (Shard::new(2, 4).unwrap(), ShardSource::Slurm));
        // The flag may repeat what the job says, not contradict it.
        assert!(resolve(flag("2/4"), None, &slurm).unwrap().is_some());
        let e = resolve(flag("1/4"), None, &slurm).unwrap_err();
        assert!(matches!(e, ShardError::Disagrees { .. }), "{e}");
        assert_eq!(resolve(flag("none"), None, &slurm), Ok(None));
        let e = resolve(flag("none"), Some(4), &slurm).unwrap_err();
        assert_eq!(e, ShardError::OffWithCount { count: 4 });
        assert!(e.to_string().contains("drop --shards 4"), "{e}");
        // With --shards N, K is the ID itself (re-running --array=7 of 8).
        let got = resolve(None, Some(8), &slurm).unwrap().unwrap();
        assert_eq!(got, (Shard::new(7, 8).unwrap(), ShardSource::Slurm));
        assert!(resolve(flag("7/8"), Some(8), &slurm).unwrap().is_some());
        let e = resolve(None, Some(5), &slurm).unwrap_err();
        assert!(matches!(e, ShardError::IndexTooLarge { .. }), "{e}");
    }

    #[test]
    fn a_slurm_array_with_a_step_or_missing_variables_is_refused() {
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "6"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        let e = resolve(None, None, &stepped).unwrap_err();
        assert!(e.to_string().contains("--array=0-3"), "{e}");
        assert!(resolve(None, Some(8), &stepped).unwrap().is_some());
        let bare = env(&[("SLURM_ARRAY_TASK_ID", "2")]);
        let e = resolve(None, None, &bare).unwrap_err();
        assert!(matches!(e, ShardError::SlurmIncomplete { .. }), "{e}");
        // Values whose sums leave u32 are named, not wrapped (or a panic).
        let far = env(&[
            ("SLURM_ARRAY_TASK_ID", "4294967295"),
            ("SLURM_ARRAY_TASK_MIN", "4294967295"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        let e = resolve(None, None, &far).unwrap_err().to_string();
        assert!(
            e.starts_with("SLURM_ARRAY_TASK_MIN=4294967295 is out of range"),
            "{e}"
        );
        let none = env(&[
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "0"),
        ]);
        let e = resolve(None, None, &none).unwrap_err().to_string();
        assert!(
            e.starts_with("SLURM_ARRAY_TASK_COUNT=0 is out of range"),
            "{e}"
        );
        let widest = env(&[
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "4294967295"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        let e = resolve(None, None, &widest).unwrap_err();
        assert!(matches!(e, ShardError::SlurmGaps { .. }), "{e}");
        let junk = env(&[("SLURM_ARRAY_TASK_ID", "two")]);
        let e = resolve(None, None, &junk).unwrap_err().to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_ID=`two`"), "{e}");
    }

    #[test]
    fn kubernetes_and_aws_need_the_count() {
        for (var, source) in [
            ("JOB_COMPLETION_INDEX", ShardSource::Kubernetes),
            ("AWS_BATCH_JOB_ARRAY_INDEX", ShardSource::AwsBatch),
        ] {
            let e = env(&[(var, "3")]);
            let got = resolve(None, Some(5), &e).unwrap().unwrap();
            assert_eq!(got, (Shard::new(3, 5).unwrap(), source));
            let err = resolve(None, None, &e).unwrap_err();
            assert_eq!(err, ShardError::NeedsCount { var });
            let err = resolve(None, Some(3), &e).unwrap_err();
            assert!(matches!(err, ShardError::IndexTooLarge { .. }), "{err}");
            let err = resolve(flag("2/5"), None, &e).unwrap_err();
            assert!(matches!(err, ShardError::Disagrees { .. }), "{err}");
        }
    }

    #[test]
    fn no_array_job_means_no_shard_unless_asked() {
        let none = env(&[]);
        assert_eq!(resolve(None, None, &none), Ok(None));
        let given = resolve(flag("1/3"), None, &none).unwrap();
        assert_eq!(given, Some((Shard::new(1, 3).unwrap(), ShardSource::Flag)));
        let e = resolve(None, Some(3), &none).unwrap_err();
        assert_eq!(e, ShardError::NeedsIndex { count: 3 });
        let e = resolve(None, Some(0), &none).unwrap_err();
        assert!(matches!(e, ShardError::Count { .. }), "{e}");
        let e = resolve(flag("1/3"), Some(4), &none).unwrap_err();
        assert!(matches!(e, ShardError::CountDisagrees { .. }), "{e}");
    }

    fn grid_plan(cols: u32, rows: u32) -> Plan {
        let area: Bbox = "8.50,47.35,8.56,47.39".parse().unwrap();
        Plan::new(plan::cut(&area, cols, rows).unwrap()).unwrap()
    }

    /// The shards owning `p`, each with the id of the cell it gives `p`.
    fn owners(split: &Split, plan: &Plan, p: LonLat) -> Vec<(u32, String)> {
        (0..split.count)
            .filter_map(|k| {
                let part = split.plan_of(plan, k).unwrap();
                let i = part.owner(p)?;
                Some((k, part.grids()[i].id.to_string()))
            })
            .collect()
    }

    #[test]
    fn whole_cells_with_enough_cells_parts_otherwise() {
        let p = grid_plan(4, 3);
        let s = Split::new(&p, 5).unwrap();
        assert_eq!(s.kind, SplitKind::Cells);
        assert_eq!(s.units.len(), 12);
        let one = grid_plan(1, 1);
        let s = Split::new(&one, 4).unwrap();
        assert_eq!(s.kind, SplitKind::Parts);
        assert_eq!(s.units.len(), 16);
        assert!(s.units.iter().all(|u| u.grid == "1"));
        // Points on every inner border and corner of the parts: one owner.
        for i in 0..=8 {
            for j in 0..=8 {
                let p = LonLat::new(8.50 + 0.0075 * f64::from(i), 47.35 + 0.005 * f64::from(j));
                assert_eq!(owners(&s, &one, p.unwrap()).len(), 1, "{p:?}");
            }
        }
        let outside = LonLat::new(8.57, 47.36).unwrap();
        assert!(owners(&s, &one, outside).is_empty());
    }

    #[test]
    fn a_split_reads_back_from_json_exactly() {
        // The parts' edges are computed floats: a split (and a shard's
        // record) written and read again must compare equal, or a re-run
        // would be refused as "another request".
        let city: Bbox = "13.300,52.420,13.500,52.620".parse().unwrap();
        for n in [3, 4, 7, 64] {
            let split = Split::new(&Plan::single(city), n).unwrap();
            let text = serde_json::to_string(&split).unwrap();
            let back: Split = serde_json::from_str(&text).unwrap();
            assert_eq!(back, split, "{n} shards");
        }
    }

    #[test]
    fn a_split_read_back_is_checked() {
        let good = Split::new(&grid_plan(3, 1), 2).unwrap();
        assert_eq!(good.check(), Ok(()));
        for count in [0, MAX_SHARDS + 1, 4_000_000_000] {
            let bad = Split {
                count,
                ..good.clone()
            };
            let e = bad.check().unwrap_err();
            assert!(matches!(e, ShardError::Count { .. }), "{count}: {e}");
        }
        let empty = Split {
            units: Vec::new(),
            ..good.clone()
        };
        assert_eq!(empty.check(), Err(ShardError::NoUnits));
        let mut stray = good.clone();
        stray.units[2].shard = 2;
        let e = stray.check().unwrap_err().to_string();
        assert_eq!(
            e,
            "unit 2 (cell `3`) goes to shard 2, but there are 2 shards"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn shards_are_disjoint_complete_stable_and_balanced(
            cols in 1u32..6, rows in 1u32..6, n in 1u32..12,
            points in proptest::collection::vec((0u32..=60, 0u32..=40), 1..40),
        ) {
            let plan = grid_plan(cols, rows);
            let split = Split::new(&plan, n).unwrap();
            prop_assert_eq!(&split, &Split::new(&plan, n).unwrap());
            let sizes: Vec<usize> = (0..n).map(|k| split.units_of_shard(k)).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "{:?}", sizes);
            prop_assert!(*lo >= 1);
            // Grid lines of every cut fall on multiples of 0.001 deg here
            // often, so points on a 0.001 deg lattice hit borders and corners.
            for (i, j) in points {
                let p = LonLat::new(8.50 + 0.001 * f64::from(i), 47.35 + 0.001 * f64::from(j)).unwrap();
                let o = owners(&split, &plan, p);
                prop_assert_eq!(o.len(), 1, "{:?}", p);
                // The same cell as the whole plan gives it.
                let whole = plan.grids()[plan.owner(p).unwrap()].id.to_string();
                prop_assert_eq!(&o[0].1, &whole);
            }
        }
    }
}
