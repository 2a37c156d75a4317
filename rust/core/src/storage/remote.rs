//! Object storage through the `object_store` crate (S3 and S3-compatible stores, GCS, Azure,
//! plain HTTP(S)): one store client per bucket and process, requests run on a runtime of this
//! process's own, with per-request deadlines and retries.
//!
//! Fork safety: a DataLoader worker is a fork of the process that made the dataset. Neither the
//! runtime nor a store (with its connection pool) is used again in a process other than the one
//! that made it: both are looked up by process id, and a child makes its own.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, RetryConfig};

use super::refusal::{refused, store_answer};
use crate::error::{Error, RemoteErrorKind, Result};

/// Gaps up to this many bytes between requested ranges are read too, to save a request.
/// Small, so that a projection never reads the image chunk lying between two caption chunks.
pub const DEFAULT_COALESCE: u64 = 64 << 10;
/// Requests in flight at once for one batch of ranges.
const PARALLEL_REQUESTS: usize = 32;
/// A range longer than this is read in parts of this size, in parallel.
const PART_BYTES: u64 = 8 << 20;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: Mutex<Option<(u32, &'static tokio::runtime::Runtime)>> = Mutex::new(None);
    let mut rt = RT.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    match *rt {
        Some((p, r)) if p == pid => r,
        _ => {
            // A runtime inherited from a parent process has no threads here: it is left as
            // it is (never dropped, never used) and this process makes its own.
            let r: &'static tokio::runtime::Runtime = Box::leak(Box::new(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("pixmo-io")
                    .enable_all()
                    .build()
                    .expect("pixmo-stream: cannot start its I/O runtime"),
            ));
            *rt = Some((pid, r));
            r
        }
    }
}

/// Runs `fut` to completion on this process's I/O runtime (from a thread outside it). A panic
/// in the client (it has a few on malformed settings) becomes an error, not a crash.
fn run<T, E, F>(fut: F, wrap: impl FnOnce(object_store::Error) -> E) -> std::result::Result<T, E>
where
    F: std::future::Future<Output = std::result::Result<T, E>>,
{
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime().block_on(fut)))
        .unwrap_or_else(|p| {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(wrap(object_store::Error::Generic {
                store: "pixmo-stream",
                source: format!("the store client failed ({why}); check the storage options")
                    .into(),
            }))
        })
}

fn block_on<T, F>(fut: F) -> std::result::Result<T, object_store::Error>
where
    F: std::future::Future<Output = std::result::Result<T, object_store::Error>>,
{
    run(fut, |e| e)
}

/// Is `s` a URL this crate reads through object storage (rather than a local path)?
pub fn is_url(s: &str) -> bool {
    match s.split_once("://") {
        Some((scheme, _)) => matches!(
            scheme.to_ascii_lowercase().as_str(),
            "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "azure" | "http" | "https"
        ),
        None => false,
    }
}

type StoreKey = (String, Vec<(String, String)>);
type Stores = HashMap<StoreKey, (u32, Arc<dyn ObjectStore>)>;

/// A "directory" of an object store: a dataset's URL, and the store client that reads it.
#[derive(Clone)]
pub struct RemoteDir {
    /// The URL as the user gave it, without a trailing slash (what errors name).
    pub url: String,
    /// Scheme and authority (`s3://bucket`), what one store client serves.
    root: String,
    prefix: String,
    options: Vec<(String, String)>,
    retry: RetryConfig,
    pub coalesce: u64,
    /// Make no request: everything comes from the node cache (`offline=true`, or
    /// `PIXMO_STREAM_OFFLINE=1`).
    pub offline: bool,
}

impl std::fmt::Debug for RemoteDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteDir({})", self.url)
    }
}

fn parse_duration(key: &str, v: &str) -> Result<Duration> {
    let v = v.trim();
    let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60.0)
    } else {
        (v, 1.0)
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .map(|x| Duration::from_secs_f64(x * scale))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "storage option {key}={v:?}: expected a duration such as 30s or 500ms"
            ))
        })
}

impl RemoteDir {
    /// `url` names a directory (a dataset) or an object; `options` are the store's builder
    /// options (`endpoint`, `region`, `access_key_id`, `allow_http`, `timeout`, ... as the
    /// object_store crate names them), on top of the environment's (`AWS_*`, `GOOGLE_*`,
    /// `AZURE_*`), plus `max_retries`, `retry_timeout` and `coalesce_bytes`.
    pub fn new(url: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let url = url.trim_end_matches('/').to_string();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::InvalidArgument(format!("{url}: not a URL")))?;
        let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{url}: no bucket (or host) in the URL"
            )));
        }
        let mut retry = RetryConfig {
            max_retries: 8,
            retry_timeout: Duration::from_secs(120),
            ..RetryConfig::default()
        };
        let mut coalesce = DEFAULT_COALESCE;
        let truthy =
            |v: &str| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes");
        let mut offline = std::env::var("PIXMO_STREAM_OFFLINE").is_ok_and(|v| truthy(&v));
        let mut rest_opts = Vec::new();
        for (k, v) in options {
            match k.as_str() {
                "max_retries" => {
                    retry.max_retries = v.trim().parse().map_err(|_| {
                        Error::InvalidArgument(format!("storage option max_retries={v:?}"))
                    })?
                }
                "retry_timeout" => retry.retry_timeout = parse_duration(k, v)?,
                "offline" => offline = truthy(v),
                "coalesce_bytes" => {
                    coalesce = v.trim().parse().map_err(|_| {
                        Error::InvalidArgument(format!("storage option coalesce_bytes={v:?}"))
                    })?
                }
                _ => rest_opts.push((k.clone(), v.clone())),
            }
        }
        // An endpoint that is not an absolute http(s) URL makes the client panic when it
        // builds a request: refuse it here, naming the option.
        let env_endpoint = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .filter(|_| matches!(scheme, "s3" | "s3a"))
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)));
        for (k, v) in rest_opts.iter().cloned().chain(env_endpoint) {
            let lower = k.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "endpoint" | "aws_endpoint" | "aws_endpoint_url" | "endpoint_url"
            ) {
                let ok = url::Url::parse(&v).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host_str().is_some_and(|h| !h.is_empty())
                });
                if !ok {
                    return Err(Error::InvalidArgument(format!(
                        "{url}: storage option {k}={v:?} is not an http(s) URL \
                         (such as http://127.0.0.1:9000)"
                    )));
                }
            }
        }
        let dir = RemoteDir {
            root: format!("{}://{authority}", scheme.to_ascii_lowercase()),
            prefix: prefix.to_string(),
            url,
            options: rest_opts,
            retry,
            coalesce,
            offline,
        };
        if !dir.offline {
            dir.store()?; // a bad option or URL fails here, not at the first read
        }
        Ok(dir)
    }

    /// The URL of `name` under this directory.
    pub fn url_of(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    /// This directory's sub-directory `name`.
    pub fn child(&self, name: &str) -> RemoteDir {
        let mut d = self.clone();
        d.url = self.url_of(name);
        d.prefix = self.object_path(name);
        d
    }

    fn object_path(&self, name: &str) -> String {
        match (self.prefix.is_empty(), name.is_empty()) {
            (true, _) => name.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{name}", self.prefix),
        }
    }

    fn location(&self, name: &str) -> ObjectPath {
        ObjectPath::from(self.object_path(name))
    }

    /// This process's client for the store (made on first use, and again after a fork).
    fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        if self.offline {
            return Err(Error::Remote {
                url: self.url.clone(),
                kind: RemoteErrorKind::Failed,
                reason: "offline (PIXMO_STREAM_OFFLINE=1 or offline=true), and this is not in \
                         the node cache"
                    .into(),
            });
        }
        static STORES: OnceLock<Mutex<Stores>> = OnceLock::new();
        let pid = std::process::id();
        // Every option, ours too (the retry settings are the client's).
        let mut opts = self.options.clone();
        opts.push(("max_retries".into(), self.retry.max_retries.to_string()));
        opts.push((
            "retry_timeout".into(),
            format!("{:?}", self.retry.retry_timeout),
        ));
        // And the environment the builders read: a client made for other credentials or
        // another endpoint is not this one.
        opts.extend(std::env::vars().filter(|(k, _)| {
            k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
        }));
        let key = (self.root.clone(), opts);
        let mut stores = STORES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((p, s)) = stores.get(&key) {
            if *p == pid {
                return Ok(s.clone());
            }
            // Made by the parent of this forked process: its pooled connections are the
            // parent's. Forget it without dropping it (its tasks belong to that runtime).
            if let Some((_, s)) = stores.remove(&key) {
                std::mem::forget(s);
            }
        }
        let store = self.build()?;
        stores.insert(key, (pid, store.clone()));
        Ok(store)
    }

    fn build(&self) -> Result<Arc<dyn ObjectStore>> {
        let bad = |e: object_store::Error| {
            Error::InvalidArgument(format!("{}: cannot use this store: {e}", self.url))
        };
        // Defaults first; the environment's and the caller's settings override them.
        let defaults = [("timeout", "60s"), ("connect_timeout", "10s")];
        let scheme = self.root.split("://").next().unwrap_or("");
        let _guard = runtime().enter(); // builders may look for a runtime
        macro_rules! configure {
            ($builder:expr, $key:ty) => {{
                let mut b = $builder;
                for (k, v) in defaults
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .chain(self.options.iter().cloned())
                {
                    let key: $key = k.parse().map_err(|_| {
                        Error::InvalidArgument(format!(
                            "{}: unknown storage option '{k}'",
                            self.url
                        ))
                    })?;
                    b = b.with_config(key, v);
                }
                // A builder panics on some malformed settings (an endpoint that is not a URL):
                // that is the caller's bad argument, not a crash.
                let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    b.with_retry(self.retry.clone()).build()
                }))
                .map_err(|_| {
                    Error::InvalidArgument(format!(
                        "{}: the storage options are malformed (is `endpoint` a URL?)",
                        self.url
                    ))
                })?;
                Arc::new(built.map_err(bad)?) as Arc<dyn ObjectStore>
            }};
        }
        Ok(match scheme {
            "s3" | "s3a" => configure!(
                object_store::aws::AmazonS3Builder::from_env().with_url(self.root.clone()),
                object_store::aws::AmazonS3ConfigKey
            ),
            "gs" => configure!(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(self.root.clone()),
                object_store::gcp::GoogleConfigKey
            ),
            "az" | "abfs" | "abfss" | "azure" => configure!(
                object_store::azure::MicrosoftAzureBuilder::from_env().with_url(self.root.clone()),
                object_store::azure::AzureConfigKey
            ),
            "http" | "https" => configure!(
                object_store::http::HttpBuilder::new().with_url(format!("{}/", self.root)),
                object_store::ClientConfigKey
            ),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{}: unsupported URL scheme",
                    self.url
                )))
            }
        })
    }

    fn error(&self, name: &str, e: object_store::Error) -> Error {
        // A listing is named by the directory's URL, not by "URL/".
        let url = match name {
            "" => self.url.clone(),
            _ => self.url_of(name),
        };
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound { path: url.into() },
            object_store::Error::PermissionDenied { source, .. }
            | object_store::Error::Unauthenticated { source, .. } => Error::Remote {
                url,
                kind: RemoteErrorKind::Forbidden,
                reason: format!("access denied: {}", store_answer(&source.to_string())),
            },
            // The client maps 401/403 to the errors above for reads and plain writes only: a
            // refused listing or multipart upload (what a writer does first) arrives as a
            // generic error whose message holds the status.
            other if refused(&other) => Error::Remote {
                url,
                kind: RemoteErrorKind::Forbidden,
                reason: format!("access denied: {}", store_answer(&other.to_string())),
            },
            other => {
                let reason = other.to_string();
                let kind = if reason.contains("timed out") || reason.contains("deadline") {
                    RemoteErrorKind::Timeout
                } else {
                    RemoteErrorKind::Failed
                };
                Error::Remote { url, kind, reason }
            }
        }
    }

    /// The whole object `name`.
    pub fn get(&self, name: &str) -> Result<Bytes> {
        let store = self.store()?;
        let loc = self.location(name);
        block_on(async { store.get(&loc).await?.bytes().await }).map_err(|e| self.error(name, e))
    }

    /// The size of object `name`.
    pub fn len(&self, name: &str) -> Result<u64> {
        let store = self.store()?;
        let loc = self.location(name);
        block_on(store.head(&loc))
            .map(|m| m.size)
            .map_err(|e| self.error(name, e))
    }

    /// Ranges of several objects at once: `(object, ranges)` in, the bytes of every range out
    /// (in the same order). Ranges of one object closer than `coalesce` bytes are read in one
    /// request; up to 32 requests are in flight at once.
    pub fn get_ranges(&self, wanted: &[(String, Vec<Range<u64>>)]) -> Result<Vec<Vec<Bytes>>> {
        let store = self.store()?;
        let coalesce = self.coalesce;
        // One task per part of a merged range (large ranges are read in parts, in parallel:
        // one connection alone is slower than the store), across all objects, so that all
        // run concurrently.
        let mut plans = Vec::with_capacity(wanted.len());
        let mut tasks = Vec::new();
        let mut parts_of = Vec::new(); // per merged range: (first task, number of parts)
        for (o, (_, ranges)) in wanted.iter().enumerate() {
            let merged = merge_ranges(ranges, coalesce);
            for r in &merged {
                let first = tasks.len();
                let mut at = r.start;
                while at < r.end || at == r.start {
                    let end = (at + PART_BYTES).min(r.end);
                    tasks.push((o, at..end));
                    at = end;
                    if at >= r.end {
                        break;
                    }
                }
                parts_of.push((first, tasks.len() - first));
            }
            plans.push(merged);
        }
        let fetched: Vec<Bytes> = run(
            async {
                futures::stream::iter(tasks.iter().cloned())
                    .map(|(o, r)| {
                        let store = store.clone();
                        let loc = self.location(&wanted[o].0);
                        async move {
                            let want = r.end - r.start;
                            let b = store.get_range(&loc, r).await.map_err(|e| (o, e))?;
                            if (b.len() as u64) < want {
                                return Err((
                                    o,
                                    object_store::Error::Generic {
                                        store: "pixmo-stream",
                                        source: format!(
                                            "short read: {} of {want} bytes (the object is \
                                         smaller than its manifest or footer says)",
                                            b.len()
                                        )
                                        .into(),
                                    },
                                ));
                            }
                            Ok(b)
                        }
                    })
                    .buffered(PARALLEL_REQUESTS)
                    .try_collect()
                    .await
            },
            |e| (0, e),
        )
        .map_err(|(o, e)| self.error(&wanted[o].0, e))?;
        let fetched: Vec<Bytes> = parts_of
            .iter()
            .map(|&(first, n)| match n {
                1 => fetched[first].clone(),
                _ => {
                    let parts = &fetched[first..first + n];
                    let mut whole = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
                    for p in parts {
                        whole.extend_from_slice(p);
                    }
                    Bytes::from(whole)
                }
            })
            .collect();
        let mut out = Vec::with_capacity(wanted.len());
        let mut next = 0;
        for ((_, ranges), merged) in wanted.iter().zip(&plans) {
            let got = &fetched[next..next + merged.len()];
            next += merged.len();
            out.push(
                ranges
                    .iter()
                    .map(|r| {
                        if r.end <= r.start {
                            return Bytes::new();
                        }
                        let i = merged.partition_point(|m| m.start <= r.start) - 1;
                        let base = merged[i].start;
                        got[i].slice((r.start - base) as usize..(r.end - base) as usize)
                    })
                    .collect(),
            );
        }
        Ok(out)
    }

    /// The names of the objects directly under this directory (with their sizes).
    pub fn list(&self) -> Result<Vec<(String, u64)>> {
        let store = self.store()?;
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let listed =
            block_on(store.list_with_delimiter(prefix.as_ref())).map_err(|e| self.error("", e))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|m| m.location.filename().map(|n| (n.to_string(), m.size)))
            .collect())
    }

    /// Writes `bytes` as object `name` (one request: for small objects such as a manifest).
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let store = self.store()?;
        let loc = self.location(name);
        block_on(store.put(&loc, bytes.into()))
            .map(|_| ())
            .map_err(|e| self.error(name, e))
    }

    /// Uploads the local file `path` as object `name`, in parts of 16 MiB (a multipart upload:
    /// the object appears whole when the upload completes, or not at all).
    pub fn put_file(&self, name: &str, path: &std::path::Path) -> Result<()> {
        use std::io::Read;
        const PART: usize = 16 << 20;
        let store = self.store()?;
        let loc = self.location(name);
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len <= PART as u64 {
            let mut buf = Vec::with_capacity(len as usize);
            file.read_to_end(&mut buf).map_err(|e| Error::io(path, e))?;
            return self.put(name, buf);
        }
        let result: Result<()> = run(
            async {
                let upload = store
                    .put_multipart(&loc)
                    .await
                    .map_err(|e| self.error(name, e))?;
                let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
                let mut buf = vec![0u8; PART];
                loop {
                    let n = read_full(&mut file, &mut buf).map_err(|e| Error::io(path, e))?;
                    if n == 0 {
                        break;
                    }
                    if let Err(e) = writer.wait_for_capacity(4).await {
                        writer.abort().await.ok();
                        return Err(self.error(name, e));
                    }
                    writer.write(&buf[..n]);
                }
                writer
                    .finish()
                    .await
                    .map(|_| ())
                    .map_err(|e| self.error(name, e))
            },
            |e| self.error(name, e),
        );
        result
    }

    /// Deletes object `name`; an object that is not there is not an error.
    pub fn delete(&self, name: &str) -> Result<()> {
        let store = self.store()?;
        let loc = self.location(name);
        match block_on(store.delete(&loc)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(name, e)),
        }
    }
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Sorted, merged ranges covering `ranges`: neighbours closer than `coalesce` bytes become one,
/// up to 64 MiB a request.
fn merge_ranges(ranges: &[Range<u64>], coalesce: u64) -> Vec<Range<u64>> {
    const MAX_REQUEST: u64 = 64 << 20;
    let mut sorted: Vec<Range<u64>> = ranges.iter().filter(|r| r.end > r.start).cloned().collect();
    sorted.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(last)
                if r.start <= last.end.saturating_add(coalesce)
                    && r.end.max(last.end) - last.start <= MAX_REQUEST =>
            {
                last.end = last.end.max(r.end)
            }
            _ => out.push(r),
        }
    }
    // Every range, including empty ones, must lie in a merged range for the lookup above.
    if out.is_empty() {
        out.push(0..0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_only_close_ranges() {
        let m = merge_ranges(&[100..200, 0..50, 210..300, 1_000_000..1_000_010], 40);
        assert_eq!(m, vec![0..50, 100..300, 1_000_000..1_000_010]);
        let m = merge_ranges(&[0..10, 20..30], 0);
        assert_eq!(m, vec![0..10, 20..30]);
        let m = merge_ranges(&[0..(40 << 20), (40 << 20)..(80 << 20)], 1 << 20);
        assert_eq!(m.len(), 2, "requests stay under 64 MiB");
    }

    #[test]
    fn urls_and_paths() {
        assert!(is_url("s3://b/x"));
        assert!(is_url("HTTPS://h/x"));
        assert!(is_url("gs://b"));
        assert!(!is_url("/data/x"));
        assert!(!is_url("relative/s3://x"));
        assert!(!is_url("file.pxs"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("k", "30s").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_duration("k", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("k", "2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("k", "soon").is_err());
    }

    #[test]
    fn bad_options_fail_at_once() {
        let mut o = BTreeMap::new();
        o.insert("no_such_option".to_string(), "1".to_string());
        let e = RemoteDir::new("s3://bucket/data", &o).unwrap_err();
        assert!(e.to_string().contains("no_such_option"), "{e}");
        assert!(RemoteDir::new("ftp://x/y", &BTreeMap::new()).is_err());
    }
}
