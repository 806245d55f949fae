//! What a folder already holds, for resuming: every image id stored in any
//! grid folder (so an image is never stored twice, even when its position
//! moved to another grid between runs), and whether a stored image is really
//! finished (its JSON parses, names the id, and its JPEG has the recorded
//! size). File system only; no network.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::model::{FileStem, GridId, ImageId};
use crate::store::{self, ImagePaths};

/// Largest `<id>.json` read when checking a stored image.
const MAX_JSON: u64 = 1 << 20;

/// The images stored in a folder: id -> the grid folder holding its JSON.
#[derive(Debug, Default)]
pub(crate) struct OnDisk {
    grids: Vec<GridId>,
    by_id: HashMap<ImageId, u32>,
}

impl OnDisk {
    /// Lists `<out>/<grid>/<id>.json` for every folder whose name is a grid
    /// id (names only; nothing is read). A missing folder holds nothing.
    pub(super) fn scan(out: &Path) -> std::io::Result<OnDisk> {
        let mut on = OnDisk::default();
        let entries = match std::fs::read_dir(out) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(on),
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let Some(grid) = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<GridId>().ok())
            else {
                continue;
            };
            if !e.file_type()?.is_dir() {
                continue;
            }
            on.add_grid(&e.path(), grid)?;
        }
        Ok(on)
    }

    fn add_grid(&mut self, dir: &Path, grid: GridId) -> std::io::Result<()> {
        let k = self.grids.len() as u32;
        let mut any = false;
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name();
            let stem = name.to_str().and_then(|n| n.strip_suffix(".json"));
            // `0005.json` is not image 5's file (the folder scan skips it too).
            if let Some(FileStem::Id(id)) = stem.map(FileStem::of) {
                // The first folder found keeps it; a second copy is left alone.
                self.by_id.entry(id).or_insert(k);
                any = true;
            }
        }
        if any {
            self.grids.push(grid);
        }
        Ok(())
    }

    /// The grid folder already holding `id`, if any.
    pub(crate) fn grid_of(&self, id: ImageId) -> Option<&GridId> {
        self.by_id.get(&id).map(|&k| &self.grids[k as usize])
    }
}

/// Whether the image at `paths` is finished: its JSON (at most 1 MiB, a
/// regular file) parses, names `id`, and the JPEG has the size the JSON
/// records. Anything else means it is fetched again.
pub(crate) fn finished(paths: &ImagePaths, id: ImageId) -> bool {
    let Some(meta) = read_json(&paths.json) else {
        return false;
    };
    let named = meta.get("id").and_then(|v| v.as_str()) == Some(id.to_string().as_str());
    let bytes = meta
        .get(crate::record::TOOL_KEY)
        .and_then(|t| t.get("bytes"))
        .and_then(serde_json::Value::as_u64);
    let jpg = std::fs::symlink_metadata(&paths.jpg);
    named && jpg.is_ok_and(|m| m.is_file() && Some(m.len()) == bytes)
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    let file = store::open_for_reading(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = Vec::new();
    file.take(MAX_JSON + 1).read_to_end(&mut buf).ok()?;
    if buf.len() as u64 > MAX_JSON {
        return None;
    }
    serde_json::from_slice(&buf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ImageId {
        ImageId::new(n).unwrap()
    }

    #[test]
    fn finds_ids_in_any_grid_and_checks_what_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let g: GridId = "7".parse().unwrap();
        let p = ImagePaths::new(out, &g, id(42));
        std::fs::create_dir_all(p.jpg.parent().unwrap()).unwrap();
        std::fs::write(&p.jpg, b"\xFF\xD8abc\xFF\xD9").unwrap();
        let json = |bytes: u64, name: &str| {
            serde_json::json!({"id": name, "mlyexport": {"bytes": bytes}}).to_string()
        };
        std::fs::write(&p.json, json(7, "42")).unwrap();
        std::fs::create_dir_all(out.join("layers")).unwrap();
        std::fs::write(out.join("notes.txt"), "x").unwrap();
        // Not image 43's file: leading zeros.
        std::fs::write(out.join("7/0043.json"), json(7, "43")).unwrap();
        let on = OnDisk::scan(out).unwrap();
        assert_eq!(on.grid_of(id(42)).map(GridId::as_str), Some("7"));
        assert_eq!(on.grid_of(id(43)), None);
        assert!(finished(&p, id(42)));
        // Wrong size, wrong id, unparsable JSON, missing JPEG: not finished.
        std::fs::write(&p.json, json(8, "42")).unwrap();
        assert!(!finished(&p, id(42)));
        std::fs::write(&p.json, json(7, "41")).unwrap();
        assert!(!finished(&p, id(42)));
        std::fs::write(&p.json, "{\"id\":").unwrap();
        assert!(!finished(&p, id(42)));
        std::fs::write(&p.json, json(7, "42")).unwrap();
        std::fs::remove_file(&p.jpg).unwrap();
        assert!(!finished(&p, id(42)));
        assert!(
            OnDisk::scan(&out.join("nothing"))
                .unwrap()
                .grid_of(id(42))
                .is_none()
        );
    }
}
