//! Blobs in S3-compatible storage (`--objects s3://BUCKET[/PREFIX]`) through the async
//! `object_store` client. A blob is made durable by uploading its staging file: one PUT
//! up to [`SINGLE_PUT_MAX`], a multipart upload above (only a completed upload creates
//! the key). Reading the staging file runs on the blocking pool.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use object_store::ObjectStore;

use crate::blobs::{BlobInfo, BlobStore, BlobWriter, Staging};
use crate::error::{Restoring, Unavailable};

/// How long a restored copy of an archived blob stays readable.
const RESTORE_DAYS: u32 = 7;
/// What a standard-tier restore takes from S3 Glacier Flexible Retrieval (Deep Archive:
/// up to 12 hours).
const RESTORE_ESTIMATE: &str = "about 3 to 5 hours (up to 12 from Deep Archive)";

/// Blobs up to this size are one PUT (a push's packs are ~32 MiB batches, so one request
/// each: ~32 PUTs per GB); larger ones go up in parts of [`PART`] bytes.
const SINGLE_PUT_MAX: u64 = 64 << 20;
/// Multipart part size (S3's minimum is 5 MiB).
const PART: usize = 16 << 20;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    /// The same client, for its credentials (restore requests).
    s3: Arc<object_store::aws::AmazonS3>,
    /// Where restore requests go: the endpoint (path-style), bucket and region.
    endpoint: String,
    bucket: String,
    region: String,
    prefix: String,
    /// What `--objects` said, for messages.
    url: String,
    staging: Staging,
    /// Write requests made (PUTs, and a multipart upload's parts and completion).
    writes: AtomicU64,
}

/// An S3 failure as an I/O error naming the store and the key; one that may pass (the
/// server did not answer or failed) is [`Unavailable`].
fn s3_err(url: &str, what: &str, e: object_store::Error) -> io::Error {
    use object_store::Error as E;
    // The kinds a local directory gives for the same failures: a caller (the scrub)
    // tells a blob that is gone or shorter than its index says from one that failed.
    if matches!(e, E::NotFound { .. }) {
        return io::Error::new(
            io::ErrorKind::NotFound,
            format!("object store {url}: {what}: {e}"),
        );
    }
    if format!("{e}").contains("416 Range Not Satisfiable") {
        return io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("object store {url}: {what}: shorter than the range asked for"),
        );
    }
    match e {
        E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => {
            io::Error::other(format!("object store {url}: {what}: {e}"))
        }
        e => io::Error::other(Unavailable::new(
            "object store",
            format!("{url}: {what}: {e}"),
        )),
    }
}

/// `len` bytes of the staging file from `at`, read on the blocking pool.
async fn read_staged(writer: &Arc<BlobWriter>, at: u64, len: usize) -> io::Result<Vec<u8>> {
    let writer = writer.clone();
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; len];
        writer.file().read_exact_at(&mut buf, at)?;
        Ok(buf)
    })
    .await
    .map_err(io::Error::other)?
}

impl S3Blobs {
    /// Committed blobs go to `url` (`s3://BUCKET[/PREFIX]`), configured from the usual AWS
    /// environment variables (AWS_ENDPOINT_URL or AWS_ENDPOINT, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP for a plain-HTTP endpoint).
    pub fn open(url: &str, staging: Staging) -> anyhow::Result<S3Blobs> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| anyhow::anyhow!("--objects {url}: expected s3://BUCKET[/PREFIX]"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        anyhow::ensure!(!bucket.is_empty(), "--objects {url}: no bucket");
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            builder = builder.with_endpoint(endpoint);
        }
        let region = builder
            .get_config_value(&object_store::aws::AmazonS3ConfigKey::Region)
            .unwrap_or_else(|| "us-east-1".to_string());
        let endpoint = builder
            .get_config_value(&object_store::aws::AmazonS3ConfigKey::Endpoint)
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let store = Arc::new(
            builder
                .build()
                .map_err(|e| anyhow::anyhow!("--objects {url}: {e}"))?,
        );
        Ok(S3Blobs {
            s3: store.clone(),
            store,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            region,
            prefix: prefix.trim_matches('/').to_string(),
            url: url.to_string(),
            staging,
            writes: AtomicU64::new(0),
        })
    }

    fn remote_path(&self, key: &str) -> object_store::path::Path {
        if self.prefix.is_empty() {
            object_store::path::Path::from(key)
        } else {
            object_store::path::Path::from(format!("{}/{key}", self.prefix))
        }
    }

    /// A read of `key` failed with `e`: when the blob is in an archive class, starts a
    /// restore and says so ([`Restoring`]); otherwise the error as it is.
    async fn read_failed(&self, key: &str, e: object_store::Error) -> io::Error {
        if !format!("{e:?}").contains("InvalidObjectState") {
            return s3_err(&self.url, key, e);
        }
        if let Err(e) = self.start_restore(key).await {
            return io::Error::other(format!(
                "object store {}: {key} is in archive storage and a restore could not be started: {e:#}",
                self.url
            ));
        }
        io::Error::other(Restoring {
            key: key.to_string(),
            estimate: RESTORE_ESTIMATE,
        })
    }

    /// Asks S3 to restore archived blob `key` for [`RESTORE_DAYS`] days (a restore already
    /// under way is no error).
    async fn start_restore(&self, key: &str) -> anyhow::Result<()> {
        use object_store::aws::AwsAuthorizer;
        use object_store::client::{HttpConnector, ReqwestConnector};
        let credential = self.s3.credentials().get_credential().await?;
        let uri = format!(
            "{}/{}/{}?restore",
            self.endpoint,
            self.bucket,
            self.remote_path(key)
        );
        let body = format!(
            "<RestoreRequest xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Days>{RESTORE_DAYS}</Days><GlacierJobParameters><Tier>Standard</Tier></GlacierJobParameters></RestoreRequest>"
        );
        let mut request = http::Request::builder()
            .method("POST")
            .uri(&uri)
            .body(body.into())?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .with_sign_payload(true)
            .authorize(&mut request, None);
        let client = ReqwestConnector::default()
            .connect(&object_store::ClientOptions::new().with_allow_http(true))?;
        let response = client.execute(request).await?;
        let status = response.status();
        // 202: started; 200: already restored; 409: already under way.
        anyhow::ensure!(
            status.is_success() || status.as_u16() == 409,
            "RestoreObject answered {status}"
        );
        tracing::info!(key, %status, "started restoring an archived blob");
        Ok(())
    }

    /// Uploads the staged blob under `key`; returns the write requests it took.
    async fn upload(&self, writer: BlobWriter, key: &str) -> io::Result<u64> {
        let path = self.remote_path(key);
        let len = writer.len();
        let writer = Arc::new(writer);
        let err = |e| s3_err(&self.url, key, e);
        if len <= SINGLE_PUT_MAX {
            let buf = read_staged(&writer, 0, len as usize).await?;
            self.store.put(&path, buf.into()).await.map_err(err)?;
            return Ok(1);
        }
        let upload = self.store.put_multipart(&path).await.map_err(err)?;
        let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
        let mut at = 0u64;
        let mut parts = 0u64;
        while at < len {
            let n = PART.min((len - at) as usize);
            let buf = read_staged(&writer, at, n).await?;
            w.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(err)?;
            w.write(&buf);
            at += n as u64;
            parts += 1;
        }
        w.finish().await.map_err(err)?;
        // Create, the parts, complete.
        Ok(parts + 2)
    }
}

#[async_trait::async_trait]
impl BlobStore for S3Blobs {
    fn describe(&self) -> String {
        self.url.clone()
    }

    async fn check(&self) -> io::Result<()> {
        let prefix = object_store::path::Path::from(self.prefix.as_str());
        self.store
            .list_with_delimiter(Some(&prefix))
            .await
            .map(|_| ())
            .map_err(|e| s3_err(&self.url, "listing", e))
    }

    fn writer(&self) -> io::Result<BlobWriter> {
        self.staging.writer()
    }

    async fn commit(&self, writer: BlobWriter, key: &str) -> io::Result<()> {
        let requests = self.upload(writer, key).await?;
        self.writes.fetch_add(requests, Ordering::Relaxed);
        Ok(())
    }

    async fn read_range(&self, key: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let range = offset..offset + len as u64;
        match self.store.get_range(&self.remote_path(key), range).await {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(e) => Err(self.read_failed(key, e).await),
        }
    }

    async fn read(&self, key: &str) -> io::Result<Vec<u8>> {
        let got = async { self.store.get(&self.remote_path(key)).await?.bytes().await };
        match got.await {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(e) => Err(self.read_failed(key, e).await),
        }
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<BlobInfo>> {
        use futures::TryStreamExt;
        let path = self.remote_path(prefix.trim_end_matches('/'));
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let found: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(|e| s3_err(&self.url, prefix, e))?;
        let mut out: Vec<BlobInfo> = found
            .into_iter()
            .filter_map(|m| {
                let key = m.location.as_ref().strip_prefix(&strip)?.to_string();
                Some(BlobInfo {
                    key,
                    size: m.size,
                    modified: m.last_modified.timestamp(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        match self.store.delete(&self.remote_path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_err(&self.url, key, e)),
        }
    }

    async fn set_class(&self, key: &str, class: &str) -> io::Result<()> {
        use object_store::{Attribute, Attributes, PutOptions};
        let path = self.remote_path(key);
        let err = |e| s3_err(&self.url, key, e);
        let got = self.store.get(&path).await.map_err(err)?;
        check_single_put(key, got.meta.size)?;
        let bytes = got.bytes().await.map_err(err)?;
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::StorageClass, class.to_string().into());
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        // The same bytes under the same key: a reader meanwhile gets one copy or the other.
        self.store
            .put_opts(&path, bytes.into(), options)
            .await
            .map_err(err)?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn write_requests(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    async fn signed_url(
        &self,
        key: &str,
        write: bool,
        ttl: std::time::Duration,
    ) -> io::Result<Option<String>> {
        use object_store::signer::Signer;
        let method = if write {
            http::Method::PUT
        } else {
            http::Method::GET
        };
        // The URL is a credential: errors name the key, never the URL.
        match self
            .s3
            .signed_url(method, &self.remote_path(key), ttl)
            .await
        {
            Ok(url) => Ok(Some(url.to_string())),
            Err(e) => Err(s3_err(&self.url, &format!("signing {key}"), e)),
        }
    }

    async fn copy(&self, from: &str, to: &str) -> io::Result<()> {
        self.store
            .copy(&self.remote_path(from), &self.remote_path(to))
            .await
            .map_err(|e| s3_err(&self.url, &format!("copying {from} to {to}"), e))?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn size(&self, key: &str) -> io::Result<Option<u64>> {
        match self.store.head(&self.remote_path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_err(&self.url, key, e)),
        }
    }
}

/// Refuses to rewrite a blob larger than one PUT may carry (S3: 5 GiB); packs are far
/// smaller.
fn check_single_put(key: &str, size: u64) -> io::Result<()> {
    if size > 5 << 30 {
        return Err(io::Error::other(format!(
            "{key} is {size} bytes, more than one PUT may write to change its storage class"
        )));
    }
    Ok(())
}
