//! GPS EXIF for a JPEG: builds the tags from an image record and splices the
//! APP1 segment in, byte-exact elsewhere. Pure: bytes in, bytes out, no I/O.
