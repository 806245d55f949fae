//! Reads a downloads folder for `layers`: the per-image metadata files (in
//! parallel, on the caller's rayon pool), the run record and the optional
//! listing. File reads only: no writes, no network, no terminal.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::Value;

use super::{ImageRow, Interner, LayersError};
use crate::model::{ImageId, PositionSource};
use crate::record::{ImageRecord, RecordError};
use crate::runrecord::{RUN_RECORD_FILE, RunRecord};
use crate::store::{FoundImage, LISTING_FILE};

/// Why one metadata file (or the run record) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("`{path}` is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("`{path}` is not an image record: {source}")]
    Record { path: PathBuf, source: RecordError },
    #[error("`{path}` holds image `{found}`, not the image its name says")]
    IdMismatch { path: PathBuf, found: ImageId },
    #[error("`{path}` is not a valid run record: {source}")]
    RunRecord {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Layers(#[from] LayersError),
}

/// Images handed to rayon at once; bounds the memory of parsed records.
const CHUNK: usize = 8192;

/// Reads and parses one `<id>.json`.
pub fn read_record(found: &FoundImage) -> Result<ImageRecord, ReadError> {
    let path = &found.json;
    let bytes = fs::read(path).map_err(|source| ReadError::Io {
        path: path.clone(),
        source,
    })?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|source| ReadError::Json {
        path: path.clone(),
        source,
    })?;
    let rec = ImageRecord::from_value(&v).map_err(|source| ReadError::Record {
        path: path.clone(),
        source,
    })?;
    if rec.id != found.id {
        return Err(ReadError::IdMismatch {
            path: path.clone(),
            found: rec.id,
        });
    }
    Ok(rec)
}

/// Rows read from a folder, and the files that could not be used.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    /// In the order of `found` (grid, then id); not yet de-duplicated.
    pub rows: Vec<ImageRow>,
    pub strings: Interner,
    pub problems: Vec<ReadError>,
}

/// Reads every metadata file in parallel (in chunks, so only a few thousand
/// parsed records live at once) and turns each into a compact [`ImageRow`].
/// `found` is consumed chunk by chunk, freeing its paths as it goes. A bad
/// file becomes a problem, never an abort. `progress` is called after each
/// chunk with the number of files done.
pub fn read_rows(
    mut found: Vec<FoundImage>,
    prefer: PositionSource,
    mut progress: impl FnMut(usize),
) -> ReadOutcome {
    let mut out = ReadOutcome {
        rows: Vec::with_capacity(found.len()),
        ..ReadOutcome::default()
    };
    let mut done = 0;
    // Take chunks off the end of the reversed list: O(chunk) each, in the original order.
    found.reverse();
    while !found.is_empty() {
        let mut chunk = found.split_off(found.len().saturating_sub(CHUNK));
        chunk.reverse();
        let parsed: Vec<Result<ImageRecord, ReadError>> =
            chunk.par_iter().map(read_record).collect();
        for (f, r) in chunk.iter().zip(parsed) {
            let row = r.and_then(|rec| {
                ImageRow::from_record(&rec, &f.grid, f.jpg.is_some(), prefer, &mut out.strings)
                    .map_err(ReadError::from)
            });
            match row {
                Ok(row) => out.rows.push(row),
                Err(e) => out.problems.push(e),
            }
        }
        done += chunk.len();
        if found.capacity() > 2 * found.len() + 4 * CHUNK {
            found.shrink_to_fit();
        }
        progress(done);
    }
    out
}

/// The run record of `root`: `Ok(None)` when there is none (e.g. the old
/// Python tool's folder), an error when it exists but cannot be read.
pub fn read_run_record(root: &Path) -> Result<Option<RunRecord>, ReadError> {
    let path = root.join(RUN_RECORD_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ReadError::Io { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| ReadError::RunRecord { path, source })
}

/// Images listed per grid according to `listing.jsonl`, when it exists and
/// can be read; lines that are not JSON objects with a `grid` are skipped.
pub fn read_listing_counts(root: &Path) -> Option<BTreeMap<String, u64>> {
    let file = fs::File::open(root.join(LISTING_FILE)).ok()?;
    let mut counts = BTreeMap::new();
    for line in io::BufReader::new(file).lines() {
        let line = line.ok()?;
        let grid = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| match v.get("grid")? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        if let Some(g) = grid {
            *counts.entry(g).or_insert(0) += 1;
        }
    }
    Some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn bad_files_are_problems_not_aborts() {
        let dir = tempfile::tempdir().unwrap();
        let g = dir.path().join("g1");
        fs::create_dir_all(&g).unwrap();
        fs::write(
            g.join("1.json"),
            r#"{"id":"1","geometry":{"type":"Point","coordinates":[1,2]}}"#,
        )
        .unwrap();
        fs::write(g.join("2.json"), "{not json").unwrap();
        fs::write(g.join("3.json"), r#"{"id":"4"}"#).unwrap();
        let (_, found) = crate::store::scan_input(dir.path()).unwrap();
        let out = read_rows(found, PositionSource::Computed, |_| {});
        assert_eq!(out.rows.len(), 1);
        assert_eq!(out.problems.len(), 2);
        assert!(matches!(out.problems[0], ReadError::Json { .. }));
        assert!(matches!(out.problems[1], ReadError::IdMismatch { .. }));
        assert!(read_run_record(dir.path()).unwrap().is_none());
        fs::write(dir.path().join(RUN_RECORD_FILE), "[]").unwrap();
        assert!(read_run_record(dir.path()).is_err());
        fs::write(
            dir.path().join(LISTING_FILE),
            "{\"grid\":\"g1\"}\nxx\n{\"grid\":\"g1\"}\n",
        )
        .unwrap();
        assert_eq!(read_listing_counts(dir.path()).unwrap()["g1"], 2);
    }
}
