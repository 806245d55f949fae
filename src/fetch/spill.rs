//! The spill: the listing's API objects in an unnamed scratch file in the
//! output folder, so that memory stays bounded however many images are
//! listed. A [`SpillWriter`] appends objects while the listing runs and
//! becomes a [`Spill`] to read them back; every write and read returns
//! `Result`. The file disappears with its last handle.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::model::{ImageId, LonLat};
use crate::record::ImageRecord;

/// The scratch file cannot be created or written.
#[derive(Debug)]
pub(crate) struct ScratchError {
    /// The folder it was made in.
    pub dir: String,
    pub source: io::Error,
}

/// An object cannot be read back from the spill.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpillError {
    /// The read failed.
    #[error(transparent)]
    Read(io::Error),
    /// What was read does not parse.
    #[error("the scratch copy of image {id} does not parse: {message}")]
    Corrupt { id: ImageId, message: String },
}

impl From<SpillError> for io::Error {
    fn from(e: SpillError) -> io::Error {
        match e {
            SpillError::Read(source) => source,
            e @ SpillError::Corrupt { .. } => {
                io::Error::new(io::ErrorKind::InvalidData, e.to_string())
            }
        }
    }
}

/// Where one object lies in the spill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    offset: u64,
    len: u32,
}

/// One listed image, compactly: its API object lives in the spill.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Listed {
    /// Index of its grid in the plan.
    pub grid: u32,
    pub id: ImageId,
    /// Capture time in ms (`i64::MAX` when unknown: sorted last).
    pub captured_ms: i64,
    /// The signed URL of the chosen rendition, when the listing had it.
    pub url: Option<Box<str>>,
    pub slot: Slot,
    /// The chosen position, for thinning.
    pub position: Option<LonLat>,
    /// Whether it has any position (either kind).
    pub has_position: bool,
    /// Index of the sequence key, for thinning.
    pub seq: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// Appends API objects to a new scratch file. A failed write does not stop
/// the listing: the first error is kept and returned by [`SpillWriter::finish`].
pub(crate) struct SpillWriter {
    file: File,
    out: BufWriter<File>,
    dir: String,
    offset: u64,
    error: Option<io::Error>,
}

impl SpillWriter {
    /// A new, unnamed scratch file in `dir`.
    pub(crate) fn create(dir: &Path) -> Result<Self, ScratchError> {
        let err = |source| ScratchError {
            dir: dir.display().to_string(),
            source,
        };
        let file = tempfile::tempfile_in(dir).map_err(err)?;
        let out = BufWriter::new(file.try_clone().map_err(err)?);
        Ok(SpillWriter {
            file,
            out,
            dir: dir.display().to_string(),
            offset: 0,
            error: None,
        })
    }

    /// Appends one object; returns where it lies.
    pub(crate) fn append(&mut self, object: Map<String, Value>) -> Slot {
        let written = serde_json::to_vec(&Value::Object(object))
            .map_err(io::Error::from)
            .and_then(|bytes| self.out.write_all(&bytes).map(|()| bytes.len()));
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                self.error.get_or_insert(e);
                0
            }
        };
        let slot = Slot {
            offset: self.offset,
            len: u32::try_from(len).unwrap_or(u32::MAX),
        };
        self.offset += len as u64;
        slot
    }

    /// Flushes the file and opens it for reading; the first failed write,
    /// if any.
    pub(crate) fn finish(mut self) -> Result<Spill, ScratchError> {
        let flushed = self.out.flush();
        match self.error.take().map_or(flushed, Err) {
            Ok(()) => Ok(Spill { file: self.file }),
            Err(source) => Err(ScratchError {
                dir: self.dir,
                source,
            }),
        }
    }
}

/// The listing's API objects, read back by [`Slot`].
pub(crate) struct Spill {
    file: File,
}

impl Spill {
    /// The bytes of one listed image's object.
    fn read_raw(&self, slot: Slot) -> Result<Vec<u8>, SpillError> {
        let mut buf = vec![0u8; slot.len as usize];
        self.file
            .read_exact_at(&mut buf, slot.offset)
            .map_err(SpillError::Read)?;
        Ok(buf)
    }

    /// One listed image's API object.
    pub(crate) fn object(&self, l: &Listed) -> Result<Map<String, Value>, SpillError> {
        let raw = self.read_raw(l.slot)?;
        serde_json::from_slice(&raw).map_err(|e| corrupt(l.id, &e))
    }

    /// One listed image's record.
    pub(crate) fn record(&self, l: &Listed) -> Result<ImageRecord, SpillError> {
        let raw = self.read_raw(l.slot)?;
        ImageRecord::from_slice(&raw).map_err(|e| corrupt(l.id, &e))
    }
}

fn corrupt(id: ImageId, e: &dyn std::fmt::Display) -> SpillError {
    SpillError::Corrupt {
        id,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: u64, slot: Slot) -> Listed {
        Listed {
            grid: 0,
            id: ImageId::new(id).unwrap(),
            captured_ms: 0,
            url: None,
            slot,
            position: None,
            has_position: false,
            seq: None,
            width: None,
            height: None,
        }
    }

    #[test]
    fn objects_come_back_as_written_and_a_bad_slot_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpillWriter::create(dir.path()).unwrap();
        let obj = |id: &str| serde_json::json!({"id": id, "is_pano": false});
        let a = w.append(obj("1").as_object().unwrap().clone());
        let b = w.append(obj("22").as_object().unwrap().clone());
        assert_eq!(b.offset, u64::from(a.len));
        let spill = w.finish().unwrap();
        assert_eq!(
            Value::Object(spill.object(&listed(22, b)).unwrap()),
            obj("22")
        );
        assert_eq!(spill.record(&listed(1, a)).unwrap().id.get(), 1);
        // Past the end: a read error; half an object: it does not parse.
        let past = Slot {
            offset: 1 << 20,
            len: 4,
        };
        assert!(matches!(
            spill.object(&listed(1, past)),
            Err(SpillError::Read(_))
        ));
        let half = Slot {
            offset: 0,
            len: a.len / 2,
        };
        let e = spill.record(&listed(1, half)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the scratch copy of image 1 does not parse"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let e = SpillWriter::create(&gone).err().unwrap();
        assert_eq!(e.dir, gone.display().to_string());
        assert_eq!(e.source.kind(), io::ErrorKind::NotFound);
    }
}
