//! Images without any position in a sharded fetch. Such an image is placed
//! by the box that returned it, and the API may return it for a box of each
//! of two neighbouring cells (a hidden spot on their border), which can
//! belong to two shards. The first shard to list it claims it with a file
//! `.mlyexport-claims/<id>` naming the shard, created once (atomically, also
//! on NFS); a shard keeps only the images it claimed, now or in an earlier
//! run. File system only.

use std::path::{Path, PathBuf};

use super::Shard;
use crate::model::ImageId;
use crate::store::{self, StoreError};

/// The folder of claims in the output folder.
pub(crate) const CLAIMS_DIR: &str = ".mlyexport-claims";

/// Largest claim file read (it holds a shard's tag).
const MAX_CLAIM_BYTES: u64 = 256;

/// The claims of one shard in one output folder.
#[derive(Debug)]
pub(crate) struct Claims {
    dir: PathBuf,
    tag: String,
}

impl Claims {
    /// The claims folder of `out` (made when missing), for `shard`.
    pub(crate) fn open(out: &Path, shard: Shard) -> Result<Self, StoreError> {
        let dir = out.join(CLAIMS_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(Claims {
            dir,
            tag: shard.tag(),
        })
    }

    /// Whether this shard keeps image `id`: it claims it now, or claimed it
    /// before. `false` when another shard did.
    pub(crate) fn claim(&self, id: ImageId) -> Result<bool, StoreError> {
        let path = self.dir.join(id.to_string());
        if store::create_once(&path, self.tag.as_bytes())? {
            return Ok(true);
        }
        let mut owner = String::new();
        crate::input::open_regular(&path)
            .and_then(|f| {
                std::io::Read::read_to_string(
                    &mut std::io::Read::take(f, MAX_CLAIM_BYTES),
                    &mut owner,
                )
            })
            .map_err(|source| StoreError::Read {
                path: path.clone(),
                source,
            })?;
        Ok(owner == self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_shard_keeps_an_image_and_keeps_it_on_a_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let a = Claims::open(dir.path(), Shard::new(0, 2).unwrap()).unwrap();
        let b = Claims::open(dir.path(), Shard::new(1, 2).unwrap()).unwrap();
        let id = ImageId::new(42).unwrap();
        assert!(b.claim(id).unwrap());
        assert!(!a.claim(id).unwrap());
        assert!(b.claim(id).unwrap(), "a re-run keeps its own claim");
        let other = ImageId::new(43).unwrap();
        assert!(a.claim(other).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(CLAIMS_DIR).join("42")).unwrap(),
            "shard-1-of-2"
        );
        let names: Vec<String> = std::fs::read_dir(dir.path().join(CLAIMS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "temp files left: {names:?}");
    }

    #[test]
    fn shards_claiming_at_once_keep_each_image_once() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<ImageId> = (1..=200).filter_map(ImageId::new).collect();
        let kept: Vec<Vec<ImageId>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|k| {
                    let (dir, ids) = (dir.path(), &ids);
                    s.spawn(move || {
                        let c = Claims::open(dir, Shard::new(k, 4).unwrap()).unwrap();
                        ids.iter()
                            .copied()
                            .filter(|&id| c.claim(id).unwrap())
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<ImageId> = kept.into_iter().flatten().collect();
        all.sort();
        assert_eq!(all, ids);
    }
}
