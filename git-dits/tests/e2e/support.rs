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
    child: std::process::Child,
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
        while port == 0 || fingerprint.is_empty() {
            let line = lines
                .next()
                .expect("hub exited before announcing itself")
                .unwrap();
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
            child,
        }
    }

    pub fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(HUB_BIN)
            .arg("--data")
            .arg(&self.data)
            .args(args)
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting moto_server (S3 test server): run .ci/run, which installs it into target/moto-venv");
        let bucket = "dits-test".to_string();
        let started = std::time::Instant::now();
        loop {
            let made = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
                .arg(format!("http://127.0.0.1:{port}/{bucket}"))
                .output()
                .unwrap();
            if String::from_utf8_lossy(&made.stdout) == "200" {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "moto_server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        S3Server {
            port,
            bucket,
            child,
        }
    }

    /// The AWS_* settings a hub needs to use this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP", "true".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Keys under `prefix` in the bucket.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let out = Command::new("curl")
            .args(["-s"])
            .arg(format!(
                "http://127.0.0.1:{}/{}?list-type=2&prefix={prefix}",
                self.port, self.bucket
            ))
            .output()
            .unwrap();
        let xml = String::from_utf8_lossy(&out.stdout).into_owned();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
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
