//! Images without any position in a sharded fetch. Such an image is placed
//! by the box that returned it, and the API may return it for a box of each
//! of two neighbouring cells (a hidden spot on their border), which can
//! belong to two shards. The first shard to list it claims it with a file
//! `.mlyexport-claims/<id>` naming the shard and its split, created exclusively
//! with its content (a temp file hard-linked into place; `O_EXCL` where there
//! are no hard links, which NFS v3 and later, Lustre and local file systems
//! make atomic); a shard keeps only the images it claimed, now or in an
//! earlier run. File system only.

use std::fs;
use std::io::{self, Read, Write};
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
        let write_err = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let tag = self.tag(self.shard);
        if self.create(id, &path, &tag).map_err(write_err)? {
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

    /// Creates the claim `path` holding `tag`, false when it exists. A temp
    /// file is hard-linked into place, so a claim is never seen empty; where
    /// the file system has no hard links (s3fs, SMB, exFAT), the claim is
    /// created with `O_EXCL` and then written (another shard reading it in
    /// between waits for its tag, see [`read_claim`]).
    fn create(&self, id: ImageId, path: &Path, tag: &str) -> io::Result<bool> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{id}.{}.{n}.tmp", std::process::id()));
        let new = || {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
        };
        let mut f = match new() {
            // Left by a killed process that had this process id.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?;
                new()?
            }
            other => other?,
        };
        f.write_all(tag.as_bytes())?;
        drop(f);
        let linked = fs::hard_link(&tmp, path);
        fs::remove_file(&tmp)?;
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) if no_hard_links(&e) => create_then_write(path, tag),
            Err(e) => Err(e),
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

/// Whether a failed `link()` means the file system has no hard links.
fn no_hard_links(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
        || e.raw_os_error().is_some_and(|code| {
            use rustix::io::Errno;
            [Errno::PERM, Errno::OPNOTSUPP, Errno::MLINK, Errno::NOSYS]
                .iter()
                .any(|n| n.raw_os_error() == code)
        })
}

/// `O_EXCL` create, then the tag: false when the claim exists.
fn create_then_write(path: &Path, tag: &str) -> io::Result<bool> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut f) => f.write_all(tag.as_bytes()).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
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
    fn without_hard_links_a_claim_is_created_exclusively() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("7");
        assert!(create_then_write(&p, "a").unwrap());
        assert!(!create_then_write(&p, "b").unwrap());
        assert_eq!(fs::read_to_string(&p).unwrap(), "a");
        let eperm = rustix::io::Errno::PERM.raw_os_error();
        assert!(no_hard_links(&io::Error::from_raw_os_error(eperm)));
        assert!(!no_hard_links(&io::Error::from(
            io::ErrorKind::AlreadyExists
        )));
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
