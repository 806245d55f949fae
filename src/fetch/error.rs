//! What stops a fetch (one image failing never does).

use super::listing::ListError;
use super::spill::ScratchError;
use super::tiles::TilesError;
use crate::api::ApiError;
use crate::runrecord::RecordError;
use crate::store::StoreError;

/// Errors that stop a fetch (one image failing never does).
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
pub enum FetchError {
    /// The run record cannot be used (another request, unreadable, unwritable).
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Listing(ListError),
    #[error("the first request to the API failed, so nothing was written")]
    Preflight(#[source] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tiles(#[from] TilesError),
    /// The folder is fetched whole or in shards of another N or request.
    #[error(transparent)]
    Shards(#[from] crate::shard::folder::FolderError),
    #[error("cannot create `{path}`: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    /// Grid folders that are symbolic links: never written through.
    #[error(
        "{list}: a grid folder that is a link; fetch writes only into real folders inside the output \
         folder (layers does not read through links)\n  fix: replace each link with the folder it points \
         to (`rm LINK && mv TARGET LINK`), or fetch into the folder that holds the target"
    )]
    LinkedGrids { list: String },
    #[error("cannot list what `{path}` already holds: {source}")]
    Scan {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot use a scratch file in `{path}`: {source}")]
    Scratch {
        path: String,
        source: std::io::Error,
    },
    /// A stage failed, and closing the run record as failed failed too.
    #[error(
        "{cause}\n  and the run record still says `running`, because it could not be written: {record}\n  fix: make the folder writable (free space, permissions) and run the same command again; it resumes"
    )]
    Unrecorded {
        cause: Box<FetchError>,
        record: RecordError,
    },
    /// A whole fetch withdrew from a folder a shard took meanwhile, and the
    /// run record it had just made could not be removed.
    #[error(
        "{cause}\n  and the run record `{path}` this fetch had just made could not be removed ({source})\n  fix: delete that file by hand, then run the shards again"
    )]
    Withdrawn {
        cause: Box<FetchError>,
        path: String,
        source: std::io::Error,
    },
}

impl From<ScratchError> for FetchError {
    fn from(e: ScratchError) -> Self {
        FetchError::Scratch {
            path: e.dir,
            source: e.source,
        }
    }
}
