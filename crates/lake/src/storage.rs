//! Where the lake's files live: a local folder, or an S3-compatible object store. delta-rs
//! reaches `s3://` through the factories registered here, which build the store with
//! `object_store` (the crate the artifact store uses, configured the same way from the usual
//! `AWS_*` variables), so tarn needs no AWS SDK. Commits are put with `If-None-Match: *`,
//! which S3 honours, so two writers never both take a version.

use std::sync::{Arc, Once};

use deltalake::DeltaResult;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use tarn_core::{Error, Result};
use url::Url;

/// Builds S3 stores for delta-rs.
struct S3Stores;

impl ObjectStoreFactory for S3Stores {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        // The store points at the bucket; the path within it comes back beside it.
        let store = s3_store(url, config.raw.iter())?;
        Ok((Arc::new(store), Path::from_url_path(url.path())?))
    }
}

/// delta-rs's default log store: commits by conditional put.
struct S3LogStores;

impl LogStoreFactory for S3LogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

pub(crate) fn s3_store<'a>(
    url: &Url,
    options: impl Iterator<Item = (&'a String, &'a String)>,
) -> object_store::Result<object_store::aws::AmazonS3> {
    let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
    for (key, value) in options {
        if let Ok(key) = key.to_ascii_lowercase().parse() {
            builder = builder.with_config(key, value);
        }
    }
    builder.build()
}

/// Lets delta-rs open `s3://` tables; once per process.
pub(crate) fn register_s3() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        if let Ok(scheme) = Url::parse("s3://") {
            object_store_factories().insert(scheme.clone(), Arc::new(S3Stores));
            logstore_factories().insert(scheme, Arc::new(S3LogStores));
        }
    });
}

/// Deletes every object under `location` (an `s3://bucket/prefix/` URL).
pub(crate) async fn remove_prefix(location: &Url) -> Result<()> {
    let store = s3_store(location, std::iter::empty())
        .map_err(|e| Error::internal_from(format!("cannot open {location}"), e))?;
    let prefix = Path::from_url_path(location.path())
        .map_err(|e| Error::internal_from(format!("invalid location {location}"), e))?;
    let listed = store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location)
        .boxed();
    store
        .delete_stream(listed)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| Error::internal_from(format!("cannot delete {location}"), e))?;
    Ok(())
}
