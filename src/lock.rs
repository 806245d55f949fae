//! One mlyexport run per folder at a time: an exclusive, non-blocking `flock`
//! on a lock file in the folder (`.mlyexport.lock`), holding a JSON note of
//! who holds it. The kernel releases the lock when its holder exits, however
//! it ends, so a lock left by a dead run never blocks; its stale note is
//! simply overwritten. A refused lock names the holder at once.
//!
//! Only a lock file that is the folder's own is written into: it is opened
//! without following a symbolic link (a link is refused, naming the fix),
//! and one with other names (hard links, to a file outside the folder, say)
//! is replaced by a fresh file once locked, never emptied or written.
//!
//! The lock file's name is a parameter ([`FolderLock::acquire_named`]), so a
//! folder can later be locked in parts (one lock file per shard).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

pub(crate) use crate::store::LOCK_FILE;
pub use crate::store::{host_name, temp_name_prefix};

/// Errors from taking a folder lock.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
pub enum LockError {
    #[error(
        "`{dir}` is in use by another mlyexport run ({holder}); wait for it to finish, or stop it"
    )]
    InUse { dir: PathBuf, holder: String },
    #[error("cannot lock the folder `{dir}` (lock file `{path}`): {source}")]
    Io {
        dir: PathBuf,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "the lock file `{path}` is a symbolic link; mlyexport does not write through it (the note would go where it points): remove the link and run again"
    )]
    Link { path: PathBuf },
    #[error("the lock file `{path}` is {what}, not a regular file: remove it and run again")]
    NotAFile { path: PathBuf, what: &'static str },
}

/// Who holds a lock: the note written into the lock file once it is locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub started_at: DateTime<Utc>,
    /// A hash of the kernel's boot id (shared by every container on one
    /// machine); absent in notes of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
    /// The lock file's device and inode as its holder saw them: another
    /// mount of the same storage (a per-container FUSE or NFS mount) shows
    /// other numbers, and may not see this one's locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_file: Option<[u64; 2]>,
}

impl Holder {
    /// This process, running `command`, from now.
    fn this_process(command: &str) -> Self {
        Holder {
            pid: std::process::id(),
            host: host_name(),
            command: command.to_string(),
            started_at: Utc::now(),
            boot: crate::store::boot_hash(),
            lock_file: None,
        }
    }

    /// Whether this note was written under the running kernel and through
    /// the same mount as `here` (the lock file's device and inode as the
    /// prober sees them), so the kernel's view of its lock is the whole
    /// truth. A note without a boot hash (an older version) counts when it
    /// names this host.
    fn shares_locks_with(&self, here: [u64; 2]) -> bool {
        match (&self.boot, crate::store::boot_hash()) {
            (Some(theirs), Some(ours)) => {
                *theirs == ours && self.lock_file.is_none_or(|f| f == here)
            }
            (None, Some(_)) => self.host == host_name(),
            (_, None) => false,
        }
    }

    /// `fetch, pid 1234 on host h, started 2026-11-30T09:00:00Z`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{}, pid {} on host {}, started {}",
            self.command,
            self.pid,
            self.host,
            self.started_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }
}

/// An exclusive lock on a folder, held until dropped. Dropping it removes the
/// lock file (while still holding it) and, when [`FolderLock::acquire`] created
/// the folder and it is still empty, the folder.
#[derive(Debug)]
pub struct FolderLock {
    file: fs::File,
    dir: PathBuf,
    path: PathBuf,
    created_dir: bool,
}

/// How many times a lock file that its holder removed meanwhile is reopened.
const ATTEMPTS: usize = 20;

impl FolderLock {
    /// Locks the whole folder `dir` for `command` (`fetch`, `layers`, `exif`),
    /// creating the folder when it does not exist. Refused at once, naming
    /// the holder, when another run holds it (a `status` probe holding it
    /// for a moment is waited out, for up to 5 s).
    pub fn acquire(dir: &Path, command: &str) -> Result<Self, LockError> {
        Self::acquire_named(dir, LOCK_FILE, command)
    }

    /// Like [`FolderLock::acquire`], with the lock file `file_name` in `dir`
    /// (one per part of a folder, say).
    pub fn acquire_named(dir: &Path, file_name: &str, command: &str) -> Result<Self, LockError> {
        let path = dir.join(file_name);
        let io_err = |source| LockError::Io {
            dir: dir.to_path_buf(),
            path: path.clone(),
            source,
        };
        let created_dir = !dir.is_dir();
        if created_dir {
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        let mut fresh = false;
        for _ in 0..ATTEMPTS {
            let file = open_lock_file(&path, fresh).map_err(|e| match e.raw_os_error() {
                Some(n) if n == rustix::io::Errno::LOOP.raw_os_error() => {
                    LockError::Link { path: path.clone() }
                }
                _ => io_err(e),
            })?;
            match lock_exclusive(&file) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(LockError::InUse {
                        dir: dir.to_path_buf(),
                        holder: read_holder(&path),
                    });
                }
                Err(e) => return Err(io_err(e.into())),
            }
            // Its last holder may have removed it between our open and flock:
            // then this lock is on a file no one else will look at; again.
            if !names_file(&path, &file) {
                continue;
            }
            let meta = file.metadata().map_err(io_err)?;
            if !meta.is_file() {
                let what = crate::input::kind_name(&meta.file_type());
                return Err(LockError::NotAFile { path, what });
            }
            // Other names (hard links) may be files outside the folder: this
            // name is removed, while locked, and a fresh file made.
            if meta.nlink() > 1 {
                fs::remove_file(&path).map_err(io_err)?;
                fresh = true;
                continue;
            }
            let lock = FolderLock {
                file,
                dir: dir.to_path_buf(),
                path: path.clone(),
                created_dir,
            };
            lock.write_note(command).map_err(io_err)?;
            return Ok(lock);
        }
        Err(io_err(io::Error::other(
            "the lock file kept being replaced while it was locked",
        )))
    }

    /// The folder locked.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes stale temp files in the locked folder: like
    /// `store::remove_stale_temp_files`, and since holding the lock proves
    /// that no other mlyexport run works there, also another host's temp
    /// files and names without an owner, in the folder and in each direct
    /// subfolder without a lock file of its own. A live process's temp files
    /// on this host are still kept. Returns how many were removed.
    pub(crate) fn remove_stale_temp_files(&self) -> usize {
        crate::store::remove_temp_files(self.dir(), self.covers_folder())
    }

    /// Whether this lock covers the whole folder (its file is [`LOCK_FILE`]),
    /// so no other mlyexport run can be working in it. Not in a sharded
    /// folder: shards take their own locks, not this one, and one may be
    /// writing on another host. When the split file cannot be looked for,
    /// the folder counts as sharded (the safe side).
    pub(crate) fn covers_folder(&self) -> bool {
        let split = self.dir.join(crate::store::SPLIT_FILE);
        self.path.file_name() == Some(LOCK_FILE.as_ref()) && matches!(split.try_exists(), Ok(false))
    }

    fn write_note(&self, command: &str) -> io::Result<()> {
        let meta = self.file.metadata()?;
        let note = Holder {
            lock_file: Some([meta.dev(), meta.ino()]),
            ..Holder::this_process(command)
        };
        let note = serde_json::to_vec(&note)?;
        self.file.set_len(0)?;
        (&self.file).write_all(&note)
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // Removed while locked, so a run that opened it meanwhile sees it gone
        // once it gets the lock, and tries again with a new file.
        if names_file(&self.path, &self.file) {
            let _ = fs::remove_file(&self.path);
        }
        if self.created_dir {
            // Only when empty: a run that wrote nothing leaves nothing.
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

/// Opens (creating it if needed, with `O_EXCL` when `fresh`) the lock file
/// at `path` for reading and writing, never through a symbolic link (an
/// `ELOOP` error) and without blocking or taking a terminal. A fresh file
/// that another run created first is opened as it is.
fn open_lock_file(path: &Path, fresh: bool) -> io::Result<fs::File> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
    let open = |new: bool| {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(!new)
            .create_new(new)
            .truncate(false)
            .custom_flags(flags.bits() as i32)
            .open(path)
    };
    match open(fresh) {
        Err(e) if fresh && e.kind() == io::ErrorKind::AlreadyExists => open(false),
        other => other,
    }
}

/// How many times, 20 ms apart, a lock held only by [`liveness`] probes is
/// tried again (5 s) before the folder counts as in use.
const PROBE_RETRIES: usize = 250;

/// Takes `file`'s exclusive lock without waiting on a run. A run holds its
/// lock exclusively and a [`liveness`] probe shared, for a moment: when a
/// shared lock can be had, only probes are in the way, so it is tried again.
fn lock_exclusive(file: &fs::File) -> Result<(), rustix::io::Errno> {
    use rustix::fs::{FlockOperation as Op, flock};
    let mut tries = 0;
    loop {
        match flock(file, Op::NonBlockingLockExclusive) {
            Err(rustix::io::Errno::WOULDBLOCK) if tries < PROBE_RETRIES => {
                match flock(file, Op::NonBlockingLockShared) {
                    Ok(()) => flock(file, Op::Unlock)?,
                    Err(rustix::io::Errno::WOULDBLOCK) => {
                        return Err(rustix::io::Errno::WOULDBLOCK);
                    }
                    Err(e) => return Err(e),
                }
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Whether `path` names the open file `file` (same device and inode).
fn names_file(path: &Path, file: &fs::File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(p), Ok(f)) => p.dev() == f.dev() && p.ino() == f.ino(),
        _ => false,
    }
}

/// Whether a run still holds a lock file, as far as this host can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// The lock is held: the run is alive (its note, unless unreadable).
    Held(Option<Holder>),
    /// Not held, and its note was written under this kernel (or it is gone):
    /// the run that wrote it ended (killed, or crashed, if its record says
    /// running).
    Gone,
    /// Not held as far as this kernel sees, but taken under another one
    /// (another node, or before a reboot), or its note is unreadable: a lock
    /// on a shared file system may be visible only where it was taken.
    Unverified { holder: Option<Holder>, why: String },
}

/// Why a lock could not be tested; the message names the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("cannot open `{path}`: {source}; check the folder's permissions")]
    Open { path: PathBuf, source: io::Error },
    #[error(
        "cannot test the lock on `{path}`: {source}; run `mlyexport status` on the node that runs the shard"
    )]
    Test {
        path: PathBuf,
        source: rustix::io::Errno,
    },
}

/// Whether the lock file `file_name` in `dir` is held by a run of `command`
/// (another command's run, say `layers`, does not count). Asks the kernel
/// with a shared lock taken and dropped at once; a run starting at that
/// moment waits for it ([`FolderLock::acquire_named`] retries).
pub(crate) fn liveness(dir: &Path, file_name: &str, command: &str) -> Result<Liveness, ProbeError> {
    let path = dir.join(file_name);
    let file = match crate::store::open_for_reading(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Liveness::Gone),
        Err(source) => return Err(ProbeError::Open { path, source }),
    };
    // The note of the file tested, not of one that replaced it meanwhile.
    let holder = read_note_of(&file).ok();
    let held = match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Err(rustix::io::Errno::WOULDBLOCK) => true,
        Ok(()) => {
            // Dropping `file` below releases it too, should this fail.
            let _ = rustix::fs::flock(&file, rustix::fs::FlockOperation::Unlock);
            false
        }
        Err(source) => return Err(ProbeError::Test { path, source }),
    };
    let here = match file.metadata() {
        Ok(m) => [m.dev(), m.ino()],
        Err(source) => return Err(ProbeError::Open { path, source }),
    };
    Ok(judge(held, holder, command, &path, here))
}

/// [`liveness`]'s verdict from what the kernel and the note said.
fn judge(
    held: bool,
    holder: Option<Holder>,
    command: &str,
    path: &Path,
    here: [u64; 2],
) -> Liveness {
    match holder {
        Some(h) if h.command != command => Liveness::Gone,
        h if held => Liveness::Held(h),
        None => Liveness::Unverified {
            holder: None,
            why: format!("its lock note `{}` is unreadable", path.display()),
        },
        Some(h) if h.shares_locks_with(here) => Liveness::Gone,
        Some(h) => Liveness::Unverified {
            why: format!(
                "its lock was taken on host {} under another kernel or through another mount (another node, a container with its own mount, or before a reboot), whose locks may not be visible here",
                h.host
            ),
            holder: Some(h),
        },
    }
}

/// The holder named in a lock file, for a refusal.
fn read_holder(path: &Path) -> String {
    match read_note(path) {
        Ok(h) => h.describe(),
        Err(why) => why,
    }
}

/// The note in the open lock file `file`. Its holder writes it just after
/// locking, in place, so an empty or partial note is read again shortly.
fn read_note_of(file: &fs::File) -> Result<Holder, String> {
    use std::os::unix::fs::FileExt;
    let mut last = String::new();
    let mut bytes = vec![0; 64 << 10];
    for _ in 0..10 {
        match file.read_at(&mut bytes, 0) {
            Ok(n) => match serde_json::from_slice::<Holder>(&bytes[..n]) {
                Ok(h) => return Ok(h),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(last)
}

/// The note in the lock file at `path` (see [`read_note_of`]).
fn read_note(path: &Path) -> Result<Holder, String> {
    let file = crate::store::open_for_reading(path).map_err(|e| e.to_string());
    file.and_then(|f| read_note_of(&f))
        .map_err(|e| format!("its note in `{}` is unreadable: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = FolderLock::acquire(dir.path(), "fetch").unwrap();
        let err = FolderLock::acquire(dir.path(), "exif").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("in use by another mlyexport run (fetch, pid "),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("pid {} on host ", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("wait for it to finish, or stop it"), "{msg}");
        drop(first);
        let again = FolderLock::acquire(dir.path(), "exif").unwrap();
        assert!(again.covers_folder());
        drop(again);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "lock file left"
        );
    }

    #[test]
    fn a_stale_note_does_not_block_and_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let stale = r#"{"pid":999999,"host":"elsewhere","command":"fetch","started_at":"2026-11-30T09:00:00Z"}"#;
        fs::write(dir.path().join(LOCK_FILE), stale).unwrap();
        let lock = FolderLock::acquire(dir.path(), "layers").unwrap();
        let note: Holder =
            serde_json::from_slice(&fs::read(dir.path().join(LOCK_FILE)).unwrap()).unwrap();
        assert_eq!(
            (note.pid, note.command.as_str()),
            (std::process::id(), "layers")
        );
        drop(lock);
    }

    #[test]
    fn a_hard_linked_lock_file_is_replaced_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let precious = dir.path().join("precious.txt");
        let folder = dir.path().join("out");
        fs::create_dir(&folder).unwrap();
        fs::write(&precious, b"keep me").unwrap();
        fs::hard_link(&precious, folder.join(LOCK_FILE)).unwrap();
        let lock = FolderLock::acquire(&folder, "fetch").unwrap();
        assert_eq!(fs::read(&precious).unwrap(), b"keep me");
        let meta = fs::symlink_metadata(folder.join(LOCK_FILE)).unwrap();
        assert_eq!(meta.nlink(), 1);
        let note: Holder =
            serde_json::from_slice(&fs::read(folder.join(LOCK_FILE)).unwrap()).unwrap();
        assert_eq!(note.command, "fetch");
        // Linked while held: the holder is named, nothing is removed.
        let held = dir.path().join("held.txt");
        fs::hard_link(folder.join(LOCK_FILE), &held).unwrap();
        let err = FolderLock::acquire(&folder, "exif").unwrap_err();
        assert!(matches!(err, LockError::InUse { .. }), "{err}");
        drop(lock);
        assert!(!folder.join(LOCK_FILE).exists());
        assert_eq!(fs::read(&precious).unwrap(), b"keep me");
    }

    #[test]
    fn a_symlinked_lock_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.txt");
        let folder = dir.path().join("out");
        fs::create_dir(&folder).unwrap();
        std::os::unix::fs::symlink(&target, folder.join(LOCK_FILE)).unwrap();
        // Dangling: nothing is created where it points.
        let msg = FolderLock::acquire(&folder, "fetch")
            .unwrap_err()
            .to_string();
        assert!(!target.exists());
        fs::write(&target, b"keep me").unwrap();
        let again = FolderLock::acquire(&folder, "fetch")
            .unwrap_err()
            .to_string();
        assert_eq!(msg, again);
        assert!(
            msg.contains(&folder.join(LOCK_FILE).display().to_string())
                && msg.contains("is a symbolic link")
                && msg.contains("remove the link"),
            "{msg}"
        );
        assert_eq!(fs::read(&target).unwrap(), b"keep me");
        // A FIFO is named as one.
        fs::remove_file(folder.join(LOCK_FILE)).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            folder.join(LOCK_FILE),
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        let msg = FolderLock::acquire(&folder, "fetch")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("is a FIFO (named pipe), not a regular file"),
            "{msg}"
        );
    }

    #[test]
    fn a_folder_created_for_the_lock_goes_when_left_empty() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new/out");
        let lock = FolderLock::acquire(&out, "fetch").unwrap();
        assert!(out.join(LOCK_FILE).is_file());
        drop(lock);
        assert!(!out.exists());
        let kept = FolderLock::acquire(&out, "fetch").unwrap();
        fs::write(out.join("data"), b"x").unwrap();
        drop(kept);
        assert!(out.join("data").is_file());
    }

    #[test]
    fn named_locks_are_independent() {
        let dir = tempfile::tempdir().unwrap();
        let a = FolderLock::acquire_named(dir.path(), ".mlyexport-shard-1.lock", "fetch").unwrap();
        let b = FolderLock::acquire_named(dir.path(), ".mlyexport-shard-2.lock", "fetch").unwrap();
        assert!(!a.covers_folder());
        assert!(FolderLock::acquire_named(dir.path(), ".mlyexport-shard-1.lock", "x").is_err());
        drop((a, b));
    }

    #[test]
    fn liveness_asks_the_kernel_and_trusts_it_only_for_its_own_locks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(liveness(d, LOCK_FILE, "fetch").unwrap(), Liveness::Gone);
        let lock = FolderLock::acquire(d, "fetch").unwrap();
        match liveness(d, LOCK_FILE, "fetch").unwrap() {
            Liveness::Held(Some(h)) => assert_eq!(h.pid, std::process::id()),
            other => panic!("a held lock seen as {other:?}"),
        }
        // The lock belongs to fetch, not to layers.
        assert_eq!(liveness(d, LOCK_FILE, "layers").unwrap(), Liveness::Gone);
        // The probe's moment of shared lock does not refuse a run starting.
        drop(lock);
        let here = Holder::this_process("fetch");
        fs::write(d.join(LOCK_FILE), serde_json::to_vec(&here).unwrap()).unwrap();
        let probing = fs::File::open(d.join(LOCK_FILE)).unwrap();
        rustix::fs::flock(&probing, rustix::fs::FlockOperation::LockShared).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(60));
            drop(probing);
        });
        let started = FolderLock::acquire(d, "fetch").expect("waits out a probe");
        release.join().unwrap();
        drop(started);

        // A run killed while locked leaves its note and no lock.
        fs::write(d.join(LOCK_FILE), serde_json::to_vec(&here).unwrap()).unwrap();
        assert_eq!(liveness(d, LOCK_FILE, "fetch").unwrap(), Liveness::Gone);
        // Written under another kernel: not claimed either way.
        let there = Holder {
            host: "node-7".into(),
            boot: Some("00000000".into()),
            ..here
        };
        fs::write(d.join(LOCK_FILE), serde_json::to_vec(&there).unwrap()).unwrap();
        match liveness(d, LOCK_FILE, "fetch").unwrap() {
            Liveness::Unverified { holder, why } => {
                assert_eq!(holder, Some(there));
                assert!(
                    why.contains("node-7") && why.contains("another kernel"),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }
        // An unreadable note is not a verdict.
        fs::write(d.join(LOCK_FILE), b"{\"pid\": 1, \"trunc").unwrap();
        assert!(matches!(
            liveness(d, LOCK_FILE, "fetch").unwrap(),
            Liveness::Unverified { holder: None, .. }
        ));
    }

    #[test]
    fn a_note_counts_as_seen_here_on_this_kernel_and_mount_only() {
        let here = [1, 2];
        let mut h = Holder::this_process("fetch");
        assert!(
            h.shares_locks_with(here),
            "a note without the file's numbers"
        );
        h.lock_file = Some(here);
        assert!(h.shares_locks_with(here));
        h.lock_file = Some([9, 2]);
        assert!(!h.shares_locks_with(here), "another mount");
        h.boot = None;
        assert!(h.shares_locks_with(here), "an older note: by host name");
        h.host = format!("{}-other", host_name());
        assert!(!h.shares_locks_with(here));
    }
}
