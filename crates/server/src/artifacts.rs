//! Artifact storage behind `object_store`: a local folder or an S3-compatible bucket, chosen by
//! the URL scheme of `--artifact-root`. Keys are `<workspace>/<path>`; paths from clients are
//! checked so nothing escapes its workspace.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tarn_core::{Error, Result};

#[derive(Debug, Clone)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
    /// Whether the destination is an object store (multipart uploads are offered only then).
    pub is_object_store: bool,
}

/// One entry of a listing, relative to the listed folder.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
}

fn storage_error(err: object_store::Error) -> Error {
    match err {
        object_store::Error::NotFound { path, .. } => {
            Error::not_found(format!("Artifact '{path}' does not exist"))
        }
        other => Error::internal(format!("artifact storage error: {other}")),
    }
}

/// Rejects `..`, absolute paths, NUL, backslashes and empty segments in a client path.
pub fn validate_relative_path(path: &str) -> Result<()> {
    let bad = path.starts_with('/')
        || path.contains('\0')
        || path.contains('\\')
        || path.split('/').any(|part| part == ".." || part == ".")
        || (path.len() >= 2 && path.as_bytes()[1] == b':');
    if bad {
        return Err(Error::invalid(format!(
            "Invalid artifact path: '{}'",
            path.replace('\0', "\\0")
        )));
    }
    Ok(())
}

impl ArtifactStore {
    /// `file:///dir`, a plain path, or `s3://bucket/prefix` (credentials and endpoint from the
    /// usual AWS_* environment variables).
    pub fn open(root: &str) -> Result<Self> {
        if root.starts_with("s3://") {
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_url(root)
                .build()
                .map_err(|e| Error::invalid(format!("cannot open artifact root '{root}': {e}")))?;
            let prefix = root
                .trim_start_matches("s3://")
                .split_once('/')
                .map(|(_, p)| p.trim_matches('/').to_string());
            let inner: Arc<dyn ObjectStore> = match prefix.filter(|p| !p.is_empty()) {
                Some(prefix) => Arc::new(object_store::prefix::PrefixStore::new(store, prefix)),
                None => Arc::new(store),
            };
            return Ok(Self {
                inner,
                is_object_store: true,
            });
        }
        let dir = root.strip_prefix("file://").unwrap_or(root);
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::internal(format!("cannot create artifact root '{dir}': {e}")))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| Error::internal(format!("cannot open artifact root '{dir}': {e}")))?
            .with_automatic_cleanup(true);
        Ok(Self {
            inner: Arc::new(store),
            is_object_store: false,
        })
    }

    fn key(workspace: &str, path: &str) -> Result<ObjectPath> {
        validate_relative_path(path)?;
        let trimmed = path.trim_matches('/');
        let full = if trimmed.is_empty() {
            workspace.to_string()
        } else {
            format!("{workspace}/{trimmed}")
        };
        ObjectPath::parse(&full)
            .map_err(|e| Error::invalid(format!("Invalid artifact path '{path}': {e}")))
    }

    /// Streams `body` into the object at `path`, in parts for large uploads.
    pub async fn put_stream<S>(&self, workspace: &str, path: &str, body: S) -> Result<u64>
    where
        S: futures::Stream<Item = std::result::Result<bytes::Bytes, std::io::Error>> + Unpin,
    {
        let key = Self::key(workspace, path)?;
        if path.trim_matches('/').is_empty() {
            return Err(Error::invalid("An artifact upload needs a file path"));
        }
        let mut writer = object_store::buffered::BufWriter::new(self.inner.clone(), key);
        let mut reader = tokio_util::io::StreamReader::new(body);
        let written = tokio::io::copy(&mut reader, &mut writer)
            .await
            .map_err(|e| Error::invalid(format!("artifact upload failed: {e}")))?;
        tokio::io::AsyncWriteExt::shutdown(&mut writer)
            .await
            .map_err(|e| Error::internal(format!("artifact upload failed: {e}")))?;
        Ok(written)
    }

    /// A byte stream of the object at `path` and its size.
    pub async fn get_stream(
        &self,
        workspace: &str,
        path: &str,
    ) -> Result<(
        u64,
        futures::stream::BoxStream<'static, std::result::Result<bytes::Bytes, std::io::Error>>,
    )> {
        let key = Self::key(workspace, path)?;
        let result = self.inner.get(&key).await.map_err(storage_error)?;
        let size = result.meta.size;
        let stream = result.into_stream().map_err(std::io::Error::other).boxed();
        Ok((size, stream))
    }

    /// The direct children of folder `path`, relative to it.
    pub async fn list(&self, workspace: &str, path: &str) -> Result<Vec<FileInfo>> {
        let key = Self::key(workspace, path)?;
        let listing = self
            .inner
            .list_with_delimiter(Some(&key))
            .await
            .map_err(storage_error)?;
        let prefix_len = key.parts().count();
        let relative = |p: &ObjectPath| {
            p.parts()
                .skip(prefix_len)
                .map(|part| part.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/")
        };
        let mut files: Vec<FileInfo> = listing
            .common_prefixes
            .iter()
            .map(|p| FileInfo {
                path: relative(p),
                is_dir: true,
                file_size: None,
            })
            .chain(listing.objects.iter().map(|o| FileInfo {
                path: relative(&o.location),
                is_dir: false,
                file_size: Some(o.size),
            }))
            .filter(|f| !f.path.is_empty())
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Deletes the object at `path`, or everything below it when it is a folder.
    pub async fn delete(&self, workspace: &str, path: &str) -> Result<()> {
        let key = Self::key(workspace, path)?;
        let mut under: Vec<ObjectPath> = self
            .inner
            .list(Some(&key))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(storage_error)?;
        if under.is_empty() {
            under.push(key);
        }
        for location in under {
            match self.inner.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(storage_error(err)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_rejected() {
        for bad in [
            "../x",
            "a/../../b",
            "/etc/passwd",
            "a\0b",
            "a\\..\\b",
            "C:/x",
            "./a",
        ] {
            assert!(validate_relative_path(bad).is_err(), "{bad:?}");
        }
        for good in [
            "1/abc/artifacts/model/MLmodel",
            "1/abc/artifacts",
            "a b/c.txt",
        ] {
            assert!(validate_relative_path(good).is_ok(), "{good:?}");
        }
    }

    #[tokio::test]
    async fn round_trip_list_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ArtifactStore::open(&dir.path().to_string_lossy()).expect("open");
        let body = futures::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"hello ")),
            Ok(bytes::Bytes::from_static(b"world")),
        ]);
        assert_eq!(
            store
                .put_stream("dev", "1/r/artifacts/d/f.txt", body)
                .await
                .expect("put"),
            11
        );
        let listed = store.list("dev", "1/r/artifacts").await.expect("list");
        assert_eq!(
            listed,
            vec![FileInfo {
                path: "d".into(),
                is_dir: true,
                file_size: None
            }]
        );
        let (size, stream) = store
            .get_stream("dev", "1/r/artifacts/d/f.txt")
            .await
            .expect("get");
        let bytes: Vec<bytes::Bytes> = stream.try_collect().await.expect("read");
        assert_eq!((size, bytes.concat()), (11, b"hello world".to_vec()));
        // Another workspace does not see it.
        assert!(
            store
                .get_stream("prod", "1/r/artifacts/d/f.txt")
                .await
                .is_err()
        );
        store
            .delete("dev", "1/r/artifacts/d")
            .await
            .expect("delete");
        assert!(
            store
                .list("dev", "1/r/artifacts")
                .await
                .expect("list")
                .is_empty()
        );
    }
}
