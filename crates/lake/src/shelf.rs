//! Where statements' results wait to be fetched: files under the lake root, which every server
//! on the store reaches, so a chunk one replica computed is served by another. A statement's
//! chunks are `_statements/<id>/<index>.arrow`, each an Arrow IPC stream; `_` keeps them out of
//! any table's name.

use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tarn_core::{Error, Result};
use url::Url;

use crate::ResultFile;

const FOLDER: &str = "_statements";

pub(crate) enum Shelf {
    /// A lake on a local (or shared) disk: results are written in place.
    Folder(PathBuf),
    /// A lake in an object store: files are written to `staging` on this machine first, then
    /// put in the bucket.
    Bucket {
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        staging: PathBuf,
    },
}

fn file_name(index: usize) -> String {
    format!("{index:06}.arrow")
}

fn failed(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::internal_from(format!("cannot {what} a statement's result"), e)
}

impl Shelf {
    /// The shelf of the lake at `root`; `staging` holds a bucket's files until they are put.
    pub(crate) fn open(root: &Url, staging: PathBuf) -> Result<Self> {
        match root.scheme() {
            "file" => {
                let path = root
                    .to_file_path()
                    .map_err(|()| Error::invalid(format!("Invalid lake root '{root}'")))?;
                Ok(Self::Folder(path.join(FOLDER)))
            }
            _ => {
                let store = crate::storage::s3_store(root, std::iter::empty())
                    .map_err(|e| Error::internal_from(format!("cannot open {root}"), e))?;
                let prefix = Path::from_url_path(root.path())
                    .map_err(|e| Error::internal_from(format!("invalid lake root {root}"), e))?
                    .join(FOLDER);
                Ok(Self::Bucket {
                    store: Arc::new(store),
                    prefix,
                    staging,
                })
            }
        }
    }

    /// Where a statement writing its result as files writes them.
    pub(crate) fn writing_folder(&self, id: &str) -> PathBuf {
        match self {
            Self::Folder(folder) => folder.join(id),
            Self::Bucket { staging, .. } => staging.join(id),
        }
    }

    fn object(prefix: &Path, id: &str, index: usize) -> Path {
        prefix.clone().join(id).join(file_name(index))
    }

    /// Makes files written in [`Self::writing_folder`] readable by every server.
    pub(crate) async fn publish(&self, id: &str, files: &[ResultFile]) -> Result<()> {
        let Self::Bucket {
            store,
            prefix,
            staging,
        } = self
        else {
            return Ok(());
        };
        for (index, file) in files.iter().enumerate() {
            let bytes = tokio::fs::read(&file.path)
                .await
                .map_err(|e| failed("read", e))?;
            store
                .put(&Self::object(prefix, id, index), bytes.into())
                .await
                .map_err(|e| failed("store", e))?;
        }
        remove_folder(&staging.join(id)).await;
        Ok(())
    }

    /// Keeps chunk `index` of statement `id`.
    pub(crate) async fn put(&self, id: &str, index: usize, bytes: Vec<u8>) -> Result<()> {
        match self {
            Self::Folder(folder) => {
                let folder = folder.join(id);
                tokio::fs::create_dir_all(&folder)
                    .await
                    .map_err(|e| failed("keep", e))?;
                tokio::fs::write(folder.join(file_name(index)), bytes)
                    .await
                    .map_err(|e| failed("keep", e))
            }
            Self::Bucket { store, prefix, .. } => store
                .put(&Self::object(prefix, id, index), bytes.into())
                .await
                .map(|_| ())
                .map_err(|e| failed("store", e)),
        }
    }

    /// Whether chunk `index` of statement `id` is still kept.
    pub(crate) async fn holds(&self, id: &str, index: usize) -> Result<bool> {
        match self {
            Self::Folder(folder) => tokio::fs::try_exists(folder.join(id).join(file_name(index)))
                .await
                .map_err(|e| failed("find", e)),
            Self::Bucket { store, prefix, .. } => {
                match store.head(&Self::object(prefix, id, index)).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(failed("find", e)),
                }
            }
        }
    }

    /// Chunk `index` of statement `id`, which is no longer kept afterwards; None when it is not
    /// kept (already taken).
    pub(crate) async fn take(&self, id: &str, index: usize) -> Result<Option<Vec<u8>>> {
        match self {
            Self::Folder(folder) => {
                let path = folder.join(id).join(file_name(index));
                let bytes = match tokio::fs::read(&path).await {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(failed("read", e)),
                };
                if let Err(err) = tokio::fs::remove_file(&path).await {
                    tracing::warn!(error = %err, path = %path.display(), "cannot remove a fetched result chunk");
                }
                Ok(Some(bytes))
            }
            Self::Bucket { store, prefix, .. } => {
                let object = Self::object(prefix, id, index);
                let bytes = match store.get(&object).await {
                    Ok(got) => got.bytes().await.map_err(|e| failed("read", e))?,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(failed("read", e)),
                };
                if let Err(err) = store.delete(&object).await {
                    tracing::warn!(error = %err, %object, "cannot remove a fetched result chunk");
                }
                Ok(Some(bytes.to_vec()))
            }
        }
    }

    /// Removes whatever is kept of statement `id`.
    pub(crate) async fn remove(&self, id: &str) {
        match self {
            Self::Folder(folder) => remove_folder(&folder.join(id)).await,
            Self::Bucket {
                store,
                prefix,
                staging,
            } => {
                remove_folder(&staging.join(id)).await;
                let listed = store
                    .list(Some(&prefix.clone().join(id)))
                    .map_ok(|meta| meta.location)
                    .boxed();
                if let Err(err) = store.delete_stream(listed).try_collect::<Vec<_>>().await {
                    tracing::warn!(error = %err, statement_id = id, "cannot remove a statement's result");
                }
            }
        }
    }
}

async fn remove_folder(folder: &std::path::Path) {
    if let Err(err) = tokio::fs::remove_dir_all(folder).await
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %err, folder = %folder.display(), "cannot remove a statement's result files");
    }
}
