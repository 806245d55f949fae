//! `mlyexport exif`, and the EXIF pass that `layers` runs: for every image in
//! a downloads folder, reads its JSON and the start of its JPEG, builds the
//! new segments before the scan (the pure [`crate::exif`] module does the
//! bytes) and replaces the JPEG atomically through [`crate::store::Replacer`],
//! the compressed data copied by the kernel. Wiring only: no tag logic here,
//! and no printing except through [`Reporter`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use rayon::prelude::*;

use crate::ExitStatus;
use crate::downloads::{self as read, ReadError};
use crate::exif::{self, ExifTags, TimeZones, XmpOutcome};
use crate::lock::FolderLock;
use crate::model::{ImageId, PositionSource};
use crate::report::Reporter;
use crate::store::{self, Replacer};

/// One image of the folder: its id, its JSON and its JPEG when there is one.
struct FoundImage {
    id: ImageId,
    json: PathBuf,
    jpg: Option<PathBuf>,
}

/// Every image of the folder, from the one scan, sorted by grid then id.
fn found_images(scan: &read::Scan) -> Vec<FoundImage> {
    scan.entries
        .iter()
        .map(|e| FoundImage {
            id: e.id,
            json: scan.json_path(e),
            jpg: e.has_jpg.then(|| scan.jpg_path(e)),
        })
        .collect()
}

/// How many skipped files are named one by one before the rest are counted.
const SKIPPED_SHOWN: usize = 20;

/// From this many images on, a progress line is printed every tenth of them.
const PROGRESS_FROM: usize = 1000;

/// A JPEG or JSON that was left untouched, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// What an EXIF pass over a folder did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExifSummary {
    /// Image JSON files found.
    pub images: usize,
    /// JPEGs rewritten with new tags.
    pub written: usize,
    /// JPEGs that already carried exactly these tags (not rewritten).
    pub unchanged: usize,
    /// Tagged, but without GPS tags: their JSON has no position.
    pub without_position: usize,
    /// Positions taken from `computed_geometry` / from `geometry`.
    pub from_computed: usize,
    pub from_original: usize,
    /// Panoramas given XMP GPano tags (written or merged).
    pub panoramas: usize,
    /// Panoramas whose existing XMP was kept as it was (no GPano written by us).
    pub xmp_kept: usize,
    /// Files left untouched, sorted by path.
    pub skipped: Vec<Skipped>,
}

impl ExifSummary {
    /// `Partial` when any file was skipped, else `Success`.
    pub(crate) fn status(&self) -> ExitStatus {
        if self.skipped.is_empty() {
            ExitStatus::Success
        } else {
            ExitStatus::Partial
        }
    }

    /// `key: value` lines for [`Reporter::summary`].
    pub(crate) fn lines(&self) -> Vec<(String, String)> {
        let l = |k: &str, v: String| (k.to_string(), v);
        vec![
            l("images", self.images.to_string()),
            l("written", self.written.to_string()),
            l("already up to date", self.unchanged.to_string()),
            l(
                "position from",
                format!(
                    "computed {}, original {}",
                    self.from_computed, self.from_original
                ),
            ),
            l(
                "without position (no GPS tags)",
                self.without_position.to_string(),
            ),
            l("panoramas tagged (XMP GPano)", self.panoramas.to_string()),
            l("panoramas with foreign XMP kept", self.xmp_kept.to_string()),
            l("skipped", self.skipped.len().to_string()),
        ]
    }
}

/// What happened to one image.
struct Done {
    written: bool,
    source: Option<PositionSource>,
    xmp: XmpOutcome,
}

/// Embeds GPS EXIF tags into every JPEG of `scan`, the downloads folder that
/// `lock` holds, scanned by the caller (who reports what the scan did not
/// read) (the `fetch` layout `<grid>/<id>.json` + `<id>.jpg`, or the old
/// tool's `jsons/` + `images/`), in parallel on its own rayon pool (see
/// `io_threads`), one file per worker in memory at a time. `position` picks
/// the source of position and direction (falling back to the other). Each
/// JPEG is replaced atomically by a new file and only when its bytes change,
/// keeping its owner and permissions (minus setuid/setgid); a program holding
/// the old file open keeps reading the old bytes. A corrupt or non-JPEG file,
/// a missing JPEG or an unreadable JSON is named through `reporter`, counted
/// in [`ExifSummary::skipped`] and left untouched; it does not stop the pass.
///
/// Errors (exit 2) only when the folder holds no image JSON, or cannot be
/// synced at the end.
pub(crate) fn embed_folder(
    lock: &FolderLock,
    scan: &read::Scan,
    position: PositionSource,
    reporter: &Reporter,
) -> anyhow::Result<ExifSummary> {
    let input = lock.dir();
    let found = found_images(scan);
    if found.is_empty() {
        anyhow::bail!(
            "no image JSON files in `{}`: expected `<grid>/<id>.json` beside `<id>.jpg` \
             (as `mlyexport fetch` writes them) or `jsons/<id>.json` with `images/<id>.jpg`",
            input.display()
        );
    }
    lock.remove_stale_temp_files();
    reporter.info(&format!(
        "embedding EXIF into {} images in `{}`",
        found.len(),
        input.display()
    ));
    let results = tag_all(&found, position, reporter)?;
    sync_folders(&found, &results)?;
    let s = tally(found.len(), results);
    for k in s.skipped.iter().take(SKIPPED_SHOWN) {
        reporter.warn(&format!("skipped `{}`: {}", k.path.display(), k.reason));
    }
    if s.skipped.len() > SKIPPED_SHOWN {
        reporter.warn(&format!(
            "… and {} more files skipped",
            s.skipped.len() - SKIPPED_SHOWN
        ));
    }
    Ok(s)
}

/// Tags every image on the pass's own rayon pool; one result per image, in order.
fn tag_all(
    found: &[FoundImage],
    position: PositionSource,
    reporter: &Reporter,
) -> anyhow::Result<Vec<Result<Done, Skipped>>> {
    let zones = TimeZones::new();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(io_threads())
        .thread_name(|i| format!("exif-{i}"))
        .build()
        .context("cannot start the EXIF worker threads")?;
    let total = found.len();
    let finished = AtomicUsize::new(0);
    // Runs of neighbouring files per job, each with one Replacer (which
    // keeps what it learnt of the folder along the run).
    let run = total.div_ceil(pool.current_num_threads() * 4).max(1);
    Ok(pool.install(|| {
        found
            .par_iter()
            .with_min_len(run)
            .map_init(Replacer::new, |replacer, f| {
                let r = embed_one(f, position, &zones, replacer);
                let k = finished.fetch_add(1, Ordering::Relaxed) + 1;
                if total >= PROGRESS_FROM && k.is_multiple_of(total / 10) && k < total {
                    reporter.info(&format!("exif: {k} of {total} images done"));
                }
                r
            })
            .collect()
    }))
}

/// The summary of the results of `images` images; skipped files sorted by path.
fn tally(images: usize, results: Vec<Result<Done, Skipped>>) -> ExifSummary {
    let mut s = ExifSummary {
        images,
        ..ExifSummary::default()
    };
    for r in results {
        let d = match r {
            Ok(d) => d,
            Err(skip) => {
                s.skipped.push(skip);
                continue;
            }
        };
        if d.written {
            s.written += 1;
        } else {
            s.unchanged += 1;
        }
        match d.source {
            Some(PositionSource::Computed) => s.from_computed += 1,
            Some(PositionSource::Original) => s.from_original += 1,
            None => s.without_position += 1,
        }
        match d.xmp {
            XmpOutcome::Written | XmpOutcome::Merged => s.panoramas += 1,
            XmpOutcome::KeptForeignGpano | XmpOutcome::KeptUnmergeable => s.xmp_kept += 1,
            XmpOutcome::NotPano => {}
        }
    }
    s.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    s
}

/// Makes the renames of the pass durable: one `fsync` per folder where a
/// JPEG was replaced, after its last replacement. Each new file's data was
/// synced before its rename, so until then a power cut leaves every JPEG
/// whole, old or new (plus temp files that the next run removes).
fn sync_folders(found: &[FoundImage], results: &[Result<Done, Skipped>]) -> anyhow::Result<()> {
    let mut dirs: Vec<&Path> = found
        .iter()
        .zip(results)
        .filter(|(_, r)| r.as_ref().is_ok_and(|d| d.written))
        .filter_map(|(f, _)| f.jpg.as_deref().and_then(Path::parent))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        store::sync_dir(dir).with_context(|| {
            format!(
                "the JPEGs tagged in `{}` may not survive a power cut",
                dir.display()
            )
        })?;
    }
    Ok(())
}

/// Workers for the pass: 4 per core, 4 to 32. The work is bound by the
/// fsync of each atomic write, not by the CPU (measured: 8 threads on 2 cores
/// ran 2.4x faster than 2), and each worker holds only one image in memory.
fn io_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    (cores * 4).clamp(4, 32)
}

/// Largest JPEG tagged, in bytes; a bigger file is reported and skipped.
const MAX_JPEG_BYTES: u64 = 256 << 20;

/// Bytes read first from each JPEG: enough for the segments before the scan
/// of nearly every file (more is read when they are longer).
const HEAD_BYTES: u64 = 16 << 10;

/// Why one JPEG could not be tagged.
#[derive(Debug, thiserror::Error)]
enum RetagError {
    #[error("cannot read it: {0}")]
    Read(#[from] io::Error),
    #[error("{0} bytes, larger than the {MAX_JPEG_BYTES} bytes a JPEG may have here")]
    TooLarge(u64),
    #[error(transparent)]
    Jpeg(#[from] exif::ExifError),
    #[error(transparent)]
    Write(#[from] store::StoreError),
}

/// Tags one JPEG and, when its bytes change, replaces it atomically with the
/// same permissions. Only the segments before the scan are read and rebuilt;
/// the compressed data is copied file to file by the kernel. Returns whether
/// the file was rewritten, and what happened to its XMP.
fn retag_file(
    jpg: &Path,
    tags: &ExifTags,
    replacer: &mut Replacer,
) -> Result<(bool, XmpOutcome), RetagError> {
    use std::io::Read;
    use std::os::unix::fs::FileExt;

    let mut file = store::open_for_reading(jpg)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(RetagError::Read(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let len = meta.len();
    if len > MAX_JPEG_BYTES {
        return Err(RetagError::TooLarge(len));
    }
    let mut last_two = [0u8; 2];
    if len >= 2 {
        file.read_exact_at(&mut last_two, len - 2)?;
    }
    let mut head = Vec::new();
    let mut want = HEAD_BYTES;
    let changed = || {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the file changed size while it was read (it had {len} bytes)"),
        )
    };
    let plan = loop {
        let more = want
            .min(len)
            .min(exif::MAX_HEAD_BYTES as u64)
            .saturating_sub(head.len() as u64);
        head.reserve_exact(usize::try_from(more).unwrap_or(0));
        let read = (&mut file).take(more).read_to_end(&mut head)?;
        if (read as u64) < more {
            return Err(changed().into());
        }
        match exif::plan_head(&head, len, last_two, tags)? {
            Some(plan) => break plan,
            // `plan_head` asks for more only while the head is shorter than
            // `len` and than `MAX_HEAD_BYTES` (beyond, it refuses the file).
            None => want = want.saturating_mul(4),
        }
    };
    if head.get(..plan.scan_start) == Some(&plan.bytes[..]) {
        return Ok((false, plan.xmp));
    }
    let rest = len - plan.scan_start as u64;
    replacer.replace(jpg, Some(&meta), |out| {
        use std::io::{Seek, SeekFrom, Write};
        out.write_all(&plan.bytes)?;
        file.seek(SeekFrom::Start(plan.scan_start as u64))?;
        // One byte more than expected would mean the file grew.
        let copied = io::copy(&mut (&mut file).take(rest + 1), out)?;
        if copied == rest {
            Ok(())
        } else {
            Err(changed())
        }
    })?;
    Ok((true, plan.xmp))
}

/// Reads, tags and (when it changed) replaces one image's JPEG.
fn embed_one(
    f: &FoundImage,
    prefer: PositionSource,
    zones: &TimeZones,
    replacer: &mut Replacer,
) -> Result<Done, Skipped> {
    let skip = |path: &Path, reason: String| Skipped {
        path: path.to_path_buf(),
        reason,
    };
    let rec = read::read_record_at(&f.json, f.id).map_err(|e| {
        let reason = match e {
            ReadError::Io { source, .. } => format!("cannot read it: {source}"),
            ReadError::Json { source, .. } => format!("not valid JSON: {source}"),
            ReadError::Record { source, .. } => format!("not an image record: {source}"),
            ReadError::IdMismatch { found, .. } => {
                format!("its id `{found}` differs from its file name `{}`", f.id)
            }
            e => e.to_string(),
        };
        skip(&f.json, reason)
    })?;
    let Some(jpg) = &f.jpg else {
        return Err(skip(&f.json, "no JPEG found for it".to_string()));
    };
    let tags = ExifTags::from_record(&rec, prefer, zones);
    let (written, xmp) = retag_file(jpg, &tags, replacer).map_err(|e| skip(jpg, e.to_string()))?;
    Ok(Done {
        written,
        source: tags.gps.map(|g| g.source),
        xmp,
    })
}
