//! Opening input files the one safe way: regular files only, opened without
//! blocking, read with a size bound (and for line files a line-length bound).
//! A FIFO, a device such as `/dev/zero`, a socket or a folder is refused at
//! once with a clear error, never read until memory runs out or waited on
//! forever. File reads only: no writes, no network, no terminal.

use std::fs;
use std::io::{self, BufRead, Read};
use std::path::Path;

/// Opens `path` for reading without blocking (a FIFO without a writer would
/// otherwise wait forever) and refuses anything that is not a regular file
/// (symbolic links are followed). The error says what the path is instead.
pub(crate) fn open_regular(path: &Path) -> io::Result<fs::File> {
    open_regular_sized(path).map(|(file, _)| file)
}

/// [`open_regular`], and the file's length in bytes when opened.
fn open_regular_sized(path: &Path) -> io::Result<(fs::File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok((file, meta.len()));
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {}, not a regular file", kind_name(&kind)),
    ))
}

/// What a non-regular file is, for messages.
pub(crate) fn kind_name(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Refuses a path that exists and is neither a regular file nor a folder
/// (a FIFO, a device, a socket), without opening it. A path that does not
/// exist is let through: the caller's own open reports it (GDAL also takes
/// virtual paths such as `/vsizip/...`).
pub(crate) fn check_not_special(path: &Path) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(m) if !m.is_file() && !m.is_dir() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {}, not a regular file", kind_name(&m.file_type())),
        )),
        _ => Ok(()),
    }
}

/// What a path is, as a folder of the layout, without following a symbolic
/// link at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FolderAt {
    /// A real folder.
    Folder,
    /// A symbolic link to a folder: never followed (it would read or write
    /// outside the folder given), and named to the user.
    LinkToFolder,
    /// Missing, a file, or a link to anything else.
    Other,
}

/// What `path` is (see [`FolderAt`]); its target is looked at only to tell a
/// link to a folder from other links.
pub(crate) fn folder_at(path: &Path) -> FolderAt {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => FolderAt::Folder,
        Ok(m) if m.is_symlink() && fs::metadata(path).is_ok_and(|t| t.is_dir()) => {
            FolderAt::LinkToFolder
        }
        _ => FolderAt::Other,
    }
}

/// Reads the whole of the regular file `path` into `buf` (cleared first); a
/// file of more than `max` bytes is an `InvalidData` error and is not read
/// whole.
pub(crate) fn read_bounded_into(path: &Path, max: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let (file, len) = open_regular_sized(path)?;
    // Refused before reading when already too large (it may still grow).
    if len > max {
        return Err(too_large(max));
    }
    buf.reserve(usize::try_from(len).map_or(0, |n| n.saturating_add(1)));
    let read = file.take(max.saturating_add(1)).read_to_end(buf)?;
    if read as u64 > max {
        return Err(too_large(max));
    }
    Ok(())
}

/// Reads the regular file `path` of at most `max` bytes as UTF-8 text.
pub(crate) fn read_text_bounded(path: &Path, max: u64) -> io::Result<String> {
    let mut buf = Vec::new();
    read_bounded_into(path, max, &mut buf)?;
    String::from_utf8(buf).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is not UTF-8 text (a bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

fn too_large(max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("it is larger than {max} bytes; not read"),
    )
}

/// Calls `f` with each line (without its line ending) of `reader`; a line of
/// more than `max_line` bytes is an `InvalidData` error, never buffered
/// whole. Bytes that are not UTF-8 are replaced.
pub(crate) fn for_each_line<R: BufRead>(
    reader: R,
    max_line: usize,
    mut f: impl FnMut(&str),
) -> io::Result<()> {
    let mut limited = reader.take(0);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        limited.set_limit(max_line as u64 + 1);
        let n = limited.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if n > max_line {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a line is longer than {max_line} bytes"),
            ));
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        f(&String::from_utf8_lossy(&buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_folders_and_fifos_are_refused_at_once() {
        let e = open_regular(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = open_regular(dir.path()).unwrap_err();
        assert!(e.to_string().contains("folder"), "{e}");
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let e = open_regular(&fifo).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        assert!(check_not_special(&fifo).is_err());
        assert!(check_not_special(dir.path()).is_ok());
        assert!(check_not_special(&dir.path().join("missing")).is_ok());
    }

    #[test]
    fn a_link_to_a_folder_is_told_from_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("real")).unwrap();
        fs::write(d.join("file"), b"x").unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        std::os::unix::fs::symlink(d.join("file"), d.join("to-file")).unwrap();
        assert_eq!(folder_at(&d.join("real")), FolderAt::Folder);
        assert_eq!(folder_at(&d.join("link")), FolderAt::LinkToFolder);
        for other in ["file", "to-file", "missing"] {
            assert_eq!(folder_at(&d.join(other)), FolderAt::Other, "{other}");
        }
    }

    #[test]
    fn sizes_and_lines_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"abc\r\ndef\nlong-line-here").unwrap();
        let mut buf = Vec::new();
        assert!(read_bounded_into(&p, 5, &mut buf).is_err());
        assert!(read_bounded_into(&p, 100, &mut buf).is_ok());
        let mut lines = Vec::new();
        for_each_line(&buf[..], 20, |l| lines.push(l.to_string())).unwrap();
        assert_eq!(lines, ["abc", "def", "long-line-here"]);
        let e = for_each_line(&buf[..], 5, |_| {}).unwrap_err();
        assert!(e.to_string().contains("longer than 5"), "{e}");
        fs::write(&p, [b'a', 0xff, b'\n']).unwrap();
        assert!(read_text_bounded(&p, 100).is_err());
    }
}
