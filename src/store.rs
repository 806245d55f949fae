//! The output folder: its layout, its grid folders (real folders, never
//! links), atomic writes (temp file + rename), and
//! what is already done. (The images of a folder are found by
//! [`crate::downloads::scan`].)
//! File system only: no network, no policy about what to download.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::model::{GridId, ImageId};

/// Prefix of every temporary file mlyexport writes. The rest of the name
/// says which run wrote it (`<pid>-<host>-<boot>-<random>`, see
/// [`temp_name_prefix`]), so cleanup ([`remove_stale_temp_files`]) removes
/// only the temp files of runs that are gone.
pub(crate) const TEMP_PREFIX: &str = ".mlyexport-tmp-";

/// Name of the listing written by `fetch` (one JSON object per line).
pub(crate) const LISTING_FILE: &str = "listing.jsonl";

/// Errors from the output folder.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
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
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    atomic_write_with(path, |w| w.write_all(bytes))
}

/// Like [`atomic_write`], streaming: `fill` writes the content through a
/// buffered writer, so a large file needs no buffer of its own size.
pub(crate) fn atomic_write_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), StoreError> {
    let tmp = filled_temp(path, fill)?;
    tmp.rename_to(path).map_err(|source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// A temp file beside `path` (mode 0644, like a file made with the usual
/// umask) holding what `fill` wrote, synced to disk.
fn filled_temp(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<TempFile, StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = TempFile::create(dir).map_err(err)?;
    tmp.file
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(err)?;
    let mut w = io::BufWriter::new(&tmp.file);
    fill(&mut w).map_err(err)?;
    w.flush().map_err(err)?;
    drop(w);
    tmp.file.sync_data().map_err(err)?;
    Ok(tmp)
}

/// What [`create_new`] found at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Created {
    /// The file was not there: it now holds the bytes given.
    New,
    /// A file was there already: it was left as it was.
    Existed,
}

/// Creates `path` holding `bytes`, never replacing a file that is there
/// (then [`Created::Existed`]): of two processes creating it at once, one
/// gets `New`. The bytes go into a synced temp file first, which is hard
/// linked to `path` (`link` fails with `EEXIST` rather than replace), so a
/// reader sees the whole file or none. A file system without hard links
/// (s3fs, gcsfuse, SMB, exFAT: `EPERM`, `EOPNOTSUPP`) gets [`create_new_in_place`].
pub(crate) fn create_new(path: &Path, bytes: &[u8]) -> Result<Created, StoreError> {
    let tmp = filled_temp(path, |w| w.write_all(bytes))?;
    match fs::hard_link(&tmp.path, path) {
        Ok(()) => Ok(Created::New),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Created::Existed),
        Err(e) if no_hard_links(&e) => {
            drop(tmp);
            create_new_in_place(path, bytes)
        }
        Err(source) => Err(StoreError::Write {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether `link` failed because the file system has no hard links
/// (`ENOSYS` is what FUSE file systems without `link` answer).
fn no_hard_links(e: &io::Error) -> bool {
    use rustix::io::Errno;
    // ENOTSUP and EOPNOTSUPP are one number on Linux, two elsewhere.
    Errno::from_io_error(e)
        .is_some_and(|n| [Errno::PERM, Errno::NOTSUP, Errno::OPNOTSUPP, Errno::NOSYS].contains(&n))
}

/// [`create_new`] without a hard link: `O_CREAT | O_EXCL`, then the bytes,
/// then `fsync`. Just as exclusive, but not atomic for readers: between the
/// create and the end of the write, a reader sees the file empty or cut
/// short (whoever reads a file made this way must allow for that).
pub(crate) fn create_new_in_place(path: &Path, bytes: &[u8]) -> Result<Created, StoreError> {
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Created::Existed),
        Err(e) => return Err(err(e)),
    };
    file.write_all(bytes).map_err(err)?;
    file.sync_data().map_err(err)?;
    Ok(Created::New)
}

/// Replaces existing files atomically, one after another, like
/// [`atomic_write`]: each new content goes into a fresh temp file in the same
/// folder, which gets the replaced file's owner and group (where this process
/// may give them) and permission bits (without setuid and setgid), is synced,
/// and is renamed over the file. The replaced file's inode is never written:
/// a program that holds it open keeps reading exactly the bytes it opened.
///
/// The renames themselves are made durable by the caller, once per folder
/// ([`sync_dir`]) after its last replacement: each new file's data is on disk
/// before its rename, so a power cut before that leaves each file whole, old
/// or new, plus temp files of a dead run that the next run removes.
#[derive(Debug, Default)]
pub(crate) struct Replacer {
    /// The folder written last, and the owner and group a file created
    /// there gets (to skip `fchown` when the replaced file has them too).
    new_owner: Option<(PathBuf, (u32, u32))>,
}

impl Replacer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Replaces `path` with what `fill` writes into a new, unbuffered file
    /// from its start (it may also copy from another file in the kernel:
    /// `std::io::copy` between two files uses `copy_file_range` on Linux),
    /// keeping the owner, group and permission bits of the file replaced,
    /// minus setuid and setgid (0644 for a new one). `old` is the metadata of
    /// the file being replaced as it was read (through any symlink), when it was.
    pub(crate) fn replace(
        &mut self,
        path: &Path,
        old: Option<&fs::Metadata>,
        fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
    ) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let dir = path.parent().unwrap_or(Path::new("."));
        let err = |source| StoreError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut tmp = TempFile::create(dir).map_err(err)?;
        // The owner first: changing it may clear mode bits.
        if let Some(m) = old {
            self.keep_owner(dir, &tmp.file, (m.uid(), m.gid()))
                .map_err(err)?;
        }
        let mode = old.map_or(0o644, |m| m.mode() & KEPT_MODE_BITS);
        tmp.file
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(err)?;
        fill(&mut tmp.file).map_err(err)?;
        // `sync_all`: the owner and mode must be on disk with the data.
        tmp.file.sync_all().map_err(err)?;
        tmp.rename_to(path).map_err(err)
    }

    /// Gives the new file `file` in `dir` the owner and group `want`, or
    /// only the group when the owner is not ours to give, or neither: a
    /// refusal (`EPERM`) is not an error, anything else is.
    fn keep_owner(&mut self, dir: &Path, file: &fs::File, want: (u32, u32)) -> io::Result<()> {
        use std::os::unix::fs::{MetadataExt, fchown};
        let new = match &self.new_owner {
            Some((d, owner)) if d == dir => *owner,
            _ => {
                let m = file.metadata()?;
                self.new_owner = Some((dir.to_path_buf(), (m.uid(), m.gid())));
                (m.uid(), m.gid())
            }
        };
        if want == new {
            return Ok(());
        }
        let refused =
            |e: &io::Error| rustix::io::Errno::from_io_error(e) == Some(rustix::io::Errno::PERM);
        match fchown(file, Some(want.0), Some(want.1)) {
            Err(e) if refused(&e) && want.1 != new.1 => match fchown(file, None, Some(want.1)) {
                Err(e) if refused(&e) => Ok(()),
                r => r,
            },
            Err(e) if refused(&e) => Ok(()),
            r => r,
        }
    }
}

/// Permission bits a replaced file keeps: all but setuid and setgid.
const KEPT_MODE_BITS: u32 = 0o1777;

/// Makes the renames done in the folder `dir` durable (`fsync` of the folder).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

/// A new temp file of this run, removed when dropped unless renamed into place.
struct TempFile {
    file: fs::File,
    path: PathBuf,
    renamed: bool,
}

impl TempFile {
    /// Creates a temp file in `dir` (mode 0600, write-only), named for this run.
    fn create(dir: &Path) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        // Names are unique within the run; a clash can only be a leftover of
        // an earlier process that had this pid, so a few tries suffice.
        for _ in 0..8 {
            let path = dir.join(next_temp_name());
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        file,
                        path,
                        renamed: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "every temp file name tried already exists",
        ))
    }

    fn rename_to(mut self, path: &Path) -> io::Result<()> {
        fs::rename(&self.path, path)?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Which run wrote a temp file, from its name: the process id, a hash of the
/// host (its name and pid namespace) and a hash of the host's boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TempOwner {
    pid: u32,
    host: u32,
    boot: u32,
}

impl TempOwner {
    /// This process (the hashes are computed once).
    fn this_process() -> Self {
        static HOST: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let host = *HOST.get_or_init(|| {
            let ns = fs::read_link("/proc/self/ns/pid").unwrap_or_default();
            let name = host_name();
            fnv1a(&[name.as_bytes(), b"\0", ns.as_os_str().as_encoded_bytes()])
        });
        TempOwner {
            pid: std::process::id(),
            host,
            boot: boot_id_hash(),
        }
    }

    /// The owner named by a temp file's name; `None` when it names none (a
    /// file of an older version, or not ours).
    fn parse(name: &str) -> Option<Self> {
        let mut parts = name.strip_prefix(TEMP_PREFIX)?.splitn(4, '-');
        let pid = parts.next()?.parse().ok()?;
        let host = u32::from_str_radix(parts.next()?, 16).ok()?;
        let boot = u32::from_str_radix(parts.next()?, 16).ok()?;
        parts.next().filter(|rest| !rest.is_empty())?;
        Some(TempOwner { pid, host, boot })
    }

    /// Whether the process that wrote this temp file is gone, seen from `me`.
    fn fate(self, me: TempOwner) -> Fate {
        if self.host != me.host {
            return Fate::Unknown;
        }
        if self.boot != me.boot {
            return Fate::Dead; // written before the last reboot
        }
        if self.pid == me.pid {
            return Fate::Alive;
        }
        let Some(pid) = i32::try_from(self.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return Fate::Unknown;
        };
        match rustix::process::test_kill_process(pid) {
            Err(rustix::io::Errno::SRCH) => Fate::Dead,
            // Ok, or EPERM: a live process (maybe of another user).
            _ => Fate::Alive,
        }
    }
}

/// Whether the run that wrote a temp file is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Dead,
    Alive,
    /// Another host's run, or a name without an owner: only a lock on the
    /// folder proves it is not running.
    Unknown,
}

/// The running kernel's boot id (every container on one machine shares it;
/// it changes with each boot), read once; empty when it cannot be read.
fn boot_id() -> &'static [u8] {
    static BOOT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        let boot = fs::read("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        boot.trim_ascii().to_vec()
    })
}

/// [`boot_id`]'s hash, as temp file names carry it.
fn boot_id_hash() -> u32 {
    fnv1a(&[boot_id()])
}

/// A hash of the boot id as a lock note writes it (8 hex digits); `None`
/// when the boot id cannot be read (then no two runs can be told to share a
/// kernel).
pub(crate) fn boot_hash() -> Option<String> {
    (!boot_id().is_empty()).then(|| format!("{:08x}", boot_id_hash()))
}

/// 32-bit FNV-1a over the concatenated `parts`.
fn fnv1a(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The start of the temp file names of process `pid` on this host since its
/// last boot: `.mlyexport-tmp-<pid>-<host>-<boot>-` (a random part follows).
pub fn temp_name_prefix(pid: u32) -> String {
    let me = TempOwner::this_process();
    format!("{TEMP_PREFIX}{pid}-{:08x}-{:08x}-", me.host, me.boot)
}

/// A new temp file name of this run: its prefix, then a counter from a
/// random start (no two names of one run are the same).
fn next_temp_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: std::sync::OnceLock<(String, u64)> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (prefix, seed) =
        PREFIX.get_or_init(|| (temp_name_prefix(std::process::id()), rand::random::<u64>()));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:016x}", seed.wrapping_add(n))
}

/// Largest metadata file read, in bytes (the API's records are about 1 KB);
/// a bigger file is reported and skipped, never read whole.
pub(crate) const MAX_METADATA_BYTES: u64 = 1 << 20;

/// Opens a file to read it without blocking when it is not a regular file (a
/// FIFO with no writer reads as empty instead of waiting forever).
pub(crate) fn open_for_reading(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
}

/// Removes the temp files of runs that are gone (killed, crashed, or from
/// before a reboot) in `dir` and its direct subfolders: only those whose name
/// says they were written on this host by a process that no longer exists.
/// A live run's temp files are never touched; another host's, and names
/// without an owner (older versions), are left alone (see
/// `FolderLock::remove_stale_temp_files`). Returns how many were removed. Files
/// are unlinked, never emptied.
pub(crate) fn remove_stale_temp_files(dir: &Path) -> usize {
    remove_temp_files(dir, false)
}

pub(crate) fn remove_temp_files(dir: &Path, idle: bool) -> usize {
    let me = TempOwner::this_process();
    let mut removed = remove_temp_files_in(dir, idle, me);
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let sub = e.path();
                let sub_idle = idle && !sub.join(LOCK_FILE).exists();
                removed += remove_temp_files_in(&sub, sub_idle, me);
            }
        }
    }
    removed
}

/// The temp files of gone runs in one folder (and, when `idle`, those of
/// unknown runs).
fn remove_temp_files_in(dir: &Path, idle: bool, me: TempOwner) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str().filter(|n| n.starts_with(TEMP_PREFIX)) else {
            continue;
        };
        let remove = match TempOwner::parse(name).map_or(Fate::Unknown, |o| o.fate(me)) {
            Fate::Dead => true,
            Fate::Alive => false,
            Fate::Unknown => idle,
        };
        if remove && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Paths of one image in the `fetch` layout: `<root>/<grid>/<id>.jpg` and
/// `<root>/<grid>/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImagePaths {
    pub jpg: PathBuf,
    pub json: PathBuf,
}

impl ImagePaths {
    pub(crate) fn new(root: &Path, grid: &GridId, id: ImageId) -> Self {
        let dir = root.join(grid.as_str());
        Self {
            jpg: dir.join(format!("{id}.jpg")),
            json: dir.join(format!("{id}.json")),
        }
    }
}

/// The lock file of a folder (see `lock`): a subfolder with its own is
/// another run's.
pub(crate) const LOCK_FILE: &str = ".mlyexport.lock";

/// This machine's name as the kernel knows it (`uname -n`).
pub fn host_name() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy();
    if name.is_empty() {
        "unknown".to_string()
    } else {
        name.into_owned()
    }
}

/// The split file's name in a sharded fetch's folder (see `shard::folder`).
pub(crate) const SPLIT_FILE: &str = "mlyexport-shards.json";

/// The audit's file name (`fetch --audit`) in a whole fetch's folder.
pub(crate) const AUDIT_FILE: &str = "audit.json";

/// The folders of `grids` in `out` that are symbolic links: `fetch` never
/// writes through one (it would write outside `out`, where `layers` does not
/// read). Other links in `out` are not fetch's concern.
pub(crate) fn linked_grids<'a>(
    out: &Path,
    grids: impl IntoIterator<Item = &'a GridId>,
) -> std::io::Result<Vec<PathBuf>> {
    let mut linked = Vec::new();
    for grid in grids {
        let dir = out.join(grid.as_str());
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_symlink() => linked.push(dir),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(linked)
}

/// Makes the grid folder `dir` (its parent exists) unless it is there, and
/// checks that it is a real folder, not a link to one (made meanwhile).
pub(crate) fn grid_folder(dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        Err(_) => {}
    }
    if std::fs::symlink_metadata(dir)?.is_dir() {
        Ok(())
    } else {
        Err(std::io::Error::other("not a folder (a link or a file)"))
    }
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
    fn a_file_created_new_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        assert_eq!(create_new(&a, b"first").unwrap(), Created::New);
        assert_eq!(create_new(&a, b"second").unwrap(), Created::Existed);
        assert_eq!(fs::read(&a).unwrap(), b"first");
        // Without hard links: the same, in place.
        assert_eq!(create_new_in_place(&b, b"first").unwrap(), Created::New);
        assert_eq!(
            create_new_in_place(&b, b"second").unwrap(),
            Created::Existed
        );
        assert_eq!(fs::read(&b).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["a.json", "b.json"], "no temp file left");
        let gone = dir.path().join("no/such/folder/c.json");
        let e = create_new(&gone, b"x").unwrap_err().to_string();
        assert!(e.starts_with("cannot write `"), "{e}");
    }

    #[test]
    fn of_threads_creating_one_file_at_once_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("split.json");
        let won: Vec<(usize, Created)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let p = &path;
                    s.spawn(move || (i, create_new(p, format!("{i}").as_bytes()).unwrap()))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let new: Vec<usize> = won
            .iter()
            .filter(|(_, c)| *c == Created::New)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(new.len(), 1, "{won:?}");
        assert_eq!(fs::read_to_string(&path).unwrap(), new[0].to_string());
    }

    #[test]
    fn replaced_files_are_new_inodes_and_open_readers_keep_their_bytes() {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..4)
            .map(|i| dir.path().join(format!("{i}.jpg")))
            .collect();
        for (i, p) in paths.iter().enumerate() {
            fs::write(p, format!("old content of {i}, long enough")).unwrap();
        }
        let held: Vec<(fs::File, u64)> = paths
            .iter()
            .map(|p| {
                let f = fs::File::open(p).unwrap();
                let ino = f.metadata().unwrap().ino();
                (f, ino)
            })
            .collect();
        let mut r = Replacer::new();
        for (i, p) in paths.iter().enumerate() {
            replace_with(&mut r, p, format!("new {i}").as_bytes());
        }
        sync_dir(dir.path()).unwrap();
        for (i, ((mut f, ino), p)) in held.into_iter().zip(&paths).enumerate() {
            let mut got = String::new();
            f.read_to_string(&mut got).unwrap();
            assert_eq!(got, format!("old content of {i}, long enough"));
            assert_ne!(fs::metadata(p).unwrap().ino(), ino);
            assert_eq!(fs::read(p).unwrap(), format!("new {i}").as_bytes());
        }
        assert_eq!(names(dir.path()), ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]);
    }

    #[test]
    fn replacer_keeps_mode_without_setuid_and_the_owner() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a.jpg"),
            dir.path().join("b.jpg"),
            dir.path().join("c.jpg"),
        );
        for p in [&a, &b, &c] {
            fs::write(p, b"old").unwrap();
        }
        fs::set_permissions(&a, fs::Permissions::from_mode(0o4755)).unwrap();
        fs::set_permissions(&b, fs::Permissions::from_mode(0o2640)).unwrap();
        // As root (or as a member of that group) the owner can be kept; a
        // refusal must not fail the replacement.
        let chowned = std::os::unix::fs::chown(&c, Some(1234), Some(5678)).is_ok();
        let mut r = Replacer::new();
        for p in [&a, &b, &c] {
            replace_with(&mut r, p, b"new");
        }
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&a), 0o755);
        assert_eq!(mode(&b), 0o640);
        assert_eq!(mode(&c), 0o644);
        if chowned {
            let m = fs::metadata(&c).unwrap();
            assert_eq!((m.uid(), m.gid()), (1234, 5678));
        }
    }

    #[test]
    fn replacer_never_writes_a_file_with_another_name_or_a_symlink_target() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("library.jpg");
        fs::write(&target, b"a picture kept elsewhere").unwrap();
        let (a, b, other) = (
            dir.path().join("a.jpg"),
            dir.path().join("b.jpg"),
            dir.path().join("backup.jpg"),
        );
        std::os::unix::fs::symlink(&target, &a).unwrap();
        fs::write(&b, b"old b").unwrap();
        fs::hard_link(&b, &other).unwrap();
        let mut r = Replacer::new();
        // `a` is read through its link (as the EXIF pass does) and replaced by a file.
        replace_with(&mut r, &a, b"new a");
        replace_with(&mut r, &b, b"new b");
        assert_eq!(fs::read(&target).unwrap(), b"a picture kept elsewhere");
        assert_eq!(fs::read(&other).unwrap(), b"old b", "a second name changed");
        assert_eq!(fs::read(&a).unwrap(), b"new a");
        assert!(fs::symlink_metadata(&a).unwrap().is_file());
        assert_eq!(fs::read(&b).unwrap(), b"new b");
        assert_eq!(names(dir.path()), ["a.jpg", "b.jpg", "backup.jpg"]);
    }

    #[test]
    fn a_failed_fill_leaves_the_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jpg");
        fs::write(&a, b"old").unwrap();
        let meta = fs::metadata(&a).unwrap();
        let e = Replacer::new().replace(&a, Some(&meta), |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("stop"))
        });
        assert!(e.is_err());
        assert_eq!(fs::read(&a).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["a.jpg"]);
    }

    /// The pid of a process that has exited.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn temp_names_say_their_run_and_parse_back() {
        let name = next_temp_name();
        let me = TempOwner::this_process();
        assert_eq!(TempOwner::parse(&name), Some(me));
        assert_eq!(me.fate(me), Fate::Alive);
        assert_ne!(next_temp_name(), name);
        for foreign in [
            ".mlyexport-tmp-k",
            ".mlyexport-tmp-12-zz-00-x",
            ".mlyexport-tmp-1-2-3-",
        ] {
            assert_eq!(TempOwner::parse(foreign), None, "{foreign}");
        }
        let dead = TempOwner::parse(&format!("{}x", temp_name_prefix(dead_pid()))).unwrap();
        assert_eq!(dead.fate(me), Fate::Dead);
        let rebooted = TempOwner {
            boot: me.boot ^ 1,
            ..me
        };
        assert_eq!(rebooted.fate(me), Fate::Dead);
        let elsewhere = TempOwner {
            host: me.host ^ 1,
            ..dead
        };
        assert_eq!(elsewhere.fate(me), Fate::Unknown);
    }

    #[test]
    fn cleanup_removes_only_temp_files_of_gone_runs() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("g1");
        fs::create_dir(&sub).unwrap();
        let a = sub.join("a.jpg");
        fs::write(&a, b"the image").unwrap();
        let me = TempOwner::this_process();
        let dead = format!("{}1", temp_name_prefix(dead_pid()));
        let live = format!("{}2", temp_name_prefix(std::process::id()));
        let other_host = format!(
            "{TEMP_PREFIX}{}-{:08x}-{:08x}-3",
            dead_pid(),
            me.host ^ 1,
            me.boot
        );
        let legacy = format!("{TEMP_PREFIX}mapillary.gpkg");
        // A leftover second name of the JPEG itself is unlinked, not emptied.
        fs::hard_link(&a, sub.join(&dead)).unwrap();
        for n in [&live, &other_host, &legacy] {
            fs::write(sub.join(n), b"").unwrap();
            fs::write(dir.path().join(n), b"").unwrap();
        }
        assert_eq!(remove_stale_temp_files(dir.path()), 1);
        assert_eq!(fs::read(&a).unwrap(), b"the image");
        assert_eq!(fs::metadata(&a).unwrap().nlink(), 1);
        let mut kept = vec![live.clone(), other_host.clone(), legacy.clone()];
        kept.sort();
        let mut in_sub = kept.clone();
        in_sub.push("a.jpg".into());
        in_sub.sort();
        assert_eq!(names(&sub), in_sub);

        // With the folder locked, unknown owners go too; a live run's stay,
        // and so does a subfolder with a lock of its own.
        let nested = dir.path().join("layers");
        fs::create_dir(&nested).unwrap();
        fs::write(nested.join(&legacy), b"").unwrap();
        let inner = crate::lock::FolderLock::acquire(&nested, "layers").unwrap();
        let lock = crate::lock::FolderLock::acquire(dir.path(), "exif").unwrap();
        assert_eq!(lock.remove_stale_temp_files(), 4);
        assert!(sub.join(&live).exists() && dir.path().join(&live).exists());
        assert!(nested.join(&legacy).exists());
        drop((lock, inner));

        // A sharded folder: the whole folder's lock does not stop a shard
        // elsewhere, so another host's temp files stay.
        fs::write(dir.path().join(SPLIT_FILE), b"{}").unwrap();
        fs::write(sub.join(&other_host), b"").unwrap();
        let lock = crate::lock::FolderLock::acquire(dir.path(), "layers").unwrap();
        lock.remove_stale_temp_files();
        assert!(sub.join(&other_host).exists());
        drop(lock);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn linked_grid_folders_are_found_and_never_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, elsewhere) = (tmp.path().join("out"), tmp.path().join("elsewhere"));
        std::fs::create_dir_all(out.join("1")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join("2")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join("qgis")).unwrap();
        let grids: Vec<GridId> = ["1", "2", "3", "notes"].map(|g| g.parse().unwrap()).into();
        assert_eq!(linked_grids(&out, &grids).unwrap(), vec![out.join("2")]);
        let none = tmp.path().join("none");
        assert!(linked_grids(&none, &grids).unwrap().is_empty());
        grid_folder(&out.join("1")).unwrap();
        grid_folder(&out.join("3")).unwrap();
        assert!(out.join("3").is_dir());
        assert!(grid_folder(&out.join("2")).is_err());
        std::fs::write(out.join("4"), "x").unwrap();
        assert!(grid_folder(&out.join("4")).is_err());
    }
}
