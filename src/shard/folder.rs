//! A sharded output folder on disk: the split file `mlyexport-shards.json`
//! that every shard writes (the same bytes, atomically) before anything else,
//! and the shards' run records `mlyexport-run.shard-K-of-N.json`. A folder
//! is fetched either whole or in shards of one N; anything else is refused
//! before a byte is written. File system only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Shard, Split};
use crate::runrecord::{RUN_RECORD_FILE, Request, RunRecord};
use crate::store;

/// The split file's name in the output folder.
pub(crate) use crate::store::SPLIT_FILE;
/// Version of the split file's layout.
pub(crate) const SPLIT_SCHEMA_VERSION: u32 = 1;

/// A folder that cannot be used as asked, or a file in it that cannot be read.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are the values each message quotes
pub enum FolderError {
    #[error(
        "`{dir}` holds an unsharded fetch (`{RUN_RECORD_FILE}`); fetch the shards into another --output folder, or run without --shard"
    )]
    Unsharded { dir: String },
    #[error(
        "`{dir}` is fetched in {theirs} shards, not {ours}; run the shards with N = {theirs} (--shard K/{theirs}, or an array of {theirs} tasks), or use another --output folder"
    )]
    OtherCount { dir: String, theirs: u32, ours: u32 },
    #[error(
        "`{dir}` is fetched in {count} shards; run `mlyexport fetch --shard K/{count}` for each K (or an array job), `mlyexport status --input {dir}` to see what is missing"
    )]
    Sharded { dir: String, count: u32 },
    #[error(
        "`{dir}` was split into shards for another request; use another --output folder or the same flags:\n  {differences}"
    )]
    OtherRequest { dir: String, differences: String },
    #[error("cannot read `{path}`: {message}; move it away to start afresh")]
    Read { path: String, message: String },
    #[error(
        "`{path}` is not a valid split: {source}; it was changed by hand or damaged: move it away (and the shards' run records) to start afresh"
    )]
    BadSplit {
        path: String,
        source: super::ShardError,
    },
    #[error("cannot list `{dir}`: {source}")]
    List { dir: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// The split file: the request and the whole split, the same for every shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SplitFile {
    pub(crate) schema_version: u32,
    pub(crate) tool: String,
    pub(crate) request: Request,
    pub(crate) split: Split,
}

/// Before a fetch into `dir` writes anything: refuses a folder fetched whole
/// when this run is a shard (and the other way round), or split for another
/// N or request; then writes the split file when it is not there yet.
pub(crate) fn prepare(dir: &Path, this: Option<(&Split, &Request)>) -> Result<(), FolderError> {
    let shown = dir.display().to_string();
    let existing = read_split(dir)?;
    let Some((split, request)) = this else {
        if let Some(count) = existing
            .map(|s| s.split.count)
            .or(record_files(dir)?.first().map(|(s, _)| s.count()))
        {
            return Err(FolderError::Sharded { dir: shown, count });
        }
        return Ok(());
    };
    if dir.join(RUN_RECORD_FILE).exists() {
        return Err(FolderError::Unsharded { dir: shown });
    }
    let other_count = existing
        .as_ref()
        .map(|s| s.split.count)
        .or(record_files(dir)?
            .iter()
            .map(|(s, _)| s.count())
            .find(|&n| n != split.count));
    if let Some(theirs) = other_count.filter(|&n| n != split.count) {
        return Err(FolderError::OtherCount {
            dir: shown,
            theirs,
            ours: split.count,
        });
    }
    match existing {
        Some(old) => same_request(&shown, &old, split, request),
        None => write_split(dir, split, request),
    }
}

fn same_request(
    dir: &str,
    old: &SplitFile,
    split: &Split,
    request: &Request,
) -> Result<(), FolderError> {
    let mut diffs = old.request.differences(request);
    if diffs.is_empty() && old.split != *split {
        diffs.push(format!(
            "grid cells: the folder's split has {} units, this one {}; the grid file or the grid changed",
            old.split.units.len(),
            split.units.len()
        ));
    }
    if diffs.is_empty() {
        return Ok(());
    }
    Err(FolderError::OtherRequest {
        dir: dir.to_string(),
        differences: diffs.join("\n  "),
    })
}

fn write_split(dir: &Path, split: &Split, request: &Request) -> Result<(), FolderError> {
    let file = SplitFile {
        schema_version: SPLIT_SCHEMA_VERSION,
        tool: "mlyexport".into(),
        request: request.clone(),
        split: split.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
    bytes.push(b'\n');
    store::atomic_write(&dir.join(SPLIT_FILE), &bytes)?;
    Ok(())
}

/// The split file of `dir`, when there is one, checked ([`Split::check`])
/// before anything is sized by it.
pub(crate) fn read_split(dir: &Path) -> Result<Option<SplitFile>, FolderError> {
    let path = dir.join(SPLIT_FILE);
    let Some(file) = read_json::<SplitFile>(&path)? else {
        return Ok(None);
    };
    file.split.check().map_err(|source| FolderError::BadSplit {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Some(file))
}

/// A run record, when its file exists.
pub(crate) fn read_record(path: &Path) -> Result<Option<RunRecord>, FolderError> {
    read_json(path)
}

/// The JSON file at `path` parsed, when it exists (read with a bound).
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, FolderError> {
    let Some(bytes) = read_bounded(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| FolderError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>, FolderError> {
    let mut bytes = Vec::new();
    let max = crate::runrecord::lifecycle::MAX_RUN_RECORD_BYTES;
    match crate::input::read_bounded_into(path, max, &mut bytes) {
        Ok(()) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FolderError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

/// Every shard run record in `dir`, by shard, sorted.
pub(crate) fn record_files(dir: &Path) -> Result<Vec<(Shard, PathBuf)>, FolderError> {
    let list_err = |source| FolderError::List {
        dir: dir.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(list_err(e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(list_err)?;
        if let Some(s) = e.file_name().to_str().and_then(Shard::from_record_file) {
            out.push((s, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// A sharded folder as read: the split file and each shard's record (`None`
/// for a shard that has not started).
#[derive(Debug, Clone)]
pub(crate) struct ShardedFolder {
    pub(crate) split: SplitFile,
    pub(crate) records: Vec<Option<RunRecord>>,
}

/// The sharded folder `dir`, or `None` when it is not one (no split file).
pub(crate) fn read(dir: &Path) -> Result<Option<ShardedFolder>, FolderError> {
    let Some(split) = read_split(dir)? else {
        return Ok(None);
    };
    let n = split.split.count;
    let mut records = Vec::with_capacity(n as usize);
    for k in 0..n {
        let shard = Shard::new(k, n).map_err(|e| FolderError::Read {
            path: dir.join(SPLIT_FILE).display().to_string(),
            message: e.to_string(),
        })?;
        records.push(read_record(&dir.join(shard.record_file()))?);
    }
    Ok(Some(ShardedFolder { split, records }))
}
