//! Artifact storage behind `object_store`: a local folder or an S3-compatible bucket, chosen by
//! the URL scheme of `--artifact-root`. Keys are `<workspace>/<path>`; paths from clients are
//! checked so nothing escapes its workspace.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tarn_core::{Error, ErrorCode, Result};

use tarn_core::signed_urls::UrlSigner;

#[derive(Debug, Clone)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
    /// Set when the destination is an object store: multipart uploads are offered only then.
    multipart: Option<S3Multipart>,
    /// The folder of a local artifact root, where registry copies are made in one go on the
    /// blocking pool (through `object_store` every file operation is a hand-off of its own).
    local_root: Option<std::path::PathBuf>,
}

/// Client-driven multipart uploads on S3: parts go straight into an S3 multipart upload, so a
/// large file is never held whole in memory or on the server's disk.
#[derive(Debug, Clone)]
struct S3Multipart {
    store: Arc<AmazonS3>,
    /// The `prefix` of `s3://bucket/prefix`, which the `PrefixStore` adds for other calls.
    prefix: Option<String>,
}

/// The message MLflow's client looks for to fall back to a plain upload.
pub const MULTIPART_UNSUPPORTED: &str =
    "Multipart upload is not supported for the current artifact repository";

/// One entry of a listing, relative to the listed folder.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
}

/// Milliseconds since the epoch `age` ago.
fn millis_ago(age: std::time::Duration) -> i64 {
    tarn_core::ids::now_millis() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX)
}

/// A failure of artifact storage. It becomes the wire error in one place
/// (`From<ArtifactError> for Error`): named by the path the client gave, never by where the
/// server keeps it; the full error stays underneath for the server's log.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The object store failed on the artifact the client calls `shown`.
    #[error("artifact storage failed for '{shown}': {source}")]
    Storage {
        shown: String,
        source: object_store::Error,
    },
    /// The local store could not `what` (create, write, read...) a file at `path`.
    #[error("artifact storage cannot {what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl From<ArtifactError> for Error {
    fn from(err: ArtifactError) -> Self {
        match &err {
            ArtifactError::Storage {
                shown,
                source: object_store::Error::NotFound { .. },
            } => Error::not_found(format!("Artifact '{shown}' does not exist")),
            ArtifactError::Storage { shown, source } if holds_nothing(source) => {
                Error::not_found(format!("Artifact '{shown}' does not exist"))
            }
            ArtifactError::Storage { shown, .. } => Error::internal(format!(
                "Artifact storage failed for '{shown}' (the server's log has the cause)"
            )),
            ArtifactError::File { what, source, .. } => Error::internal(format!(
                "Artifact storage failed: cannot {what} a file ({}; the server's log has the path)",
                source.kind()
            )),
        }
        .with_source(err)
    }
}

/// Whether the store failed because nothing can be stored at the path: it runs through a file
/// (`a/b` where `a` is a file), or is longer than the file system names (the root in front
/// of an accepted path can pass its limit). That is a missing artifact, not a failure.
fn holds_nothing(source: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source);
    while let Some(err) = cause {
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::NotADirectory | std::io::ErrorKind::InvalidFilename
            )
        }) {
            return true;
        }
        cause = err.source();
    }
    false
}

fn storage_error(source: object_store::Error, shown: &str) -> Error {
    ArtifactError::Storage {
        shown: shown.to_string(),
        source,
    }
    .into()
}

/// The longest name of one folder or file in an artifact path (most file systems' limit).
const MAX_PATH_SEGMENT: usize = 255;
/// The longest artifact path.
const MAX_PATH: usize = 4096;

/// Rejects `..`, absolute paths, names ending in `:` or `|`, NUL, backslashes, empty segments and
/// names longer than file systems take in a client path.
pub fn validate_relative_path(path: &str) -> Result<()> {
    let shown = || path.replace('\0', "\\0");
    let bad = path.starts_with('/')
        || path.contains('\0')
        || path.contains('\\')
        || path
            .split('/')
            .any(|part| part == ".." || part == "." || ends_like_a_drive(part))
        || (path.len() >= 2 && path.as_bytes()[1] == b':');
    if bad {
        return Err(Error::invalid(format!(
            "Invalid artifact path: '{}'",
            shown()
        )));
    }
    if path.len() > MAX_PATH || path.split('/').any(|part| part.len() > MAX_PATH_SEGMENT) {
        return Err(Error::invalid(format!(
            "Invalid artifact path: '{}': names are limited to {MAX_PATH_SEGMENT} bytes and \
             paths to {MAX_PATH}",
            shown().chars().take(300).collect::<String>()
        )));
    }
    Ok(())
}

/// A name ending in `:` or `|` (`C:`, `notes|`): file URLs, and so `object_store`'s paths on
/// local disk, read it as a drive and look for a folder, so such a file is written, never read.
fn ends_like_a_drive(part: &str) -> bool {
    part.ends_with([':', '|'])
}

/// Refuses to write a file whose name `object_store` keeps for an upload in progress
/// (`name#<digits>`): on local disk it hides such files from listings and reads, so the file
/// could be written but never read back. Folders may have such names.
fn check_file_name(path: &str) -> Result<()> {
    let name = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    if is_staging_name(name) {
        return Err(Error::invalid(format!(
            "Invalid artifact path: '{}': a file name ending in '#' and digits ('{name}') is \
             reserved for uploads in progress",
            path.replace('\0', "\\0")
        )));
    }
    Ok(())
}

/// `name#123`: an upload being written, in `object_store`'s convention.
fn is_staging_name(name: &str) -> bool {
    name.split_once('#')
        .is_some_and(|(_, suffix)| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
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
            let prefix = prefix.filter(|p| !p.is_empty());
            let store = Arc::new(store);
            let inner: Arc<dyn ObjectStore> = match &prefix {
                Some(prefix) => Arc::new(object_store::prefix::PrefixStore::new(
                    store.clone(),
                    prefix.as_str(),
                )),
                None => store.clone(),
            };
            return Ok(Self {
                inner,
                multipart: Some(S3Multipart { store, prefix }),
                local_root: None,
            });
        }
        let dir = root.strip_prefix("file://").unwrap_or(root);
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::internal_from(format!("cannot create artifact root '{dir}'"), e))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| Error::internal_from(format!("cannot open artifact root '{dir}'"), e))?
            .with_automatic_cleanup(true);
        Ok(Self {
            inner: Arc::new(store),
            multipart: None,
            local_root: Some(std::path::PathBuf::from(dir)),
        })
    }

    /// Whether the destination is an object store, where clients may upload in parts.
    pub fn supports_multipart(&self) -> bool {
        self.multipart.is_some()
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

    /// The key of a file to read: a name kept for uploads in progress holds no artifact.
    fn file_key(workspace: &str, path: &str) -> Result<ObjectPath> {
        let key = Self::key(workspace, path)?;
        if key.filename().is_some_and(is_staging_name) {
            return Err(Error::not_found(format!(
                "Artifact '{path}' does not exist"
            )));
        }
        Ok(key)
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
        check_file_name(path)?;
        if let Some(root) = &self.local_root {
            return local::put_stream(&Self::local_path(root, &key), path, body).await;
        }
        let mut writer = object_store::buffered::BufWriter::new(self.inner.clone(), key);
        let mut reader = tokio_util::io::StreamReader::new(body);
        let written = tokio::io::copy(&mut reader, &mut writer)
            .await
            .map_err(|e| Error::invalid(format!("artifact upload failed: {e}")))?;
        tokio::io::AsyncWriteExt::shutdown(&mut writer)
            .await
            .map_err(|e| Error::internal_from("artifact upload failed", e))?;
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
        let key = Self::file_key(workspace, path)?;
        let result = self
            .inner
            .get(&key)
            .await
            .map_err(|e| storage_error(e, path))?;
        let size = result.meta.size;
        let stream = result.into_stream().map_err(std::io::Error::other).boxed();
        Ok((size, stream))
    }

    /// The whole object at `path`; refused when larger than `limit` bytes.
    pub async fn get_bytes(&self, workspace: &str, path: &str, limit: u64) -> Result<bytes::Bytes> {
        let key = Self::file_key(workspace, path)?;
        let result = self
            .inner
            .get(&key)
            .await
            .map_err(|e| storage_error(e, path))?;
        if result.meta.size > limit {
            return Err(Error::invalid(format!(
                "{path} is {} bytes, more than the {limit} tarn reads",
                result.meta.size
            )));
        }
        result.bytes().await.map_err(|e| storage_error(e, path))
    }

    /// The direct children of folder `path`, relative to it.
    pub async fn list(&self, workspace: &str, path: &str) -> Result<Vec<FileInfo>> {
        let key = Self::key(workspace, path)?;
        let listing = self
            .inner
            .list_with_delimiter(Some(&key))
            .await
            .map_err(|e| storage_error(e, path))?;
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

    /// The folders directly under `path` (workspace-relative) whose newest file is older than
    /// `age`, relative to the workspace.
    pub async fn folders_untouched_for(
        &self,
        workspace: &str,
        path: &str,
        age: std::time::Duration,
    ) -> Result<Vec<String>> {
        let cutoff = millis_ago(age);
        let mut untouched = Vec::new();
        for folder in self.list(workspace, path).await? {
            if !folder.is_dir {
                continue;
            }
            let folder = format!("{}/{}", path.trim_matches('/'), folder.path);
            let newest = self
                .inner
                .list(Some(&Self::key(workspace, &folder)?))
                .try_fold(None, |newest: Option<i64>, meta| async move {
                    Ok(newest.max(Some(meta.last_modified.timestamp_millis())))
                })
                .await
                .map_err(|e| storage_error(e, &folder))?;
            if newest.is_none_or(|newest| newest < cutoff) {
                untouched.push(folder);
            }
        }
        Ok(untouched)
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
            .map_err(|e| storage_error(e, path))?;
        if under.is_empty() {
            under.push(key);
        }
        for location in under {
            match self.inner.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(storage_error(err, path)),
            }
        }
        Ok(())
    }
}

/// Registry copies: a model version owns a copy of its source's files, so deleting the run or
/// its artifacts never breaks a version.
impl ArtifactStore {
    /// Copies every file under `from` to `to` (both workspace-relative) and returns the number
    /// of files and a SHA-256 checksum over their relative paths, sizes and contents. The copy
    /// is the store's own (a hard link on local disk, where writes replace files and never
    /// change them in place; a server-side copy on S3), and the checksum is taken from the copy,
    /// so it describes what the version holds even if the source changes meanwhile.
    pub async fn copy_tree_with_checksum(
        &self,
        workspace: &str,
        from: &str,
        to: &str,
    ) -> Result<(usize, String)> {
        let Some(root) = &self.local_root else {
            return self.copy_tree_through_store(workspace, from, to).await;
        };
        let from = Self::local_path(root, &Self::key(workspace, from)?);
        let to = Self::local_path(root, &Self::key(workspace, to)?);
        let found = local::files_under(&from)?;
        // A model folder of a few small files is a handful of metadata calls (their digests
        // were recorded at upload): cheaper here than a hand-off to the blocking pool and back.
        // Anything larger may have to be read, and is copied there.
        let bytes: u64 = found.iter().map(|file| file.size).sum();
        if found.len() <= INLINE_COPY_FILES && bytes <= INLINE_COPY_BYTES {
            return local::link_with_checksum(found, &to);
        }
        tokio::task::spawn_blocking(move || local::link_with_checksum(found, &to))
            .await
            .map_err(|e| Error::internal_from("registry copy failed", e))?
    }

    /// Where `key` lives under a local artifact root.
    fn local_path(root: &std::path::Path, key: &ObjectPath) -> std::path::PathBuf {
        key.parts()
            .fold(root.to_path_buf(), |dir, part| dir.join(part.as_ref()))
    }

    /// `copy_tree_with_checksum` through `object_store`'s listing, copy and reads.
    async fn copy_tree_through_store(
        &self,
        workspace: &str,
        from: &str,
        to: &str,
    ) -> Result<(usize, String)> {
        use sha2::Digest;
        let source = Self::key(workspace, from)?;
        let prefix_len = source.parts().count();
        let mut files: Vec<(String, ObjectPath)> = self
            .inner
            .list(Some(&source))
            .map_ok(|meta| {
                let relative = meta
                    .location
                    .parts()
                    .skip(prefix_len)
                    .map(|part| part.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/");
                (relative, meta.location)
            })
            .try_collect()
            .await
            .map_err(|e| storage_error(e, from))?;
        files.sort();
        let count = files.len();
        let digests: Vec<String> = futures::stream::iter(files)
            .map(|(relative, location)| async move {
                let target = Self::key(workspace, &format!("{to}/{relative}"))?;
                self.inner
                    .copy(&location, &target)
                    .await
                    .map_err(|e| storage_error(e, from))?;
                let mut stream = self
                    .inner
                    .get(&target)
                    .await
                    .map_err(|e| storage_error(e, from))?
                    .into_stream();
                let mut digest = sha2::Sha256::new();
                let mut size: u64 = 0;
                while let Some(chunk) = stream
                    .try_next()
                    .await
                    .map_err(|e| storage_error(e, from))?
                {
                    digest.update(&chunk);
                    size += chunk.len() as u64;
                }
                Ok::<_, Error>(format!(
                    "{relative}\0{size}\0{}\n",
                    hex::encode(digest.finalize())
                ))
            })
            .buffered(COPY_CONCURRENCY)
            .try_collect()
            .await?;
        let mut manifest = sha2::Sha256::new();
        for line in &digests {
            manifest.update(line);
        }
        Ok((count, hex::encode(manifest.finalize())))
    }
}

/// Files of one registry copy in flight at once.
const COPY_CONCURRENCY: usize = 4;

/// The largest local registry copy made on the request's own thread: files, and bytes (what
/// hashing a file without a recorded digest could have to read).
const INLINE_COPY_FILES: usize = 64;
const INLINE_COPY_BYTES: u64 = 1 << 20;

/// Local artifact storage where `object_store` would cost more: uploads and registry copies.
/// Registry copies give the same result as through `object_store`: hard links, and the
/// checksum over `<relative path>\0<size>\0<sha256>\n` lines in path order, skipping the
/// staging files of uploads in progress as its listing does.
mod local {
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};

    use futures::TryStreamExt;
    use sha2::Digest;
    use tarn_core::{Error, Result};
    use tokio::io::AsyncWriteExt;

    /// The extended attribute holding a file's SHA-256, as `<size>:<mtime ns>:<hex digest>`:
    /// valid while the file keeps the size and modification time it was hashed at. Uploads
    /// replace files (a new inode) and never change them in place, so a digest recorded when
    /// the bytes arrived spares every registry copy of the file a re-read.
    const DIGEST_ATTRIBUTE: &str = "user.tarn.sha256";

    /// What an upload is buffered to before each write to disk.
    const UPLOAD_BUFFER: usize = 1 << 20;

    /// The server's paths stay in its log, out of the answer.
    fn io_error(what: &'static str, path: &Path, source: std::io::Error) -> Error {
        crate::ArtifactError::File {
            what,
            path: path.to_path_buf(),
            source,
        }
        .into()
    }

    fn stamp(metadata: &std::fs::Metadata) -> String {
        format!(
            "{}:{}",
            metadata.len(),
            metadata.mtime() as i128 * 1_000_000_000 + metadata.mtime_nsec() as i128
        )
    }

    /// Records `digest` on the open file. Best effort: where the filesystem keeps no extended
    /// attributes, copies hash the file instead.
    fn record_digest(file: &std::fs::File, digest: &str) {
        if let Ok(metadata) = file.metadata() {
            let value = format!("{}:{digest}", stamp(&metadata));
            if let Err(err) = xattr::FileExt::set_xattr(file, DIGEST_ATTRIBUTE, value.as_bytes()) {
                tracing::debug!(error = %err, "artifact digest not recorded");
            }
        }
    }

    /// The digest recorded on the open file, if it still describes its content.
    fn recorded_digest(file: &std::fs::File, metadata: &std::fs::Metadata) -> Option<String> {
        let value = xattr::FileExt::get_xattr(file, DIGEST_ATTRIBUTE).ok()??;
        let value = String::from_utf8(value).ok()?;
        let (recorded_stamp, digest) = value.rsplit_once(':')?;
        (recorded_stamp == stamp(metadata)).then(|| digest.to_string())
    }

    /// Streams an upload into a staging file beside `target` (hidden from listings and copies,
    /// as `object_store`'s own are), hashing it on the way; records the digest on the file and
    /// renames it into place, so readers see the whole file or the one before. `shown` is the
    /// path as the client gave it, for errors.
    pub async fn put_stream<S>(target: &Path, shown: &str, mut body: S) -> Result<u64>
    where
        S: futures::Stream<Item = std::result::Result<bytes::Bytes, std::io::Error>> + Unpin,
    {
        let parent = target
            .parent()
            .ok_or_else(|| Error::invalid("An artifact upload needs a file path"))?;
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| match e.kind() {
                // A file is stored where the path needs a folder.
                std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => {
                    Error::invalid(format!(
                        "Cannot store '{shown}': a file is stored where its path has a folder"
                    ))
                }
                _ => io_error("create", parent, e),
            })?;
        // Named by a number alone, so a name at the file system's length limit still has room.
        let mut staging = Staging {
            path: parent.join(format!("#{}", rand::random::<u64>())),
            renamed: false,
        };
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging.path)
            .await
            .map_err(|e| io_error("create", &staging.path, e))?;
        let mut writer = tokio::io::BufWriter::with_capacity(UPLOAD_BUFFER, file);
        let mut digest = sha2::Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| Error::invalid(format!("artifact upload failed: {e}")))?
        {
            digest.update(&chunk);
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| io_error("write", &staging.path, e))?;
            size += chunk.len() as u64;
        }
        writer
            .flush()
            .await
            .map_err(|e| io_error("write", &staging.path, e))?;
        let file = writer.into_inner().into_std().await;
        record_digest(&file, &hex::encode(digest.finalize()));
        tokio::fs::rename(&staging.path, target)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::IsADirectory | std::io::ErrorKind::DirectoryNotEmpty => {
                    Error::invalid(format!("Cannot store '{shown}': a folder is stored there"))
                }
                _ => io_error("rename", &staging.path, e),
            })?;
        staging.renamed = true;
        Ok(size)
    }

    /// An upload's staging file, removed unless renamed into place: on an error, and when the
    /// request is dropped mid-upload (a client that goes away leaves nothing behind).
    struct Staging {
        path: PathBuf,
        renamed: bool,
    }

    impl Drop for Staging {
        fn drop(&mut self) {
            if !self.renamed {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }

    /// A file of a folder being copied.
    pub struct FoundFile {
        /// Relative to the folder, with `/`.
        relative: String,
        path: PathBuf,
        pub size: u64,
    }

    /// The files under `dir`, in path order; none when it is absent.
    pub fn files_under(dir: &Path) -> Result<Vec<FoundFile>> {
        let mut found = Vec::new();
        collect_files(dir, dir, &mut found)?;
        found.sort_by(|a, b| a.relative.cmp(&b.relative));
        Ok(found)
    }

    fn collect_files(root: &Path, dir: &Path, found: &mut Vec<FoundFile>) -> Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(io_error("list", dir, err)),
        };
        for entry in entries {
            let path = entry.map_err(|e| io_error("list", dir, e))?.path();
            let metadata = std::fs::metadata(&path).map_err(|e| io_error("read", &path, e))?;
            if metadata.is_dir() {
                collect_files(root, &path, found)?;
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .ok()
                .and_then(|r| r.to_str())
                .ok_or_else(|| {
                    tracing::error!(path = %path.display(), "artifact file name is not UTF-8");
                    Error::internal("Artifact storage holds a file name that is not UTF-8")
                })?;
            if !relative
                .rsplit('/')
                .next()
                .is_some_and(crate::is_staging_name)
            {
                found.push(FoundFile {
                    relative: relative.to_string(),
                    size: metadata.len(),
                    path,
                });
            }
        }
        Ok(())
    }

    /// Links `files` under `to`; returns their number and the checksum of the copy.
    pub fn link_with_checksum(files: Vec<FoundFile>, to: &Path) -> Result<(usize, String)> {
        let mut manifest = sha2::Sha256::new();
        // Files come in path order: a folder is created once, before its first file.
        let mut created: Option<PathBuf> = None;
        for file in &files {
            let target = to.join(&file.relative);
            if let Some(parent) = target.parent()
                && created.as_deref() != Some(parent)
            {
                std::fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
                created = Some(parent.to_path_buf());
            }
            link_or_copy(&file.path, &target)?;
            // The checksum is of the copy: what the version holds even if the source is
            // replaced meanwhile.
            let (size, digest) = digest_of(&target)?;
            manifest.update(format!("{}\0{size}\0{digest}\n", file.relative));
        }
        Ok((files.len(), hex::encode(manifest.finalize())))
    }

    /// A hard link to `from` at `to`; a copy where the file system refuses one more link
    /// (ext4 allows 65,000 per file: a run's model registered as that many versions) or the
    /// two lie on different file systems.
    fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
        match std::fs::hard_link(from, to) {
            Ok(()) => Ok(()),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::TooManyLinks | std::io::ErrorKind::CrossesDevices
                ) =>
            {
                tracing::debug!(error = %err, path = %from.display(), "copying instead of linking");
                std::fs::copy(from, to).map_err(|e| io_error("copy", to, e))?;
                Ok(())
            }
            Err(err) => Err(io_error("link", to, err)),
        }
    }

    /// The size and SHA-256 of a file: recorded, or read (and then recorded).
    fn digest_of(path: &Path) -> Result<(u64, String)> {
        let mut file = std::fs::File::open(path).map_err(|e| io_error("read", path, e))?;
        let metadata = file.metadata().map_err(|e| io_error("read", path, e))?;
        if let Some(digest) = recorded_digest(&file, &metadata) {
            return Ok((metadata.len(), digest));
        }
        let mut digest = sha2::Sha256::new();
        let size = std::io::copy(&mut file, &mut digest).map_err(|e| io_error("read", path, e))?;
        let digest = hex::encode(digest.finalize());
        record_digest(&file, &digest);
        Ok((size, digest))
    }
}

/// Multipart uploads: `create` returns the upload id, each part is stored as it arrives and
/// answers its ETag, `complete` assembles the parts in order, `abort` drops them.
impl ArtifactStore {
    fn multipart_target(&self, workspace: &str, path: &str) -> Result<(&S3Multipart, ObjectPath)> {
        let multipart = self
            .multipart
            .as_ref()
            .ok_or_else(|| Error::new(ErrorCode::NotImplemented, MULTIPART_UNSUPPORTED))?;
        if path.trim_matches('/').is_empty() {
            return Err(Error::invalid("A multipart upload needs a file path"));
        }
        let key = Self::key(workspace, path)?;
        check_file_name(path)?;
        let full = match &multipart.prefix {
            Some(prefix) => ObjectPath::parse(prefix)
                .map_err(|e| Error::internal_from("bad artifact prefix", e))?
                .parts()
                .chain(key.parts())
                .collect(),
            None => key,
        };
        Ok((multipart, full))
    }

    pub async fn create_multipart(&self, workspace: &str, path: &str) -> Result<String> {
        let (multipart, key) = self.multipart_target(workspace, path)?;
        multipart
            .store
            .create_multipart(&key)
            .await
            .map_err(|e| storage_error(e, path))
    }

    /// Stores part `part_number` (1-based, as in S3 and MLflow) and returns its ETag.
    pub async fn put_part(
        &self,
        workspace: &str,
        path: &str,
        upload_id: &str,
        part_number: usize,
        data: bytes::Bytes,
    ) -> Result<String> {
        let (multipart, key) = self.multipart_target(workspace, path)?;
        let part_index = part_number
            .checked_sub(1)
            .ok_or_else(|| Error::invalid("Part numbers start at 1"))?;
        let part = multipart
            .store
            .put_part(
                &key,
                &upload_id.to_string(),
                part_index,
                PutPayload::from(data),
            )
            .await
            .map_err(|e| storage_error(e, path))?;
        Ok(part.content_id)
    }

    /// Assembles the upload from `etags`, ordered by part number.
    pub async fn complete_multipart(
        &self,
        workspace: &str,
        path: &str,
        upload_id: &str,
        etags: Vec<String>,
    ) -> Result<()> {
        let (multipart, key) = self.multipart_target(workspace, path)?;
        let parts = etags
            .into_iter()
            .map(|content_id| PartId { content_id })
            .collect();
        multipart
            .store
            .complete_multipart(&key, &upload_id.to_string(), parts)
            .await
            .map_err(|e| storage_error(e, path))?;
        Ok(())
    }

    pub async fn abort_multipart(
        &self,
        workspace: &str,
        path: &str,
        upload_id: &str,
    ) -> Result<()> {
        let (multipart, key) = self.multipart_target(workspace, path)?;
        multipart
            .store
            .abort_multipart(&key, &upload_id.to_string())
            .await
            .map_err(|e| storage_error(e, path))
    }
}

/// Signs and checks the part URLs of multipart uploads, with the servers' shared key: a part
/// may reach any replica.
pub struct PartUrls {
    signer: UrlSigner,
}

impl PartUrls {
    pub fn new(signer: UrlSigner) -> Self {
        Self { signer }
    }

    /// The absolute URL a client PUTs part `part_number` to.
    pub fn url(
        &self,
        base: &str,
        workspace: &str,
        path: &str,
        upload_id: &str,
        part_number: u64,
        expires: i64,
    ) -> Result<String> {
        let signature = self.signer.sign(
            &[workspace, path, upload_id, &part_number.to_string()],
            expires,
        )?;
        let mut url = url::Url::parse(base)
            .map_err(|e| Error::invalid(format!("bad server address '{base}': {e}")))?;
        url.path_segments_mut()
            .map_err(|()| Error::invalid(format!("bad server address '{base}'")))?
            .clear()
            .extend([
                "ws",
                workspace,
                "api",
                "2.0",
                "mlflow-artifacts",
                "mpu",
                "part",
            ])
            .extend(path.split('/'));
        url.query_pairs_mut()
            .append_pair("upload_id", upload_id)
            .append_pair("part_number", &part_number.to_string())
            .append_pair("expires", &expires.to_string())
            .append_pair("signature", &signature);
        Ok(url.into())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        &self,
        workspace: &str,
        path: &str,
        upload_id: &str,
        part_number: u64,
        expires: i64,
        signature: &str,
        now_secs: i64,
    ) -> Result<()> {
        let fields = [workspace, path, upload_id, &part_number.to_string()];
        if self
            .signer
            .is_valid(&fields, expires, signature, now_secs)?
        {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::PermissionDenied,
                "Invalid or expired part URL",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ext4 allows a file 65,000 links: a run's model registered as more versions than that
    /// gets copies, with the same checksum, rather than failing.
    #[test]
    fn a_file_out_of_links_is_copied() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("dir");
        let source = dir.path().join("run/model");
        std::fs::create_dir_all(&source).expect("source");
        std::fs::write(source.join("model.pkl"), b"weights").expect("file");
        let (_, linked) = local::link_with_checksum(
            local::files_under(&source).expect("files"),
            &dir.path().join("v1"),
        )
        .expect("a linked copy");
        let links = dir.path().join("links");
        std::fs::create_dir(&links).expect("links");
        let refused = (0..70_000).find_map(|i| {
            std::fs::hard_link(source.join("model.pkl"), links.join(i.to_string()))
                .err()
                .map(|err| err.kind())
        });
        if refused != Some(std::io::ErrorKind::TooManyLinks) {
            // A file system without ext4's limit (tmpfs, XFS) has nothing to fall back from.
            return;
        }
        let copy = dir.path().join("v2");
        let (files, copied) =
            local::link_with_checksum(local::files_under(&source).expect("files"), &copy)
                .expect("a copy when no link is left");
        assert_eq!((files, &copied), (1, &linked), "the same checksum");
        assert_eq!(
            std::fs::read(copy.join("model.pkl")).expect("read"),
            b"weights"
        );
        let metadata = std::fs::metadata(copy.join("model.pkl")).expect("metadata");
        assert_eq!(metadata.nlink(), 1, "a file of its own");
    }

    #[test]
    fn part_urls_bind_every_field() {
        let urls = PartUrls::new(UrlSigner::random());
        let url = urls
            .url(
                "http://h:5000",
                "dev",
                "1/r/artifacts/a b.bin",
                "up1",
                2,
                100,
            )
            .expect("url");
        assert!(
            url.starts_with("http://h:5000/ws/dev/api/2.0/mlflow-artifacts/mpu/part/1/r/artifacts/a%20b.bin?upload_id=up1&part_number=2&expires=100&signature="),
            "{url}"
        );
        let signature = url.rsplit_once("signature=").expect("signed").1;
        let check = |ws, path, upload, part, expires, now| {
            urls.verify(ws, path, upload, part, expires, signature, now)
                .is_ok()
        };
        assert!(check("dev", "1/r/artifacts/a b.bin", "up1", 2, 100, 99));
        assert!(!check("dev", "1/r/artifacts/a b.bin", "up1", 2, 100, 101));
        assert!(!check("prod", "1/r/artifacts/a b.bin", "up1", 2, 100, 99));
        assert!(!check("dev", "1/r/artifacts/other", "up1", 2, 100, 99));
        assert!(!check("dev", "1/r/artifacts/a b.bin", "up2", 2, 100, 99));
        assert!(!check("dev", "1/r/artifacts/a b.bin", "up1", 3, 100, 99));
        assert!(!check("dev", "1/r/artifacts/a b.bin", "up1", 2, 1000, 99));
        assert!(
            PartUrls::new(UrlSigner::random())
                .verify("dev", "1/r/artifacts/a b.bin", "up1", 2, 100, signature, 99)
                .is_err()
        );
    }

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
            &"x".repeat(256),
            &format!("run/{}/model", "y".repeat(300)),
            &"a/".repeat(2100),
        ] {
            assert!(validate_relative_path(bad).is_err(), "{bad:?}");
        }
        for good in [
            "1/abc/artifacts/model/MLmodel",
            "1/abc/artifacts",
            "a b/c.txt",
            &"x".repeat(255),
        ] {
            assert!(validate_relative_path(good).is_ok(), "{good:?}");
        }
    }

    #[tokio::test]
    async fn local_registry_copies_match_object_store_copies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ArtifactStore::open(&dir.path().to_string_lossy()).expect("open");
        for (path, body) in [
            ("1/r/artifacts/model/MLmodel", &b"flavors: {}"[..]),
            ("1/r/artifacts/model/data/model.pkl", &[0u8, 1, 2, 255][..]),
            ("1/r/artifacts/model/a b.txt", &b""[..]),
        ] {
            let body = futures::stream::iter(vec![Ok(bytes::Bytes::copy_from_slice(body))]);
            store.put_stream("dev", path, body).await.expect("put");
        }
        // An upload still being written is not part of the model.
        std::fs::write(dir.path().join("dev/1/r/artifacts/model/MLmodel#12"), b"x")
            .expect("staging file");
        let through_store = ArtifactStore {
            local_root: None,
            ..store.clone()
        };
        let local = store
            .copy_tree_with_checksum("dev", "1/r/artifacts/model", "_registry/m/1")
            .await
            .expect("local copy");
        let general = through_store
            .copy_tree_with_checksum("dev", "1/r/artifacts/model", "_registry/m/2")
            .await
            .expect("object_store copy");
        assert_eq!(local.0, 3);
        assert_eq!(local, general);
        let (size, stream) = store
            .get_stream("dev", "_registry/m/1/data/model.pkl")
            .await
            .expect("copied file");
        let bytes: Vec<bytes::Bytes> = stream.try_collect().await.expect("read");
        assert_eq!((size, bytes.concat()), (4, vec![0u8, 1, 2, 255]));
        // Nothing there: no files, as through object_store.
        assert_eq!(
            store
                .copy_tree_with_checksum("dev", "1/none", "_registry/m/3")
                .await
                .expect("empty")
                .0,
            0
        );
    }

    #[tokio::test]
    async fn uploads_record_their_digest_and_copies_trust_it_only_while_the_file_is_unchanged() {
        use sha2::Digest;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ArtifactStore::open(&dir.path().to_string_lossy()).expect("open");
        let body = futures::stream::iter(vec![Ok(bytes::Bytes::from_static(b"abcd"))]);
        store
            .put_stream("dev", "1/r/artifacts/model/w.bin", body)
            .await
            .expect("put");
        let path = dir.path().join("dev/1/r/artifacts/model/w.bin");
        // Where the filesystem keeps extended attributes, the digest rides on the file.
        if let Ok(Some(value)) = xattr::get(&path, "user.tarn.sha256") {
            let value = String::from_utf8(value).expect("utf-8");
            assert!(value.ends_with(&hex::encode(sha2::Sha256::digest(b"abcd"))));
        }
        let through_store = ArtifactStore {
            local_root: None,
            ..store.clone()
        };
        let copy = |store: &ArtifactStore, to: &'static str| {
            let store = store.clone();
            async move {
                store
                    .copy_tree_with_checksum("dev", "1/r/artifacts/model", to)
                    .await
                    .expect("copy")
            }
        };
        let first = copy(&store, "_registry/m/1").await;
        assert_eq!(first, copy(&through_store, "_registry/m/2").await);
        // Changed in place (tarn itself always replaces files): same size, other bytes, a
        // later modification time. The recorded digest no longer describes it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"wxyz").expect("rewrite");
        let again = copy(&store, "_registry/m/3").await;
        assert_ne!(again, first);
        assert_eq!(again, copy(&through_store, "_registry/m/4").await);
        // An upload that fails half-way leaves the file as it was and no staging file behind.
        let broken = futures::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"half")),
            Err(std::io::Error::other("client went away")),
        ]);
        assert!(
            store
                .put_stream("dev", "1/r/artifacts/model/w.bin", broken)
                .await
                .is_err()
        );
        let names: Vec<String> = std::fs::read_dir(path.parent().expect("folder"))
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, vec!["w.bin".to_string()]);
        assert_eq!(std::fs::read(&path).expect("read"), b"wxyz");
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
