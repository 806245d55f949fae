//! Layer rows built from image records, and the writers of each format.
