//! A sharded output folder on disk: the split file `mlyexport-shards.json`
//! that the first shard creates (exclusively: it is never replaced) before
//! anything else, and the shards' run records `mlyexport-run.shard-K-of-N.json`.
//! A folder is fetched either whole or in shards of one N; anything else is
//! refused before the fetch lists anything, also when the runs start at once.
//! File system only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Shard, Split};
use crate::runrecord::{RUN_RECORD_FILE, Request, RunRecord};
use crate::store::{self, Created};

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
    #[error("cannot tell whether `{path}` exists: {source}; check the folder's permissions")]
    Exists {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the split of `{dir}` as JSON: {source}")]
    Encode {
        dir: String,
        source: serde_json::Error,
    },
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
/// N or request; a shard then creates the split file when it is not there
/// yet, exclusively (of shards with different N started at once, one
/// creates it and the others find it and refuse), and looks for a whole
/// fetch's record once more. A whole fetch calls [`confirm_whole`] after it
/// wrote its record: of a whole fetch and a shard started at once, at least
/// one sees the other's file and refuses.
pub(crate) fn prepare(dir: &Path, this: Option<(&Split, &Request)>) -> Result<(), FolderError> {
    let Some((split, request)) = this else {
        return confirm_whole(dir);
    };
    refuse_whole(dir)?;
    let existing = read_split_settled(dir)?;
    let theirs = match &existing {
        Some(s) => Some(s.split.count),
        None => record_files(dir)?
            .iter()
            .map(|(s, _)| s.count())
            .find(|&n| n != split.count),
    };
    refuse_other_count(dir, theirs, split.count)?;
    match existing {
        Some(old) => same_request(&dir.display().to_string(), &old, split, request)?,
        None => create_split(dir, split, request)?,
    }
    refuse_whole(dir)
}

/// Refuses a whole fetch into `dir` when it is sharded: a split file or a
/// shard's record is there. Called before the whole fetch writes its record
/// and again after.
pub(crate) fn confirm_whole(dir: &Path) -> Result<(), FolderError> {
    let count = match read_split_settled(dir)? {
        Some(s) => Some(s.split.count),
        None => record_files(dir)?.first().map(|(s, _)| s.count()),
    };
    match count {
        Some(count) => Err(FolderError::Sharded {
            dir: dir.display().to_string(),
            count,
        }),
        None => Ok(()),
    }
}

/// Refuses a shard when `dir` holds a whole fetch's record.
fn refuse_whole(dir: &Path) -> Result<(), FolderError> {
    let path = dir.join(RUN_RECORD_FILE);
    // Only "not there" is absent: a folder that cannot be searched is an error.
    let there = path.try_exists().map_err(|source| FolderError::Exists {
        path: path.display().to_string(),
        source,
    })?;
    if there {
        return Err(FolderError::Unsharded {
            dir: dir.display().to_string(),
        });
    }
    Ok(())
}

/// Refuses a shard of `ours` shards when `dir` is split into `theirs`.
fn refuse_other_count(dir: &Path, theirs: Option<u32>, ours: u32) -> Result<(), FolderError> {
    match theirs {
        Some(theirs) if theirs != ours => Err(FolderError::OtherCount {
            dir: dir.display().to_string(),
            theirs,
            ours,
        }),
        _ => Ok(()),
    }
}

/// Creates the split file, unless another shard did first: then this
/// shard's split and request must be the same as that one's.
fn create_split(dir: &Path, split: &Split, request: &Request) -> Result<(), FolderError> {
    let file = SplitFile {
        schema_version: SPLIT_SCHEMA_VERSION,
        tool: "mlyexport".into(),
        request: request.clone(),
        split: split.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(|source| FolderError::Encode {
        dir: dir.display().to_string(),
        source,
    })?;
    bytes.push(b'\n');
    if store::create_new(&dir.join(SPLIT_FILE), &bytes)? == Created::New {
        return Ok(());
    }
    let Some(old) = read_split_settled(dir)? else {
        return Err(FolderError::Read {
            path: dir.join(SPLIT_FILE).display().to_string(),
            message: "it was there a moment ago and is gone".into(),
        });
    };
    refuse_other_count(dir, Some(old.split.count), split.count)?;
    same_request(&dir.display().to_string(), &old, split, request)
}

/// The split file, when there is one. Another shard may be creating it,
/// and where that is done without a hard link ([`store::create_new_in_place`])
/// the file may be empty or cut short for a moment: it is read again while it
/// does not parse, for up to a second.
fn read_split_settled(dir: &Path) -> Result<Option<SplitFile>, FolderError> {
    let mut tries = 0;
    loop {
        match read_split(dir) {
            Err(FolderError::Read { .. }) if tries < SETTLE_TRIES => {
                tries += 1;
                std::thread::sleep(SETTLE_PAUSE);
            }
            read => return read,
        }
    }
}

/// How often, and how far apart, a split file just created by another shard
/// is read again while it does not parse.
const SETTLE_TRIES: u32 = 50;
const SETTLE_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bbox, ThumbSize};
    use crate::plan::{self, Plan};
    use crate::runrecord::testing::request;

    fn split(cols: u32, n: u32) -> Split {
        let area: Bbox = "2.30,48.84,2.31,48.85".parse().unwrap();
        Split::new(&Plan::new(plan::cut(&area, cols, 1).unwrap()).unwrap(), n).unwrap()
    }

    #[test]
    fn the_split_file_is_created_once_and_another_n_refused() {
        let dir = tempfile::tempdir().unwrap();
        let req = request(ThumbSize::S256);
        let (two, three) = (split(3, 2), split(3, 3));
        create_split(dir.path(), &two, &req).unwrap();
        let first = std::fs::read(dir.path().join(SPLIT_FILE)).unwrap();
        let e = create_split(dir.path(), &three, &req).unwrap_err();
        assert!(
            matches!(
                e,
                FolderError::OtherCount {
                    theirs: 2,
                    ours: 3,
                    ..
                }
            ),
            "{e}"
        );
        let other = request(ThumbSize::S1024);
        let e = create_split(dir.path(), &two, &other).unwrap_err();
        assert!(matches!(e, FolderError::OtherRequest { .. }), "{e}");
        assert_eq!(std::fs::read(dir.path().join(SPLIT_FILE)).unwrap(), first);
        // The same split and request: accepted, the file as it was.
        create_split(dir.path(), &two, &req).unwrap();
        prepare(dir.path(), Some((&two, &req))).unwrap();
        assert_eq!(std::fs::read(dir.path().join(SPLIT_FILE)).unwrap(), first);
    }

    #[test]
    fn shards_of_two_ns_at_once_one_is_refused() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let req = request(ThumbSize::S256);
            let splits = [split(3, 2), split(3, 3)];
            let results: Vec<Result<(), FolderError>> = std::thread::scope(|s| {
                let hs: Vec<_> = splits
                    .iter()
                    .map(|sp| {
                        let (d, r) = (dir.path(), &req);
                        s.spawn(move || prepare(d, Some((sp, r))))
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let ok = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(ok, 1, "{results:?}");
        }
    }

    #[test]
    fn a_whole_fetch_and_a_shard_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let req = request(ThumbSize::S256);
        let two = split(3, 2);
        prepare(dir.path(), Some((&two, &req))).unwrap();
        // A whole fetch that checked before the split file was there finds it
        // when it looks again after writing its record.
        let e = confirm_whole(dir.path()).unwrap_err();
        assert!(matches!(e, FolderError::Sharded { count: 2, .. }), "{e}");
        // A shard finds a whole fetch's record that appeared meanwhile.
        std::fs::write(dir.path().join(RUN_RECORD_FILE), "{}").unwrap();
        let e = prepare(dir.path(), Some((&two, &req))).unwrap_err();
        assert!(matches!(e, FolderError::Unsharded { .. }), "{e}");
    }

    #[test]
    fn a_record_that_cannot_be_looked_for_is_an_error_not_absent() {
        // A path through a file: `exists()` says no; the lookup failed.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let e = refuse_whole(&file).unwrap_err();
        assert!(matches!(e, FolderError::Exists { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with("cannot tell whether `") && text.contains("mlyexport-run.json"),
            "{text}"
        );
        refuse_whole(dir.path()).unwrap();
    }
}
