//! Real backends for the hub: PostgreSQL and Redis on this machine (or private instances
//! a test can stop), and moto's S3 server on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::wait::{free_port, wait_until};

/// Whether the hub tests run against the scale-out backends (`DITS_TEST_BACKENDS=scale`,
/// set by scripts/test.sh for its second pass): each hub then keeps its metadata in a
/// PostgreSQL database of its own, locks in this machine's Redis and objects in a bucket
/// of its own on the S3 server at `DITS_TEST_S3_ENDPOINT`.
pub fn scale_out() -> bool {
    std::env::var("DITS_TEST_BACKENDS").as_deref() == Ok("scale")
}

/// Runs one statement as PostgreSQL's admin (psql, trust auth on loopback).
pub fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "root", "-d", db, "-tAqc", sql])
        .output()
        .expect("running psql (PostgreSQL's client)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A PostgreSQL database for `key` (made if missing; test databases are named dits_t_…).
pub fn pg_database(key: &Path) -> String {
    let name = format!(
        "dits_t_{}",
        &blake3::hash(key.as_os_str().as_encoded_bytes()).to_hex()[..16]
    );
    if psql(
        "postgres",
        &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
    )
    .is_empty()
    {
        psql("postgres", &format!("CREATE DATABASE {name}"));
    }
    format!("postgres://root@127.0.0.1:5432/{name}")
}

/// PUT of bucket `bucket` on the S3 server at `endpoint`: the HTTP status ("000" if the
/// server does not answer).
pub fn create_bucket(endpoint: &str, bucket: &str) -> String {
    let made = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .arg(format!("{endpoint}/{bucket}"))
        .output()
        .expect("running curl");
    String::from_utf8_lossy(&made.stdout).into_owned()
}

/// Keys under `prefix` in `bucket` on the S3 server at `endpoint`.
pub fn s3_keys(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    s3_sizes(endpoint, bucket, prefix)
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

/// Keys under `prefix` in `bucket` and their sizes (moto answers one page of up to
/// 1,000; the tests store far fewer).
pub fn s3_sizes(endpoint: &str, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
    let out = Command::new("curl")
        .arg("-s")
        .arg(format!("{endpoint}/{bucket}?list-type=2&prefix={prefix}"))
        .output()
        .expect("running curl");
    let xml = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |s: &str, tag: &str| -> Option<String> {
        let open = format!("<{tag}>");
        let from = s.find(&open)? + open.len();
        Some(s[from..].split(&format!("</{tag}>")).next()?.to_string())
    };
    xml.split("<Contents>")
        .skip(1)
        .filter_map(|c| Some((field(c, "Key")?, field(c, "Size")?.parse().ok()?)))
        .collect()
}

/// An S3 bucket for `key` on the server at `endpoint` (made if missing).
pub fn s3_bucket(endpoint: &str, key: &Path) -> String {
    let bucket = format!(
        "dits-t-{}",
        &blake3::hash(key.as_os_str().as_encoded_bytes()).to_hex()[..16]
    );
    let code = create_bucket(endpoint, &bucket);
    assert!(
        code == "200" || code == "409",
        "creating bucket {bucket}: HTTP {code}"
    );
    bucket
}

pub fn s3_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// In the scale-out pass, the backend settings for a hub on `data`, leaving alone what
/// the test sets itself.
pub fn scale_out_env(
    data: &Path,
    serve_args: &[&str],
    envs: &[(String, String)],
) -> Vec<(String, String)> {
    if !scale_out() {
        return Vec::new();
    }
    let has_env = |k: &str| envs.iter().any(|(key, _)| key == k);
    let has_arg = |a: &str| serve_args.contains(&a) || serve_args.contains(&"--config");
    let mut out = Vec::new();
    if !has_env("DITS_HUB_METADATA") {
        out.push(("DITS_HUB_METADATA".to_string(), pg_database(data)));
    }
    if !has_arg("--locks") && !has_env("DITS_HUB_LOCKS") {
        out.push((
            "DITS_HUB_LOCKS".to_string(),
            "redis://127.0.0.1:6379".to_string(),
        ));
    }
    if !has_arg("--objects") && !has_env("DITS_HUB_OBJECTS") && !has_env("AWS_ENDPOINT_URL") {
        let endpoint = std::env::var("DITS_TEST_S3_ENDPOINT").expect(
            "DITS_TEST_BACKENDS=scale needs DITS_TEST_S3_ENDPOINT (scripts/test.sh starts one)",
        );
        let bucket = s3_bucket(&endpoint, data);
        out.push(("DITS_HUB_OBJECTS".to_string(), format!("s3://{bucket}")));
        out.extend(s3_env(&endpoint));
    }
    out
}

/// A real S3-compatible server on loopback: moto's server (from PyPI; `.ci/run` installs it
/// into target/moto-venv), with one bucket. Killed on drop.
pub struct S3Server {
    pub port: u16,
    pub bucket: String,
    child: std::process::Child,
}

fn moto_server() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/moto-venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = free_port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting moto_server (S3 test server): run .ci/run, which installs it into target/moto-venv");
        let bucket = "dits-test".to_string();
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_until("moto_server", || create_bucket(&endpoint, &bucket) == "200");
        S3Server {
            port,
            bucket,
            child,
        }
    }

    /// The AWS_* settings a hub needs to use this server.
    pub fn env(&self) -> Vec<(String, String)> {
        s3_env(&format!("http://127.0.0.1:{}", self.port))
    }

    /// Keys under `prefix` in the bucket.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        s3_keys(
            &format!("http://127.0.0.1:{}", self.port),
            &self.bucket,
            prefix,
        )
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis server of one test's own (so the test can stop it), on a free port, keeping
/// nothing on disk. Killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let mut r = PrivateRedis {
            port: free_port(),
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port, empty (as after a crash without persistence).
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        let port = self.port.to_string();
        wait_until("redis-server", || {
            Command::new("redis-cli")
                .args(["-p", &port, "ping"])
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL cluster of one test's own (so the test can stop it): initdb into a
/// temporary directory, run as the `postgres` user (PostgreSQL refuses root), trust auth
/// for `root` on a free loopback port. Stopped on drop.
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn pg_bin(tool: &str) -> PathBuf {
    // Whichever major version Debian installed.
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("bin").join(tool))
                .filter(|p| p.exists())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    versions
        .into_iter()
        .next()
        .unwrap_or_else(|| Path::new(PG_BIN).join(tool))
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("initdb"))
            .args(["-A", "trust", "-U", "root", "-D"])
            .arg(dir.path().join("data"))
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = PrivatePostgres {
            port: free_port(),
            dir,
        };
        pg.restart();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://root@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(args)
            .output()
            .expect("running pg_ctl")
    }

    pub fn restart(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let out = self.pg_ctl(&["-w", "-o", &options, "-l", log.to_str().unwrap(), "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops it at once, as a crash would (open connections are cut).
    pub fn stop(&self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The settings of a hub keeping metadata at `metadata`, locks at `locks` and objects in
/// `s3`'s bucket (under `hub/`).
pub fn backend_envs(metadata: String, locks: String, s3: &S3Server) -> Vec<(String, String)> {
    let mut envs = vec![
        ("DITS_HUB_METADATA".to_string(), metadata),
        ("DITS_HUB_LOCKS".to_string(), locks),
        (
            "DITS_HUB_OBJECTS".to_string(),
            format!("s3://{}/hub", s3.bucket),
        ),
    ];
    envs.extend(s3.env());
    envs
}

/// PostgreSQL (a database of its own on this machine's server), this machine's Redis and
/// an S3 server of its own: what hubs of the scale-out tests share.
pub struct SharedBackends {
    /// Kept for its lifetime: dropped (killed) with the backends.
    _s3: S3Server,
    pub database: String,
    pub envs: Vec<(String, String)>,
    _key: tempfile::TempDir,
}

impl SharedBackends {
    pub fn start() -> SharedBackends {
        let key = tempfile::tempdir().unwrap();
        let s3 = S3Server::start();
        let database = pg_database(key.path());
        let envs = backend_envs(database.clone(), "redis://127.0.0.1:6379".into(), &s3);
        SharedBackends {
            _s3: s3,
            database,
            envs,
            _key: key,
        }
    }
}

impl SharedBackends {
    /// One query on the shared metadata database, as psql prints it.
    pub fn query(&self, sql: &str) -> String {
        psql(self.database.rsplit('/').next().unwrap_or_default(), sql)
    }
}

impl Drop for SharedBackends {
    fn drop(&mut self) {
        let name = self.database.rsplit('/').next().unwrap_or_default();
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "root", "-d", "postgres", "-qc"])
            .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .output();
    }
}
