//! The output folder: its layout, atomic writes (temp file + rename), what is
//! already done, and finding the images in a folder for post-processing.
//! File system only: no network, no policy about what to download.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::model::{GridId, ImageId};

/// Prefix of every temporary file mlyexport writes; leftovers from a killed
/// run are removed by [`remove_stale_temp_files`].
pub const TEMP_PREFIX: &str = ".mlyexport-tmp-";

/// Name of the listing written by `fetch` (one JSON object per line).
pub const LISTING_FILE: &str = "listing.jsonl";

/// Errors from the output folder.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write `{path}`: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// Writes `bytes` to `path` atomically: a temp file in the same folder,
/// flushed and synced, then renamed over `path`. A crash leaves either the
/// old file or the new one, never a partial file (only a temp file, which
/// the next run removes).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    atomic_write_with(path, |w| w.write_all(bytes))
}

/// Like [`atomic_write`], streaming: `fill` writes the content through a
/// buffered writer, so a large file needs no buffer of its own size.
pub fn atomic_write_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(err)?;
    // Like a file made with the usual umask (tempfile makes 0600).
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(err)?;
    let mut w = io::BufWriter::new(tmp);
    fill(&mut w).map_err(err)?;
    let tmp = w.into_inner().map_err(|e| err(e.into_error()))?;
    tmp.as_file().sync_data().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Replaces existing files atomically, one after another, like
/// [`atomic_write`] (a synced temp file in the same folder, renamed over the
/// file), but reusing the inode of each file it replaces as its next temp
/// file: before the rename, the old file gets a second name (a temp name, by
/// a hard link), and once the rename is on disk (the folder is fsynced) that
/// name holds the old content alone, ready to be overwritten. Creating and
/// freeing an inode per file is what made rewriting thousands of JPEGs slow
/// (ext4 scans past recently freed inodes on every creation); this creates
/// one per folder.
///
/// An old file is reused only when it is plainly ours to reuse: a regular
/// file (not a symlink) with no other hard link, owned like a new file in
/// that folder, and without extended attributes (ACLs, labels, tags). A
/// crash leaves each file old or new, plus temp files, which
/// [`remove_stale_temp_files`] unlinks (never truncates: a leftover may be a
/// second name of a file). One per thread; the spare is removed on drop.
#[derive(Debug, Default)]
pub struct Replacer {
    folder: Option<Folder>,
    spare: Option<Spare>,
}

/// The folder a [`Replacer`] works in.
#[derive(Debug)]
struct Folder {
    /// As the caller named it.
    dir: PathBuf,
    /// Open to fsync it; without it, no inode is reused.
    handle: Option<fs::File>,
    /// Owner and group of a file created there.
    owner: (u32, u32),
}

#[derive(Debug)]
struct Spare {
    file: fs::File,
    path: PathBuf,
    /// Permission bits the spare has now.
    mode: u32,
}

impl Spare {
    fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }

    /// A new temp file in `dir`, with permission bits `mode`.
    fn create(dir: &Path, mode: u32) -> io::Result<Self> {
        let (file, path) = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(dir)
            .and_then(|t| t.keep().map_err(|e| e.error))?;
        let spare = Spare {
            file,
            path,
            mode: 0o600,
        };
        match spare.file.set_permissions(fs::Permissions::from_mode(mode)) {
            Ok(()) => Ok(Spare { mode, ..spare }),
            Err(e) => {
                spare.discard();
                Err(e)
            }
        }
    }
}

/// Whether a file has no extended attributes (a file system without them counts as none).
fn has_no_xattrs(path: &Path) -> bool {
    match rustix::fs::llistxattr_query(path) {
        Ok(n) => n == 0,
        Err(e) => e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::OPNOTSUPP,
    }
}

impl Replacer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces `path` with what `fill` writes into an unbuffered file from
    /// its start (it may also copy from another file in the kernel:
    /// `std::io::copy` between two files uses `copy_file_range` on Linux),
    /// keeping the permission bits of the file replaced (0644 for a new one).
    /// `old` is the metadata of the file being replaced as it was read
    /// (through any symlink), when it was.
    pub fn replace(
        &mut self,
        path: &Path,
        old: Option<&fs::Metadata>,
        fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
    ) -> Result<(), StoreError> {
        use std::io::Seek;
        use std::os::unix::fs::MetadataExt;

        let dir = path.parent().unwrap_or(Path::new("."));
        let mode = old.map_or(0o644, |m| m.mode() & 0o7777);
        let err = |source| StoreError::Write {
            path: path.to_path_buf(),
            source,
        };
        // A spare from another folder cannot be renamed into this one.
        if self.folder.as_ref().is_some_and(|f| f.dir != dir) {
            self.folder = None;
            if let Some(s) = self.spare.take() {
                s.discard();
            }
        }
        let reused = self.spare.take().and_then(|mut s| {
            if s.mode != mode {
                if s.file
                    .set_permissions(fs::Permissions::from_mode(mode))
                    .is_err()
                {
                    s.discard();
                    return None;
                }
                s.mode = mode;
            }
            Some(s)
        });
        let mut spare = match reused {
            Some(s) => s,
            None => Spare::create(dir, mode).map_err(err)?,
        };
        let folder = self.folder.get_or_insert_with(|| Folder {
            dir: dir.to_path_buf(),
            handle: fs::File::open(dir).ok(),
            owner: spare
                .file
                .metadata()
                .map_or((u32::MAX, u32::MAX), |m| (m.uid(), m.gid())),
        });
        let written = (|| {
            spare.file.rewind()?;
            fill(&mut spare.file)?;
            let end = spare.file.stream_position()?;
            spare.file.set_len(end)?;
            // `sync_all`: the permission bits may have changed too.
            spare.file.sync_all()
        })();
        if let Err(e) = written {
            spare.discard();
            return Err(err(e));
        }
        // Keep the old inode under a temp name when it is ours to reuse.
        let same = |a: &fs::Metadata, b: &fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
        let kept = old
            .filter(|m| {
                folder.handle.is_some()
                    && m.is_file()
                    && m.nlink() == 1
                    && (m.uid(), m.gid()) == folder.owner
                    && fs::symlink_metadata(path).is_ok_and(|l| l.is_file() && same(&l, m))
                    && has_no_xattrs(path)
            })
            .and_then(|m| {
                let link = tempfile::Builder::new()
                    .prefix(TEMP_PREFIX)
                    .make_in(dir, |p| fs::hard_link(path, p))
                    .ok()?;
                Some((link.into_temp_path().keep().ok()?, m))
            });
        if let Err(e) = fs::rename(&spare.path, path) {
            spare.discard();
            if let Some((k, _)) = kept {
                let _ = fs::remove_file(k);
            }
            return Err(err(e));
        }
        if let Some((k, m)) = kept {
            // Reused only when it is still the file read, now with this one
            // name, and only once the rename is on disk (the folder's fsync):
            // otherwise, after a power cut, `path` could still name this inode
            // while the next file's bytes were being written into it.
            let reusable = fs::symlink_metadata(&k)
                .is_ok_and(|l| l.is_file() && same(&l, m) && l.nlink() == 1)
                && folder.handle.as_ref().is_some_and(|h| h.sync_all().is_ok());
            let file = reusable
                .then(|| fs::OpenOptions::new().read(true).write(true).open(&k).ok())
                .flatten()
                .filter(|f| f.metadata().is_ok_and(|l| same(&l, m)));
            match file {
                Some(file) => {
                    self.spare = Some(Spare {
                        file,
                        path: k,
                        mode: m.mode() & 0o7777,
                    });
                }
                None => {
                    let _ = fs::remove_file(k);
                }
            }
        }
        Ok(())
    }
}

impl Drop for Replacer {
    fn drop(&mut self) {
        if let Some(s) = self.spare.take() {
            s.discard();
        }
    }
}

/// Largest metadata file read, in bytes (the API's records are about 1 KB);
/// a bigger file is reported and skipped, never read whole.
pub const MAX_METADATA_BYTES: u64 = 1 << 20;

/// Opens a file to read it without blocking when it is not a regular file (a
/// FIFO with no writer reads as empty instead of waiting forever).
pub fn open_for_reading(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
}

/// Reads the whole of a file of at most `max` bytes into `buf` (cleared
/// first); a bigger file is an `InvalidData` error and is not read whole.
pub fn read_bounded_into(path: &Path, max: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    use std::io::Read;
    buf.clear();
    let read = open_for_reading(path)?.take(max + 1).read_to_end(buf)?;
    if read as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes; not read"),
        ));
    }
    Ok(())
}

/// Removes temp files left by a killed run in `dir` and its direct subfolders.
/// Returns how many were removed.
pub fn remove_stale_temp_files(dir: &Path) -> usize {
    let mut removed = 0;
    let mut visit = |d: &Path| {
        if let Ok(entries) = fs::read_dir(d) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                    && fs::remove_file(e.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
    };
    visit(dir);
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                visit(&e.path());
            }
        }
    }
    removed
}

/// Paths of one image in the `fetch` layout: `<root>/<grid>/<id>.jpg` and
/// `<root>/<grid>/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePaths {
    pub jpg: PathBuf,
    pub json: PathBuf,
}

impl ImagePaths {
    pub fn new(root: &Path, grid: &GridId, id: ImageId) -> Self {
        let dir = root.join(grid.as_str());
        Self {
            jpg: dir.join(format!("{id}.jpg")),
            json: dir.join(format!("{id}.json")),
        }
    }

    /// An image is done when both files exist: the JPEG is renamed into place
    /// first, the JSON last, so the JSON marks a finished download.
    pub fn is_done(&self) -> bool {
        self.json.is_file() && self.jpg.is_file()
    }
}

/// Which layout a folder has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputLayout {
    /// `mlyexport fetch`: `<root>/<grid>/<id>.json` beside `<id>.jpg`.
    Mlyexport,
    /// The old Python tool: `<root>/jsons/<id>.json` and `<root>/images/<id>.jpg`.
    Legacy,
}

/// One image found in an input folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundImage {
    pub id: ImageId,
    /// The grid id (folder name); `1` for the legacy layout.
    pub grid: String,
    pub json: PathBuf,
    /// The JPEG, when it exists.
    pub jpg: Option<PathBuf>,
}

/// Finds every `<id>.json` in a downloads folder (either layout), sorted by
/// grid then id. Files whose name is not a valid image id are ignored.
pub fn scan_input(root: &Path) -> Result<(InputLayout, Vec<FoundImage>), StoreError> {
    let read_err = |path: &Path, source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    };
    let jsons = root.join("jsons");
    if jsons.is_dir() {
        let images = root.join("images");
        let mut found = scan_dir(&jsons, "1", &images).map_err(|e| read_err(&jsons, e))?;
        found.sort_by_key(|f| f.id);
        return Ok((InputLayout::Legacy, found));
    }
    let mut found = Vec::new();
    for e in fs::read_dir(root).map_err(|e| read_err(root, e))? {
        let e = e.map_err(|e| read_err(root, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.file_type().is_ok_and(|t| t.is_dir()) || name.parse::<GridId>().is_err() {
            continue;
        }
        let dir = e.path();
        found.extend(scan_dir(&dir, &name, &dir).map_err(|e| read_err(&dir, e))?);
    }
    found.sort_by(|a, b| a.grid.cmp(&b.grid).then(a.id.cmp(&b.id)));
    Ok((InputLayout::Mlyexport, found))
}

fn scan_dir(json_dir: &Path, grid: &str, jpg_dir: &Path) -> io::Result<Vec<FoundImage>> {
    let mut out = Vec::new();
    for e in fs::read_dir(json_dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        let Ok(id) = stem.parse::<ImageId>() else {
            continue;
        };
        let jpg = jpg_dir.join(format!("{id}.jpg"));
        out.push(FoundImage {
            id,
            grid: grid.to_string(),
            json: e.path(),
            jpg: jpg.is_file().then_some(jpg),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace_with(r: &mut Replacer, p: &Path, content: &[u8]) {
        let meta = fs::metadata(p).ok();
        r.replace(p, meta.as_ref(), |f| f.write_all(content))
            .unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replacer_reuses_the_replaced_inode_and_leaves_no_temp() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a.jpg"),
            dir.path().join("b.jpg"),
            dir.path().join("c.jpg"),
        );
        fs::write(&a, b"old a, a long one").unwrap();
        fs::write(&b, b"old b").unwrap();
        fs::write(&c, b"old c").unwrap();
        fs::set_permissions(&b, fs::Permissions::from_mode(0o640)).unwrap();
        let a_inode = fs::metadata(&a).unwrap().ino();
        let mut r = Replacer::new();
        replace_with(&mut r, &a, b"new a");
        // b is written into a's old inode (a shorter file than it held).
        replace_with(&mut r, &b, b"new b");
        replace_with(&mut r, &c, b"new c, longer than the old one");
        assert_eq!(fs::metadata(&b).unwrap().ino(), a_inode);
        assert_eq!(fs::read(&a).unwrap(), b"new a");
        assert_eq!(fs::read(&b).unwrap(), b"new b");
        assert_eq!(fs::read(&c).unwrap(), b"new c, longer than the old one");
        assert_eq!(
            fs::metadata(&b).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            fs::metadata(&c).unwrap().permissions().mode() & 0o777,
            0o644
        );
        drop(r);
        assert_eq!(names(dir.path()), ["a.jpg", "b.jpg", "c.jpg"]);
    }

    #[test]
    fn replacer_never_reuses_a_file_with_another_name() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("g2");
        fs::create_dir(&sub).unwrap();
        let (a, b, other) = (
            dir.path().join("a.jpg"),
            sub.join("b.jpg"),
            dir.path().join("backup.jpg"),
        );
        fs::write(&a, b"old a").unwrap();
        fs::write(&b, b"old b").unwrap();
        fs::hard_link(&a, &other).unwrap();
        let mut r = Replacer::new();
        replace_with(&mut r, &a, b"new a");
        replace_with(&mut r, &b, b"new b");
        replace_with(&mut r, &a, b"newer a");
        assert_eq!(fs::read(&other).unwrap(), b"old a", "a second name changed");
        assert_eq!(fs::read(&a).unwrap(), b"newer a");
        assert_eq!(fs::read(&b).unwrap(), b"new b");
        drop(r);
        assert_eq!(names(dir.path()), ["a.jpg", "backup.jpg", "g2"]);
        assert_eq!(names(&sub), ["b.jpg"]);
    }

    #[test]
    fn replacer_leaves_symlink_targets_and_tagged_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("library.jpg");
        fs::write(&target, b"a picture kept elsewhere").unwrap();
        let (a, b, c) = (
            dir.path().join("a.jpg"),
            dir.path().join("b.jpg"),
            dir.path().join("c.jpg"),
        );
        std::os::unix::fs::symlink(&target, &a).unwrap();
        fs::write(&b, b"old b").unwrap();
        fs::write(&c, b"old c").unwrap();
        let tagged = rustix::fs::lsetxattr(&b, "user.note", b"x", rustix::fs::XattrFlags::empty());
        let mut r = Replacer::new();
        // `a` is read through its link (as the EXIF pass does) and replaced by a file.
        replace_with(&mut r, &a, b"new a");
        replace_with(&mut r, &b, b"new b");
        replace_with(&mut r, &c, b"new c");
        assert_eq!(fs::read(&target).unwrap(), b"a picture kept elsewhere");
        assert_eq!(fs::read(&a).unwrap(), b"new a");
        assert_eq!(fs::read(&c).unwrap(), b"new c");
        if tagged.is_ok() {
            // b's inode, with its attribute, did not become c.
            let attrs = rustix::fs::llistxattr_query(&c).unwrap_or(0);
            assert_eq!(attrs, 0, "c carries b's attribute");
        }
        drop(r);
        assert_eq!(names(dir.path()), ["a.jpg", "b.jpg", "c.jpg"]);
    }

    #[test]
    fn a_leftover_second_name_is_unlinked_not_emptied() {
        // A run killed between the hard link and the rename leaves a temp
        // name for the JPEG itself: cleaning up must keep the JPEG whole.
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jpg");
        fs::write(&a, b"the image").unwrap();
        fs::hard_link(&a, dir.path().join(format!("{TEMP_PREFIX}k"))).unwrap();
        assert_eq!(remove_stale_temp_files(dir.path()), 1);
        assert_eq!(fs::read(&a).unwrap(), b"the image");
        assert_eq!(names(dir.path()), ["a.jpg"]);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        fs::write(dir.path().join(format!("{TEMP_PREFIX}x")), b"").unwrap();
        assert_eq!(remove_stale_temp_files(dir.path()), 1);
    }

    #[test]
    fn scans_both_layouts() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("g1")).unwrap();
        fs::write(dir.path().join("g1/5.json"), "{}").unwrap();
        fs::write(dir.path().join("g1/5.jpg"), "x").unwrap();
        fs::write(dir.path().join("g1/notes.json"), "{}").unwrap();
        let (layout, found) = scan_input(dir.path()).unwrap();
        assert_eq!(layout, InputLayout::Mlyexport);
        assert_eq!(found.len(), 1);
        assert!(found[0].jpg.is_some());

        let old = tempfile::tempdir().unwrap();
        fs::create_dir_all(old.path().join("jsons")).unwrap();
        fs::write(old.path().join("jsons/9.json"), "{}").unwrap();
        let (layout, found) = scan_input(old.path()).unwrap();
        assert_eq!(layout, InputLayout::Legacy);
        assert_eq!(found[0].jpg, None);
    }
}
