//! Test support: hermetic environments driving the real `git` with the built `git-dits`
//! on PATH, and media made by the real `ffmpeg` (cached under the target directory so
//! re-runs don't re-encode).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_git-dits");

/// A temporary HOME with a global `git dits install`, and repositories inside it.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let env = TestEnv {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir_all(env.home()).unwrap();
        env.git(env.dir.path(), &["dits", "install"]);
        env
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn command(&self, program: &str, cwd: &Path, args: &[&str]) -> Command {
        let bin_dir = Path::new(BIN).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.home())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "Dits Test")
            .env("GIT_AUTHOR_EMAIL", "test@dits.invalid")
            .env("GIT_COMMITTER_NAME", "Dits Test")
            .env("GIT_COMMITTER_EMAIL", "test@dits.invalid")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z");
        c
    }

    /// Runs git and returns its output, whatever the exit code.
    pub fn git_output(&self, cwd: &Path, args: &[&str]) -> Output {
        self.command("git", cwd, args)
            .output()
            .expect("running git")
    }

    /// Runs git and asserts success; returns stdout.
    pub fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.git_output(cwd, args);
        assert!(
            out.status.success(),
            "git {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new repository with `*.mp4 *.mov *.bin` tracked and committed.
    pub fn repo(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        self.git(self.dir.path(), &["init", "-q", "-b", "main", name]);
        self.git(&path, &["dits", "track", "*.mp4", "*.mov", "*.bin"]);
        self.git(&path, &["add", ".gitattributes"]);
        self.git(&path, &["commit", "-q", "-m", "track media"]);
        path
    }

    /// Copies `src` into the repo as `name`, adds and commits it.
    pub fn commit_file(&self, repo: &Path, src: &Path, name: &str) {
        std::fs::copy(src, repo.join(name)).unwrap();
        self.git(repo, &["add", name]);
        self.git(repo, &["commit", "-q", "-m", &format!("add {name}")]);
    }
}

/// Bytes of all pack files: what the local store physically holds.
pub fn store_bytes(repo: &Path) -> u64 {
    let packs = repo.join(".git/dits/packs");
    std::fs::read_dir(packs)
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub fn same_bytes(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error"])
        .args(args)
        .output()
        .expect("ffmpeg must be installed (see .ci/run)");
    assert!(
        out.status.success(),
        "ffmpeg {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The media every test shares, made once per target directory.
pub struct Media {
    pub dir: PathBuf,
}

impl Media {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

pub fn media() -> &'static Media {
    static MEDIA: OnceLock<Media> = OnceLock::new();
    MEDIA.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dits-media-v1");
        std::fs::create_dir_all(&dir).unwrap();
        let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
        let make = |name: &str, args: &[&str]| {
            if !dir.join(name).exists() {
                let tmp = p(&format!("tmp-{name}"));
                let mut full: Vec<&str> = args.to_vec();
                full.push(&tmp);
                ffmpeg(&full);
                std::fs::rename(&tmp, dir.join(name)).unwrap();
            }
        };
        // 8 s of 640x360 H.264 + AAC, a keyframe every second, moov at the end.
        let base = p("base.mp4");
        make(
            "base.mp4",
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=44100",
                "-t",
                "8",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-b:v",
                "3M",
                "-g",
                "25",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "128k",
                "-shortest",
                "-f",
                "mp4",
            ],
        );
        make(
            "faststart.mp4",
            &[
                "-i",
                &base,
                "-c",
                "copy",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
            ],
        );
        make(
            "metadata.mp4",
            &[
                "-i",
                &base,
                "-c",
                "copy",
                "-metadata",
                "title=Director's cut",
                "-f",
                "mp4",
            ],
        );
        make(
            "trim.mp4",
            &["-ss", "2", "-i", &base, "-c", "copy", "-f", "mp4"],
        );
        make("rewrap.mov", &["-i", &base, "-c", "copy", "-f", "mov"]);
        make(
            "fragmented.mp4",
            &[
                "-i",
                &base,
                "-c",
                "copy",
                "-movflags",
                "+frag_keyframe+empty_moov+default_base_moof",
                "-f",
                "mp4",
            ],
        );
        make_track_edits(&dir, &base, &make);
        Media { dir }
    })
}

/// Track-level edits of `base` (audio swapped, removed, added; subtitles added) as MP4,
/// fragmented MP4 and MOV: the edits track-level splitting must keep video shared through.
fn make_track_edits(dir: &Path, base: &str, make: &dyn Fn(&str, &[&str])) {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let tone = [
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=880:sample_rate=44100:duration=8",
    ];
    let with_tone = |name: &str, tail: &[&str]| {
        let mut args = vec!["-i", base];
        args.extend_from_slice(&tone);
        args.extend_from_slice(tail);
        make(name, &args);
    };
    let aac = ["-c:a", "aac", "-b:a", "96k"];
    let swap: Vec<&str> = ["-map", "0:v", "-map", "1:a", "-c:v", "copy"]
        .iter()
        .chain(aac.iter())
        .copied()
        .collect();
    with_tone("audio-swap.mp4", &[&swap[..], &["-f", "mp4"]].concat());
    make(
        "no-audio.mp4",
        &["-i", base, "-an", "-c:v", "copy", "-f", "mp4"],
    );
    with_tone(
        "second-audio.mp4",
        &[
            "-map", "0:v", "-map", "0:a", "-map", "1:a", "-c:v", "copy", "-c:a:0", "copy",
            "-c:a:1", "aac", "-b:a:1", "96k", "-f", "mp4",
        ],
    );
    let srt = dir.join("subs.srt");
    if !srt.exists() {
        std::fs::write(
            &srt,
            "1\n00:00:00,500 --> 00:00:03,000\nFirst line\n\n2\n00:00:04,000 --> 00:00:07,500\nSecond line\n",
        )
        .unwrap();
    }
    let srt = srt.to_string_lossy().into_owned();
    make(
        "subtitles.mp4",
        &[
            "-i", base, "-i", &srt, "-map", "0", "-map", "1", "-c", "copy", "-c:s", "mov_text",
            "-f", "mp4",
        ],
    );
    let frag = [
        "-movflags",
        "+frag_keyframe+empty_moov+default_base_moof",
        "-f",
        "mp4",
    ];
    let fragmented = p("fragmented.mp4");
    make(
        "fragmented-no-audio.mp4",
        &[&["-i", &fragmented, "-an", "-c:v", "copy"][..], &frag].concat(),
    );
    let mut frag_swap = vec!["-i", fragmented.as_str()];
    frag_swap.extend_from_slice(&tone);
    frag_swap.extend_from_slice(&swap);
    frag_swap.extend_from_slice(&frag);
    make("fragmented-audio-swap.mp4", &frag_swap);
    let mov = p("rewrap.mov");
    let mut mov_swap = vec!["-i", mov.as_str()];
    mov_swap.extend_from_slice(&tone);
    mov_swap.extend_from_slice(&swap);
    mov_swap.extend_from_slice(&["-f", "mov"]);
    make("audio-swap.mov", &mov_swap);
}

/// Total bytes of the packets of the streams `selector` picks (ffprobe's `-select_streams`
/// syntax: `v`, `a:1`, `s`), measured by ffprobe, independent of Dits.
pub fn stream_bytes(file: &Path, selector: &str) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", selector])
        .args(["-show_entries", "packet=size", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe must be installed (it comes with ffmpeg)");
    assert!(out.status.success(), "ffprobe {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<u64>().ok())
        .sum()
}

/// Deterministic non-media bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub const HUB_BIN: &str = env!("CARGO_BIN_EXE_dits-hub");

/// A `dits-hub serve` process on a free loopback port, killed on drop.
pub struct HubProcess {
    pub data: PathBuf,
    pub port: u16,
    pub fingerprint: String,
    /// The Redis key namespace, when locks are in Redis.
    pub lock_namespace: Option<String>,
    /// Backend settings (`DITS_HUB_*`, `AWS_*`) the admin commands share with `serve`.
    pub envs: Vec<(String, String)>,
    child: std::process::Child,
}

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
fn create_bucket(endpoint: &str, bucket: &str) -> String {
    let made = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .arg(format!("{endpoint}/{bucket}"))
        .output()
        .expect("running curl");
    String::from_utf8_lossy(&made.stdout).into_owned()
}

/// Keys under `prefix` in `bucket` on the S3 server at `endpoint`.
pub fn s3_keys(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let out = Command::new("curl")
        .arg("-s")
        .arg(format!("{endpoint}/{bucket}?list-type=2&prefix={prefix}"))
        .output()
        .expect("running curl");
    let xml = String::from_utf8_lossy(&out.stdout).into_owned();
    xml.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_string)
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
fn scale_out_env(
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

impl HubProcess {
    pub fn start_on(data: &Path, port: u16) -> HubProcess {
        Self::start_with(data, port, &[])
    }

    /// With extra `serve` arguments (e.g. a certificate).
    pub fn start_with(data: &Path, port: u16, serve_args: &[&str]) -> HubProcess {
        Self::start_configured(data, port, serve_args, &[])
    }

    /// With extra `serve` arguments and environment (e.g. S3 settings).
    pub fn start_configured(
        data: &Path,
        port: u16,
        serve_args: &[&str],
        envs: &[(String, String)],
    ) -> HubProcess {
        use std::io::BufRead;
        let mut envs = envs.to_vec();
        envs.extend(scale_out_env(data, serve_args, &envs));
        let mut child = Command::new(HUB_BIN)
            .args(["--data"])
            .arg(data)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(serve_args)
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("starting dits-hub");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut port = 0;
        let mut fingerprint = String::new();
        let mut lock_namespace = None;
        while port == 0 || fingerprint.is_empty() {
            let line = lines
                .next()
                .expect("hub exited before announcing itself")
                .unwrap();
            if let Some(rest) = line.split("(namespace ").nth(1) {
                lock_namespace = rest.split([',', ')']).next().map(str::to_string);
            }
            if let Some(rest) = line.strip_prefix("dits-hub: listening on ") {
                let addr = rest.split_whitespace().next().unwrap();
                port = addr.rsplit(':').next().unwrap().parse().unwrap();
            } else if let Some(fp) = line.strip_prefix("dits-hub: certificate fingerprint ") {
                fingerprint = fp.trim().to_string();
            }
        }
        // Keep draining stdout so the hub never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        HubProcess {
            data: data.to_path_buf(),
            port,
            fingerprint,
            lock_namespace,
            envs,
            child,
        }
    }

    pub fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(HUB_BIN)
            .arg("--data")
            .arg(&self.data)
            .args(args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dits-hub {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Chunk packs the hub has made durable so far (one per upload batch), in its data
    /// directory or its S3 bucket.
    pub fn chunk_packs(&self) -> usize {
        let env = |k: &str| {
            self.envs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        match (env("DITS_HUB_OBJECTS"), env("AWS_ENDPOINT_URL")) {
            (Some(objects), Some(endpoint)) => {
                let location = objects.trim_start_matches("s3://");
                let (bucket, prefix) = match location.split_once('/') {
                    Some((b, p)) => (b, format!("{}/", p.trim_matches('/'))),
                    None => (location, String::new()),
                };
                s3_keys(&endpoint, bucket, &format!("{prefix}chunks/")).len()
            }
            _ => std::fs::read_dir(self.data.join("objects/chunks"))
                .map(|d| d.filter(|e| e.is_ok()).count())
                .unwrap_or(0),
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("dits://127.0.0.1:{}/{repo}", self.port)
    }

    pub fn base(&self) -> String {
        format!("dits://127.0.0.1:{}", self.port)
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestEnv {
    /// A hub on `data` (started with `serve_args` and `envs`) where user alice owns
    /// alice/film, trusted by this HOME with alice's token; returns the hub and the token.
    pub fn alice_hub_on(
        &self,
        data: &Path,
        serve_args: &[&str],
        envs: &[(String, String)],
    ) -> (HubProcess, String) {
        let hub = HubProcess::start_configured(data, 0, serve_args, envs);
        let token = hub.admin(&["user", "add", "alice"]);
        hub.admin(&["repo", "create", "alice/film"]);
        self.trust_hub(&hub, "alice", &token);
        (hub, token)
    }

    /// [`Self::alice_hub_on`] with the data in `hub-data` and no extra settings.
    pub fn alice_hub(&self) -> (HubProcess, String) {
        self.alice_hub_on(&self.dir.path().join("hub-data"), &[], &[])
    }

    /// `git clone -q URL NAME` in the test directory with extra environment (e.g.
    /// GIT_DITS_SKIP_SMUDGE=1), whatever the outcome.
    pub fn clone_with(&self, url: &str, name: &str, envs: &[(&str, &str)]) -> Output {
        self.command("git", self.dir.path(), &["clone", "-q", url, name])
            .envs(envs.iter().copied())
            .output()
            .expect("running git clone")
    }

    /// Pins the hub's certificate and stores `token` for it in this HOME's credential store.
    pub fn trust_hub(&self, hub: &HubProcess, user: &str, token: &str) {
        let cwd = self.dir.path();
        self.git(
            cwd,
            &[
                "config",
                "--global",
                &format!("dits.{}.fingerprint", hub.base()),
                &hub.fingerprint,
            ],
        );
        self.set_token(hub, user, token);
    }

    pub fn set_token(&self, hub: &HubProcess, user: &str, token: &str) {
        let cwd = self.dir.path();
        self.git(cwd, &["config", "--global", "credential.helper", "store"]);
        std::fs::write(
            self.home().join(".git-credentials"),
            format!("dits://{user}:{token}@127.0.0.1:{}\n", hub.port),
        )
        .unwrap();
    }
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Polls `ready` until it holds (at most 60 s), asserting meanwhile that `child` (a push
/// to be killed mid-way) is still running.
pub fn wait_while_running(child: &mut std::process::Child, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "push finished before any batch was observed"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// SIGKILL to the whole process group `child` leads (spawned with `process_group(0)`).
pub fn kill_group(child: &std::process::Child) {
    let killed = Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .status()
        .expect("running kill");
    assert!(killed.success(), "kill -9 -{}", child.id());
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

impl TestEnv {
    /// Pins every hub's certificate and stores `token` for `user` on each.
    pub fn trust_hubs(&self, hubs: &[&HubProcess], user: &str, token: &str) {
        let cwd = self.dir.path();
        let mut credentials = String::new();
        for hub in hubs {
            self.git(
                cwd,
                &[
                    "config",
                    "--global",
                    &format!("dits.{}.fingerprint", hub.base()),
                    &hub.fingerprint,
                ],
            );
            credentials.push_str(&format!("dits://{user}:{token}@127.0.0.1:{}\n", hub.port));
        }
        self.git(cwd, &["config", "--global", "credential.helper", "store"]);
        std::fs::write(self.home().join(".git-credentials"), credentials).unwrap();
    }
}

/// GET `path` from the HTTPS side of the hub on `port`: the status and the body.
pub fn https_get(port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}", "--max-time", "30"])
        .arg(format!("https://127.0.0.1:{port}/{path}"))
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
