//! One mlyexport run per folder at a time: an exclusive, non-blocking `flock`
//! on a lock file in the folder (`.mlyexport.lock`), holding a JSON note of
//! who holds it. The kernel releases the lock when its holder exits, however
//! it ends, so a lock left by a dead run never blocks; its stale note is
//! simply overwritten. A refused lock names the holder at once.
//!
//! The lock file's name is a parameter ([`FolderLock::acquire_named`]), so a
//! folder can later be locked in parts (one lock file per shard).

use std::fs;
use std::io::{self, Read, Write};
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
}

/// Who holds a lock: the note written into the lock file once it is locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub started_at: DateTime<Utc>,
}

impl Holder {
    /// This process, running `command`, from now.
    fn this_process(command: &str) -> Self {
        Holder {
            pid: std::process::id(),
            host: host_name(),
            command: command.to_string(),
            started_at: Utc::now(),
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
    /// the holder, when another run holds it.
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
        for _ in 0..ATTEMPTS {
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err)?;
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
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
    /// so no other mlyexport run can be working in it.
    pub(crate) fn covers_folder(&self) -> bool {
        self.path.file_name() == Some(LOCK_FILE.as_ref())
    }

    fn write_note(&self, command: &str) -> io::Result<()> {
        let note = serde_json::to_vec(&Holder::this_process(command))?;
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

/// Whether `path` names the open file `file` (same device and inode).
fn names_file(path: &Path, file: &fs::File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(p), Ok(f)) => p.dev() == f.dev() && p.ino() == f.ino(),
        _ => false,
    }
}

/// Whether a run still holds a lock file, as far as this host can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// A process on this host holds the lock: the run is alive (its note,
    /// unless still being written).
    Held(Option<Holder>),
    /// Nothing on this host holds it, and its note (if any) names this host:
    /// the run that wrote it is gone (killed, or crashed).
    Gone,
    /// Its note names another host, whose locks this host cannot see (a lock
    /// on a shared file system shows only on the host that took it).
    Elsewhere(Holder),
}

/// Largest `/proc/locks` read (a busy host lists a few hundred locks).
const MAX_PROC_LOCKS_BYTES: u64 = 16 << 20;

/// Whether the lock file `file_name` in `dir` is held by a run of `command`
/// (a lock another command holds, say `layers`, counts as [`Liveness::Gone`]
/// for it). Reads the holder's note and this host's `/proc/locks`; never
/// takes the lock, so it cannot get in the way of a run starting.
pub(crate) fn liveness(dir: &Path, file_name: &str, command: &str) -> io::Result<Liveness> {
    let path = dir.join(file_name);
    let file = match crate::store::open_for_reading(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Liveness::Gone),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    (&file).take(64 << 10).read_to_string(&mut text)?;
    let holder = serde_json::from_str::<Holder>(&text).ok();
    if let Some(h) = holder.as_ref().filter(|h| h.host != host_name()) {
        return Ok(Liveness::Elsewhere(h.clone()));
    }
    let meta = file.metadata()?;
    let mut locks = String::new();
    crate::store::open_for_reading(Path::new("/proc/locks"))?
        .take(MAX_PROC_LOCKS_BYTES)
        .read_to_string(&mut locks)?;
    let held = flock_held(
        &locks,
        meta.dev(),
        meta.ino(),
        holder.as_ref().map(|h| h.pid),
    );
    Ok(match holder {
        _ if !held => Liveness::Gone,
        Some(h) if h.command != command => Liveness::Gone,
        h => Liveness::Held(h),
    })
}

/// Whether `/proc/locks` text lists a `flock` on inode `ino` of device `dev`.
/// A lock on an overlay file system shows the lower file system's device, so
/// a lock on the same inode number taken by the note's `pid` counts too.
fn flock_held(proc_locks: &str, dev: u64, ino: u64, pid: Option<u32>) -> bool {
    let want_dev = format!(
        "{:02x}:{:02x}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    proc_locks.lines().any(|line| {
        // `1: FLOCK  ADVISORY  WRITE 2268 fe:00:1314 0 EOF`; a waiter has `->` after the number.
        let mut f = line.split_whitespace().skip(1).skip_while(|w| *w == "->");
        let (Some("FLOCK"), Some(_), Some(_), Some(lock_pid), Some(file)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return false;
        };
        let Some((device, inode)) = file.rsplit_once(':') else {
            return false;
        };
        let waiter = line.contains("->");
        inode.parse::<u64>().ok() == Some(ino)
            && !waiter
            && (device == want_dev || lock_pid.parse::<u32>().ok() == pid)
    })
}

/// The holder named in a lock file, for a refusal. Its holder writes the note
/// just after locking, so an empty or partial note is read again shortly.
fn read_holder(path: &Path) -> String {
    let mut last = String::new();
    for _ in 0..10 {
        let mut text = String::new();
        let read = crate::store::open_for_reading(path)
            .and_then(|f| f.take(64 << 10).read_to_string(&mut text));
        match read {
            Ok(_) => match serde_json::from_str::<Holder>(&text) {
                Ok(h) => return h.describe(),
                Err(e) => last = format!("its note in `{}` is unreadable: {e}", path.display()),
            },
            Err(e) => last = format!("its note in `{}` is unreadable: {e}", path.display()),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    last
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
    fn liveness_sees_a_held_lock_a_killed_run_and_another_host() {
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
        drop(lock);
        // A run killed while locked leaves its note and no lock.
        let here = Holder::this_process("fetch");
        fs::write(d.join(LOCK_FILE), serde_json::to_vec(&here).unwrap()).unwrap();
        assert_eq!(liveness(d, LOCK_FILE, "fetch").unwrap(), Liveness::Gone);
        let there = Holder {
            host: format!("{}-other", host_name()),
            ..here
        };
        fs::write(d.join(LOCK_FILE), serde_json::to_vec(&there).unwrap()).unwrap();
        assert_eq!(
            liveness(d, LOCK_FILE, "fetch").unwrap(),
            Liveness::Elsewhere(there)
        );
    }

    #[test]
    fn proc_locks_lines_are_matched_by_device_and_inode_or_by_pid() {
        let dev = rustix::fs::makedev(0xfe, 0x01);
        let locks = "1: POSIX  ADVISORY  WRITE 7 fe:01:77 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 8 fe:01:1314 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 9 fe:01:1315 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 10 00:2c:500 0 EOF\n";
        assert!(flock_held(locks, dev, 1314, None));
        assert!(
            !flock_held(locks, dev, 77, None),
            "POSIX locks are not ours"
        );
        assert!(
            !flock_held(locks, dev, 1315, None),
            "a waiter holds nothing"
        );
        assert!(
            !flock_held(locks, dev, 500, Some(11)),
            "another device, another pid"
        );
        assert!(
            flock_held(locks, dev, 500, Some(10)),
            "overlay: same inode, holder's pid"
        );
        assert!(!flock_held("", dev, 1314, Some(8)));
        assert!(!flock_held("garbage\n1:\n", dev, 1314, None));
    }
}
