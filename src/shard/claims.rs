//! Images without any position in a sharded fetch. Such an image is placed
//! by the box that returned it, and the API may return it for a box of each
//! of two neighbouring cells (a hidden spot on their border), which can
//! belong to two shards. The first shard to list it claims it with a file
//! `.mlyexport-claims/<id>` naming the shard and its split, created exclusively
//! with its content ([`crate::store::create_new`]: a temp file hard-linked
//! into place; `O_EXCL` where there are no hard links, which NFS v3 and later,
//! Lustre and local file systems make atomic); a shard keeps only the images
//! it claimed, now or in an earlier run. File system only.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Shard, Split};
use crate::model::ImageId;
use crate::store::StoreError;
use sha2::Digest;

/// The folder of claims in the output folder.
pub(crate) const CLAIMS_DIR: &str = ".mlyexport-claims";

/// Largest claim file read (it holds a shard's tag).
const MAX_CLAIM_BYTES: u64 = 256;

/// How often an empty claim (its shard is writing it) is read again.
const EMPTY_RETRIES: usize = 10;

/// The claims of one shard in one output folder.
#[derive(Debug)]
pub(crate) struct Claims {
    dir: PathBuf,
    shard: Shard,
    /// A digest of the split, so claims of an earlier split of the folder
    /// (moved away and split again) are not taken for this one's.
    split: String,
}

/// What became of one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// This shard keeps the image (claimed now, or in an earlier run).
    Ours,
    /// Another shard of this split claimed it first (its tag).
    Theirs(String),
}

impl Claims {
    /// The claims folder of `out` (made when missing), for `shard` of `split`.
    pub(crate) fn open(out: &Path, shard: Shard, split: &Split) -> Result<Self, StoreError> {
        let dir = out.join(CLAIMS_DIR);
        fs::create_dir_all(&dir).map_err(|source| StoreError::Write {
            path: dir.clone(),
            source,
        })?;
        // A split (numbers and strings) always serialises; were it ever not
        // to, every split would get the digest of nothing, and only a re-split
        // folder's old claims would go unrecognised.
        let digest = sha2::Sha256::digest(serde_json::to_vec(split).unwrap_or_default());
        Ok(Claims {
            dir,
            shard,
            split: hex::encode(&digest[..8]),
        })
    }

    /// Claims image `id` for this shard, unless a shard of this split did
    /// first. A claim of another split (the folder was split again, with
    /// another N) or one left empty is taken over: the image is better kept
    /// twice than by nobody.
    pub(crate) fn claim(&self, id: ImageId) -> Result<Claim, StoreError> {
        let path = self.dir.join(id.to_string());
        let tag = self.tag(self.shard);
        if crate::store::create_new(&path, tag.as_bytes())? == crate::store::Created::New {
            return Ok(Claim::Ours);
        }
        let read = |path: &Path| {
            read_claim(path).map_err(|source| StoreError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let owner = read(&path)?;
        if owner == tag {
            return Ok(Claim::Ours);
        }
        if self.of_this_split(&owner) {
            return Ok(Claim::Theirs(owner));
        }
        crate::store::atomic_write(&path, tag.as_bytes())?;
        // Two shards taking over the same claim at once: the tag read back
        // decides (a narrow window remains between one's read and the
        // other's rename).
        match read(&path)? {
            now if now == tag || !self.of_this_split(&now) => Ok(Claim::Ours),
            now => Ok(Claim::Theirs(now)),
        }
    }

    /// Whether `tag` names a shard of this shard's split.
    fn of_this_split(&self, tag: &str) -> bool {
        let n = self.shard.count();
        (0..n).any(|k| Shard::new(k, n).is_ok_and(|s| self.tag(s) == tag))
    }

    /// What a claim of `shard` of this split holds: `shard-K-of-N <digest>`.
    fn tag(&self, shard: Shard) -> String {
        format!("{} {}", shard.tag(), self.split)
    }
}

/// A claim's tag; an empty one is read again for a moment (its shard may be
/// writing it).
fn read_claim(path: &Path) -> io::Result<String> {
    let mut owner = String::new();
    for _ in 0..EMPTY_RETRIES {
        owner.clear();
        crate::input::open_regular(path)?
            .take(MAX_CLAIM_BYTES)
            .read_to_string(&mut owner)?;
        if !owner.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(k: u32, n: u32) -> Shard {
        Shard::new(k, n).unwrap()
    }

    fn split(n: u32) -> Split {
        serde_json::from_value(serde_json::json!({
            "count": n, "kind": "cells", "parts_per_side": 1, "units": []
        }))
        .unwrap()
    }

    fn open(dir: &Path, k: u32, n: u32) -> Claims {
        Claims::open(dir, shard(k, n), &split(n)).unwrap()
    }

    #[test]
    fn the_first_shard_keeps_an_image_and_keeps_it_on_a_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(dir.path(), 0, 2);
        let b = open(dir.path(), 1, 2);
        let id = ImageId::new(42).unwrap();
        assert_eq!(b.claim(id).unwrap(), Claim::Ours);
        assert_eq!(a.claim(id).unwrap(), Claim::Theirs(b.tag(shard(1, 2))));
        assert_eq!(
            b.claim(id).unwrap(),
            Claim::Ours,
            "a re-run keeps its own claim"
        );
        assert_eq!(a.claim(ImageId::new(43).unwrap()).unwrap(), Claim::Ours);
        let path = dir.path().join(CLAIMS_DIR).join("42");
        assert!(
            fs::read_to_string(path)
                .unwrap()
                .starts_with("shard-1-of-2 ")
        );
        assert_eq!(
            fs::read_dir(dir.path().join(CLAIMS_DIR)).unwrap().count(),
            2
        );
    }

    #[test]
    fn a_claim_of_another_split_or_left_empty_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path(), 0, 2);
        let claims = dir.path().join(CLAIMS_DIR);
        let earlier = open(dir.path(), 1, 3).tag(shard(1, 3));
        fs::write(claims.join("6"), "shard-1-of-2 0123456789abcdef").unwrap();
        fs::write(claims.join("7"), earlier).unwrap();
        fs::write(claims.join("8"), "").unwrap();
        fs::write(claims.join("9"), c.tag(shard(1, 2))).unwrap();
        for id in [6, 7, 8] {
            assert_eq!(c.claim(ImageId::new(id).unwrap()).unwrap(), Claim::Ours);
            let tag = fs::read_to_string(claims.join(id.to_string())).unwrap();
            assert_eq!(tag, c.tag(shard(0, 2)));
        }
        assert!(matches!(
            c.claim(ImageId::new(9).unwrap()).unwrap(),
            Claim::Theirs(_)
        ));
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
                        let c = open(dir, k, 4);
                        ids.iter()
                            .copied()
                            .filter(|&id| c.claim(id).unwrap() == Claim::Ours)
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
